"""`agenttrace up`: broker, key, then every service as a supervised child process."""

from __future__ import annotations

import argparse
import importlib.util
import signal
import subprocess
import sys
import time

from agenttrace import stack
from schemas.keys import KeyStore
from schemas.settings import Settings


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run(settings: Settings, args: argparse.Namespace) -> int:
    keys = KeyStore(settings.config_path)
    if args.reset_token:
        print(f"new API key for project 'default':\n{keys.reset_default()}")
        return 0
    try:
        stack.up(settings)
    except stack.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    token = keys.ensure_default()
    print(f"kafka broker  {settings.kafka_bootstrap}")
    print(f"clickhouse    {settings.clickhouse_url or settings.clickhouse_path}")
    if token:
        print(f"API key (shown once, saved hashed in {settings.config_path}):\n  {token}")
    services = [("gateway", "ingest.gateway", ["ingest"], settings.gateway_port),
                ("streams", "streams.runner", ["stream"], settings.stream_metrics_port),
                ("sinks+api", "api.app", ["api", "--with-sinks"], settings.api_port)]
    if not args.no_proxy:
        services.insert(1, ("proxy", "proxy.server", ["proxy"], settings.proxy_port))
    procs: list[tuple[str, subprocess.Popen]] = []
    for name, module, cmd, port in services:
        if not _available(module):
            continue
        procs.append((name, subprocess.Popen([sys.executable, "-m", "agenttrace.cli", *cmd])))
        print(f"{name:<13} http://{settings.host}:{port}")
    print("running; Ctrl-C stops everything")
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            for name, p in procs:
                if p.poll() is not None:
                    print(f"{name} exited with {p.returncode}", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    finally:
        # Services stop first so they flush what they accepted while the broker is still up.
        for _, p in procs:
            p.send_signal(signal.SIGTERM)
        for _, p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        stack.down(settings)
        print("stopped")
    return 0
