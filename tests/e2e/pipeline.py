"""The whole pipeline as separate OS processes, started through the real CLI, for end-to-end and fault tests.

Every process gets the same AGENTTRACE_* environment: its own home, topic prefix, ClickHouse
database and chDB directory, and free ports. Each one can be killed and restarted on its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agenttrace import stack
from schemas.keys import KeyStore
from schemas.settings import Settings
from tests.support import free_port

SERVICES = {
    "gateway": (["ingest"], "gateway_port"),
    "proxy": (["proxy"], "proxy_port"),
    "streams": (["stream"], "stream_metrics_port"),
    "store": (["api", "--with-sinks"], "api_port"),  # sinks + api share embedded chDB
}


@dataclass
class Pipeline:
    root: Path
    bootstrap: str
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.settings = Settings(
            home=self.root / "home", kafka_bootstrap=self.bootstrap, topic_prefix=f"e2e.{tag}.",
            clickhouse_database=f"e2e_{tag}", clickhouse_dir=self.root / "chdb", topic_partitions=3,
            gateway_port=free_port(), api_port=free_port(), proxy_port=free_port(),
            stream_metrics_port=free_port(), sink_metrics_port=free_port(),
        )
        self.settings.home_dir.mkdir(parents=True, exist_ok=True)
        # A key without the default per-key rate limit: these tests send load on purpose.
        self.token, _ = KeyStore(self.settings.config_path).create("e2e", name="e2e", rate_limit_per_minute=10**9)
        stack.create_topics(self.settings)
        self.logs = self.root / "logs"
        self.logs.mkdir(exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update({
            "AGENTTRACE_HOME": str(s.home_dir), "AGENTTRACE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "AGENTTRACE_TOPIC_PREFIX": s.topic_prefix, "AGENTTRACE_TOPIC_PARTITIONS": str(s.topic_partitions),
            "AGENTTRACE_CLICKHOUSE_DATABASE": s.clickhouse_database, "AGENTTRACE_CLICKHOUSE_DIR": str(s.clickhouse_path),
            "AGENTTRACE_GATEWAY_PORT": str(s.gateway_port), "AGENTTRACE_API_PORT": str(s.api_port),
            "AGENTTRACE_PROXY_PORT": str(s.proxy_port), "AGENTTRACE_STREAM_METRICS_PORT": str(s.stream_metrics_port),
            "AGENTTRACE_SINK_METRICS_PORT": str(s.sink_metrics_port), "AGENTTRACE_CLICKHOUSE_URL": "",
        })
        env.update(self.extra_env)
        return env

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{getattr(self.settings, SERVICES[service][1])}"

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def start(self, *names: str, timeout: float = 90.0) -> None:
        for name in names or tuple(SERVICES):
            cmd, _ = SERVICES[name]
            log = open(self.logs / f"{name}.log", "ab")
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "agenttrace.cli", *cmd], env=self.env,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for name in names or tuple(SERVICES):
            self.wait_ready(name, timeout)

    def wait_ready(self, name: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                if httpx.get(f"{self.url(name)}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{name} not ready after {timeout}s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, n: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=60)

    def restart(self, name: str) -> None:
        self.start(name)

    def query_store(self, *queries: str) -> list[list[dict]]:
        """Run queries (`{db}` = this pipeline's database) on the store's ClickHouse from a process of
        its own: chDB admits one process per data directory, so stop the store process first."""
        script = ("import json, sys\nfrom pathlib import Path\n"
                  "from agenttrace.clickhouse import ChdbClient, close_embedded\n"
                  "path, db, *queries = json.loads(sys.stdin.read())\n"
                  "c = ChdbClient(Path(path), db)\n"
                  "print(json.dumps([c.query(q.replace('{db}', db)) for q in queries]))\n"
                  "close_embedded()\n")
        doc = [str(self.settings.clickhouse_path), self.settings.clickhouse_database, *queries]
        out = subprocess.run([sys.executable, "-c", script], input=json.dumps(doc), capture_output=True, text=True,
                             timeout=300)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)
