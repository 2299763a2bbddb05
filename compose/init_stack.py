"""One-shot set-up of the compose stack, run by the `init` service after `agenttrace stack topics`.

- applies the ClickHouse migrations (idempotent);
- issues the first API key of the `default` project when there is none, prints it once, and
  writes it to AGENTTRACE_GRAFANA_TOKEN_FILE for Grafana's JSON datasource;
- registers each topic's JSON Schema in the schema registry (AGENTTRACE_SCHEMA_REGISTRY_URL), so
  Redpanda Console shows the value format beside the data.

Every step is safe to repeat: `docker compose up` runs it on each start.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import orjson

from agenttrace.clickhouse import connect, migrate
from schemas.export import json_schemas
from schemas.keys import KeyStore
from schemas.settings import Settings


def migrate_clickhouse(settings: Settings, attempts: int = 30) -> list[int]:
    # The server may still be starting even when its health check just turned green.
    for attempt in range(attempts):
        try:
            return migrate(connect(settings), settings.retention_days)
        except Exception as exc:  # noqa: BLE001 - any connection error means "not yet"
            if attempt == attempts - 1:
                raise
            print(f"clickhouse not ready ({exc.__class__.__name__}); retrying", flush=True)
            time.sleep(2)
    return []


def ensure_key(settings: Settings, token_file: Path | None) -> str | None:
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    token = KeyStore(settings.config_path).ensure_default()
    if token and token_file:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(token)
        token_file.chmod(0o644)  # Grafana runs as another user; the volume is shared with it alone
    return token


def register_schemas(settings: Settings, registry: str) -> list[str]:
    subjects = []
    with httpx.Client(base_url=registry.rstrip("/"), timeout=10) as client:
        for topic, schema in json_schemas().items():
            subject = f"{settings.topic(topic)}-value"
            r = client.post(f"/subjects/{subject}/versions",
                            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
                            content=orjson.dumps({"schemaType": "JSON", "schema": orjson.dumps(schema).decode()}))
            r.raise_for_status()
            subjects.append(subject)
    return subjects


def main() -> int:
    settings = Settings()
    applied = migrate_clickhouse(settings)
    print(f"clickhouse migrations applied: {applied or 'none (up to date)'}", flush=True)
    token_file = os.environ.get("AGENTTRACE_GRAFANA_TOKEN_FILE")
    token = ensure_key(settings, Path(token_file) if token_file else None)
    if token:
        print(f"API key for project 'default' (shown once, store it now):\n{token}", flush=True)
    else:
        print("API keys exist already; `agenttrace keys create` issues more", flush=True)
    registry = os.environ.get("AGENTTRACE_SCHEMA_REGISTRY_URL", "")
    if registry:
        print("registered schemas: " + ", ".join(register_schemas(settings, registry)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
