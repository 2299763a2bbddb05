"""Supervisor of several gateway worker processes (`AGENTTRACE_GATEWAY_WORKERS=N`).

Each worker listens on the gateway port with its own SO_REUSEPORT socket, so the kernel spreads new
connections over the workers. With uvicorn's `--workers` they shared one socket and the first worker
to wake accepted every pending connection: a few keep-alive clients often all landed on one worker
while the other stayed idle. The supervisor forwards SIGTERM/SIGINT, restarts a worker that dies, and
imports only the standard library (its memory counts in the gateway's RSS).

    python -m ingest.workers N
"""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

WORKER = [sys.executable, "-c", "from ingest.gateway import serve_worker; serve_worker()"]
GRACE_S = 30.0  # workers drain for up to 15 s (uvicorn's graceful shutdown) plus the producer flush
FAST_FAILS = 3  # a worker dying this many times in a row within STARTUP_S of its start stops the gateway
STARTUP_S = 5.0


def _log(level: str, msg: str, **fields: Any) -> None:
    line = {"level": level, "ts": datetime.now(UTC).isoformat(), "msg": msg, "caller": "ingest.workers", **fields}
    print(json.dumps(line), file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """In the forked worker: the kernel sends it SIGTERM when the supervisor dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Supervisor:
    def __init__(self, n: int):
        self.n = n
        self.procs: dict[int, subprocess.Popen] = {}
        self.started: dict[int, float] = {}
        self.fast_fails: dict[int, int] = {}
        self.stopping = False

    def start(self, i: int) -> None:
        # Own session: a terminal's Ctrl-C reaches the supervisor only, which forwards it once.
        self.procs[i] = subprocess.Popen(WORKER, start_new_session=True, preexec_fn=_die_with_parent)
        self.started[i] = time.monotonic()

    def stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for i in range(self.n):
            self.start(i)
        _log("info", "gateway workers started", workers=self.n, pids=[p.pid for p in self.procs.values()])
        while not self.stopping:
            time.sleep(0.2)
            for i, p in list(self.procs.items()):
                code = p.poll()
                if code is None or self.stopping:
                    continue
                quick = time.monotonic() - self.started[i] < STARTUP_S
                self.fast_fails[i] = self.fast_fails.get(i, 0) + 1 if quick else 0
                if self.fast_fails[i] >= FAST_FAILS:
                    _log("error", "gateway worker keeps failing at startup, stopping", worker=i, exit_code=code)
                    self.stop(signal.SIGTERM, None)
                    self.wait()
                    return 1
                _log("warning", "gateway worker exited, restarting", worker=i, exit_code=code)
                self.start(i)
        return self.wait()

    def wait(self) -> int:
        deadline = time.monotonic() + GRACE_S
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return 0


if __name__ == "__main__":
    sys.exit(Supervisor(int(sys.argv[1])).run())
