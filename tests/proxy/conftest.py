"""Fixtures of the proxy tests: the five fake providers and a proxy process pointed at them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from agenttrace import stack
from schemas.keys import KeyStore
from schemas.settings import Settings
from schemas.topics import EVENTS
from tests.proxy.fakes import FakeProvider, ServerThread
from tests.support import free_port, read_topic

PROVIDERS = ("openai", "anthropic", "google", "mistral", "cohere")
# Provider keys the tests send; none of them may ever show up in an event, a log line or a metric.
SECRETS = {
    "openai": "sk-proj-SECRETopenaiKEY0000000000000001",
    "anthropic": "sk-ant-api03-SECRETanthropicKEY000000002",
    "google": "AIzaSyDSECRETgoogleKEY00000000000000003",
    "mistral": "SECRETmistralKEY0000000000000004",  # 32 alphanumerics, like a real Mistral key
    "cohere": "SECRETcohereKEY00000000000000000000005",
}


@pytest.fixture(scope="module")
def fakes() -> dict[str, FakeProvider]:
    out = {p: FakeProvider(p) for p in PROVIDERS}
    servers = [ServerThread(f, f.port).start() for f in out.values()]
    yield out
    for s in servers:
        s.stop()


@dataclass
class ProxyProc:
    settings: Settings
    url: str
    token: str  # AgentTrace key of project "proj-a", key name "agent-from-key"
    log: Path
    proc: subprocess.Popen

    def events(self, agent: str, count: int, timeout: float = 20.0) -> list[dict]:
        """The llm_call events of one agent id, waiting until `count` are there."""
        deadline = time.monotonic() + timeout
        found: list[dict] = []
        while time.monotonic() < deadline:
            msgs = read_topic(self.settings.kafka_bootstrap, self.settings.topic(EVENTS), timeout=5)
            found = [d for d in (orjson.loads(m.value()) for m in msgs) if d.get("agent_id") == agent]
            if len(found) >= count:
                return found
            time.sleep(0.3)
        raise AssertionError(f"expected {count} events of {agent}, found {len(found)}")

    def raw_topic(self) -> list[bytes]:
        msgs = read_topic(self.settings.kafka_bootstrap, self.settings.topic(EVENTS), timeout=5)
        return [m.value() + (m.key() or b"") + repr(m.headers()).encode() for m in msgs]


def proxy_env(settings: Settings, fakes: dict[str, FakeProvider], **extra: str) -> dict[str, str]:
    env = {**os.environ, "AGENTTRACE_HOME": str(settings.home_dir), "AGENTTRACE_TOPIC_PREFIX": settings.topic_prefix,
           "AGENTTRACE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "AGENTTRACE_PROXY_PORT": str(settings.proxy_port),
           "AGENTTRACE_LOG_LEVEL": "debug", **extra}
    for p, fake in fakes.items():
        env[f"AGENTTRACE_PROXY_{p.upper()}_BASE_URL"] = fake.url
    return env


def start_proxy(settings: Settings, env: dict[str, str], log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "agenttrace.cli", "proxy"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
    url = f"http://127.0.0.1:{settings.proxy_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("proxy did not become ready")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, fakes: dict[str, FakeProvider]) -> ProxyProc:
    home = tmp_path_factory.mktemp("proxy-home")
    settings = Settings(home=home, topic_prefix=f"test.{uuid.uuid4().hex[:10]}.", kafka_bootstrap=kafka_bootstrap,
                        topic_partitions=3, proxy_port=free_port())
    stack.create_topics(settings)
    token, _ = KeyStore(settings.config_path).create("proj-a", name="agent-from-key")
    log = home / "proxy.log"
    proc = start_proxy(settings, proxy_env(settings, fakes), log)
    try:
        yield ProxyProc(settings, f"http://127.0.0.1:{settings.proxy_port}", token, log, proc)
    finally:
        proc.terminate()
        proc.wait(15)


def assert_no_secrets(proxy: ProxyProc) -> None:
    """No provider key (nor the AgentTrace key) in any event, log line or metric."""
    haystacks = {"topic": b"\n".join(proxy.raw_topic()), "log": proxy.log.read_bytes(),
                 "metrics": httpx.get(proxy.url + "/metrics").content}
    assert haystacks["topic"] and haystacks["log"] and haystacks["metrics"]
    for where, data in haystacks.items():
        for secret in (*SECRETS.values(), proxy.token):
            assert secret.encode() not in data, f"a key leaked into the {where}"


def in_process_proxy(settings: Settings, ps: Any) -> tuple[Any, ServerThread]:
    """The proxy app served by uvicorn (httptools, lifespan on) in a thread of this process."""
    from proxy.server import create_app

    app = create_app(settings, ps)
    return app, ServerThread(app, settings.proxy_port, lifespan="on", http="httptools").start()


def topic_events(settings: Settings, count: int, timeout: float = 30.0) -> list[dict]:
    msgs = read_topic(settings.kafka_bootstrap, settings.topic(EVENTS), expect=count, timeout=timeout)
    return [orjson.loads(m.value()) for m in msgs]
