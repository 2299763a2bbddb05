"""Forward one call upstream and relay the answer as it arrives, recording it on the side."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from proxy import metrics
from proxy.config import ProxySettings
from proxy.extract import Extractor
from proxy.identity import HOP_BY_HOP, identify, split_headers
from proxy.providers import Usage
from proxy.publisher import Publisher
from proxy.record import Call, build_event
from proxy.routing import route
from proxy.upstream import BROKEN, TIMEOUTS, UNREACHABLE, Answer, Upstreams
from schemas.keys import KeyStore

log = logging.getLogger("proxy.forward")
_BUFFER_LIMIT = 1 << 20  # non-streamed answers up to this size are relayed in one write
_TIMEOUT_BODY = b'{"error":{"type":"upstream_timeout","message":"the upstream provider did not answer in time"}}'
_CONNECT_BODY = b'{"error":{"type":"upstream_connection_error","message":"the upstream provider is unreachable"}}'


def _maybe_include_usage(doc: dict, body: bytes) -> bytes:
    opts = doc.get("stream_options")
    if isinstance(opts, dict) and "include_usage" in opts:
        return body
    doc["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
    return orjson.dumps(doc)


class Forwarder:
    def __init__(self, ps: ProxySettings, client: Upstreams | None, publisher: Publisher, keys: KeyStore):
        self.ps = ps
        self.client = client
        self.publisher = publisher
        self.keys = keys

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        t0 = time.perf_counter()
        call = Call(provider="openai", started_wall=time.time())
        parts = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            parts.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        seen, fwd = split_headers(scope["headers"])
        raw_path = scope.get("raw_path") or scope["path"].encode()
        r = route(raw_path.decode("latin-1"), scope.get("query_string", b"").decode("latin-1"), seen, self.ps)
        call.provider = r.provider
        recorded = r.kind != "other"
        call.request_model, call.stream = r.model, r.stream
        if recorded and body and r.provider != "google":
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict):
                model = doc.get("model")
                call.request_model = model if isinstance(model, str) else None
                call.stream = doc.get("stream") is True
                if (call.stream and self.ps.openai_include_usage and r.provider == "openai"
                        and r.kind in ("chat", "completion")):
                    body = _maybe_include_usage(doc, body)
        if self.ps.capture_bodies:
            call.request_body = body[: self.ps.capture_max_bytes]

        cycle = getattr(send, "__self__", None)  # uvicorn's request cycle: disconnect flag and transport
        status = 502
        usage = Usage()
        extractor: Extractor | None = None
        overhead = 0.0
        t_up = time.perf_counter()
        try:
            resp = await self.client.request(r.provider, scope["method"], r.url, fwd, body)
        except TIMEOUTS:
            call.error_type, status = "upstream_timeout", 504
            await self._respond(send, 504, _TIMEOUT_BODY)
        except UNREACHABLE as exc:
            call.error_type = "upstream_connection_error"
            log.warning("upstream unreachable", extra={"fields": {"provider": r.provider, "error": type(exc).__name__}})
            # Reset the agent's connection, as a refused direct connection would; 502 when not on uvicorn.
            if cycle is not None and hasattr(cycle, "transport"):
                cycle.transport.abort()
                await asyncio.sleep(0)
            else:
                await self._respond(send, 502, _CONNECT_BODY)
        else:
            t_hdr = time.perf_counter()
            overhead = t_up - t0
            status = resp.status
            metrics.child(metrics.PROTOCOL, r.provider, resp.protocol).inc()
            if cycle is not None and getattr(cycle, "disconnected", False):
                await resp.close(abort=True)
                call.error_type, status = "client_disconnected", 499
            else:
                ct = resp.header(b"content-type")
                if recorded:
                    extractor = Extractor(r.provider, ct, resp.header(b"content-encoding"), self.ps.max_parse_bytes)
                # HTTP/2 answers carry no connection-specific headers; HTTP/1.1 ones lose the hop-by-hop ones.
                out_headers = [(k, v) for k, v in resp.headers if k.lower() not in HOP_BY_HOP]
                length = resp.header(b"content-length")
                aborted = False
                try:
                    if "event-stream" not in ct and length.isdigit() and int(length) <= _BUFFER_LIMIT:
                        data = await resp.read()
                        t_last = time.perf_counter()
                        await send({"type": "http.response.start", "status": status, "headers": out_headers})
                        await send({"type": "http.response.body", "body": data, "more_body": False})
                        overhead += time.perf_counter() - t_last
                        call.response_bytes = len(data)
                        if extractor:
                            extractor.feed(data)
                        if self.ps.capture_bodies:
                            call.response_body = data[: self.ps.capture_max_bytes]
                    else:
                        await send({"type": "http.response.start", "status": status, "headers": out_headers})
                        overhead += time.perf_counter() - t_hdr
                        status, gone = await self._relay(resp, send, extractor, call, cycle, t0)
                        if gone:
                            aborted = True
                            call.error_type, status = "client_disconnected", 499
                except BROKEN:
                    # The upstream broke before the whole answer arrived: break the agent's side the same way.
                    call.error_type = "upstream_stream_error"
                    if cycle is not None and hasattr(cycle, "transport"):
                        cycle.transport.abort()
                    status = status if status >= 400 else 502
                    aborted = True
                finally:
                    await resp.close(abort=aborted)
            metrics.child(metrics.UPSTREAM, r.provider).observe(time.perf_counter() - t_up)
            metrics.OVERHEAD.observe(overhead)
        call.latency_s = time.perf_counter() - t0
        call.status_code = status
        if extractor is not None:
            usage = extractor.finish()
            if usage.error_type is None and status >= 400:
                usage.error_type = extractor.error_type()
        if call.stream and call.ttft_s is not None:
            metrics.child(metrics.TTFT, r.provider).observe(call.ttft_s)
        metrics.child(metrics.HTTP_REQUESTS, scope["method"], r.template, str(status)).inc()
        metrics.child(metrics.HTTP_DURATION, scope["method"], r.template).observe(call.latency_s)
        metrics.child(metrics.HTTP_REQUEST_SIZE, scope["method"], r.template).observe(len(body))
        metrics.child(metrics.HTTP_RESPONSE_SIZE, scope["method"], r.template).observe(call.response_bytes)
        if recorded:
            self._record(call, usage, seen, status)

    async def _relay(self, resp: Answer, send: Any, extractor: Extractor | None, call: Call,
                     cycle: Any, t0: float) -> tuple[int, bool]:
        """Relay chunk by chunk as they arrive; return (status to record, whether the agent went away)."""
        status = resp.status
        capture = self.ps.capture_bodies
        async for chunk in resp.chunks():
            if call.ttft_s is None:
                call.ttft_s = time.perf_counter() - t0
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            call.response_bytes += len(chunk)
            if extractor:
                extractor.feed(chunk)
            if capture and (call.response_body is None or len(call.response_body) < self.ps.capture_max_bytes):
                call.response_body = ((call.response_body or b"") + chunk)[: self.ps.capture_max_bytes]
            if cycle is not None and getattr(cycle, "disconnected", False):
                return status, True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return status, False

    @staticmethod
    async def _respond(send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _record(self, call: Call, usage: Usage, seen: dict[str, str], status: int) -> None:
        try:
            ident = identify(seen, self.keys)
            event = build_event(call, usage, ident, self.ps.capture_max_bytes if self.ps.capture_bodies else None)
            metrics.child(metrics.REQUESTS, event.provider, event.model[:64], str(status)).inc()
            self.publisher.submit(event)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("proxied call", extra={"fields": {
                    "provider": event.provider, "model": event.model, "status": status,
                    "duration_ms": event.latency_ms, "project_id": event.project_id, "agent_id": event.agent_id,
                    "trace_id": event.trace_id, "tokens_in": event.tokens_in, "tokens_out": event.tokens_out}})
        except Exception:
            log.exception("could not record call")  # recording never breaks the agent's call
