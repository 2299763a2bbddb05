"""Streamed exports of raw events: csv, json (one array) or ndjson, never the whole result in memory.

Rows flow from ClickHouse block by block (`client.query_stream`) to the socket; the first block
is fetched before the response starts so that a bad query still gets a proper error status.
"""

from __future__ import annotations

from collections.abc import Iterator

from anyio import to_thread
from fastapi.responses import StreamingResponse

from api.db import Db
from api.errors import ApiError

FORMATS = {"csv": ("CSVWithNames", "text/csv; charset=utf-8"),
           "ndjson": ("JSONEachRow", "application/x-ndjson"),
           "json": ("JSONEachRow", "application/json")}


def json_array(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """JSONEachRow blocks -> one JSON array; rows hold no raw newlines, so lines are rows."""
    yield b"["
    first = True
    rest = b""
    for chunk in chunks:
        data = rest + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1:]
        body = data[:cut].replace(b"\n", b",\n")
        if body:
            yield (b"\n" if first else b",\n") + body
            first = False
    if rest.strip():
        yield (b"\n" if first else b",\n") + rest
    yield b"\n]\n"


def _next(it: Iterator[bytes]) -> bytes | None:
    return next(it, None)


async def stream_export(db: Db, sql: str, params: dict, fmt: str) -> StreamingResponse:
    if fmt not in FORMATS:
        raise ApiError(400, f"bad format {fmt!r}; one of: {', '.join(FORMATS)}")
    ch_format, media_type = FORMATS[fmt]
    chunks = db.stream("export", sql, params, ch_format)
    first = await to_thread.run_sync(_next, chunks)

    def body() -> Iterator[bytes]:
        if first is not None:
            yield first
        yield from chunks

    out = json_array(body()) if fmt == "json" else body()
    return StreamingResponse(out, media_type=media_type,
                             headers={"content-disposition": f'attachment; filename="events.{fmt}"'})
