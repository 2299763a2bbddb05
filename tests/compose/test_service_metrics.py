"""Every metric the pipeline dashboard and the Prometheus rules query is really exposed: the five services are
started as compose starts them (`agenttrace <command>`, real broker, chDB) and their /metrics are read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

from agenttrace.kafka import event_record
from dashboards.metric_catalogue import EXTERNAL, SERVICES, base_name
from schemas.events import parse_event
from schemas.normalize import normalize_event
from schemas.settings import Settings
from schemas.topics import EVENTS
from tests.compose.test_prometheus import dashboard_exprs, metric_names, rule_exprs
from tests.support import free_port

# compose service -> (CLI command, the Settings field of the port serving /metrics)
COMMANDS = {"gateway": ("ingest", "gateway_port"), "proxy": ("proxy", "proxy_port"), "api": ("api", "api_port"),
            "streams": ("stream", "stream_metrics_port"), "sinks": ("sink", "sink_metrics_port")}


def exposed_names(text: str) -> set[str]:
    names = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))
    names |= {m for m in re.findall(r"^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", text, flags=re.M)}
    return names


def publish_events(bootstrap: str, topic: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(n):
        event = normalize_event(parse_event({
            "type": "llm_call", "agent_id": f"agent-{i % 3}", "provider": "openai", "model": "gpt-4o-mini",
            "tokens_in": 100, "tokens_out": 20, "latency_ms": 250.0, "status_code": 200,
            "timestamp": datetime.now(UTC).isoformat()}), "default")
        key, value, headers = event_record(event)
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str):
    """/metrics text of each running service."""
    from agenttrace.stack import create_topics

    tmp = tmp_path_factory.mktemp("services")
    prefix = f"test.metrics{os.getpid()}."
    create_topics(Settings(topic_prefix=prefix, kafka_bootstrap=kafka_bootstrap, topic_partitions=2))
    procs: dict[str, subprocess.Popen] = {}
    ports: dict[str, int] = {}
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTTRACE_")}
    try:
        for service, (command, port_field) in COMMANDS.items():
            ports[service] = free_port()
            env = {**base, "AGENTTRACE_HOME": str(tmp / service), "AGENTTRACE_KAFKA_BOOTSTRAP": kafka_bootstrap,
                   "AGENTTRACE_TOPIC_PREFIX": prefix, "AGENTTRACE_CLICKHOUSE_URL": "",
                   "AGENTTRACE_CLICKHOUSE_DIR": str(tmp / service / "chdb"), "AGENTTRACE_LOG_LEVEL": "warning",
                   # Every other port of the process is free too, so nothing collides with the dev stack.
                   **{f"AGENTTRACE_{f.upper()}": str(free_port()) for _, f in COMMANDS.values()},
                   f"AGENTTRACE_{port_field.upper()}": str(ports[service])}
            procs[service] = subprocess.Popen(
                [str(Path(sys.executable).parent / "agenttrace"), command], env=env,
                stdout=subprocess.DEVNULL, stderr=open(tmp / f"{service}.log", "wb"))
        # Some series appear once there is work (consumer lag after the first commit): give them events.
        publish_events(kafka_bootstrap, prefix + EVENTS, 20)
        texts: dict[str, str] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for service, proc in procs.items():
                if proc.poll() is not None:
                    continue
                try:
                    r = httpx.get(f"http://127.0.0.1:{ports[service]}/metrics", timeout=2)
                    if r.status_code == 200:
                        texts[service] = r.text
                except httpx.HTTPError:
                    pass
            complete = [s for s in texts if set(SERVICES[s]) <= exposed_names(texts[s])]
            if all(s in complete or procs[s].poll() is not None for s in procs):
                break
            time.sleep(1)
        errors = {s: (tmp / f"{s}.log").read_text()[-2000:] for s in procs if s not in texts}
        yield texts, errors
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("service", list(COMMANDS))
def test_service_serves_every_catalogued_metric(scraped, service: str) -> None:
    texts, errors = scraped
    assert service in texts, f"{service} did not serve /metrics:\n{errors.get(service, '')}"
    missing = set(SERVICES[service]) - exposed_names(texts[service])
    assert not missing, f"{service} does not expose {sorted(missing)}"


def test_every_queried_metric_is_served_by_a_service(scraped) -> None:
    texts, _ = scraped
    served = set().union(*(exposed_names(t) for t in texts.values()))
    queried = {base_name(n) for e in {**rule_exprs(), **dashboard_exprs()}.values() for n in metric_names(e)}
    assert queried - set(EXTERNAL) - served == set()


def test_histogram_queries_hit_histograms(scraped) -> None:
    texts, _ = scraped
    types: dict[str, set[str]] = {}
    for text in texts.values():
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, flags=re.M):
            types.setdefault(name, set()).add(kind)
    buckets = {n[: -len("_bucket")] for e in {**rule_exprs(), **dashboard_exprs()}.values()
               for n in metric_names(e) if n.endswith("_bucket")}
    assert buckets, "the dashboard computes quantiles from histograms"
    for base in buckets:
        assert types.get(base) == {"histogram"}, f"{base} is {types.get(base)}, histogram_quantile needs a histogram"
