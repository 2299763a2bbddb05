"""Read access to ClickHouse for the API: limits on every query, timings, errors users can read.

Queries run in worker threads so the event loop keeps serving while ClickHouse works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from anyio import to_thread
from prometheus_client import Histogram
from pydantic_settings import BaseSettings, SettingsConfigDict

from agenttrace.clickhouse import ClickHouse
from agenttrace.metrics import metric
from api.errors import ApiError

log = logging.getLogger("agenttrace.api")


QUERY_SECONDS = metric(Histogram, "db_query_duration_seconds", "ClickHouse query duration by query", ["query"],
                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


class Limits(BaseSettings):
    """Protects ClickHouse from expensive requests (env AGENTTRACE_API_*)."""

    model_config = SettingsConfigDict(env_prefix="AGENTTRACE_API_", extra="ignore")
    max_execution_time: int = 10
    max_result_rows: int = 1_000_000
    max_memory_usage: int = 2_000_000_000
    table_limit: int = 1000
    table_max_limit: int = 10_000
    export_max_rows: int = 10_000_000
    export_max_execution_time: int = 600
    agent_down_after_minutes: int = 5
    # Threads per dashboard query (0 = ClickHouse's default, one per core). Dashboards send many small
    # queries at once: one thread each keeps the cores busy with whole queries instead of splitting
    # every query and making them all wait (best tail latency under load). Exports keep the default.
    max_threads: int = 1
    # Dashboards ask the same rollup questions from many viewers: identical queries in flight share one
    # execution, and an answer is reused for this many seconds (0 = never reused); for one more such
    # period it is still served while a single refresh runs.
    share_queries: bool = True
    cache_seconds: float = 2.0
    cache_entries: int = 512
    # The traces table sums up to this many rows of its newest traces in Python (cheaper than
    # planning fifteen aggregates in ClickHouse); more rows fall back to the SQL aggregates.
    traces_python_rows: int = 5000


class Db:
    def __init__(self, client: ClickHouse, limits: Limits | None = None):
        self.client = client
        self.limits = limits or Limits()
        self.database = client.database
        self._cache: dict[tuple, tuple[float, list[dict[str, Any]]]] = {}
        self._inflight: dict[tuple, asyncio.Future] = {}  # asyncio tasks

    def _settings(self, export: bool = False) -> str:
        # prefer_column_name_to_alias: `sum(calls) AS calls` may be reused as `sum(calls) / …`.
        lim = self.limits
        seconds = lim.export_max_execution_time if export else lim.max_execution_time
        rows = lim.export_max_rows + 1 if export else lim.max_result_rows
        # Exports go out in small blocks so that a block in flight stays a few megabytes. They read
        # `events`, whose equal sorting keys (hour included) always share a partition (the day), so FINAL
        # need not merge across partitions: same rows, ~25% more rows/s.
        block = ", max_block_size=8192, do_not_merge_across_partitions_select_final=1" if export else ""
        if not export and lim.max_threads > 0:
            block += f", max_threads={int(lim.max_threads)}"
        return (f" SETTINGS max_execution_time={int(seconds)}, max_result_rows={int(rows)}{block}, "
                f"result_overflow_mode='throw', max_memory_usage={int(lim.max_memory_usage)}, "
                "date_time_output_format='iso', prefer_column_name_to_alias=1")

    def rows_sync(self, name: str, sql: str, params: dict[str, Any], settings: str = "") -> list[dict[str, Any]]:
        """`settings`: more `name=value` pairs for this query only (from code, never from a request)."""
        started = time.perf_counter()
        try:
            return self.client.query(sql + self._settings() + (f", {settings}" if settings else ""), params)
        except Exception as exc:
            raise translate(exc, name) from None
        finally:
            QUERY_SECONDS.labels(name).observe(time.perf_counter() - started)

    async def rows(self, name: str, sql: str, params: dict[str, Any], settings: str = "") -> list[dict[str, Any]]:
        return await to_thread.run_sync(self.rows_sync, name, sql, params, settings)

    def _shaped_sync(self, name: str, sql: str, params: dict[str, Any],
                     shape: Callable[[list[dict[str, Any]]], Any] | None, settings: str) -> Any:
        rows = self.rows_sync(name, sql, params, settings)
        return shape(rows) if shape else rows

    async def shared_rows(self, name: str, sql: str, params: dict[str, Any],
                          shape: Callable[[list[dict[str, Any]]], Any] | None = None, settings: str = "") -> Any:
        """Like rows() (or `shape(rows)`, worked out in the query's thread), for read-only use of the
        result: equal queries share one execution and, for `cache_seconds`, one answer. Callers must
        not modify what they get."""
        if not self.limits.share_queries:
            return await to_thread.run_sync(self._shaped_sync, name, sql, params, shape, settings)
        key = (sql, tuple(sorted(params.items())), shape, settings)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        task = self._inflight.get(key)
        if task is None:
            # Its own task: a viewer who goes away does not cancel the answer others wait for.
            task = asyncio.ensure_future(self._fill(key, name, sql, params, shape, settings))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._inflight[key] = task
        if hit and hit[0] + self.limits.cache_seconds > now:
            # Just expired: answer from the previous result while one refresh runs (at most two
            # cache periods old), so viewers never queue behind the refresh.
            return hit[1]
        return await asyncio.shield(task)

    async def _fill(self, key: tuple, name: str, sql: str, params: dict[str, Any],
                    shape: Callable[[list[dict[str, Any]]], Any] | None, settings: str) -> Any:
        try:
            result = await to_thread.run_sync(self._shaped_sync, name, sql, params, shape, settings)
        finally:
            self._inflight.pop(key, None)
        ttl = self.limits.cache_seconds
        if ttl > 0:
            now = time.monotonic()
            if len(self._cache) >= self.limits.cache_entries:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= self.limits.cache_entries:
                    self._cache.clear()
            self._cache[key] = (now + ttl, result)
        return result

    def stream(self, name: str, sql: str, params: dict[str, Any], fmt: str) -> Iterator[bytes]:
        """Blocks as ClickHouse produces them; nothing holds the whole result."""
        started = time.perf_counter()
        try:
            yield from self.client.query_stream(sql + self._settings(export=True), params, fmt=fmt)
        except Exception as exc:
            raise translate(exc, name) from None
        finally:
            QUERY_SECONDS.labels(name).observe(time.perf_counter() - started)

    def ping(self) -> bool:
        return self.client.ping()


def translate(exc: Exception, name: str) -> ApiError:
    text = str(exc)
    if "TIMEOUT_EXCEEDED" in text or "Timeout exceeded" in text:
        return ApiError(504, "query took longer than the API's time limit; narrow the time range or add filters")
    if "TOO_MANY_ROWS" in text or "Limit for result exceeded" in text:
        return ApiError(413, "result larger than the API's row limit; narrow the time range or add filters")
    if "MEMORY_LIMIT_EXCEEDED" in text:
        return ApiError(503, "query needed more memory than the API allows; narrow the time range")
    if "UNKNOWN_TABLE" in text or "UNKNOWN_DATABASE" in text:
        return ApiError(503, "ClickHouse tables are not there yet (have the sinks run their migrations?)")
    if "CANNOT_PARSE" in text or "BAD_ARGUMENTS" in text:
        return ApiError(400, "a parameter could not be read as the type ClickHouse expects")
    log.error("query failed", extra={"fields": {"query": name, "error": text[:2000]}})
    return ApiError(502, f"ClickHouse query {name!r} failed; see the API log")
