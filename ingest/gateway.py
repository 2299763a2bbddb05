"""The ingestion gateway (FastAPI): event batches, OTLP traces, agents and alert-rule edits.

Every accepted event is normalized (`schemas.normalize.normalize_event`, project from the API key)
and published to `agenttrace.events.v1`; a request answers 2xx only after the broker acknowledged
every accepted event of it, otherwise 503 with Retry-After within the publish deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
import sys
import tempfile
from collections import Counter as Tally
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from prometheus_client import Counter

from agenttrace.kafka import event_record
from agenttrace.metrics import HttpMetrics
from agenttrace.service import VERSION, health_router, setup_logging
from ingest import agents, otlp, rules
from ingest.auth import Authenticator
from ingest.batch import BatchTooLarge, build_batch, events_of
from ingest.body import collect, decode, read_body
from ingest.publisher import Publisher, PublishError, Record
from ingest.ratelimit import RateLimiter
from schemas.events import EventBase, EventValidationError
from schemas.keys import ApiKey, KeyStore
from schemas.normalize import normalize_event
from schemas.settings import Settings
from schemas.topics import ALERT_RULES, EVENTS

log = logging.getLogger("ingest.gateway")

INGESTED = Counter("events_ingested_total", "events acknowledged by the broker", ["type"])
REJECTED = Counter("events_rejected_total", "events refused", ["reason"])

RETRY_AFTER_BROKER = "5"
MAX_BATCHES_IN_FLIGHT = 32
GC_GEN0_THRESHOLD = 10_000
PUBLISH_TIMEOUT_S = float(os.environ.get("AGENTTRACE_GATEWAY_PUBLISH_TIMEOUT", "5"))


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return _json({"error": message, **extra}, status, headers)


class Gateway:
    """Process-wide state: one producer, the rule view, the rate limiter."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.events_topic = settings.topic(EVENTS)
        self.auth = Authenticator(KeyStore(settings.config_path))
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.publisher: Publisher | None = None
        self.rules: rules.RuleStore | None = None

    def start(self) -> None:
        self.publisher = Publisher(self.settings, timeout_s=PUBLISH_TIMEOUT_S)
        self.rules = rules.RuleStore(self.settings)

    def stop(self) -> None:
        if self.publisher:
            self.publisher.close()
        if self.rules:
            self.rules.close()

    def limit(self, key: ApiKey, n: int) -> None:
        wait = self.limiter.take(key.id, n, key.rate_limit_per_minute)
        if wait:
            REJECTED.labels("rate_limited").inc(n)
            limit = key.rate_limit_per_minute or self.settings.rate_limit_per_minute
            raise HTTPException(429, f"rate limit of {limit} events/minute exceeded for this key",
                                headers={"Retry-After": str(int(wait))})

    async def publish(self, topic: str, records: list[Record], n_events: int = 0) -> None:
        assert self.publisher is not None
        try:
            await self.publisher.publish(topic, records, len(records))
        except PublishError as exc:
            if n_events:
                REJECTED.labels("broker_unavailable").inc(n_events)
            log.warning("publish failed", extra={"fields": {"topic": topic, "error": str(exc), "records": len(records)}})
            raise HTTPException(503, f"event log unavailable, retry later ({exc})",
                                headers={"Retry-After": RETRY_AFTER_BROKER}) from None

    async def publish_events(self, events: list[EventBase], project_id: str) -> None:
        now = datetime.now(UTC)
        records = [event_record(normalize_event(e, project_id, now)) for e in events]
        await self.publish(self.events_topic, records, len(records))
        for t, n in Tally(e.type for e in events).items():
            INGESTED.labels(t).inc(n)


