"""Python SDK: `AgentTrace.init(api_key, agent_id, endpoint)` then `track`, `error`, `heartbeat`, traces.

Events are queued (bounded; when full, new events are dropped and counted, the host is never
blocked) and sent in batches by a background thread to `POST /api/events`. 503, 429, 5xx and
connection failures are retried with exponential backoff (honouring Retry-After) until delivered
or until `shutdown` runs out of time. Every event gets its `event_id` here, so a retried batch
carries the same ids. No public method raises into the host program.
"""

from __future__ import annotations

import atexit
import gzip
import logging
import queue
import random
import secrets
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

log = logging.getLogger("agenttrace.sdk")

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _safe(default: Any = None):
    """Decorator: log and swallow any exception (the SDK must never break its host)."""

    def wrap(fn):
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception:  # noqa: BLE001 - by design
                log.debug("agenttrace sdk call failed", exc_info=True)
                return default

        inner.__name__ = fn.__name__
        inner.__doc__ = fn.__doc__
        return inner

    return wrap


class Span:
    """A span of a trace; `start_span` makes a child. End it (or use `with`) to record a `span` event."""

    def __init__(self, client: AgentTrace, trace_id: str, name: str, parent_span_id: str | None = None,
                 attributes: dict[str, Any] | None = None):
        self._client = client
        self.trace_id = trace_id
        self.span_id = secrets.token_hex(8)
        self.parent_span_id = parent_span_id
        self.name = name
        self.attributes = dict(attributes or {})
        self._start = time.time()
        self._started_at = _now()
        self._ended = False

    # camelCase aliases, as in the seed's JavaScript SDK
    @property
    def traceId(self) -> str:  # noqa: N802
        return self.trace_id

    @property
    def spanId(self) -> str:  # noqa: N802
        return self.span_id

    @property
    def parentSpanId(self) -> str | None:  # noqa: N802
        return self.parent_span_id

    def start_span(self, name: str, **attributes: Any) -> Span:
        return Span(self._client, self.trace_id, name, self.span_id, attributes)

    startSpan = start_span  # noqa: N815

    def ids(self) -> dict[str, Any]:
        """The ids to put on events recorded inside this span."""
        return {"trace_id": self.trace_id, "span_id": self.span_id, "parent_span_id": self.parent_span_id}

    @_safe()
    def end(self, status: str = "ok", message: str | None = None, **attributes: Any) -> None:
        if self._ended:
            return
        self._ended = True
        self.attributes.update(attributes)
        self._client._enqueue({
            "type": "span", "name": self.name, **{k: v for k, v in self.ids().items() if v},
            "timestamp": self._started_at, "end_time": _now(),
            "duration_ms": round((time.time() - self._start) * 1000, 3), "status": status,
            "status_message": message, "attributes": self.attributes,
        })

    def __enter__(self) -> Span:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.end("error" if exc is not None else "ok", str(exc) if exc is not None else None)


class Trace:
    def __init__(self, client: AgentTrace, trace_id: str | None = None):
        self._client = client
        self.trace_id = trace_id or secrets.token_hex(16)

    @property
    def traceId(self) -> str:  # noqa: N802
        return self.trace_id

    def start_span(self, name: str, **attributes: Any) -> Span:
        return Span(self._client, self.trace_id, name, None, attributes)

    startSpan = start_span  # noqa: N815


