"""Child process of the crash test: runs the sinks on its own chDB directory.

With AGENTTRACE_SINK_CRASH_AFTER_INSERT=1 the process exits right after its first insert (before the
commit). Otherwise it runs until `expect` events are visible, then prints counts as JSON.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from agenttrace.clickhouse import connect
from schemas.settings import Settings
from sinks.config import SinkSettings
from sinks.runner import serve


async def main(expect: int) -> None:
    settings = Settings()
    client = connect(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, sink=SinkSettings(), client=client))
    db = settings.clickhouse_database
    deadline = time.monotonic() + 60
    final = 0
    while time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.3)
        try:
            final = client.query(f"SELECT count() AS n FROM {db}.events FINAL")[0]["n"]
        except Exception:  # noqa: BLE001 - database not created yet
            continue
        if final >= expect:
            break
    stop.set()
    await task
    out = client.query(f"SELECT count() AS raw, uniqExact(event_id) AS ids, "
                       f"(SELECT sum(tokens_in) FROM {db}.events FINAL) AS tokens FROM {db}.events")[0]
    out["final"] = final
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
