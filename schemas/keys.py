"""API keys: `sk-at-…` tokens scoped to a project, kept hashed in `$AGENTTRACE_HOME/config.json`.

Every service verifies keys through `KeyStore.verify`; the file is re-read when it changes,
so `agenttrace keys revoke` takes effect without restarts.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

PREFIX = "sk-at-"


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast unsalted hash is enough to keep them unreadable at rest.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class ApiKey:
    id: str
    project_id: str
    hash: str
    hint: str  # first characters, to tell keys apart in listings
    name: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    revoked: bool = False
    rate_limit_per_minute: int | None = None


class KeyStore:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._by_hash: dict[str, ApiKey] = {}

    # -- file -------------------------------------------------------------
    def _read(self) -> dict:
        if not self.path.exists():
            return {"keys": []}
        return orjson.loads(self.path.read_bytes() or b"{}") or {"keys": []}

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def keys(self) -> list[ApiKey]:
        return [ApiKey(**k) for k in self._read().get("keys", [])]

    # -- management ---------------------------------------------------------
    def create(self, project_id: str = "default", name: str = "", rate_limit_per_minute: int | None = None) -> tuple[str, ApiKey]:
        """Return (token, key). The token is shown once; only its hash is stored."""
        token = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id=secrets.token_hex(6), project_id=project_id, hash=hash_token(token),
                     hint=token[: len(PREFIX) + 4], name=name, rate_limit_per_minute=rate_limit_per_minute)
        with self._lock:
            data = self._read()
            data.setdefault("keys", []).append(asdict(key))
            self._write(data)
        return token, key

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            data = self._read()
            found = False
            for k in data.get("keys", []):
                if k["id"] == key_id and not k["revoked"]:
                    k["revoked"] = found = True
            if found:
                self._write(data)
        return found

    def ensure_default(self) -> str | None:
        """Create the first key on first run; return its token then, None when keys exist."""
        if any(not k.revoked for k in self.keys()):
            return None
        token, _ = self.create("default", name="default")
        return token

    def reset_default(self) -> str:
        """Revoke every key of the default project and issue a new one (`--reset-token`)."""
        for k in self.keys():
            if k.project_id == "default" and not k.revoked:
                self.revoke(k.id)
        token, _ = self.create("default", name="default")
        return token

    # -- verification -------------------------------------------------------
    def verify(self, token: str | None) -> ApiKey | None:
        if not token or not token.startswith(PREFIX):
            return None
        self._reload_if_changed()
        key = self._by_hash.get(hash_token(token))
        return key if key and not key.revoked else None

    def _reload_if_changed(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            with self._lock:
                self._by_hash = {k.hash: k for k in self.keys()}
                self._mtime = mtime


def token_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None
