import uuid
from datetime import UTC, datetime

import orjson

from agenttrace.clickhouse import connect, migrate, migration_files


def test_migrations_apply_once_and_create_every_table(settings, clickhouse):
    assert migrate(clickhouse) == []  # already applied by the fixture: a second run is a no-op
    tables = {r["name"] for r in clickhouse.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", {"db": settings.clickhouse_database})}
    assert {"events", "spans", "scores", "rollups_1m", "alerts", "agents", "alert_rules", "schema_migrations"} <= tables
    versions = [r["version"] for r in clickhouse.query(
        f"SELECT version FROM {settings.clickhouse_database}.schema_migrations ORDER BY version")]
    assert versions == [v for v, _, _ in migration_files()]


def test_insert_query_and_bound_parameters(settings, clickhouse):
    db = settings.clickhouse_database
    # Recent times: rows older than the retention TTL are dropped on insert.
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    rows = [{"event_id": str(uuid.uuid4()), "type": "llm_call", "timestamp": now, "received_at": now, "project_id": "p", "agent_id": f"a{i % 3}",
             "tokens_in": i, "cost_usd": i / 100} for i in range(100)]
    clickhouse.insert(f"{db}.events", b"\n".join(orjson.dumps(r) for r in rows))
    got = clickhouse.query(
        f"SELECT agent_id, count() AS n, sum(tokens_in) AS t FROM {db}.events WHERE project_id = {{p:String}} "
        "GROUP BY agent_id ORDER BY agent_id", {"p": "p"})
    assert got == [{"agent_id": "a0", "n": 34, "t": sum(range(0, 100, 3))},
                   {"agent_id": "a1", "n": 33, "t": sum(range(1, 100, 3))},
                   {"agent_id": "a2", "n": 33, "t": sum(range(2, 100, 3))}]
    # A hostile value is data, never SQL.
    evil = "p' OR 1=1 --"
    assert clickhouse.query(f"SELECT count() AS n FROM {db}.events WHERE project_id = {{p:String}}", {"p": evil}) == [{"n": 0}]


def test_query_stream_yields_every_row_in_chunks(settings, clickhouse):
    chunks = list(clickhouse.query_stream("SELECT number FROM numbers(200000)", fmt="JSONEachRow"))
    lines = b"".join(chunks).splitlines()
    assert len(lines) == 200000 and orjson.loads(lines[-1]) == {"number": 199999}
    assert len(chunks) > 1


def test_two_clients_of_one_process_share_the_embedded_engine(settings, clickhouse):
    other = connect(settings)
    assert other.ping()
    db = settings.clickhouse_database
    clickhouse.insert(f"{db}.agents", orjson.dumps({"project_id": "p", "agent_id": "x", "last_seen": "2026-01-01 00:00:00"}))
    assert other.query(f"SELECT agent_id FROM {db}.agents") == [{"agent_id": "x"}]


def test_a_stream_survives_inserts_and_queries_of_other_threads_and_its_own(settings, clickhouse):
    """The embedded default runs sinks (inserts) and the API (queries, exports) in one process."""
    import threading

    db = settings.clickhouse_database
    stream = clickhouse.query_stream("SELECT number FROM numbers(500000)", fmt="JSONEachRow")
    first = next(stream)
    row = orjson.dumps({"project_id": "p", "agent_id": "y", "last_seen": "2026-01-01 00:00:00"})
    clickhouse.insert(f"{db}.agents", row)  # same thread, stream still open
    errors = []

    def other():
        try:
            clickhouse.insert(f"{db}.agents", row)
            assert clickhouse.query(f"SELECT count() AS n FROM {db}.agents")[0]["n"] >= 1
        except Exception as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert not errors
    lines = b"".join([first, *stream]).splitlines()
    assert len(lines) == 500000
    assert clickhouse.query(f"SELECT count() AS n FROM {db}.agents")[0]["n"] == 2
