"""The gateway as a real server process on loopback, against the test's own topics."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from schemas.keys import KeyStore
from schemas.settings import Settings
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class GatewayProc:
    settings: Settings
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None
    keys: KeyStore = field(init=False)

    def __post_init__(self) -> None:
        self.keys = KeyStore(self.settings.config_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "agenttrace.cli", "ingest"], env=self.env, cwd=ROOT,
                                     stdout=out, stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/livez", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, what="gateway /livez")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def key(self, project: str = "p1", rate_limit: int | None = None) -> str:
        token, _ = self.keys.create(project, name="test", rate_limit_per_minute=rate_limit)
        return token


def gateway_env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTTRACE_")}
    env.update({
        "AGENTTRACE_HOME": str(settings.home_dir), "AGENTTRACE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "AGENTTRACE_TOPIC_PREFIX": settings.topic_prefix, "AGENTTRACE_GATEWAY_PORT": str(port),
        "AGENTTRACE_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


def make_gateway(settings: Settings, **extra: str) -> GatewayProc:
    port = free_port()
    return GatewayProc(settings, port, gateway_env(settings, port, **extra), settings.home_dir / "gateway.log")


@pytest.fixture
def gateway(kafka_settings: Settings) -> Iterator[GatewayProc]:
    gw = make_gateway(kafka_settings)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()
