"""Reading request bodies with the size limit applied before and after gzip decoding."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from fastapi import HTTPException, Request


async def collect(chunks: AsyncIterator[bytes], content_length: str | None, limit: int) -> bytes:
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise HTTPException(413, f"request body exceeds {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body exceeds {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def decode(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo gzip/deflate; 413 when the result exceeds `limit` bytes."""
    encoding = (content_encoding or "identity").lower().strip()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise HTTPException(415, f"unsupported content-encoding {encoding!r} (gzip, deflate or identity)")
    # wbits 47 auto-detects gzip or zlib headers; max_length keeps a zip bomb out of memory.
    d = zlib.decompressobj(47)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HTTPException(400, f"body is not valid {encoding}: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise HTTPException(413, f"decompressed request body exceeds {limit} bytes")
    return out


async def read_body(request: Request, limit: int) -> bytes:
    """The (decompressed) body, or 413 when it exceeds `limit` bytes either way."""
    body = await collect(request.stream(), request.headers.get("content-length"), limit)
    return decode(body, request.headers.get("content-encoding"), limit)
