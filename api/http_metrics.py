"""The house HTTP metrics (`http_requests_total{method,path,status}` …), path = route template."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram

log = logging.getLogger("agenttrace.api.http")
_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)


def _get_or_create(cls: type, name: str, doc: str, labels: list[str], **kw: Any) -> Any:
    # The gateway registers the same names; in one process (tests, combined runs) they are shared.
    try:
        return cls(name, doc, labels, **kw)
    except ValueError:
        return REGISTRY._names_to_collectors[name]


REQUESTS = _get_or_create(Counter, "http_requests_total", "HTTP requests", ["method", "path", "status"])
DURATION = _get_or_create(Histogram, "http_request_duration_seconds", "HTTP request duration", ["method", "path"],
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
REQUEST_SIZE = _get_or_create(Histogram, "http_request_size_bytes", "HTTP request body size", ["method", "path"],
                              buckets=_SIZES)
RESPONSE_SIZE = _get_or_create(Histogram, "http_response_size_bytes", "HTTP response body size",
                               ["method", "path"], buckets=_SIZES)


class HttpMetrics:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, size_in, size_out = 500, 0, 0

        async def receive_wrapper() -> dict:
            nonlocal size_in
            message = await receive()
            size_in += len(message.get("body", b""))
            return message

        async def send_wrapper(message: dict) -> None:
            nonlocal status, size_out
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size_out += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            elapsed = time.perf_counter() - started
            REQUESTS.labels(method, path, str(status)).inc()
            DURATION.labels(method, path).observe(elapsed)
            level = logging.INFO if status >= 400 else logging.DEBUG
            if log.isEnabledFor(level):
                headers = dict(scope.get("headers") or [])
                state = scope.get("state") or {}
                log.log(level, "request", extra={
                    "request_id": headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex[:16],
                    "project_id": state.get("project_id", ""), "duration_ms": round(elapsed * 1000, 2),
                    "fields": {"method": method, "path": path, "status": status}})
            REQUEST_SIZE.labels(method, path).observe(size_in)
            RESPONSE_SIZE.labels(method, path).observe(size_out)
