"""Shared fixtures: a real Kafka broker (the project's stack launcher) and the real ClickHouse engine (chDB).

`make test` starts one broker through `agenttrace stack up` and exports AGENTTRACE_KAFKA_BOOTSTRAP;
run pytest alone and this file starts one in a temporary home instead. Each test gets its own topic
prefix and ClickHouse database, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from agenttrace import stack
from agenttrace.clickhouse import close_embedded, connect, migrate
from schemas.settings import Settings
from tests.support import free_port


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> str:
    env = os.environ.get("AGENTTRACE_KAFKA_BOOTSTRAP")
    if env:
        yield env
        return
    home = tmp_path_factory.mktemp("broker-home")
    s = Settings(home=home, kafka_port=free_port(), kafka_controller_port=free_port())
    s = s.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{s.kafka_port}"})
    stack.up(s, progress=lambda *_: None)
    try:
        yield s.kafka_bootstrap
    finally:
        stack.down(s)


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # chDB opens one data directory per process, shared by every test of this run.
    yield tmp_path_factory.mktemp("chdb")
    # Closed explicitly: left to interpreter teardown, chDB crashes the process (SIGSEGV) at exit.
    close_embedded()


@pytest.fixture
def settings(tmp_path: Path, chdb_path: Path) -> Settings:
    """Settings of one test: own home, own ClickHouse database, own topic prefix (no broker needed)."""
    tag = uuid.uuid4().hex[:10]
    s = Settings(home=tmp_path / "home", topic_prefix=f"test.{tag}.", clickhouse_database=f"t_{tag}",
                 clickhouse_url="", clickhouse_dir=chdb_path, topic_partitions=3)
    s.home_dir.mkdir(parents=True, exist_ok=True)
    return s


@pytest.fixture
def kafka_settings(settings: Settings, kafka_bootstrap: str) -> Settings:
    """Settings whose catalogue topics exist on the real broker under this test's prefix."""
    s = settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    stack.create_topics(s)
    return s


@pytest.fixture
def clickhouse(settings: Settings, chdb_path: Path):
    """A chDB client on this test's own database with every migration applied."""
    client = connect(settings)
    migrate(client, settings.retention_days)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
