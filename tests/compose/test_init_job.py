"""The compose `init` job, run exactly as compose runs it, against the real broker, the real ClickHouse engine
(chDB in the job's own process) and a schema registry stand-in on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from agenttrace.stack import admin
from schemas.topics import CATALOGUE
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


class Registry:
    """Records schema registrations like Redpanda's schema registry answers them."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append((self.path, json.loads(body)))
                reply = json.dumps({"id": len(outer.posts)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry():
    r = Registry()
    yield r
    r.close()


def run_init(env: dict[str, str]) -> subprocess.CompletedProcess:
    service = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())["services"]["init"]
    assert service["entrypoint"] == ["sh", "-c"]
    return subprocess.run(["sh", "-c", service["command"][0]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def test_init_creates_topics_tables_key_and_schemas(tmp_path: Path, kafka_bootstrap: str, registry) -> None:
    prefix = f"test.init{os.getpid()}.{tmp_path.name[-6:]}."
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTTRACE_")}
    env.update({
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        "AGENTTRACE_HOME": str(tmp_path / "home"),
        "AGENTTRACE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AGENTTRACE_TOPIC_PREFIX": prefix,
        "AGENTTRACE_TOPIC_PARTITIONS": "2",
        "AGENTTRACE_CLICKHOUSE_URL": "",
        "AGENTTRACE_CLICKHOUSE_DIR": str(tmp_path / "chdb"),
        "AGENTTRACE_CLICKHOUSE_DATABASE": "init_test",
        "AGENTTRACE_SCHEMA_REGISTRY_URL": registry.url,
        "AGENTTRACE_GRAFANA_TOKEN_FILE": str(tmp_path / "secrets" / "grafana.token"),
    })
    first = run_init(env)
    assert first.returncode == 0, first.stdout + first.stderr
    topics = set(admin(kafka_bootstrap).list_topics(timeout=10).topics)
    assert {prefix + t.name for t in CATALOGUE} <= topics
    assert "clickhouse migrations applied: [1" in first.stdout
    token = (tmp_path / "secrets" / "grafana.token").read_text()
    assert token and token in first.stdout, "the key is printed once and handed to Grafana"
    subjects = sorted(path for path, _ in registry.posts)
    assert subjects == sorted(f"/subjects/{prefix}{t}-value/versions" for t in
                              ("agenttrace.events.v1", "agenttrace.rollups.v1", "agenttrace.alerts.v1",
                               "agenttrace.alert-rules.v1"))
    for _, body in registry.posts:
        assert body["schemaType"] == "JSON" and json.loads(body["schema"])["title"].startswith("agenttrace.")

    # Compose runs it on every start: the second run changes nothing and issues no second key.
    second = run_init(env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "created topics: none" in second.stdout and "migrations applied: none" in second.stdout
    assert "API keys exist already" in second.stdout
    assert (tmp_path / "secrets" / "grafana.token").read_text() == token
    check = subprocess.run(
        [sys.executable, "-c", "from agenttrace.clickhouse import connect; from schemas.settings import Settings; "
         "import json; c = connect(Settings()); "
         "print(json.dumps(sorted(r['name'] for r in c.query('SHOW TABLES FROM init_test'))))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert {"events", "spans", "scores", "rollups_1m", "alerts", "agents", "alert_rules"} <= set(
        json.loads(check.stdout.strip().splitlines()[-1]))
