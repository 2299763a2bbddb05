"""An export of a million rows streams: many chunks, and the process does not grow by the result."""

from __future__ import annotations

import httpx

from tests.api.server import serve

ROWS = 1_000_000


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_export_of_a_million_rows_streams_in_bounded_memory(env):
    env.ch.command(
        f"INSERT INTO {env.db}.events (event_id, type, timestamp, received_at, project_id, agent_id, provider, model, "
        "tokens_in, tokens_out, latency_ms, status_code, cost_usd, message) "
        "SELECT generateUUIDv4(), 'llm_call', now64(3) - toIntervalMillisecond(number * 5), now64(3), "
        "'proj_a', concat('bulk-', toString(number % 50)), 'openai', 'gpt-4o', number % 1000, number % 300, "
        f"number % 997, 200, (number % 1000) / 1e5, repeat('x', 100) FROM numbers({ROWS})")
    with serve(env.app) as base:
        baseline = peak = rss_mb()
        lines = chunks = biggest = total = 0
        tail = b""
        with httpx.stream("GET", f"{base}/api/events/export", params={"format": "ndjson", "agent_id": ",".join(
                f"bulk-{i}" for i in range(50)), "from": "now-2d"}, headers=env.h(), timeout=300) as res:
            assert res.status_code == 200
            for chunk in res.iter_raw():
                chunks += 1
                total += len(chunk)
                biggest = max(biggest, len(chunk))
                data = tail + chunk
                lines += data.count(b"\n")
                tail = data[data.rfind(b"\n") + 1:]
                if chunks % 10 == 0:
                    peak = max(peak, rss_mb())
        peak = max(peak, rss_mb())
    print(f"export: {lines} rows, {total / 1e6:.0f} MB in {chunks} chunks (biggest {biggest} B), "
          f"rss {baseline:.0f} -> {peak:.0f} MB")
    assert lines == ROWS
    # Hundreds of MB went through; the process grew by a fraction of that, in chunks of bounded size.
    assert chunks > 100 and biggest < 16 * 1024 * 1024, (chunks, biggest)
    assert total > 300e6 and (peak - baseline) * 1e6 < total / 3, (total, baseline, peak)
