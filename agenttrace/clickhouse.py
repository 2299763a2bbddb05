"""One small interface to ClickHouse, two clients: chDB embedded (default) or a server.

The SQL is the same for both. Parameters use ClickHouse's `{name:Type}` placeholders and are
bound by the engine, never formatted into the SQL. Results come back as JSONEachRow dicts from
both clients, so callers see identical values whichever is configured.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import orjson

from schemas.settings import Settings

OUTPUT_SETTINGS = {"output_format_json_quote_64bit_integers": 0, "output_format_json_quote_decimals": 0}


class ClickHouse(Protocol):
    database: str

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None: ...
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def query_stream(self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONEachRow") -> Iterator[bytes]: ...
    def insert(self, table: str, rows: bytes, settings: dict[str, Any] | None = None, fmt: str = "JSONEachRow") -> None: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...


def _settings_clause(settings: dict[str, Any] | None) -> str:
    if not settings:
        return ""
    parts = []
    for k, v in settings.items():
        if not re.fullmatch(r"[a-z_0-9]+", k):
            raise ValueError(f"bad setting name {k!r}")
        parts.append(f"{k}={v!r}" if isinstance(v, str) else f"{k}={int(v) if isinstance(v, bool) else v}")
    return " SETTINGS " + ", ".join(parts)


def _escaped(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """chDB reads parameter values in ClickHouse's escaped text format, as the server does over HTTP;
    clickhouse-connect escapes strings for the server, so do the same here (else `\\`, tab or newline
    in a value would change it)."""
    if not params:
        return None
    return {k: "".join("\\" + c if c in ("\\", "'", "`", "\t", "\n") else c for c in v) if isinstance(v, str) else v
            for k, v in params.items()}


class ChdbClient:
    """chDB keeps one embedded server per process, opened once; every thread talks to it through a
    connection of its own, and each export stream through a fresh one. On one connection chDB refuses
    a query while a streaming insert is active and ends a streaming query when another query runs;
    separate connections run side by side, so the API never waits for a sink insert."""

    _session = None
    _path: Path | None = None
    _generation = 0  # bumped by close_embedded so threads drop connections to a closed server
    _lock = threading.Lock()
    _local = threading.local()
    _conns: list = []  # every open connection, closed by close_embedded before the server

    def __init__(self, path: Path, database: str):
        self.database = database
        with ChdbClient._lock:
            if ChdbClient._session is None:
                from chdb import session

                path.mkdir(parents=True, exist_ok=True)
                ChdbClient._session = session.Session(str(path))
                ChdbClient._path = path
                ChdbClient._generation += 1
            elif ChdbClient._path != path:
                raise RuntimeError(
                    f"chDB is already open at {ChdbClient._path} in this process; one process can open one "
                    f"data directory (asked for {path}). Use a ClickHouse server (AGENTTRACE_CLICKHOUSE_URL) "
                    "to run readers and writers as separate processes."
                )

    @staticmethod
    def _open():
        import chdb

        conn = chdb.connect(str(ChdbClient._path))
        for k, v in OUTPUT_SETTINGS.items():
            conn.query(f"SET {k}={v}")
        with ChdbClient._lock:
            ChdbClient._conns.append(conn)
        return conn

    @staticmethod
    def _forget(conn) -> None:
        with ChdbClient._lock:
            ChdbClient._conns = [c for c in ChdbClient._conns if c is not conn]
        conn.close()

    def _conn(self):
        local = ChdbClient._local
        if getattr(local, "generation", None) != ChdbClient._generation:
            local.conn = self._open()
            local.generation = ChdbClient._generation
        return local.conn

    def _run(self, sql: str, params: dict[str, Any] | None, fmt: str = "JSONEachRow"):
        try:
            return self._conn().query(sql, fmt, params=_escaped(params))
        except Exception as exc:
            raise RuntimeError(str(exc)) from None

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(sql, params, "CSV")

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        data = self._run(sql, params).bytes()
        return [orjson.loads(line) for line in data.splitlines() if line]

    def query_stream(self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONEachRow") -> Iterator[bytes]:
        # send_query streams blocks, so an export never holds the whole result; its own connection keeps
        # it alive while other threads query and insert.
        conn = self._open()
        try:
            with conn.send_query(sql, fmt, params=_escaped(params)) as stream:
                for chunk in stream:
                    yield chunk.bytes()
        finally:
            self._forget(conn)

    def insert(self, table: str, rows: bytes, settings: dict[str, Any] | None = None, fmt: str = "JSONEachRow") -> None:
        if not rows:
            return
        with self._conn().send_insert(f"INSERT INTO {table}{_settings_clause(settings)}", fmt) as ins:
            ins.append(rows)
            ins.finish()

    def ping(self) -> bool:
        try:
            return self.query("SELECT 1 AS ok")[0]["ok"] == 1
        except Exception:
            return False

    def close(self) -> None:
        """The shared server stays open for the process; see `close_embedded`."""


def close_embedded() -> None:
    with ChdbClient._lock:
        if ChdbClient._session is not None:
            # Connections of every thread first: chDB crashes at exit when any outlives the server.
            for conn in ChdbClient._conns:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - closing what is already broken
                    pass
            ChdbClient._conns.clear()
            ChdbClient._session.close()
            ChdbClient._session = None
            ChdbClient._path = None
            ChdbClient._generation += 1


class ServerClient:
    def __init__(self, url: str, database: str):
        import clickhouse_connect

        self.database = database
        self._c = clickhouse_connect.get_client(dsn=url, settings=OUTPUT_SETTINGS, autogenerate_session_id=False)

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._c.command(sql, parameters=params)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        data = self._c.raw_query(sql, parameters=params, fmt="JSONEachRow")
        return [orjson.loads(line) for line in data.splitlines() if line]

    def query_stream(self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONEachRow") -> Iterator[bytes]:
        with self._c.raw_stream(sql, parameters=params, fmt=fmt) as stream:
            yield from stream

    def insert(self, table: str, rows: bytes, settings: dict[str, Any] | None = None, fmt: str = "JSONEachRow") -> None:
        if rows:
            self._c.raw_insert(table, insert_block=rows, settings=settings, fmt=fmt)

    def ping(self) -> bool:
        try:
            return bool(self._c.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._c.close()


def connect(settings: Settings) -> ClickHouse:
    if settings.clickhouse_url:
        return ServerClient(settings.clickhouse_url, settings.clickhouse_database)
    return ChdbClient(settings.clickhouse_path, settings.clickhouse_database)


# -- migrations ---------------------------------------------------------------

def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every file in schemas/sql, in order."""
    out = []
    for f in resources.files("schemas").joinpath("sql").iterdir():
        m = re.fullmatch(r"(\d+)_(\w+)\.sql", f.name)
        if m:
            out.append((int(m.group(1)), m.group(2), f.read_text()))
    return sorted(out)


def split_statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def migrate(client: ClickHouse, retention_days: int = 30) -> list[int]:
    """Apply every migration not yet recorded; safe to run at every start and from many processes."""
    db = client.database
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", db):
        raise ValueError(f"bad database name {db!r}")
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, "
        "applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {r["version"] for r in client.query(f"SELECT version FROM {db}.schema_migrations")}
    applied = []
    for version, name, sql in migration_files():
        if version in done:
            continue
        for stmt in split_statements(sql.replace("{db}", db).replace("{retention_days}", str(int(retention_days)))):
            client.command(stmt)
        client.command(
            f"INSERT INTO {db}.schema_migrations (version, name) VALUES ({{v:UInt32}}, {{n:String}})",
            {"v": version, "n": name},
        )
        applied.append(version)
    return applied
