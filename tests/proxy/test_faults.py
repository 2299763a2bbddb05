"""Upstream failures reach the agent exactly as a direct call shows them, and are recorded as failed calls."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest

from tests.proxy.conftest import SECRETS, ProxyProc, assert_no_secrets
from tests.proxy.fakes import FakeProvider
from tests.support import free_port

# provider -> (path, body for a model name) ; Google takes the model from the path
REQUESTS = {
    "openai": lambda m: ("/v1/chat/completions", {"model": m, "messages": []}),
    "mistral": lambda m: ("/v1/chat/completions", {"model": m, "messages": []}),
    "anthropic": lambda m: ("/v1/messages", {"model": m, "max_tokens": 5, "messages": []}),
    "google": lambda m: (f"/v1beta/models/{m}:generateContent", {"contents": []}),
    "cohere": lambda m: ("/v2/chat", {"model": m, "messages": []}),
}
AUTH = {"openai": ("authorization", f"Bearer {SECRETS['openai']}"),
        "mistral": ("authorization", f"Bearer {SECRETS['mistral']}"),
        "anthropic": ("x-api-key", SECRETS["anthropic"]), "google": ("x-goog-api-key", SECRETS["google"]),
        "cohere": ("authorization", f"Bearer {SECRETS['cohere']}")}
ERROR_TYPES = {"openai": ("rate_limit_error", "server_error"), "mistral": ("rate_limited", "internal"),
               "anthropic": ("rate_limit_error", "api_error"), "google": ("RESOURCE_EXHAUSTED", "INTERNAL"),
               "cohere": ("http_429", "http_500")}
_STRIP = {"date", "server"}


@pytest.mark.parametrize("provider", list(REQUESTS))
def test_429_and_500_relayed_and_recorded(provider: str, proxy: ProxyProc, fakes: dict[str, FakeProvider]) -> None:
    agent = f"fail-{provider}-{uuid.uuid4().hex[:6]}"
    for code in (429, 500):
        path, body = REQUESTS[provider](f"fail-{code}")
        h = dict([AUTH[provider]])
        direct = httpx.post(fakes[provider].url + path, json=body, headers=h)
        proxied = httpx.post(proxy.url + path, json=body, headers={**h, "x-agenttrace-agent": agent})
        assert (proxied.status_code, proxied.content) == (direct.status_code, direct.content) == (code, direct.content)
        assert [x for x in proxied.headers.items() if x[0] not in _STRIP] == \
               [x for x in direct.headers.items() if x[0] not in _STRIP]
    events = sorted(proxy.events(agent, 2), key=lambda e: e["status_code"])
    assert [e["status_code"] for e in events] == [429, 500]
    assert tuple(e["error_type"] for e in events) == ERROR_TYPES[provider]
    for e in events:
        assert e["provider"] == provider and e.get("tokens_in") is None and e.get("cost_usd") is None


def _client(base: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=SECRETS["openai"], max_retries=0, **kw)


def test_sdk_sees_same_rate_limit_error(proxy: ProxyProc, fakes: dict[str, FakeProvider]) -> None:
    errors = []
    for base in (fakes["openai"].url, proxy.url):
        with pytest.raises(openai.RateLimitError) as exc:
            _client(base).chat.completions.create(model="fail-429", messages=[])
        errors.append((exc.value.status_code, exc.value.body, exc.value.response.headers.get("retry-after")))
    assert errors[0] == errors[1] == (429, errors[0][1], "7")


def test_timeout_reproduced_and_recorded(proxy: ProxyProc, fakes: dict[str, FakeProvider]) -> None:
    agent = f"timeout-{uuid.uuid4().hex[:6]}"
    for base in (fakes["openai"].url, proxy.url):
        client = _client(base, timeout=0.5, default_headers={"x-agenttrace-agent": agent})
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="slow", messages=[])
    (event,) = proxy.events(agent, 1)
    assert event["status_code"] == 499 and event["error_type"] == "client_disconnected"
    assert event["model"] == "slow"


def test_connection_refused_reproduced_and_recorded(proxy: ProxyProc) -> None:
    agent = f"refused-{uuid.uuid4().hex[:6]}"
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(openai.APIConnectionError):
        _client(dead).chat.completions.create(model="gpt-4o", messages=[])
    # x-target-url sends this call to the same dead address through the proxy.
    client = _client(proxy.url, default_headers={"x-agenttrace-agent": agent, "x-target-url": dead + "/v1"})
    with pytest.raises(openai.APIConnectionError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=[])
    assert not isinstance(exc.value, openai.APIStatusError)
    (event,) = proxy.events(agent, 1)
    assert event["status_code"] == 502 and event["error_type"] == "upstream_connection_error"


def test_target_url_header_routes_openai_compatible(proxy: ProxyProc, fakes: dict[str, FakeProvider]) -> None:
    agent = f"target-{uuid.uuid4().hex[:6]}"
    fake = fakes["mistral"]  # any OpenAI-compatible server (vLLM, Ollama, ...)
    fake.requests.clear()
    client = _client(proxy.url, default_headers={"x-agenttrace-agent": agent, "x-target-url": fake.url + "/v1"})
    out = client.chat.completions.create(model="llama-3.1-8b", messages=[])
    assert out.model == "llama-3.1-8b" and fake.requests[-1].path == "/v1/chat/completions"
    assert not any(k == "x-target-url" for k, _ in fake.requests[-1].headers)
    (event,) = proxy.events(agent, 1)
    assert event["model"] == "llama-3.1-8b" and event["tokens_in"] == 12


def test_openai_stream_without_usage_records_unknown_tokens(proxy: ProxyProc) -> None:
    agent = f"nousage-{uuid.uuid4().hex[:6]}"
    client = _client(proxy.url, default_headers={"x-agenttrace-agent": agent})
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True))
    assert all(c.usage is None for c in chunks)  # the proxy did not add include_usage
    (event,) = proxy.events(agent, 1)
    assert "tokens_in" not in event and "tokens_out" not in event and "cost_usd" not in event
    assert event["pricing_status"] == "no_tokens" and event["model"] == "gpt-4o-mini-2024-07-18"
    assert event["finish_reason"] == "stop" and event["ttft_ms"] > 0


def test_no_key_leaks_on_error_paths(proxy: ProxyProc) -> None:
    assert_no_secrets(proxy)


def test_stream_relayed_as_it_arrives(proxy: ProxyProc, fakes: dict[str, FakeProvider]) -> None:
    # The fake spaces its SSE events CHUNK_DELAY apart; a buffering proxy would deliver them all at once.
    from tests.proxy.fakes import CHUNK_DELAY

    body = {"model": "claude-3-5-sonnet-latest", "max_tokens": 5, "messages": [], "stream": True}
    arrivals: list[float] = []
    with httpx.stream("POST", proxy.url + "/v1/messages", json=body, headers=dict([AUTH["anthropic"]])) as r:
        for _ in r.iter_raw():
            arrivals.append(time.perf_counter())
    assert len(arrivals) >= 5
    assert arrivals[-1] - arrivals[0] >= 4 * CHUNK_DELAY