async def _json_body(request: Request, limit: int) -> Any:
    body = await read_body(request, limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body: invalid JSON ({exc})") from None


def create_app(settings: Settings) -> FastAPI:
    gw = Gateway(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gw.start()
        # Objects alive at startup never become garbage; keep them out of every later GC pass.
        gc.freeze()
        # A batch allocates thousands of short-lived containers freed by reference counting; the default
        # young-generation threshold (700) ran a collection every ~60 events, over 10% of the CPU.
        gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)
        try:
            yield
        finally:
            await asyncio.to_thread(gw.stop)

    app = FastAPI(title="AgentTrace ingestion gateway", version=VERSION, lifespan=lifespan)
    app.state.gateway = gw
    auth = Depends(gw.auth)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several uvicorn workers: /metrics aggregates every worker's values.
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def broker_check() -> bool:
        return gw.publisher is not None and await asyncio.to_thread(gw.publisher.broker_reachable)

    app.include_router(health_router("gateway", {"kafka": broker_check}))

    # -- events -----------------------------------------------------------
    # Batches being validated or awaiting their acks, per worker: under a stall, waiting requests then
    # hold only their bytes, not hundreds of decoded events each (bounded memory).
    in_flight = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)

    async def handle_events(body: bytes, key: ApiKey) -> tuple[int, dict[str, Any]]:
        async with in_flight:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise HTTPException(400, f"body: invalid JSON ({exc})") from None
            try:
                raw = events_of(doc, settings.max_batch_events)
            except BatchTooLarge as exc:
                REJECTED.labels("batch_too_large").inc()
                raise HTTPException(413, str(exc)) from None
            except ValueError as exc:
                REJECTED.labels("bad_request").inc()
                raise HTTPException(400, str(exc)) from None
            gw.limit(key, len(raw))
            batch = build_batch(raw, key.project_id)
            del body, doc, raw  # only the encoded records are needed while waiting for the broker
            if batch.rejected:
                REJECTED.labels("validation").inc(len(batch.rejected))
            if batch.records:
                await gw.publish(gw.events_topic, batch.records, batch.accepted)
                for t, n in batch.types.items():
                    INGESTED.labels(t).inc(n)
            status = 200 if not batch.rejected else (207 if batch.records else 400)
            return status, {"accepted": batch.accepted, "rejected": len(batch.rejected), "errors": batch.rejected}

    @app.post("/api/events")
    async def post_events(request: Request, key: ApiKey = auth) -> Response:
        # Normally answered by FastEvents below; kept as a route for the OpenAPI document.
        status, doc = await handle_events(await read_body(request, settings.max_body_bytes), key)
        return _json(doc, status)

    # -- OTLP/HTTP ---------------------------------------------------------
    @app.post("/v1/traces")
    async def post_traces(request: Request, key: ApiKey = auth) -> Response:
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        protobuf = ctype in ("application/x-protobuf", "application/protobuf")
        if not protobuf and ctype != "application/json":
            raise HTTPException(415, "content-type must be application/x-protobuf or application/json")
        body = await read_body(request, settings.max_body_bytes)
        try:
            doc = otlp.decode_protobuf(body) if protobuf else orjson.loads(body)
            events, rejected, messages = otlp.traces_to_events(doc)
        except (otlp.OtlpError, orjson.JSONDecodeError) as exc:
            raise HTTPException(400, f"invalid OTLP request: {exc}") from None
        if rejected:
            REJECTED.labels("validation").inc(rejected)
        if events:
            gw.limit(key, len(events))
            await gw.publish_events(events, key.project_id)
        out = otlp.encode_response(rejected, "; ".join(messages[:5]), protobuf)
        if isinstance(out, bytes):
            return Response(out, media_type="application/x-protobuf")
        return _json(out)

    # -- agents ------------------------------------------------------------
    async def agent_event(request: Request, key: ApiKey, build: Any) -> Response:
        doc = await _json_body(request, settings.max_body_bytes)
        try:
            event = build(doc)
        except EventValidationError as exc:
            REJECTED.labels("validation").inc()
            return _error(400, str(exc), errors=exc.errors)
        gw.limit(key, 1)
        await gw.publish_events([event], key.project_id)
        return _json({"agent_id": event.agent_id, "status": event.status, "event_id": str(event.event_id),
                      "project_id": key.project_id})

    @app.post("/api/agents/register")
    async def register(request: Request, key: ApiKey = auth) -> Response:
        return await agent_event(request, key, agents.registration)

    @app.post("/api/agents/heartbeat")
    async def heartbeat(request: Request, key: ApiKey = auth) -> Response:
        return await agent_event(request, key, agents.heartbeat)

    # -- alert rules -------------------------------------------------------
    async def publish_rule(rule_id: str, rule: Any) -> None:
        value = rule.model_dump_json().encode() if rule is not None else None
        await gw.publish(settings.topic(ALERT_RULES), [(rule_id.encode(), value, None)])

    async def current_rule(rule_id: str, key: ApiKey) -> Any:
        assert gw.rules is not None
        try:
            await gw.rules.sync()
        except TimeoutError as exc:
            raise HTTPException(503, f"alert rules unavailable ({exc})", headers={"Retry-After": RETRY_AFTER_BROKER}) from None
        rule = gw.rules.get(rule_id, key.project_id)
        if rule is None:
            raise HTTPException(404, f"no alert rule {rule_id!r} in this project")
        return rule

    def rule_errors(exc: rules.RuleInputError) -> Response:
        return _error(400, str(exc), errors=exc.errors)

    @app.post("/api/alerts")
    async def create_rule(request: Request, key: ApiKey = auth) -> Response:
        try:
            rule = rules.new_rule(await _json_body(request, settings.max_body_bytes), key.project_id)
        except rules.RuleInputError as exc:
            return rule_errors(exc)
        await publish_rule(rule.id, rule)
        return _json(rule.model_dump(mode="json"), 201)

    @app.put("/api/alerts/{rule_id}")
    async def update_rule(rule_id: str, request: Request, key: ApiKey = auth) -> Response:
        body = await _json_body(request, settings.max_body_bytes)
        current = await current_rule(rule_id, key)
        try:
            rule = rules.updated_rule(current, body)
        except rules.RuleInputError as exc:
            return rule_errors(exc)
        await publish_rule(rule.id, rule)
        return _json(rule.model_dump(mode="json"))

    @app.patch("/api/alerts/{rule_id}/toggle")
    async def toggle_rule(rule_id: str, request: Request, key: ApiKey = auth) -> Response:
        body = await read_body(request, settings.max_body_bytes)
        enabled = None
        if body.strip():
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise HTTPException(400, f"body: invalid JSON ({exc})") from None
            enabled = doc.get("enabled") if isinstance(doc, dict) else None
            if enabled is not None and not isinstance(enabled, bool):
                return _error(400, "enabled: must be true or false", errors=[{"field": "enabled", "message": "must be a boolean"}])
        rule = rules.toggled_rule(await current_rule(rule_id, key), enabled)
        await publish_rule(rule.id, rule)
        return _json(rule.model_dump(mode="json"))

    @app.delete("/api/alerts/{rule_id}")
    async def delete_rule(rule_id: str, key: ApiKey = auth) -> Response:
        rule = await current_rule(rule_id, key)
        await publish_rule(rule.id, None)
        return _json({"id": rule.id, "deleted": True})

    return HttpMetrics(FastEvents(app, gw, handle_events))  # type: ignore[return-value]