class AgentTrace:
    def __init__(self, api_key: str, agent_id: str, endpoint: str = "http://127.0.0.1:8080", *,
                 batch_size: int = 200, flush_interval: float = 1.0, max_queue: int = 10_000,
                 timeout: float = 10.0, max_backoff: float = 10.0, tags: list[str] | None = None,
                 release: str | None = None, session_id: str | None = None):
        base = endpoint.rstrip("/")
        self.url = base if base.endswith("/api/events") else base + "/api/events"
        self.agent_id = agent_id
        self.batch_size = max(1, min(batch_size, 1000))
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.defaults = {k: v for k, v in (("tags", tags), ("release", release), ("session_id", session_id)) if v}
        self.dropped = 0  # events refused locally (queue full) or by the gateway (invalid)
        self.sent = 0
        self._abandoned = 0  # given up at shutdown because the gateway stayed unavailable
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(max_queue)
        self._pending = 0  # queued or in flight
        self._cond = threading.Condition()
        self._flush_now = threading.Event()
        self._stopping = threading.Event()
        self._deadline: float | None = None  # shutdown: give up retrying after this
        self._http = httpx.Client(timeout=timeout, headers={"x-api-key": api_key, "content-type": "application/json",
                                                            "user-agent": "agenttrace-python-sdk"})
        self._thread = threading.Thread(target=self._run, name="agenttrace-sdk", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown, 5.0)

    @classmethod
    def init(cls, api_key: str, agent_id: str, endpoint: str = "http://127.0.0.1:8080", **options: Any) -> AgentTrace:
        return cls(api_key, agent_id, endpoint, **options)

    # -- recording ----------------------------------------------------------
    def _enqueue(self, event: dict[str, Any]) -> str | None:
        event = {**self.defaults, **{k: v for k, v in event.items() if v is not None}}
        event.setdefault("agent_id", self.agent_id)
        event.setdefault("event_id", str(uuid.uuid4()))
        event.setdefault("timestamp", _now())
        if self._stopping.is_set():
            self.dropped += 1
            return None
        with self._cond:
            self._pending += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._cond:
                self._pending -= 1
                self.dropped += 1
            return None
        return event["event_id"]

    @_safe()
    def track(self, event: dict[str, Any] | None = None, **fields: Any) -> str | None:
        """Record an event (default type `llm_call`); seed names (`tokens`, `status`, `event_type`) work."""
        doc = {**(event or {}), **fields}
        if "type" not in doc and "event_type" not in doc:
            doc["type"] = "llm_call"
        return self._enqueue(doc)

    @_safe()
    def error(self, exc: BaseException | str, **fields: Any) -> str | None:
        if isinstance(exc, BaseException):
            doc = {"error_type": type(exc).__name__, "message": str(exc),
                   "stack": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-60_000:]}
        else:
            doc = {"error_type": "Error", "message": str(exc)}
        return self._enqueue({"type": "error", **doc, **fields})

    @_safe()
    def heartbeat(self, status: str = "ok", **fields: Any) -> str | None:
        return self._enqueue({"type": "heartbeat", "status": status, **fields})

    @_safe()
    def register(self, name: str | None = None, metadata: dict[str, Any] | None = None) -> str | None:
        """Announce the agent (the same event `POST /api/agents/register` publishes)."""
        return self._enqueue({"type": "heartbeat", "status": "registered", "name": name or self.agent_id,
                              "metadata": metadata or {}})

    @_safe()
    def score(self, name: str, value: float | None = None, **fields: Any) -> str | None:
        return self._enqueue({"type": "score", "name": name, "value": value, **fields})

    def start_trace(self, trace_id: str | None = None) -> Trace:
        return Trace(self, trace_id)

    startTrace = start_trace  # noqa: N815

    # -- delivery -------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch:
                try:
                    self._deliver(batch)
                except Exception:  # noqa: BLE001 - the sender thread must survive anything
                    self.dropped += len(batch)
                    log.warning("agenttrace: could not send %d events", len(batch), exc_info=True)
                with self._cond:
                    self._pending -= len(batch)
                    self._cond.notify_all()
            elif self._stopping.is_set():
                return

    def _collect(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        until = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            wait = until - time.monotonic()
            if self._flush_now.is_set() or self._stopping.is_set():
                wait = 0
            try:
                batch.append(self._queue.get(timeout=max(wait, 0.0)) if wait > 0 else self._queue.get_nowait())
            except queue.Empty:
                if wait <= 0 or batch:
                    break
                continue
        if self._queue.empty():
            self._flush_now.clear()
        return batch

    def _give_up(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        # default=str: a value the host put in metadata that JSON cannot carry is sent as its text.
        body = orjson.dumps({"events": batch}, default=str)
        headers = {}
        if len(body) > 8192:
            body, headers = gzip.compress(body, compresslevel=5), {"content-encoding": "gzip"}
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                r = self._http.post(self.url, content=body, headers=headers)
                if r.status_code < 300 or r.status_code == 207:
                    self.sent += len(batch)
                    if r.status_code == 207:
                        rejected = r.json().get("rejected", 0)
                        self.dropped += rejected
                        self.sent -= rejected
                        log.warning("agenttrace: %d events rejected by the gateway: %s", rejected,
                                    r.json().get("errors", [])[:3])
                    return
                if r.status_code not in RETRYABLE:
                    self.dropped += len(batch)
                    log.warning("agenttrace: gateway refused a batch (%s): %s", r.status_code, r.text[:500])
                    return
                ra = r.headers.get("retry-after")
                retry_after = float(ra) if ra and ra.replace(".", "", 1).isdigit() else None
            except httpx.HTTPError as exc:
                log.debug("agenttrace: gateway unreachable: %s", exc)
            if self._give_up():
                self.dropped += len(batch)
                self._abandoned += len(batch)
                log.warning("agenttrace: dropped %d events at shutdown (gateway unavailable)", len(batch))
                return
            attempt += 1
            backoff = min(self.max_backoff, 0.2 * 2 ** min(attempt, 10)) * (0.5 + random.random() / 2)
            delay = min(self.max_backoff, max(backoff, retry_after or 0.0))
            if self._deadline is not None:
                delay = max(0.0, min(delay, self._deadline - time.monotonic()))
            time.sleep(delay)

    @_safe(default=False)
    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything queued now; True when all of it was delivered (or refused) in time."""
        self._flush_now.set()
        end = time.monotonic() + timeout
        with self._cond:
            while self._pending > 0:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
                self._flush_now.set()
        return True

    def __enter__(self) -> AgentTrace:
        return self

    def __exit__(self, *_: Any) -> None:
        self.shutdown()

    @_safe(default=False)
    def shutdown(self, timeout: float = 10.0) -> bool:
        """Flush (retrying until `timeout`), then stop the background thread; True when all was delivered.

        Events recorded afterwards are dropped."""
        if self._stopping.is_set():
            return self._pending == 0
        self._deadline = time.monotonic() + timeout
        done = self.flush(timeout)
        self._stopping.set()
        self._thread.join(timeout=max(0.1, self._deadline - time.monotonic() + 1))
        self._http.close()
        return done and self._abandoned == 0
