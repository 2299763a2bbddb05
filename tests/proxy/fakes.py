"""Fake LLM providers: real HTTP servers on loopback speaking each provider's wire format.

Answers are fixed so tests know the tokens; a model name picks a fault: `fail-429`, `fail-500`,
`slow` (answers after 2 s), or holds the answer until the test sets `gate`: `hold` (whole answer), `gated`
(a stream's first chunk goes out, the rest after the gate). Every request is kept in `requests` for
transparency checks, with the HTTP version and client address it came over.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from tests.support import free_port

CHUNK_DELAY = 0.01


def _sse(doc: Any, event: str | None = None, crlf: bool = False) -> bytes:
    nl = b"\r\n" if crlf else b"\n"
    head = f"event: {event}".encode() + nl if event else b""
    return head + b"data: " + orjson.dumps(doc) + nl + nl


# -- OpenAI and Mistral ---------------------------------------------------------------
def openai_json(model: str, provider: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
            "model": "gpt-4o-mini-2024-07-18" if provider == "openai" else model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                      "prompt_tokens_details": {"cached_tokens": 4}}}


def openai_stream(model: str, provider: str, include_usage: bool) -> list[bytes]:
    name = "gpt-4o-mini-2024-07-18" if provider == "openai" else model
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": name}
    out = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    for word in ("Hello", " there", "!"):
        out.append(_sse({**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}))
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "prompt_tokens_details": {"cached_tokens": 4}}
    if provider == "mistral":  # Mistral always sends usage in the last chunk
        last["usage"] = usage
    out.append(_sse(last))
    if include_usage and provider == "openai":
        out.append(_sse({**base, "choices": [], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return out


def embeddings_json() -> dict:
    return {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "model": "text-embedding-3-small", "usage": {"prompt_tokens": 6, "total_tokens": 6}}


def responses_json() -> dict:
    return {"id": "resp_1", "object": "response", "created_at": 1700000000, "status": "completed",
            "model": "gpt-4o-2024-08-06", "output": [],
            "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 9,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 39}}


# -- Anthropic ---------------------------------------------------------------------------
ANTHROPIC_MODEL = "claude-3-5-sonnet-20241022"


def anthropic_json() -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
            "content": [{"type": "text", "text": "Hello there!"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 5,
                      "output_tokens": 7}}


def anthropic_stream() -> list[bytes]:
    msg = {**anthropic_json(), "content": [], "stop_reason": None,
           "usage": {"input_tokens": 10, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 5,
                     "output_tokens": 1}}
    return [
        _sse({"type": "message_start", "message": msg}, "message_start"),
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
             "content_block_start"),
        _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
             "content_block_delta"),
        _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there!"}},
             "content_block_delta"),
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
              "usage": {"output_tokens": 7}}, "message_delta"),
        _sse({"type": "message_stop"}, "message_stop"),
    ]


# -- Google ------------------------------------------------------------------------------
def google_json(text: str = "Hello there!", usage: bool = True, finish: bool = True) -> dict:
    cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = "STOP"
    doc: dict[str, Any] = {"candidates": [cand], "modelVersion": "gemini-2.0-flash-001", "responseId": "r1"}
    if usage:
        doc["usageMetadata"] = {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13,
                                "cachedContentTokenCount": 3}
    return doc


def google_stream() -> list[bytes]:
    return [_sse(google_json("Hello", usage=False, finish=False), crlf=True),
            _sse(google_json(" there!"), crlf=True)]


# -- Cohere ------------------------------------------------------------------------------
def cohere_json() -> dict:
    return {"id": "c1", "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "Hello there!"}]},
            "usage": {"billed_units": {"input_tokens": 8, "output_tokens": 3},
                      "tokens": {"input_tokens": 14, "output_tokens": 3}}}


def cohere_stream() -> list[bytes]:
    return [
        _sse({"type": "message-start", "id": "c1", "delta": {"message": {"role": "assistant", "content": []}}},
             "message-start"),
        _sse({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
             "content-start"),
        _sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hello there!"}}}},
             "content-delta"),
        _sse({"type": "content-end", "index": 0}, "content-end"),
        _sse({"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": cohere_json()["usage"]}},
             "message-end"),
    ]


ERRORS = {
    "openai": lambda code: {"error": {"message": "limit", "type": "rate_limit_error" if code == 429 else "server_error",
                                      "param": None, "code": None}},
    "mistral": lambda code: {"object": "error", "message": "limit", "type": "rate_limited" if code == 429 else "internal",
                             "code": str(code)},
    "anthropic": lambda code: {"type": "error", "error": {"type": "rate_limit_error" if code == 429 else "api_error",
                                                          "message": "limit"}},
    "google": lambda code: {"error": {"code": code, "message": "limit",
                                      "status": "RESOURCE_EXHAUSTED" if code == 429 else "INTERNAL"}},
    "cohere": lambda code: {"message": "limit"},
}


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    http_version: str = "1.1"
    client: tuple | None = None  # (host, port) of the connection it came over
    finished: bool = False  # the whole answer was sent
    cancelled: bool = False  # the client cancelled the stream (HTTP/2 RST_STREAM) before it was finished


@dataclass
class FakeProvider:
    provider: str
    port: int = field(default_factory=free_port)
    requests: list[Seen] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def _wait_gate(self) -> None:
        for _ in range(1000):  # at most 10 s, so a test that never opens the gate fails instead of hanging
            if self.gate.is_set():
                return
            await asyncio.sleep(0.01)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path, query = scope["path"], scope["query_string"].decode()
        seen = Seen(scope["method"], path, query, [(k.decode(), v.decode()) for k, v in scope["headers"]], body,
                    scope.get("http_version", "1.1"), tuple(scope["client"]) if scope.get("client") else None)
        self.requests.append(seen)
        doc = orjson.loads(body) if body[:1] == b"{" else {}
        model = doc.get("model") or (path.split("/models/")[-1].split(":")[0] if "/models/" in path else "")
        if model in ("fail-429", "fail-500"):
            code = int(model[-3:])
            extra = [(b"retry-after", b"7")] if code == 429 else []
            await self._send(send, code, orjson.dumps(ERRORS[self.provider](code)), extra=extra)
            seen.finished = True
            return
        if model == "slow":
            await asyncio.sleep(2.0)
        if model == "hold":
            await self._wait_gate()
        stream = doc.get("stream") is True or path.endswith(":streamGenerateContent")
        if stream and model == "gated":
            async def watch() -> None:  # hypercorn reports a cancelled stream as http.disconnect
                if (await receive())["type"] == "http.disconnect" and not seen.finished:
                    seen.cancelled = True

            watcher = asyncio.ensure_future(watch())
            try:
                await self._stream(send, self._chunks(path, model, doc), self._wait_gate)
            finally:
                watcher.cancel()
        elif stream:
            await self._stream(send, self._chunks(path, model, doc), None)
        else:
            await self._send(send, 200, orjson.dumps(self._json(path, model)))
        seen.finished = True

    def _json(self, path: str, model: str) -> dict:
        if self.provider in ("openai", "mistral"):
            if path.endswith("/embeddings"):
                return embeddings_json()
            if path.endswith("/responses"):
                return responses_json()
            return openai_json(model, self.provider)
        return {"anthropic": anthropic_json, "google": google_json, "cohere": cohere_json}[self.provider]()

    def _chunks(self, path: str, model: str, doc: dict) -> list[bytes]:
        if self.provider in ("openai", "mistral"):
            include = bool((doc.get("stream_options") or {}).get("include_usage"))
            return openai_stream(model, self.provider, include)
        return {"anthropic": anthropic_stream, "google": google_stream, "cohere": cohere_stream}[self.provider]()

    @staticmethod
    async def _send(send: Any, status: int, body: bytes, extra: list | None = None) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"x-request-id", b"req-fixed"), *(extra or [])]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _stream(send: Any, chunks: list[bytes], after_first: Any = None) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
            (b"x-request-id", b"req-fixed")]})
        for i, chunk in enumerate(chunks):
            await asyncio.sleep(CHUNK_DELAY)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if i == 0 and after_first is not None:
                await after_first()
        await asyncio.sleep(CHUNK_DELAY)  # the end of the body on its own, as providers often send it
        await send({"type": "http.response.body", "body": b""})


class ServerThread:
    """Run an ASGI app with uvicorn in a daemon thread on a loopback port."""

    def __init__(self, app: Any, port: int, lifespan: str = "off", http: str = "h11"):
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                lifespan=lifespan, loop="asyncio", http=http, server_header=False,
                                date_header=http == "h11")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


class TlsServerThread:
    """Serve an ASGI app over TLS with hypercorn in a daemon thread; `alpn` picks HTTP/2 and/or HTTP/1.1."""

    def __init__(self, app: Any, port: int, certfile: str, keyfile: str, alpn: list[str], **config: Any):
        from hypercorn.config import Config

        self.app, self.port = app, port
        self.config = Config()
        for name, value in config.items():  # e.g. h2_max_concurrent_streams
            setattr(self.config, name, value)
        self.config.bind = [f"127.0.0.1:{port}"]
        self.config.certfile, self.config.keyfile = certfile, keyfile
        self.config.alpn_protocols = alpn
        self.config.accesslog = self.config.errorlog = None
        self.config.graceful_timeout = 0.5  # tests stop servers with clients still connected
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from hypercorn.asyncio import serve

        async def stopped() -> None:
            while not self._stop.is_set():
                await asyncio.sleep(0.05)

        asyncio.run(serve(self.app, self.config, shutdown_trigger=stopped))

    def start(self) -> TlsServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("TLS fake server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
