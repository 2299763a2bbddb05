"""API-key authentication: the key decides the project, whatever the body says."""

from __future__ import annotations

import time

from fastapi import HTTPException, Request

from agenttrace.service import log_context
from schemas.keys import ApiKey, KeyStore, token_from_headers


class Authenticator:
    # Verified keys are remembered briefly: a revocation still takes effect within CACHE_SECONDS,
    # without a stat of the key file on every request.
    CACHE_SECONDS = 1.0

    def __init__(self, store: KeyStore):
        self.store = store
        self._cache: dict[str, tuple[ApiKey, float]] = {}

    async def __call__(self, request: Request) -> ApiKey:
        # async: a sync dependency costs a thread-pool hop per request; verify is only a stat and a hash.
        return self.verify(request.headers.get("authorization"), request.headers.get("x-api-key"))

    def verify(self, authorization: str | None, x_api_key: str | None) -> ApiKey:
        token = token_from_headers(authorization, x_api_key)
        if not token:
            raise HTTPException(401, "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
                                headers={"WWW-Authenticate": "Bearer"})
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now:
            key: ApiKey | None = hit[0]
        else:
            key = self.store.verify(token)
            if key is not None:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token] = (key, now + self.CACHE_SECONDS)
        if key is None:
            raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        ctx = log_context.get()
        if ctx is not None:  # every log line of this request names its project
            ctx["project_id"] = key.project_id
        return key
