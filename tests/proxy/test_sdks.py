"""The real provider SDKs through the proxy: same answers as direct, one priced event per call, no key leaks."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from schemas.pricing import cost_usd, model_family
from tests.proxy.conftest import SECRETS, ProxyProc, assert_no_secrets
from tests.proxy.fakes import FakeProvider

MESSAGES = [{"role": "user", "content": "Say hello"}]
# provider -> (model recorded, tokens_in, tokens_out, tokens_cached, finish_reason)
EXPECTED = {
    "openai": ("gpt-4o-mini-2024-07-18", 12, 5, 4, "stop"),
    "anthropic": ("claude-3-5-sonnet-20241022", 35, 7, 20, "end_turn"),
    "google": ("gemini-2.0-flash-001", 9, 4, 3, "STOP"),
    "mistral": ("mistral-small-latest", 12, 5, 4, "stop"),
    "cohere": ("command-r", 14, 3, None, "COMPLETE"),
}
# Headers that legitimately differ between two hops.
HOP_HEADERS = {"host", "connection", "content-length"}


def _openai(base: str, headers: dict, stream: bool) -> Any:
    import openai

    c = openai.OpenAI(base_url=base + "/v1", api_key=SECRETS["openai"], max_retries=0, default_headers=headers)
    if stream:
        with c.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}) as r:
            raw = b"".join(r.iter_bytes())
        return raw, [ch.model_dump() for ch in c.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True})]
    r = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    return r.http_response.content, r.parse().model_dump()


def _anthropic(base: str, headers: dict, stream: bool) -> Any:
    import anthropic

    c = anthropic.Anthropic(base_url=base, api_key=SECRETS["anthropic"], max_retries=0, default_headers=headers)
    kw = {"model": "claude-3-5-sonnet-latest", "max_tokens": 64, "messages": MESSAGES}
    if stream:
        with c.messages.with_streaming_response.create(stream=True, **kw) as r:
            raw = b"".join(r.iter_bytes())
        with c.messages.stream(**kw) as s:
            final = s.get_final_message().model_dump()
        return raw, final
    r = c.messages.with_raw_response.create(**kw)
    return r.http_response.content, r.parse().model_dump()


def _google(base: str, headers: dict, stream: bool) -> Any:
    from google import genai
    from google.genai import types

    c = genai.Client(api_key=SECRETS["google"],
                     http_options=types.HttpOptions(base_url=base, headers=headers, api_version="v1beta"))
    if stream:
        return None, [ch.model_dump() for ch in c.models.generate_content_stream(
            model="gemini-2.0-flash", contents="Say hello")]
    return None, c.models.generate_content(model="gemini-2.0-flash", contents="Say hello").model_dump()


def _mistral(base: str, headers: dict, stream: bool) -> Any:
    from mistralai.client import Mistral

    c = Mistral(api_key=SECRETS["mistral"], server_url=base)
    if stream:
        return None, [ev.model_dump() for ev in c.chat.stream(model="mistral-small-latest", messages=MESSAGES,
                                                               http_headers=headers)]
    return None, c.chat.complete(model="mistral-small-latest", messages=MESSAGES, http_headers=headers).model_dump()


def _cohere(base: str, headers: dict, stream: bool) -> Any:
    import cohere

    c = cohere.ClientV2(api_key=SECRETS["cohere"], base_url=base)
    opts = {"additional_headers": headers, "max_retries": 0}
    if stream:
        return None, [ev.dict() for ev in c.chat_stream(model="command-r", messages=MESSAGES, request_options=opts)]
    return None, c.chat(model="command-r", messages=MESSAGES, request_options=opts).dict()


CALLS = {"openai": _openai, "anthropic": _anthropic, "google": _google, "mistral": _mistral, "cohere": _cohere}
# Raw request shapes used to compare bytes for SDKs that hide the raw body.
RAW = {
    "google": lambda s: ("/v1beta/models/gemini-2.0-flash:" + ("streamGenerateContent?alt=sse" if s else "generateContent"),
                         {"contents": [{"parts": [{"text": "Say hello"}], "role": "user"}]}),
    "mistral": lambda s: ("/v1/chat/completions", {"model": "mistral-small-latest", "messages": MESSAGES, "stream": s}),
    "cohere": lambda s: ("/v2/chat", {"model": "command-r", "messages": MESSAGES, "stream": s}),
}
RAW_AUTH = {"google": ("x-goog-api-key", SECRETS["google"]), "mistral": ("authorization", f"Bearer {SECRETS['mistral']}"),
            "cohere": ("authorization", f"Bearer {SECRETS['cohere']}")}


def _scrub(parsed: Any) -> Any:
    """Drop the Date header some SDKs keep in their parsed result (it differs between two calls)."""
    if isinstance(parsed, list):
        return [_scrub(p) for p in parsed]
    if isinstance(parsed, dict) and isinstance(parsed.get("sdk_http_response"), dict):
        headers = {k: v for k, v in (parsed["sdk_http_response"].get("headers") or {}).items() if k != "date"}
        return {**parsed, "sdk_http_response": {**parsed["sdk_http_response"], "headers": headers}}
    return parsed


def _forwarded(seen: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in seen.headers if k not in HOP_HEADERS and not k.startswith("x-agenttrace-")]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", list(CALLS))
def test_sdk_through_proxy(provider: str, stream: bool, proxy: ProxyProc, fakes: dict[str, FakeProvider]) -> None:
    fake = fakes[provider]
    agent = f"{provider}-{'stream' if stream else 'json'}-{uuid.uuid4().hex[:6]}"
    headers = {"x-agenttrace-agent": agent, "x-agenttrace-key": proxy.token, "x-agenttrace-trace-id": "trace-" + agent,
               "x-agenttrace-session-id": "sess-1", "x-agenttrace-user-id": "user-1", "x-agenttrace-tags": "env:test,team:a"}
    fake.requests.clear()
    raw_direct, parsed_direct = CALLS[provider](fake.url, headers, stream)
    n_direct = len(fake.requests)
    raw_proxied, parsed_proxied = CALLS[provider](proxy.url, headers, stream)

    assert _scrub(parsed_proxied) == _scrub(parsed_direct)
    assert raw_proxied == raw_direct
    # What the provider received: the same request, minus the proxy's own headers.
    direct, proxied = fake.requests[:n_direct], fake.requests[n_direct:]
    assert len(direct) == len(proxied)
    for d, p in zip(direct, proxied, strict=True):
        assert (p.method, p.path, p.query, p.body) == (d.method, d.path, d.query, d.body)
        assert _forwarded(p) == _forwarded(d)
        assert not any(k.startswith("x-agenttrace-") or k == "x-target-url" for k, _ in p.headers)

    if provider in RAW:  # byte-identical bodies for the SDKs that do not expose them
        path, body = RAW[provider](stream)
        h = dict([RAW_AUTH[provider]])
        d = httpx.post(fake.url + path, json=body, headers=h)
        p = httpx.post(proxy.url + path, json=body, headers={**h, "x-agenttrace-agent": agent + "-raw"})
        assert (p.status_code, p.content) == (d.status_code, d.content)
        strip = {"date", "server", "content-length", "transfer-encoding"}
        assert [x for x in p.headers.items() if x[0] not in strip] == [x for x in d.headers.items() if x[0] not in strip]

    events = proxy.events(agent, len(proxied))
    model, tin, tout, tcached, finish = EXPECTED[provider]
    for ev in events:
        assert ev["type"] == "llm_call" and ev["source"] == "proxy"
        assert ev["provider"] == provider and ev["model"] == model
        assert (ev.get("tokens_in"), ev.get("tokens_out"), ev.get("tokens_cached")) == (tin, tout, tcached)
        assert ev["finish_reason"] == finish and ev["status_code"] == 200 and "error_type" not in ev
        assert ev["project_id"] == "proj-a" and ev["trace_id"] == "trace-" + agent
        assert ev["session_id"] == "sess-1" and ev["user_id"] == "user-1" and ev["tags"] == ["env:test", "team:a"]
        assert ev["stream"] is stream
        assert ev["latency_ms"] > 0
        if stream:
            assert 0 < ev["ttft_ms"] <= ev["latency_ms"]
        expected_cost, status = cost_usd(provider, model_family(provider, model), tin, tout, tcached)
        assert status == "priced" and expected_cost and ev["cost_usd"] == pytest.approx(expected_cost)


def test_no_key_in_events_logs_or_metrics(proxy: ProxyProc) -> None:
    # Runs after the SDK calls above, against the same proxy process (debug logging on).
    assert proxy.events  # the module's calls happened on this proxy
    assert_no_secrets(proxy)
