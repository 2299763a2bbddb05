"""`agenttrace up`: broker, API key, then every service as a supervised child process.

Children get the same AGENTTRACE_* environment. Ctrl-C (or SIGTERM) stops the services first,
so they flush what they accepted while the broker is still up, then the broker.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import webbrowser

import httpx

from agenttrace import stack
from schemas.keys import KeyStore
from schemas.settings import Settings


def services(settings: Settings, with_proxy: bool) -> list[tuple[str, list[str], int]]:
    out = [("gateway", ["ingest"], settings.gateway_port),
           ("proxy", ["proxy"], settings.proxy_port),
           ("streams", ["stream"], settings.stream_metrics_port),
           # chDB: the ClickHouse writers (sinks) and readers (API) share one process.
           ("sinks+api", ["api", "--with-sinks"], settings.api_port)]
    return [s for s in out if with_proxy or s[0] != "proxy"]


def wait_ready(settings: Settings, name: str, port: int, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    url = f"http://{settings.host}:{port}/readyz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def stop_all(procs: list[tuple[str, subprocess.Popen]], timeout: float = 30.0) -> None:
    for _, p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name, p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in {timeout:.0f}s; killing it", file=sys.stderr)
            p.kill()
            p.wait()


def run(settings: Settings, args: argparse.Namespace) -> int:
    keys = KeyStore(settings.config_path)
    if args.reset_token:
        print(f"new API key for project 'default' (shown once):\n  {keys.reset_default()}")
        return 0
    try:
        stack.up(settings, progress=lambda m: print(f"· {m}", flush=True))
    except stack.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    token = keys.ensure_default()
    print(f"✓ kafka broker  {settings.kafka_bootstrap}  (data {stack.paths(settings).data})")
    print(f"✓ clickhouse    {settings.clickhouse_url or f'embedded chDB at {settings.clickhouse_path}'}")
    procs: list[tuple[str, subprocess.Popen]] = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        for name, cmd, _port in services(settings, not args.no_proxy):
            procs.append((name, subprocess.Popen([sys.executable, "-m", "agenttrace.cli", *cmd])))
        for (name, proc), (_, _, port) in zip(procs, services(settings, not args.no_proxy), strict=True):
            print(f"· waiting for {name} ...", flush=True)
            if stopping:
                break
            if not wait_ready(settings, name, port, proc):
                print(f"error: {name} did not become ready (exit code {proc.poll()}); see its log above", file=sys.stderr)
                code = 1
                stopping = True
                break
            print(f"✓ {name:<13} http://{settings.host}:{port}", flush=True)
        if not stopping:
            overview = f"http://{settings.host}:{settings.api_port}/"
            if token:
                print(f"\nAPI key for project 'default' (shown once; stored hashed in {settings.config_path}):\n  {token}")
            print(f"\noverview page  {overview}\nLLM proxy      OPENAI_BASE_URL=http://{settings.host}:{settings.proxy_port}/v1")
            print("running; Ctrl-C stops everything", flush=True)
            if not args.no_open:
                webbrowser.open(overview)
        while not stopping:
            for name, p in procs:
                if p.poll() is not None:
                    print(f"error: {name} exited with code {p.returncode}", file=sys.stderr)
                    code = 1
                    stopping = True
            time.sleep(0.5)
    finally:
        print("stopping services ...", flush=True)
        stop_all(procs)
        stack.down(settings)
        print("stopped")
    return code
