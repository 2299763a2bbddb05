"""API-key authentication: the key decides the project, whatever the body says."""

from __future__ import annotations

from fastapi import HTTPException, Request

from agenttrace.service import log_context
from schemas.keys import ApiKey, KeyStore, token_from_headers


class Authenticator:
    def __init__(self, store: KeyStore):
        self.store = store

    async def __call__(self, request: Request) -> ApiKey:
        # async: a sync dependency costs a thread-pool hop per request; verify is only a stat and a hash.
        token = token_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if not token:
            raise HTTPException(401, "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
                                headers={"WWW-Authenticate": "Bearer"})
        key = self.store.verify(token)
        if key is None:
            raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        ctx = log_context.get()
        if ctx is not None:  # every log line of this request names its project
            ctx["project_id"] = key.project_id
        return key
