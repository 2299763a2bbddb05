"""Several gateway workers: connections spread over them, a dead worker is replaced, stop leaves none behind."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx

from schemas.settings import Settings
from schemas.topics import EVENTS
from tests.ingest.conftest import make_gateway
from tests.support import read_topic, wait_for


def _workers(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _server_side_connections(port: int, state: str = "01") -> set[str]:
    """Socket inodes on the gateway's port: established connections' server side (01) or listeners (0A)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == state:
                inodes.add(f[9])
    return inodes


def _owned(pid: int, inodes: set[str]) -> int:
    n = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        n += target.startswith("socket:[") and target[8:-1] in inodes
    return n


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _two_workers(settings: Settings) -> tuple:
    """A gateway started with two workers, once both run: (gateway, worker pids)."""
    gw = make_gateway(settings, AGENTTRACE_GATEWAY_WORKERS="2")
    gw.start()
    assert gw.proc is not None
    try:
        wait_for(lambda: len(_workers(gw.proc.pid)) == 2, timeout=20, what="two workers")
    except BaseException:
        gw.stop()
        raise
    return gw, _workers(gw.proc.pid)


def test_workers_share_connections_restart_and_stop(kafka_settings: Settings):
    gw, workers = _two_workers(kafka_settings)
    try:
        # Each worker listens on the port with a socket of its own.
        wait_for(lambda: all(_owned(w, _server_side_connections(gw.port, "0A")) == 1 for w in workers), timeout=30,
                 what="every worker listening")
        # 16 keep-alive connections: each worker accepts some (all on one: odds 2 in 65536).
        conns = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(16)]
        try:
            def per_worker() -> dict[int, int]:
                inodes = _server_side_connections(gw.port)
                return {w: _owned(w, inodes) for w in workers}

            wait_for(lambda: sum(per_worker().values()) == 16, timeout=10, what="16 accepted connections")
            assert all(per_worker().values()), per_worker()
        finally:
            for c in conns:
                c.close()

        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: len(_workers(gw.proc.pid)) == 2 and workers[0] not in _workers(gw.proc.pid), timeout=20,
                 what="a replacement worker")
        h = {"x-api-key": gw.key("p1")}

        def accepted() -> bool:
            try:
                r = httpx.post(f"{gw.url}/api/events", json={"events": [{"agent_id": "a", "type": "heartbeat"}]},
                               headers=h, timeout=5)
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        wait_for(accepted, timeout=30, what="events accepted after the restart")
        for _ in range(5):  # fresh connections, served by either worker
            assert accepted()
        assert len(read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(EVENTS), expect=6)) == 6
        current = _workers(gw.proc.pid)
    finally:
        gw.stop()
    assert gw.proc.returncode == 0
    assert not any(_alive(w) for w in current)


def test_workers_exit_when_the_supervisor_is_killed(kafka_settings: Settings):
    gw, workers = _two_workers(kafka_settings)
    try:
        gw.proc.kill()
        gw.proc.wait()
        wait_for(lambda: not any(_alive(w) for w in workers), timeout=30, what="orphaned workers to exit")
    finally:
        gw.stop()
