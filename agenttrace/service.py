"""What every long-running process shares: JSON-line logs, health endpoints, Prometheus metrics.

HTTP services mount `health_router`; workers without an HTTP API call `serve_health` to get the
same endpoints on a port of their own.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

try:
    VERSION = pkg_version("agenttrace")
except PackageNotFoundError:  # running from a source tree without install
    VERSION = "0.0.0"

STARTED = time.time()
# Fields a request handler sets so every log line of that request carries them.
log_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("log_context", default=None)
_CONTEXT_KEYS = ("request_id", "project_id", "trace_id", "duration_ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "caller": f"{record.module}:{record.lineno}",
            "logger": record.name,
        }
        doc.update(log_context.get() or {})
        for k in _CONTEXT_KEYS:
            if hasattr(record, k):
                doc[k] = getattr(record, k)
        extra = getattr(record, "fields", None)
        if extra:
            doc.update(extra)
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel("WARNING")


def uptime() -> str:
    s = int(time.time() - STARTED)
    return f"{s // 3600}h{s % 3600 // 60}m{s % 60}s"


Check = Callable[[], Awaitable[bool] | bool]


async def run_checks(checks: dict[str, Check]) -> dict:
    """The monitoring guide's health document: status, checks (status, latency_ms), version, uptime."""
    results = {}
    for name, check in checks.items():
        t = time.perf_counter()
        try:
            ok = check()
            if asyncio.iscoroutine(ok):
                ok = await asyncio.wait_for(ok, timeout=3)
        except Exception:
            ok = False
        results[name] = {"status": "healthy" if ok else "unhealthy",
                         "latency_ms": round((time.perf_counter() - t) * 1000, 2)}
    healthy = all(r["status"] == "healthy" for r in results.values())
    return {"status": "healthy" if healthy else "unhealthy", "checks": results, "version": VERSION, "uptime": uptime()}


def health_router(service: str, checks: dict[str, Check]):
    """FastAPI router with /livez, /readyz, /version, /health and /metrics."""
    from fastapi import APIRouter, Response
    from fastapi.responses import JSONResponse

    router = APIRouter(include_in_schema=False)

    @router.get("/livez")
    async def livez():
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz():
        doc = await run_checks(checks)
        return JSONResponse(doc, status_code=200 if doc["status"] == "healthy" else 503)

    @router.get("/health")
    async def health():
        doc = await run_checks(checks)
        return JSONResponse(doc, status_code=200 if doc["status"] == "healthy" else 503)

    @router.get("/version")
    async def version():
        return {"service": service, "version": VERSION, "uptime": uptime()}

    @router.get("/metrics")
    async def metrics():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def serve_health(service: str, host: str, port: int, checks: dict[str, Check]) -> ThreadingHTTPServer:
    """Serve the health endpoints and /metrics from a daemon thread (for workers without an HTTP API)."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server API
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif path == "/livez":
                self._send(200, b'{"status":"ok"}')
            elif path in ("/readyz", "/health"):
                doc = asyncio.run(run_checks(checks))
                self._send(200 if doc["status"] == "healthy" else 503, orjson.dumps(doc))
            elif path == "/version":
                self._send(200, orjson.dumps({"service": service, "version": VERSION, "uptime": uptime()}))
            else:
                self._send(404, b'{"error":"not found"}')

        def log_message(self, *args):  # keep stdout for JSON logs only
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name=f"{service}-health", daemon=True).start()
    return server
