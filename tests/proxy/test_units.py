"""Unit tests: routing, SSE framing, usage extraction per provider, the on-disk spool and its bound."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import orjson
import pytest

from proxy import metrics
from proxy.config import ProxySettings
from proxy.extract import Extractor
from proxy.identity import split_headers
from proxy.publisher import Publisher
from proxy.routing import route
from proxy.spool import Spool
from proxy.sse import SseParser
from schemas.events import LlmCall
from schemas.settings import Settings
from tests.proxy import fakes

PS = ProxySettings(openai_base_url="http://oa", anthropic_base_url="http://an", google_base_url="http://go",
                   mistral_base_url="http://mi", cohere_base_url="http://co")


@pytest.mark.parametrize(("path", "headers", "provider", "url", "kind"), [
    ("/v1/chat/completions", {"authorization": "Bearer sk-proj-abc"}, "openai", "http://oa/v1/chat/completions", "chat"),
    ("/v1/responses", {}, "openai", "http://oa/v1/responses", "responses"),
    ("/v1/embeddings", {}, "openai", "http://oa/v1/embeddings", "embeddings"),
    ("/v1/completions", {}, "openai", "http://oa/v1/completions", "completion"),
    ("/v1/models", {}, "openai", "http://oa/v1/models", "other"),
    ("/v1/messages", {"anthropic-version": "2023-06-01"}, "anthropic", "http://an/v1/messages", "messages"),
    ("/v1beta/models/gemini-2.0-flash:streamGenerateContent", {}, "google",
     "http://go/v1beta/models/gemini-2.0-flash:streamGenerateContent", "generate"),
    ("/v1/chat/completions", {"authorization": "Bearer " + "A" * 32}, "mistral", "http://mi/v1/chat/completions", "chat"),
    ("/v1/chat/completions", {"host": "mistral.local:4000"}, "mistral", "http://mi/v1/chat/completions", "chat"),
    ("/mistral/v1/chat/completions", {}, "mistral", "http://mi/v1/chat/completions", "chat"),
    ("/v2/chat", {}, "cohere", "http://co/v2/chat", "chat"),
    ("/v1/chat", {}, "cohere", "http://co/v1/chat", "chat"),
    ("/v1/chat/completions", {"x-target-url": "http://vllm:8000/v1"}, "openai", "http://vllm:8000/v1/chat/completions", "chat"),
    ("/v1/chat/completions", {"x-target-url": "https://x.openai.azure.com/openai/deployments/gpt4o"}, "openai",
     "https://x.openai.azure.com/openai/deployments/gpt4o/chat/completions", "chat"),
    ("/v1/chat/completions", {"x-target-url": "http://ollama:11434"}, "openai", "http://ollama:11434/v1/chat/completions", "chat"),
])
def test_routing(path: str, headers: dict, provider: str, url: str, kind: str) -> None:
    r = route(path, "", headers, PS)
    assert (r.provider, r.url, r.kind) == (provider, url, kind)


def test_routing_keeps_query_and_google_model() -> None:
    r = route("/v1beta/models/gemini-2.5-pro:generateContent", "alt=sse&key=k", {}, PS)
    assert r.url.endswith(":generateContent?alt=sse&key=k") and r.model == "gemini-2.5-pro" and not r.stream


def test_split_headers_strips_proxy_and_hop_headers() -> None:
    seen, fwd = split_headers([(b"Authorization", b"Bearer sk"), (b"x-agenttrace-agent", b"a"), (b"X-Target-Url", b"u"),
                               (b"connection", b"keep-alive"), (b"host", b"h"), (b"content-length", b"3"),
                               (b"anthropic-version", b"1")])
    assert fwd == [(b"Authorization", b"Bearer sk"), (b"anthropic-version", b"1")]
    assert seen["x-agenttrace-agent"] == "a"


def test_sse_parser_split_anywhere() -> None:
    stream = b"event: a\ndata: {\"x\":1}\n\n: comment\r\ndata: line1\r\ndata: line2\r\n\r\ndata: [DONE]\n\n"
    expected = [("a", b'{"x":1}'), ("", b"line1\nline2"), ("", b"[DONE]")]
    for size in (1, 2, 3, 7, len(stream)):
        p = SseParser()
        got = [ev for i in range(0, len(stream), size) for ev in p.feed(stream[i:i + size])]
        assert got == expected


def _extract(provider: str, ct: str, chunks: list[bytes], encoding: str = "") -> tuple:
    ex = Extractor(provider, ct, encoding, 1 << 20)
    for c in chunks:
        for i in range(0, len(c), 5):  # fed in small pieces, as a network would
            ex.feed(c[i:i + 5])
    u = ex.finish()
    return u.model, u.tokens_in, u.tokens_out, u.tokens_cached, u.finish_reason


@pytest.mark.parametrize(("provider", "json_doc", "stream", "expected"), [
    ("openai", fakes.openai_json("gpt-4o-mini", "openai"), fakes.openai_stream("gpt-4o-mini", "openai", True),
     ("gpt-4o-mini-2024-07-18", 12, 5, 4, "stop")),
    ("mistral", fakes.openai_json("mistral-small", "mistral"), fakes.openai_stream("mistral-small", "mistral", False),
     ("mistral-small", 12, 5, 4, "stop")),
    ("anthropic", fakes.anthropic_json(), fakes.anthropic_stream(), (fakes.ANTHROPIC_MODEL, 35, 7, 20, "end_turn")),
    ("google", fakes.google_json(), fakes.google_stream(), ("gemini-2.0-flash-001", 9, 4, 3, "STOP")),
    ("cohere", fakes.cohere_json(), fakes.cohere_stream(), (None, 14, 3, None, "COMPLETE")),
])
def test_usage_json_and_stream(provider: str, json_doc: dict, stream: list[bytes], expected: tuple) -> None:
    assert _extract(provider, "application/json", [orjson.dumps(json_doc)]) == expected
    assert _extract(provider, "text/event-stream", stream) == expected


def test_usage_from_gzip_body_and_responses_api_and_embeddings() -> None:
    body = gzip.compress(orjson.dumps(fakes.responses_json()))
    assert _extract("openai", "application/json", [body], "gzip") == ("gpt-4o-2024-08-06", 30, 9, 10, "completed")
    assert _extract("openai", "application/json", [orjson.dumps(fakes.embeddings_json())]) == \
        ("text-embedding-3-small", 6, None, None, None)


def test_openai_stream_without_usage_leaves_tokens_unknown() -> None:
    assert _extract("openai", "text/event-stream", fakes.openai_stream("m", "openai", False)) == \
        ("gpt-4o-mini-2024-07-18", None, None, None, "stop")


def test_cohere_v1_ndjson_stream() -> None:
    lines = [b'{"event_type":"stream-start","generation_id":"g"}\n', b'{"event_type":"text-generation","text":"hi"}\n',
             b'{"event_type":"stream-end","finish_reason":"COMPLETE","response":{"meta":{"billed_units":'
             b'{"input_tokens":5,"output_tokens":2}}}}\n']
    assert _extract("cohere", "application/stream+json", lines) == (None, 5, 2, None, "COMPLETE")


def test_anthropic_stream_error_event_recorded() -> None:
    ex = Extractor("anthropic", "text/event-stream", "", 1 << 20)
    ex.feed(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\n')
    assert ex.finish().error_type == "overloaded_error"


def _records(n: int, start: int = 0) -> list:
    return [(f"k{i}".encode(), f'{{"i":{i}}}'.encode(), [("event_type", b"llm_call")]) for i in range(start, start + n)]


def test_spool_order_bound_and_restart(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_events=8, segment_events=2)
    assert s.append(_records(5)) == 0 and s.depth == 5
    assert [r[0] for r in s.peek(10)] == [b"k0", b"k1"]  # head segment
    s.commit(1)
    dropped = s.append(_records(7, start=5))  # 11 waiting > 8: whole oldest segments go
    assert dropped == 3 and s.depth == 8 and s.dropped == 3
    assert s.peek(1)[0][0] == b"k4"
    s.close()
    again = Spool(tmp_path, max_events=8, segment_events=2)  # a restart resumes where delivery stopped
    assert again.depth == 8
    out = []
    while again.depth:
        batch = again.peek(3)
        out += [r[0] for r in batch]
        again.commit(len(batch))
    assert out == [f"k{i}".encode() for i in range(4, 12)]
    assert not list(tmp_path.glob("seg-*"))


def test_spool_commit_spans_segments(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_events=100, segment_events=3)
    s.append(_records(10))
    s.commit(7)
    assert s.depth == 3 and s.peek(5)[0][0] == b"k7"


class _DeadProducer:
    async def start(self) -> None:
        raise ConnectionError("broker down")

    async def stop(self) -> None:
        pass


async def test_publisher_full_spool_drops_oldest_and_counts(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    ps = ProxySettings(spool_max_events=4, spool_segment_events=1, retry_max_seconds=0.2)
    pub = Publisher(settings, ps, producer_factory=_DeadProducer)
    before = metrics.DROPPED._value.get()
    pub.start()
    try:
        for i in range(10):
            pub.submit(LlmCall(agent_id="a", trace_id=f"t{i}"))
        for _ in range(400):
            if pub.spool.depth == 4 and pub.queue.empty() and metrics.DROPPED._value.get() - before == 6:
                break
            await asyncio.sleep(0.05)
        assert pub.spool.depth == 4
        assert metrics.DROPPED._value.get() - before == 6
        kept = [orjson.loads(r[1])["trace_id"] for r in pub.spool.peek(10)]
        assert kept == ["t6"]  # head segment holds the oldest survivor
    finally:
        await pub.stop()