class FastEvents:
    """`POST /api/events` served straight on ASGI, every other request goes to the FastAPI app.

    FastAPI's routing, exception middleware and dependency solving were most of the CPU of a
    single-event request; the handler itself is the same function the FastAPI route calls.
    """

    path = "/api/events"  # read as `scope["route"].path` by the HTTP metrics

    def __init__(self, app: Any, gw: Gateway, handler: Any):
        self.app, self.gw, self.handler = app, gw, handler
        self.limit = gw.settings.max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self
        h: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in (b"authorization", b"x-api-key", b"content-length", b"content-encoding"):
                h[name] = value.decode("latin-1")
        extra: dict[str, str] = {}
        try:
            key = self.gw.auth.verify(h.get(b"authorization"), h.get(b"x-api-key"))
            # No local reference to the body: the handler drops it once the events are encoded.
            status, doc = await self.handler(decode(await collect(_chunks(receive), h.get(b"content-length"), self.limit),
                                                    h.get(b"content-encoding"), self.limit), key)
        except HTTPException as exc:
            status, doc, extra = exc.status_code, {"error": str(exc.detail)}, dict(exc.headers or {})
        out = orjson.dumps(doc)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})


async def _chunks(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPException(400, "client disconnected")
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {"host": settings.host, "port": settings.gateway_port, "loop": "uvloop", "http": "httptools",
            "log_config": None, "access_log": False, "timeout_graceful_shutdown": 15}


def _reuseport_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Every worker binds the port itself; the kernel spreads new connections over their sockets.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    sock.listen(2048)
    return sock


def serve_worker() -> None:
    """One worker process of a multi-worker gateway (started by `ingest.workers`)."""
    settings = Settings()
    setup_logging(settings.log_level)
    sock = _reuseport_socket(settings.host, settings.gateway_port)
    uvicorn.Server(uvicorn.Config(create_app(settings), **_uvicorn_options(settings))).run(sockets=[sock])


def run(settings: Settings, args: argparse.Namespace | None = None) -> int:
    setup_logging(settings.log_level)
    workers = int(os.environ.get("AGENTTRACE_GATEWAY_WORKERS", "1"))
    log.info("starting gateway", extra={"fields": {"port": settings.gateway_port, "workers": workers,
                                                   "kafka": settings.kafka_bootstrap}})
    if workers > 1:
        if not settings.gateway_port:
            raise SystemExit("several gateway workers need a fixed AGENTTRACE_GATEWAY_PORT")
        # Workers are separate processes; Prometheus aggregates them through a shared directory.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="agenttrace-gateway-metrics-"))
        for k, v in settings.model_dump(mode="json").items():
            if v is not None and not isinstance(v, (dict, list)):
                os.environ.setdefault(f"AGENTTRACE_{k.upper()}", str(v))
        # Fewer glibc malloc arenas: librdkafka's and Python's threads otherwise each keep their own (RSS).
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
        # exec a standard-library-only supervisor: it needs none of the modules this process has loaded.
        os.execv(sys.executable, [sys.executable, "-m", "ingest.workers", str(workers)])
    uvicorn.run(create_app(settings), **_uvicorn_options(settings))
    return 0
