from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from api.app import create_app
from schemas.keys import KeyStore
from tests.api import dataset


@dataclass
class Env:
    client: httpx.AsyncClient
    ds: dataset.DataSet
    key_a: str
    key_b: str
    db: str
    ch: object
    app: object
    extras: dict

    def h(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key_a}"}

    async def query(self, body: dict, key: str | None = None) -> httpx.Response:
        return await self.client.post("/grafana/query", json=body, headers=self.h(key))

    def grafana_range(self) -> dict:
        return {"from": self.ds.start.isoformat().replace("+00:00", "Z"),
                "to": self.ds.end.isoformat().replace("+00:00", "Z")}


@pytest.fixture
async def env(settings, clickhouse):
    store = KeyStore(settings.config_path)
    key_a, _ = store.create("proj_a", name="a")
    key_b, _ = store.create("proj_b", name="b")
    ds = dataset.build()
    dataset.load(clickhouse, settings.clickhouse_database, ds)
    extras = dataset.load_extras(clickhouse, settings.clickhouse_database, ds)
    app = create_app(settings, client=clickhouse)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield Env(client, ds, key_a, key_b, settings.clickhouse_database, clickhouse, app, extras)
