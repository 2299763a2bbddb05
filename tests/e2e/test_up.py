"""`agenttrace up` as a user runs it: everything starts, prints its key, answers; Ctrl-C stops every
process it started (no orphans), and what was acknowledged is still there after the next `up`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.support import free_port, wait_for


def descendants(pid: int) -> set[int]:
    out, frontier = set(), [pid]
    while frontier:
        p = frontier.pop()
        try:
            kids = {int(k) for k in Path(f"/proc/{p}/task/{p}/children").read_text().split()}
        except OSError:
            kids = set()
        out |= kids
        frontier += list(kids)
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def start_up(env: dict[str, str]) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "agenttrace.cli", "up", "--no-open"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 180
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.startswith("running;"):
            return proc, lines
    proc.kill()
    raise AssertionError("agenttrace up did not come up:\n" + "\n".join(lines[-50:]))


def test_up_runs_everything_and_ctrl_c_stops_everything(tmp_path):
    kport = free_port()
    ports = {"AGENTTRACE_GATEWAY_PORT": free_port(), "AGENTTRACE_API_PORT": free_port(),
             "AGENTTRACE_PROXY_PORT": free_port(), "AGENTTRACE_STREAM_METRICS_PORT": free_port(),
             "AGENTTRACE_SINK_METRICS_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTTRACE_")}
    env.update({k: str(v) for k, v in ports.items()})
    env.update({"AGENTTRACE_HOME": str(tmp_path / "home"), "AGENTTRACE_KAFKA_PORT": str(kport),
                "AGENTTRACE_KAFKA_CONTROLLER_PORT": str(free_port()), "AGENTTRACE_KAFKA_BOOTSTRAP": f"127.0.0.1:{kport}",
                "AGENTTRACE_STREAM_WINDOW_SECONDS": "5", "AGENTTRACE_STREAM_WAIT_SECONDS": "1"})
    gateway = f"http://127.0.0.1:{ports['AGENTTRACE_GATEWAY_PORT']}"
    api = f"http://127.0.0.1:{ports['AGENTTRACE_API_PORT']}"
    window = {"from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
              "to": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}

    proc, lines = start_up(env)
    try:
        token = next(m.group(0) for line in lines if (m := re.search(r"sk-at-[A-Za-z0-9_-]+", line)))
        for name in ("gateway", "proxy", "streams", "sinks+api"):
            assert any(line.startswith(f"✓ {name}") for line in lines), lines
        auth = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{api}/", timeout=5).status_code == 200  # the overview page
        events = [{"event_type": "llm_call", "agent_id": "up-test", "provider": "openai", "model": "gpt-4o-mini",
                   "tokens_in": 10, "tokens_out": 5, "status_code": 200} for _ in range(30)]
        assert httpx.post(f"{gateway}/api/events", json={"events": events}, headers=auth, timeout=10).status_code == 200
        children = descendants(proc.pid)
        assert len(children) >= 5  # four services and the broker
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
    time.sleep(0.5)
    assert not [pid for pid in children if alive(pid)], "orphan processes after Ctrl-C"
    assert not (tmp_path / "home" / "kafka" / "broker.pid").exists()

    # The next `up` still has every acknowledged event: a second key prints nothing new, use the first.
    proc, lines = start_up(env)
    try:
        assert not any("sk-at-" in line for line in lines)  # the key is generated once
        got = wait_for(lambda: httpx.get(f"{api}/api/stats/summary", params=window, headers=auth, timeout=10)
                       .json().get("calls") == 30, timeout=90, interval=1, what="30 calls after restart")
        assert got
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
