"""`agenttrace demo` against a running pipeline: a new user sees numbers, agents and rules."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx

from schemas.keys import KeyStore
from tests.e2e.pipeline import Pipeline
from tests.e2e.test_pipeline import STREAM_ENV
from tests.support import wait_for


def test_demo_fleet_shows_up_in_the_api(tmp_path, kafka_bootstrap):
    p = Pipeline(tmp_path, kafka_bootstrap, extra_env=STREAM_ENV)
    try:
        p.start()
        out = subprocess.run([sys.executable, "-m", "agenttrace.cli", "demo", "--agents", "6", "--minutes", "0.15"],
                             env=p.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        sent = dict(zip(("events", "heartbeats", "proxied"),
                        map(int, re.search(r"sent (\d+) events, (\d+) heartbeats, (\d+) proxied", out.stdout).groups()),
                        strict=True))
        assert sent["events"] > 0 and sent["proxied"] > 0 and sent["heartbeats"] >= 6
        api = httpx.Client(base_url=p.url("store"), headers=p.auth, timeout=10)
        window = {"from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                  "to": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
        # The demo key belongs to project "default"; ours to "e2e": nothing of the demo is visible to us.
        assert (api.get("/api/stats/summary", params=window).json().get("calls") or 0) == 0
        token, _ = KeyStore(p.settings.config_path).create("default", name="viewer")
        viewer = httpx.Client(base_url=p.url("store"), headers={"x-api-key": token}, timeout=10)
        calls = wait_for(lambda: (viewer.get("/api/stats/summary", params=window).json().get("calls") or 0)
                         >= sent["events"] * 0.5 and viewer.get("/api/stats/summary", params=window).json()["calls"],
                         timeout=60, interval=1, what="demo calls in the rollups")
        assert calls >= sent["proxied"]
        agents = viewer.get("/api/agents").json()["agents"]
        assert len({a["agent_id"] for a in agents}) >= 6
        rules = wait_for(lambda: viewer.get("/api/alerts").json()["alerts"], timeout=30, what="demo rules")
        assert {r["type"] for r in rules} == {"error_rate", "agent_down"}
    finally:
        p.stop_all()
