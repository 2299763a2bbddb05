"""HTTP metrics of the house (`http_requests_total{method,path,status}` etc.) as a plain ASGI middleware."""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

from prometheus_client import Counter, Histogram

from agenttrace.service import log_context

log = logging.getLogger("ingest.http")
_IDS = itertools.count(1)
_PREFIX = f"{os.getpid():x}-"

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "path", "status"])
DURATION = Histogram("http_request_duration_seconds", "HTTP request duration", ["method", "path"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
REQUEST_SIZE = Histogram("http_request_size_bytes", "HTTP request body size", ["method", "path"], buckets=_SIZES)
RESPONSE_SIZE = Histogram("http_response_size_bytes", "HTTP response body size", ["method", "path"], buckets=_SIZES)


class HttpMetrics:
    def __init__(self, app: Any):
        self.app = app
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = {}

    def children(self, method: str, path: str, status: int) -> tuple[Any, Any, Any, Any]:
        # labels() resolves a child on every call; the set of (method, route, status) is small.
        key = (method, path, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (REQUESTS.labels(method, path, str(status)), DURATION.labels(method, path),
                                           REQUEST_SIZE.labels(method, path), RESPONSE_SIZE.labels(method, path))
        return found

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        out = 0
        request_id = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
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
            method = scope["method"]
            size = 0
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    size = int(value) if value.isdigit() else 0
                    break
            elapsed = time.perf_counter() - started
            requests, duration, request_size, response_size = self.children(method, path, status)
            requests.inc()
            duration.observe(elapsed)
            if status >= 500:
                log.warning("request failed", extra={"fields": {"method": method, "path": path, "status": status,
                                                                "duration_ms": round(elapsed * 1000, 1)}})
            request_size.observe(size)
            response_size.observe(out)
