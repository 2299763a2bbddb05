"""Prometheus plumbing every service shares: get-or-create collectors, the house HTTP metrics
(`http_requests_total{method,path,status}` …, path = route template) and the ASGI middleware that
records them, gives each request an id and logs it as a JSON line."""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram

from agenttrace.service import log_context

log = logging.getLogger("agenttrace.http")


def metric(cls: type, name: str, doc: str, labels: tuple[str, ...] | list[str] = (), **kw: Any) -> Any:
    """The collector registered under `name`, created on first use: services share names (e.g.
    `kafka_consumer_lag`) and the test suite imports several services into one process."""
    existing = REGISTRY._names_to_collectors.get(name)  # noqa: SLF001 - no public lookup exists
    if existing is None and cls is Counter:
        existing = REGISTRY._names_to_collectors.get(name.removesuffix("_total"))  # noqa: SLF001
    return existing if existing is not None else cls(name, doc, labels, **kw)


_children: dict[tuple, Any] = {}


def child(collector: Any, *labels: str) -> Any:
    """`collector.labels(*labels)`, memoized: the label lookup costs more than the observation itself."""
    key = (id(collector), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = collector.labels(*labels)
    return found


_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
HTTP_REQUESTS = metric(Counter, "http_requests_total", "HTTP requests", ("method", "path", "status"))
HTTP_DURATION = metric(Histogram, "http_request_duration_seconds", "HTTP request duration", ("method", "path"),
                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
HTTP_REQUEST_SIZE = metric(Histogram, "http_request_size_bytes", "HTTP request body size", ("method", "path"),
                           buckets=_SIZES)
HTTP_RESPONSE_SIZE = metric(Histogram, "http_response_size_bytes", "HTTP response body size", ("method", "path"),
                            buckets=_SIZES)

_IDS = itertools.count(1)
_PREFIX = f"{os.getpid():x}-"


class HttpMetrics:
    """ASGI middleware: request id (kept from `x-request-id` or made, echoed back), HTTP metrics by
    route template, one JSON log line per request (4xx at info, 5xx at warning, others at debug)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, out, size, request_id = 500, 0, 0, ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
            elif name == b"content-length":
                size = int(value) if value.isdigit() else 0
        # Cheap ids (pid + counter): a uuid per request would show in the single-event benchmark.
        request_id = request_id or _PREFIX + str(next(_IDS))
        log_context.set({"request_id": request_id})

        async def send_wrapper(message: dict) -> None:
            nonlocal status, out
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            elif message["type"] == "http.response.body":
                out += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # The route template keeps label cardinality bounded (unmatched paths share one label).
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            elapsed = time.perf_counter() - started
            child(HTTP_REQUESTS, method, path, str(status)).inc()
            child(HTTP_DURATION, method, path).observe(elapsed)
            child(HTTP_REQUEST_SIZE, method, path).observe(size)
            child(HTTP_RESPONSE_SIZE, method, path).observe(out)
            level = logging.WARNING if status >= 500 else logging.INFO if status >= 400 else logging.DEBUG
            if log.isEnabledFor(level):
                state = scope.get("state") or {}
                log.log(level, "request", extra={
                    "request_id": request_id, "project_id": state.get("project_id", ""),
                    "duration_ms": round(elapsed * 1000, 2),
                    "fields": {"method": method, "path": path, "status": status, "bytes_out": out}})
