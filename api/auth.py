"""API keys, the same as the gateway's: the key decides the project every query reads."""

from __future__ import annotations

from fastapi import Request

from api.errors import ApiError
from schemas.keys import ApiKey, KeyStore, token_from_headers


class Auth:
    def __init__(self, store: KeyStore):
        self.store = store

    # async although it never awaits: FastAPI runs a plain `def` dependency in its thread pool, a
    # thread round trip per request for a hash and a dict lookup.
    async def __call__(self, request: Request) -> ApiKey:
        token = token_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if not token:
            raise ApiError(401, "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`")
        key = self.store.verify(token)
        if key is None:
            raise ApiError(401, "invalid or revoked API key")
        request.state.project_id = key.project_id
        return key
