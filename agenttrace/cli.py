"""`agenttrace` command line. Each service lives in its own package; this only parses and dispatches."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from schemas.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    # Command-line options override the environment the same way AGENTTRACE_* variables do.
    for opt, env in (("port", "AGENTTRACE_GATEWAY_PORT"), ("proxy_port", "AGENTTRACE_PROXY_PORT"),
                     ("api_port", "AGENTTRACE_API_PORT"), ("retention_days", "AGENTTRACE_RETENTION_DAYS")):
        value = getattr(args, opt, None)
        if value is not None:
            os.environ[env] = str(value)
    return Settings()


def _service(target: str):
    """Import `package.module:function` lazily so one command does not load every service."""
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def cmd_stack(args: argparse.Namespace) -> int:
    from agenttrace import stack

    settings = _settings(args)
    try:
        if args.action == "up":
            res = stack.up(settings)
            word = "started" if res["started"] else "already running (no-op)"
            print(f"kafka broker {word}: pid {res['pid']} at {settings.kafka_bootstrap}")
            if res["created_topics"]:
                print("created topics: " + ", ".join(res["created_topics"]))
        elif args.action == "down":
            print("kafka broker stopped (data kept)" if stack.down(settings) else "kafka broker was not running")
        elif args.action == "topics":
            created = stack.create_topics(settings)
            print("created topics: " + (", ".join(created) or "none (all exist)"))
        else:
            st = stack.status(settings)
            print(json.dumps(st, indent=2))
            return 0 if st["broker"].get("reachable") else 1
    except stack.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from schemas.keys import KeyStore

    store = KeyStore(_settings(args).config_path)
    if args.action == "create":
        token, key = store.create(args.project, args.name, args.rate_limit)
        print(f"created key {key.id} for project {key.project_id!r} (shown once, store it now):\n{token}")
    elif args.action == "list":
        for k in store.keys():
            state = "revoked" if k.revoked else "active"
            print(f"{k.id}  {k.project_id:<20} {k.hint}…  {state:<8} {k.name}  {k.created_at}")
    else:
        if not store.revoke(args.key_id):
            print(f"error: no active key with id {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from schemas.export import export

    for path in export(Path(args.dir)):
        print(path)
    return 0


def _iso(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None


SERVICES = {
    "ingest": ("ingest.gateway:run", "run the ingestion gateway (HTTP batch API, OTLP, agents, alert rules)"),
    "proxy": ("proxy.server:run", "run the LLM proxy"),
    "stream": ("streams.runner:run", "run the Bytewax dataflows (rollups, alerts)"),
    "sink": ("sinks.runner:run", "run the ClickHouse and alert-delivery sinks"),
    "api": ("api.app:run", "run the read-only API (Grafana JSON datasource, REST, overview page)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agenttrace", description="Observability pipeline for fleets of AI agents")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the broker and every service on the embedded default")
    up.add_argument("--port", type=int, help="gateway port (default 8080)")
    up.add_argument("--proxy-port", type=int, help="LLM proxy port (default 4000)")
    up.add_argument("--api-port", type=int, help="read API port (default 8090)")
    up.add_argument("--retention-days", type=int, help="data retention in days (default 30)")
    up.add_argument("--no-proxy", action="store_true", help="do not start the LLM proxy")
    up.add_argument("--no-open", action="store_true", help="do not open the overview page in a browser")
    up.add_argument("--reset-token", action="store_true", help="issue a new API key for the default project and exit")
    up.set_defaults(func=lambda a: _service("agenttrace.up:run")(_settings(a), a))

    st = sub.add_parser("stack", help="the local Kafka broker")
    st.add_argument("action", choices=["up", "down", "status", "topics"])
    st.set_defaults(func=cmd_stack)

    keys = sub.add_parser("keys", help="manage API keys")
    ks = keys.add_subparsers(dest="action", required=True)
    kc = ks.add_parser("create")
    kc.add_argument("--project", default="default")
    kc.add_argument("--name", default="")
    kc.add_argument("--rate-limit", type=int, default=None, help="events per minute for this key")
    ks.add_parser("list")
    kr = ks.add_parser("revoke")
    kr.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    sc = sub.add_parser("schemas", help="JSON Schemas of the topic values")
    scs = sc.add_subparsers(dest="action", required=True)
    se = scs.add_parser("export")
    se.add_argument("dir")
    sc.set_defaults(func=cmd_schemas)

    for name, (target, help_) in SERVICES.items():
        sp = sub.add_parser(name, help=help_)
        if name == "stream":
            sp.add_argument("--workers", type=int, default=1, help="Bytewax workers in this process")
        if name == "api":
            sp.add_argument("--with-sinks", action="store_true",
                            help="also run the sinks in this process (embedded chDB allows one process)")
        sp.set_defaults(func=lambda a, t=target: _service(
            "agenttrace.combined:run" if getattr(a, "with_sinks", False) else t)(_settings(a), a))

    rp = sub.add_parser("replay", help="rebuild rollups from the retained log")
    rp.add_argument("--from", dest="start", type=_iso, required=True, help="ISO-8601 start time")
    rp.add_argument("--to", dest="end", type=_iso, default=None, help="ISO-8601 end time (default: now)")
    rp.add_argument("--reprice", action="store_true", help="recompute cost with the current pricing table")
    rp.set_defaults(func=lambda a: _service("streams.replay:run")(_settings(a), a))

    demo = sub.add_parser("demo", help="send a synthetic fleet through the gateway and the proxy")
    demo.add_argument("--agents", type=int, default=20)
    demo.add_argument("--minutes", type=float, default=1.0)
    demo.set_defaults(func=lambda a: _service("agenttrace.demo:run")(_settings(a), a))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
