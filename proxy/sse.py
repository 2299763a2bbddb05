"""Incremental Server-Sent Events parser fed with raw chunks (split anywhere)."""

from __future__ import annotations

from collections.abc import Iterator


class SseParser:
    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> Iterator[tuple[str, bytes]]:
        """Yield (event name, data) for every event completed by `chunk`."""
        self._buf += chunk
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return
            line, self._buf = self._buf[:nl], self._buf[nl + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    yield self._event, b"\n".join(self._data)
                self._event, self._data = "", []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode(errors="replace")

    def close(self) -> Iterator[tuple[str, bytes]]:
        if self._buf:
            yield from self.feed(b"\n\n")
        elif self._data:
            yield from self.feed(b"\n")
