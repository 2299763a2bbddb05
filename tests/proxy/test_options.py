"""Opt-in behaviours (include_usage, body capture) and identity from AgentTrace keys, on an in-process proxy."""

from __future__ import annotations

import openai
import orjson

from proxy.config import ProxySettings
from schemas.keys import KeyStore
from schemas.settings import Settings
from tests.proxy.conftest import SECRETS, in_process_proxy, topic_events
from tests.proxy.fakes import FakeProvider, ServerThread
from tests.support import free_port


def test_include_usage_capture_and_identity(kafka_settings: Settings) -> None:
    fake = FakeProvider("openai")
    server = ServerThread(fake, fake.port).start()
    settings = kafka_settings.model_copy(update={"proxy_port": free_port()})
    token, _ = KeyStore(settings.config_path).create("proj-b", name="key-agent")
    ps = ProxySettings(openai_base_url=fake.url, openai_include_usage=True, capture_bodies=True, capture_max_bytes=40)
    app, proxy = in_process_proxy(settings, ps)
    try:
        base = f"http://127.0.0.1:{settings.proxy_port}/v1"
        # 1. stream without usage: the proxy asks for it (configured) and records real tokens
        c = openai.OpenAI(base_url=base, api_key=SECRETS["openai"], max_retries=0,
                          default_headers={"x-agenttrace-key": token})
        list(c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 100}],
                                       stream=True))
        sent = orjson.loads(fake.requests[-1].body)
        assert sent["stream_options"] == {"include_usage": True}
        # 2. no key: default project and agent
        openai.OpenAI(base_url=base, api_key=SECRETS["openai"], max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[])
        # 3. an invalid key is not trusted: default project, flagged
        openai.OpenAI(base_url=base, api_key=SECRETS["openai"], max_retries=0,
                      default_headers={"x-agenttrace-key": "sk-at-forged"}).chat.completions.create(
            model="gpt-4o-mini", messages=[])
        first, second, third = sorted(topic_events(settings, 3), key=lambda e: e["timestamp"])
    finally:
        proxy.stop()
        server.stop()
    assert (first["project_id"], first["agent_id"]) == ("proj-b", "key-agent")
    assert (first["tokens_in"], first["tokens_out"], first["tokens_cached"]) == (12, 5, 4)
    req, resp = first["metadata"]["request_body"], first["metadata"]["response_body"]
    assert len(req) == 40 and req.startswith('{"') and len(resp) == 40 and resp.startswith("data: ")
    assert (second["project_id"], second["agent_id"]) == ("default", "default")
    assert (third["project_id"], third["metadata"]["agenttrace_key"]) == ("default", "invalid")


def test_bodies_not_captured_by_default(kafka_settings: Settings) -> None:
    fake = FakeProvider("anthropic")
    server = ServerThread(fake, fake.port).start()
    settings = kafka_settings.model_copy(update={"proxy_port": free_port()})
    app, proxy = in_process_proxy(settings, ProxySettings(anthropic_base_url=fake.url))
    try:
        import anthropic

        anthropic.Anthropic(base_url=f"http://127.0.0.1:{settings.proxy_port}", api_key=SECRETS["anthropic"],
                            max_retries=0).messages.create(model="claude-3-5-sonnet-latest", max_tokens=5,
                                                           messages=[{"role": "user", "content": "secret prompt"}])
        (event,) = topic_events(settings, 1)
    finally:
        proxy.stop()
        server.stop()
    assert event["tokens_in"] == 35 and "metadata" not in event or not event["metadata"]
    assert "secret prompt" not in orjson.dumps(event).decode() and "Hello there" not in orjson.dumps(event).decode()
