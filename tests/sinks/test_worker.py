"""`agenttrace sink` as a process: health and metrics on its port, graceful stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from agenttrace.kafka import event_record
from schemas.events import LlmCall
from schemas.topics import EVENTS
from tests.sinks.helpers import now_minus, produce
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def test_sink_worker_serves_health_and_metrics(kafka_settings, tmp_path):
    port = free_port()
    env = {**os.environ, "AGENTTRACE_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
           "AGENTTRACE_TOPIC_PREFIX": kafka_settings.topic_prefix, "AGENTTRACE_HOME": str(tmp_path / "home"),
           "AGENTTRACE_CLICKHOUSE_DIR": str(tmp_path / "ch"), "AGENTTRACE_CLICKHOUSE_URL": "",
           "AGENTTRACE_SINK_METRICS_PORT": str(port), "AGENTTRACE_SINK_BATCH_SECONDS": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "agenttrace.cli", "sink"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(base + "/readyz")[0] == 200, timeout=30, what="ready")
        produce(kafka_settings, EVENTS, [event_record(LlmCall(agent_id="w", project_id="p", tokens_in=1,
                                                              timestamp=now_minus(0)))[:2] for _ in range(3)])
        wait_for(lambda: 'clickhouse_insert_rows_total{table="events"} 3.0' in get(base + "/metrics")[1],
                 timeout=30, what="insert counted")
        wait_for(lambda: "kafka_consumer_lag{" in get(base + "/metrics")[1], timeout=10, what="lag gauge")
        metrics = get(base + "/metrics")[1]
        for name in ("clickhouse_insert_duration_seconds_bucket", "clickhouse_insert_batch_rows_bucket",
                     "worker_jobs_processed_total", "kafka_consumer_lag", "worker_queue_depth"):
            assert name in metrics, name
        assert get(base + "/version")[0] == 200 and get(base + "/livez")[0] == 200
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        assert rc == 0, proc.stderr.read()[-3000:]
        assert '"msg": "consuming"' in proc.stderr.read().replace('":"', '": "')
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
