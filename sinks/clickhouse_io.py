"""Timed, counted inserts (one place for the insert metrics)."""

from __future__ import annotations

import time
from typing import Any

from agenttrace.clickhouse import ClickHouse
from sinks.metrics import INSERT_BATCH, INSERT_DURATION, INSERT_ERRORS, INSERT_ROWS
from sinks.rows import INSERT_SETTINGS


def insert_rows(client: ClickHouse, table: str, rows: list[bytes], token: str | None = None,
                extra: dict[str, Any] | None = None) -> None:
    if not rows:
        return
    settings = dict(INSERT_SETTINGS)
    if token:
        settings["insert_deduplication_token"] = f"{token}|{table}"
    if extra:
        settings.update(extra)
    t0 = time.perf_counter()
    try:
        client.insert(f"{client.database}.{table}", b"\n".join(rows), settings=settings)
    except Exception:
        INSERT_ERRORS.labels(table).inc()
        raise
    INSERT_DURATION.labels(table).observe(time.perf_counter() - t0)
    INSERT_ROWS.labels(table).inc(len(rows))
    INSERT_BATCH.labels(table).observe(len(rows))
