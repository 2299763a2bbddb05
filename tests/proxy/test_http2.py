"""HTTP/2 to https upstreams that offer it: fake providers on hypercorn over TLS (self-signed CA made here)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import ssl
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from agenttrace import stack
from schemas.keys import KeyStore
from schemas.settings import Settings
from tests.proxy.conftest import SECRETS, ProxyProc, assert_no_secrets, proxy_env, start_proxy
from tests.proxy.fakes import FakeProvider, TlsServerThread, openai_stream
from tests.support import free_port

# Fields that differ between any two calls, whatever the protocol.
VARYING = {"event_id", "timestamp", "received_at", "agent_id", "latency_ms", "ttft_ms"}


@dataclass
class Tls:
    ca: str  # CA bundle the proxy is told to trust
    h2: FakeProvider  # offers h2 and http/1.1 in ALPN
    h1: FakeProvider  # offers http/1.1 only
    forced: FakeProvider  # offers h2, but its provider is forced to HTTP/1.1


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    import trustme

    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(d / "ca.pem")
    cert.private_key_pem.write_to_path(d / "key.pem")
    cert.cert_chain_pems[0].write_to_path(d / "cert.pem")
    out = Tls(str(d / "ca.pem"), FakeProvider("openai", scheme="https"), FakeProvider("anthropic", scheme="https"),
              FakeProvider("mistral", scheme="https"))
    servers = [TlsServerThread(f, f.port, str(d / "cert.pem"), str(d / "key.pem"), alpn).start()
               for f, alpn in ((out.h2, ["h2", "http/1.1"]), (out.h1, ["http/1.1"]),
                               (out.forced, ["h2", "http/1.1"]))]
    yield out
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def tproxy(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, fakes: dict[str, FakeProvider],
           tls: Tls) -> ProxyProc:
    home = tmp_path_factory.mktemp("proxy-h2-home")
    settings = Settings(home=home, topic_prefix=f"test.{uuid.uuid4().hex[:10]}.", kafka_bootstrap=kafka_bootstrap,
                        topic_partitions=1, proxy_port=free_port())
    stack.create_topics(settings)
    token, _ = KeyStore(settings.config_path).create("proj-a", name="agent-from-key")
    env = {**proxy_env(settings, fakes), "AGENTTRACE_PROXY_CA_BUNDLE": tls.ca,
           "AGENTTRACE_PROXY_OPENAI_BASE_URL": tls.h2.url, "AGENTTRACE_PROXY_ANTHROPIC_BASE_URL": tls.h1.url,
           "AGENTTRACE_PROXY_MISTRAL_BASE_URL": tls.forced.url, "AGENTTRACE_PROXY_MISTRAL_HTTP2": "0"}
    log = home / "proxy.log"
    proc = start_proxy(settings, env, log)
    try:
        yield ProxyProc(settings, f"http://127.0.0.1:{settings.proxy_port}", token, log, proc)
    finally:
        proc.terminate()
        proc.wait(15)


def _client(base: str, agent: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=SECRETS["openai"], max_retries=0,
                         default_headers={"x-agenttrace-agent": agent}, **kw)


def _metric(proxy: ProxyProc, provider: str, protocol: str) -> float:
    want = f'proxy_upstream_responses_total{{protocol="{protocol}",provider="{provider}"}}'
    for line in httpx.get(proxy.url + "/metrics").text.splitlines():
        if line.startswith(want):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _headers(r: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in r.headers.items() if k != "date"]


def test_json_call_over_http2_same_as_direct(tproxy: ProxyProc, tls: Tls) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"authorization": f"Bearer {SECRETS['openai']}"}
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=tls.ca)) as direct_client:
        direct = direct_client.post(tls.h2.url + "/v1/chat/completions", json=body, headers=auth)
    assert direct.http_version == "HTTP/2"
    tls.h2.requests.clear()
    before = _metric(tproxy, "openai", "HTTP/2")
    # Connection-specific headers from the agent's HTTP/1.1 hop must not reach an HTTP/2 upstream.
    proxied = httpx.post(tproxy.url + "/v1/chat/completions", json=body,
                         headers={**auth, "keep-alive": "timeout=5", "connection": "keep-alive, keep-alive"})
    (seen,) = tls.h2.requests
    assert seen.http_version == "2" and seen.path == "/v1/chat/completions"
    assert not {"connection", "keep-alive", "transfer-encoding", "upgrade"} & {k for k, _ in seen.headers}
    assert (proxied.status_code, proxied.content) == (direct.status_code, direct.content)
    assert _headers(proxied) == _headers(direct)
    assert _metric(tproxy, "openai", "HTTP/2") == before + 1


def test_stream_over_http2_relayed_before_upstream_finishes(tproxy: ProxyProc, tls: Tls) -> None:
    tls.h2.gate.clear()
    tls.h2.requests.clear()
    body = {"model": "gated", "messages": [], "stream": True}
    expected = openai_stream("gated", "openai", include_usage=False)
    got = b""
    with httpx.stream("POST", tproxy.url + "/v1/chat/completions", json=body, timeout=20,
                      headers={"authorization": f"Bearer {SECRETS['openai']}"}) as r:
        chunks = r.iter_raw()
        while len(got) < len(expected[0]):
            got += next(chunks)
        # The fake holds the rest of its stream until the gate opens: chunk 1 reached us on its own.
        (seen,) = tls.h2.requests
        assert got == expected[0] and not seen.finished and seen.http_version == "2"
        tls.h2.gate.set()
        for chunk in chunks:
            got += chunk
    assert got == b"".join(expected) and seen.finished
    tls.h2.gate.clear()


def test_concurrent_calls_share_one_http2_connection(tproxy: ProxyProc, tls: Tls) -> None:
    tls.h2.gate.clear()
    tls.h2.requests.clear()
    n = 6
    client = _client(tproxy.url, "h2-concurrent")
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(client.chat.completions.create, model="hold", messages=[]) for _ in range(n)]
        deadline = time.monotonic() + 20
        while len(tls.h2.requests) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        in_flight = [s for s in tls.h2.requests if not s.finished]
        tls.h2.gate.set()
        answers = [f.result(timeout=20) for f in futures]
    assert len(in_flight) == n  # all n were open upstream at the same time...
    assert {s.http_version for s in in_flight} == {"2"}
    assert len({s.client for s in in_flight}) == 1  # ...on one connection
    assert all(a.usage.prompt_tokens == 12 for a in answers)
    tls.h2.gate.clear()


def test_http11_only_tls_upstream(tproxy: ProxyProc, tls: Tls) -> None:
    import anthropic

    tls.h1.requests.clear()
    agent = f"h1tls-{uuid.uuid4().hex[:6]}"
    c = anthropic.Anthropic(base_url=tproxy.url, api_key=SECRETS["anthropic"], max_retries=0,
                            default_headers={"x-agenttrace-agent": agent})
    kw = {"model": "claude-3-5-sonnet-latest", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    # The first call learns the server chose HTTP/1.1; later ones take the HTTP/1.1 keep-alive pool.
    first = c.messages.create(**kw)
    with c.messages.stream(**kw) as s:
        final = s.get_final_message()
    assert first.usage.output_tokens == final.usage.output_tokens == 7
    assert [s.http_version for s in tls.h1.requests] == ["1.1", "1.1"]
    assert _metric(tproxy, "anthropic", "HTTP/1.1") >= 2 and _metric(tproxy, "anthropic", "HTTP/2") == 0
    events = tproxy.events(agent, 2)
    assert sorted(e["stream"] for e in events) == [False, True]
    assert all(e["tokens_in"] == 35 and e["status_code"] == 200 for e in events)


def test_provider_forced_to_http11(tproxy: ProxyProc, tls: Tls) -> None:
    tls.forced.requests.clear()
    key = SECRETS["mistral"]  # a Mistral-shaped key routes to the Mistral base URL
    r = httpx.post(tproxy.url + "/v1/chat/completions", json={"model": "mistral-small-latest", "messages": []},
                   headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()["model"] == "mistral-small-latest"
    assert [s.http_version for s in tls.forced.requests] == ["1.1"]  # the server offered h2


def test_llm_call_event_same_over_http2_and_http11(tproxy: ProxyProc, tls: Tls, fakes: dict[str, FakeProvider]) -> None:
    events = {}
    for proto, target in (("h2", None), ("h1", fakes["openai"].url + "/v1")):
        agent = f"same-{proto}-{uuid.uuid4().hex[:6]}"
        c = _client(tproxy.url, agent)
        if target:  # the same proxy, this call to the plain-http fake
            c = c.with_options(default_headers={"x-agenttrace-agent": agent, "x-target-url": target})
        c.chat.completions.create(model="gpt-4o-mini", messages=[], extra_headers={"x-agenttrace-trace-id": "t-1"})
        list(c.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True,
                                       stream_options={"include_usage": True}))
        events[proto] = sorted(tproxy.events(agent, 2), key=lambda e: e["stream"])
    assert {s.http_version for s in tls.h2.requests} == {"2"}
    for h2_event, h1_event in zip(events["h2"], events["h1"], strict=True):
        assert {k: v for k, v in h2_event.items() if k not in VARYING} == \
               {k: v for k, v in h1_event.items() if k not in VARYING}
        assert h2_event["tokens_in"] == 12 and h2_event["cost_usd"] > 0


def test_errors_over_https_as_direct(tproxy: ProxyProc, tls: Tls) -> None:
    agent = f"h2err-{uuid.uuid4().hex[:6]}"
    errors = []
    for base in (None, tproxy.url):
        client = _client(base or tls.h2.url, agent,
                         **({"http_client": httpx.Client(http2=True, verify=ssl.create_default_context(cafile=tls.ca))} if base is None else {}))
        with pytest.raises(openai.RateLimitError) as exc:
            client.chat.completions.create(model="fail-429", messages=[])
        errors.append((exc.value.status_code, exc.value.body, exc.value.response.headers.get("retry-after")))
    assert errors[0] == errors[1] == (429, errors[0][1], "7")
    # An https upstream nobody listens on: the agent sees a connection error, as calling it directly.
    dead = f"https://127.0.0.1:{free_port()}/v1"
    c = _client(tproxy.url, agent).with_options(default_headers={"x-agenttrace-agent": agent, "x-target-url": dead})
    with pytest.raises(openai.APIConnectionError) as refused:
        c.chat.completions.create(model="gpt-4o", messages=[])
    assert not isinstance(refused.value, openai.APIStatusError)
    # The agent's own timeout fires as it would calling the provider directly.
    for base in (None, tproxy.url):
        client = _client(base or tls.h2.url, agent, timeout=0.5,
                         **({"http_client": httpx.Client(http2=True, verify=ssl.create_default_context(cafile=tls.ca))}
                            if base is None else {}))
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="slow", messages=[])
    events = sorted(tproxy.events(agent, 3), key=lambda e: e["status_code"])
    assert [(e["status_code"], e["error_type"]) for e in events] == [
        (429, "rate_limit_error"), (499, "client_disconnected"), (502, "upstream_connection_error")]


def test_no_key_leaks_over_http2(tproxy: ProxyProc) -> None:
    assert_no_secrets(tproxy)


async def test_untrusted_upstream_certificate_is_a_connection_error(tls: Tls) -> None:
    # Without the CA bundle the self-signed upstream is not trusted; with it the call goes through.
    from proxy.config import ProxySettings
    from proxy.upstream import UNREACHABLE, Upstreams

    url = tls.h2.url + "/v1/chat/completions"
    headers = [(b"content-type", b"application/json")]
    body = b'{"model":"gpt-4o-mini","messages":[]}'
    bare = Upstreams(ProxySettings(_env_file=None, ca_bundle=None))
    trusting = Upstreams(ProxySettings(_env_file=None, ca_bundle=tls.ca))
    try:
        with pytest.raises(UNREACHABLE):
            await bare.request("openai", "POST", url, headers, body)
        answer = await trusting.request("openai", "POST", url, headers, body)
        data = await answer.read()
        await answer.close()
        assert (answer.status, answer.protocol) == (200, "HTTP/2") and b'"prompt_tokens":12' in data
    finally:
        await bare.close()
        await trusting.close()


def _post(tls: Tls, model: str, **extra) -> tuple[str, list[tuple[bytes, bytes]], bytes]:
    body = {"model": model, "messages": [], **extra}
    import orjson

    return tls.h2.url + "/v1/chat/completions", [(b"content-type", b"application/json")], orjson.dumps(body)


async def test_large_request_body_respects_flow_control(tls: Tls) -> None:
    # 300 kB is several times the server's initial 64 kB window: the client must wait for WINDOW_UPDATEs.
    from proxy.config import ProxySettings
    from proxy.upstream import Upstreams

    up = Upstreams(ProxySettings(_env_file=None, ca_bundle=tls.ca))
    tls.h2.requests.clear()
    try:
        url, headers, body = _post(tls, "gpt-4o-mini", padding="x" * 300_000)
        answer = await up.request("openai", "POST", url, headers, body)
        assert (answer.status, answer.protocol) == (200, "HTTP/2") and b"chatcmpl-1" in await answer.read()
        await answer.close()
        assert tls.h2.requests[-1].body == body
    finally:
        await up.close()


async def test_read_timeout_over_http2(tls: Tls) -> None:
    from proxy.config import ProxySettings
    from proxy.upstream import TIMEOUTS, Upstreams

    up = Upstreams(ProxySettings(_env_file=None, ca_bundle=tls.ca, read_timeout=0.3))
    try:
        with pytest.raises(TIMEOUTS):
            await up.request("openai", "POST", *_post(tls, "slow"))
        # The connection survives a timed-out stream.
        answer = await up.request("openai", "POST", *_post(tls, "gpt-4o-mini"))
        assert answer.status == 200 and b"chatcmpl-1" in await answer.read()
        await answer.close()
    finally:
        await up.close()


async def test_abandoned_stream_is_cancelled_and_connection_reused(tls: Tls) -> None:
    from proxy.config import ProxySettings
    from proxy.upstream import Upstreams

    up = Upstreams(ProxySettings(_env_file=None, ca_bundle=tls.ca))
    tls.h2.gate.clear()
    tls.h2.requests.clear()
    try:
        answer = await up.request("openai", "POST", *_post(tls, "gated", stream=True))
        chunks = answer.chunks()
        assert b"chatcmpl-1" in await chunks.__anext__()
        await answer.close(abort=True)  # the agent went away mid-stream
        for _ in range(500):
            if tls.h2.requests[0].cancelled:
                break
            await asyncio.sleep(0.01)
        assert tls.h2.requests[0].cancelled  # the provider saw that stream cancelled (RST_STREAM)...
        tls.h2.gate.set()
        again = await up.request("openai", "POST", *_post(tls, "gpt-4o-mini"))
        assert again.status == 200 and b"chatcmpl-1" in await again.read()
        await again.close()
        first, second = tls.h2.requests
        assert first.client == second.client and not first.finished  # ...and the connection stayed
    finally:
        tls.h2.gate.clear()
        await up.close()


async def test_new_connection_after_upstream_restart(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> None:
    from proxy.config import ProxySettings
    from proxy.upstream import Upstreams

    d = Path(tls.ca).parent
    fake = FakeProvider("openai", scheme="https")
    up = Upstreams(ProxySettings(_env_file=None, ca_bundle=tls.ca))
    url = fake.url + "/v1/chat/completions"
    headers, body = [(b"content-type", b"application/json")], b'{"model":"gpt-4o-mini","messages":[]}'
    try:
        for _ in range(2):  # the same port, served by a fresh server each time
            server = TlsServerThread(fake, fake.port, str(d / "cert.pem"), str(d / "key.pem"), ["h2"]).start()
            try:
                answer = await up.request("openai", "POST", url, headers, body)
                assert (answer.status, answer.protocol) == (200, "HTTP/2") and b"chatcmpl-1" in await answer.read()
                await answer.close()
            finally:
                await asyncio.to_thread(server.stop)  # this loop must run to let its connections go
            # The proxy's loop notices the closed connection (blocked while stop() joined the server thread).
            for _ in range(500):
                if not any(up.h2.conns.values()):
                    break
                await asyncio.sleep(0.01)
        assert len({s.client for s in fake.requests}) == 2
    finally:
        await up.close()


async def test_end_of_stream_frame_is_not_relayed_as_a_chunk(tls: Tls) -> None:
    # hypercorn ends a stream with an empty DATA frame; relaying it as a chunk made the proxy check for a
    # departed agent after [DONE] and record a complete call as 499.
    from proxy.config import ProxySettings
    from proxy.upstream import Upstreams

    up = Upstreams(ProxySettings(_env_file=None, ca_bundle=tls.ca))
    try:
        answer = await up.request("openai", "POST", *_post(tls, "gpt-4o-mini", stream=True))
        chunks = [c async for c in answer.chunks()]
        await answer.close()
        assert b"".join(chunks) == b"".join(openai_stream("gpt-4o-mini", "openai", include_usage=False))
        assert all(chunks)
    finally:
        await up.close()


async def test_calls_beyond_the_stream_limit_open_another_connection(tls: Tls) -> None:
    from proxy.config import ProxySettings
    from proxy.upstream import Upstreams

    d = Path(tls.ca).parent
    fake = FakeProvider("openai", scheme="https")
    server = TlsServerThread(fake, fake.port, str(d / "cert.pem"), str(d / "key.pem"), ["h2"],
                             h2_max_concurrent_streams=2).start()
    up = Upstreams(ProxySettings(_env_file=None, ca_bundle=tls.ca))
    url, headers = fake.url + "/v1/chat/completions", [(b"content-type", b"application/json")]
    try:
        calls = [asyncio.ensure_future(up.request("openai", "POST", url, headers, b'{"model":"hold"}'))
                 for _ in range(5)]
        for _ in range(1000):
            if len(fake.requests) == 5:
                break
            await asyncio.sleep(0.01)
        in_flight = [s for s in fake.requests if not s.finished]
        fake.gate.set()
        for answer in await asyncio.gather(*calls):
            assert answer.status == 200 and b"chatcmpl-1" in await answer.read()
            await answer.close()
        assert len(in_flight) == 5  # all five at once, over ceil(5 / 2) connections
        assert sorted(Counter(s.client for s in in_flight).values()) == [1, 2, 2]
    finally:
        await up.close()
        await asyncio.to_thread(server.stop)  # this loop must run to let its connections go


async def test_answer_larger_than_the_receive_window(tls: Tls) -> None:
    # 20 MB through a 16 MB window: the relay's acknowledgements must let the server go on sending.
    from proxy.config import ProxySettings
    from proxy.upstream import Upstreams

    block = bytes(range(256)) * 4096  # 1 MiB

    async def big(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for _ in range(20):
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    d, port = Path(tls.ca).parent, free_port()
    server = TlsServerThread(big, port, str(d / "cert.pem"), str(d / "key.pem"), ["h2"]).start()
    up = Upstreams(ProxySettings(_env_file=None, ca_bundle=tls.ca))
    try:
        answer = await up.request("openai", "GET", f"https://127.0.0.1:{port}/big", [], b"")
        digest, total = hashlib.sha256(), 0
        async for chunk in answer.chunks():
            digest.update(chunk)
            total += len(chunk)
        await answer.close()
        assert (answer.protocol, total) == ("HTTP/2", 20 * len(block))
        assert digest.digest() == hashlib.sha256(block * 20).digest()
    finally:
        await up.close()
        await asyncio.to_thread(server.stop)  # this loop must run to let its connections go
