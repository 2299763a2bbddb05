"""Parse a copy of a response body on the side, whatever its framing: JSON, SSE or NDJSON.

The relayed bytes are never touched; this only reads them. Compressed bodies are inflated on the
copy; parse failures leave fields unknown instead of failing the call.
"""

from __future__ import annotations

import zlib
from types import ModuleType
from typing import Any

import orjson

from proxy.providers import MODULES, Usage
from proxy.sse import SseParser


def _decoder(encoding: str) -> Any:
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if enc == "deflate":
        return zlib.decompressobj()
    if enc == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    return False  # unknown coding (br): leave usage unknown


class Extractor:
    def __init__(self, provider: str, content_type: str, content_encoding: str, max_bytes: int):
        self.mod: ModuleType = MODULES.get(provider, MODULES["openai"])
        self.usage = Usage()
        self.first_event_at: float | None = None
        ct = content_type.lower()
        self.framing = ("sse" if "event-stream" in ct else
                        "ndjson" if ("ndjson" in ct or "stream+json" in ct) else "json")
        self._sse = SseParser() if self.framing == "sse" else None
        self._decode = _decoder(content_encoding)
        self._buf = bytearray()
        self._max = max_bytes
        self._broken = self._decode is False
        self.error_doc: Any = None

    def feed(self, chunk: bytes) -> None:
        if self._broken or not chunk:
            return
        try:
            if self._decode:
                chunk = self._decode.decompress(chunk)
            if self._sse is not None:
                for name, data in self._sse.feed(chunk):
                    self._event(name, data)
            elif self.framing == "ndjson":
                self._buf += chunk
                *lines, rest = bytes(self._buf).split(b"\n")
                self._buf = bytearray(rest)
                for line in lines:
                    if line.strip():
                        self._event("", line)
            else:
                self._buf += chunk
                if len(self._buf) > self._max:
                    self._broken = True
                    self._buf = bytearray()
        except Exception:
            self._broken = True

    def _event(self, name: str, data: bytes) -> None:
        if data == b"[DONE]":
            return
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        self.mod.from_event(name, doc, self.usage)

    def finish(self) -> Usage:
        if self._broken:
            return self.usage
        try:
            if self._sse is not None:
                for name, data in self._sse.close():
                    self._event(name, data)
            elif self.framing == "ndjson":
                if bytes(self._buf).strip():
                    self._event("", bytes(self._buf))
            elif self._buf:
                doc = orjson.loads(self._buf)
                self.error_doc = doc
                self.mod.from_json(doc, self.usage)
        except Exception:
            pass
        return self.usage

    def error_type(self) -> str | None:
        if self.usage.error_type:
            return self.usage.error_type
        return self.mod.error_type(self.error_doc) if self.error_doc is not None else None
