"""Bounded on-disk spool of Kafka records, kept while the broker is unreachable.

Records are appended to numbered segment files (one JSON line each); a `.pos` file next to the
oldest segment says how many of its lines were already delivered, so a restart resumes in order
without resending. When full, whole oldest segments are dropped and counted.
"""

from __future__ import annotations

import base64
import os
from collections import deque
from pathlib import Path

import orjson

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


def encode(rec: Record) -> bytes:
    key, value, headers = rec
    return orjson.dumps({"k": base64.b64encode(key).decode(), "v": base64.b64encode(value).decode(),
                         "h": [[n, base64.b64encode(v).decode()] for n, v in headers]}) + b"\n"


def decode(line: bytes) -> Record:
    d = orjson.loads(line)
    return (base64.b64decode(d["k"]), base64.b64decode(d["v"]),
            [(n, base64.b64decode(v)) for n, v in d["h"]])


class Spool:
    def __init__(self, directory: Path, max_events: int, segment_events: int):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_events = max(1, max_events)
        # Several segments fit in the bound, so dropping one never empties the spool.
        self.segment_events = max(1, min(segment_events, self.max_events // 4 or 1))
        self.dropped = 0
        self._segments: deque[list] = deque()  # [seq, lines in file]
        self._head_pos = 0
        self._tail = None
        self._load()

    # -- state ---------------------------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.dir / f"seg-{seq:012d}.jsonl"

    def _load(self) -> None:
        for p in sorted(self.dir.glob("seg-*.jsonl")):
            data = p.read_bytes()
            if data and not data.endswith(b"\n"):  # torn last write: keep whole lines only
                data = data[: data.rfind(b"\n") + 1]
                p.write_bytes(data)
            self._segments.append([int(p.stem[4:]), data.count(b"\n")])
        if self._segments:
            pos = self._path(self._segments[0][0]).with_suffix(".pos")
            self._head_pos = int(pos.read_text() or 0) if pos.exists() else 0

    @property
    def depth(self) -> int:
        return sum(n for _, n in self._segments) - self._head_pos

    # -- writing -------------------------------------------------------------
    def append(self, records: list[Record]) -> int:
        """Append records; return how many old ones were dropped to stay within the bound."""
        dropped = 0
        for rec in records:
            if not self._segments or self._segments[-1][1] >= self.segment_events:
                self._roll()
            self._tail.write(encode(rec))
            self._segments[-1][1] += 1
            while self.depth > self.max_events and len(self._segments) > 1:
                dropped += self._drop_head()
        if self._tail:
            self._tail.flush()
        self.dropped += dropped
        return dropped

    def _roll(self) -> None:
        if self._tail:
            self._tail.flush()
            os.fsync(self._tail.fileno())
            self._tail.close()
        seq = self._segments[-1][0] + 1 if self._segments else 1
        self._segments.append([seq, 0])
        self._tail = open(self._path(seq), "ab")  # noqa: SIM115 - kept open while it is the tail

    def _drop_head(self) -> int:
        seq, n = self._segments.popleft()
        lost = n - self._head_pos
        self._remove(seq)
        self._head_pos = 0
        return lost

    def _remove(self, seq: int) -> None:
        self._path(seq).unlink(missing_ok=True)
        self._path(seq).with_suffix(".pos").unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------
    def peek(self, limit: int) -> list[Record]:
        """The oldest undelivered records (from the head segment only)."""
        if not self._segments:
            return []
        seq, n = self._segments[0]
        if self._head_pos >= n:
            return []
        if self._tail and len(self._segments) == 1:
            self._tail.flush()
        with open(self._path(seq), "rb") as f:
            lines = f.read().split(b"\n")
        return [decode(line) for line in lines[self._head_pos: min(n, self._head_pos + limit)]]

    def commit(self, count: int) -> None:
        """Mark the `count` oldest records as delivered."""
        while count > 0 and self._segments:
            seq, n = self._segments[0]
            step = min(count, n - self._head_pos)
            self._head_pos += step
            count -= step
            if self._head_pos < n:
                self._path(seq).with_suffix(".pos").write_text(str(self._head_pos))
                return
            self._segments.popleft()
            if not self._segments and self._tail:  # the head was also the tail
                self._tail.close()
                self._tail = None
            self._remove(seq)
            self._head_pos = 0

    def close(self) -> None:
        if self._tail:
            self._tail.flush()
            self._tail.close()
            self._tail = None
