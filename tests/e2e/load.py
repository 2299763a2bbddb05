"""A steady client load on the gateway that keeps every batch until the gateway acknowledges it,
as the SDK does: what it reports as acknowledged is exactly what must reach ClickHouse once."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import httpx

from schemas.pricing import cost_usd, model_family

MODELS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku-20241022"), ("google", "gemini-2.0-flash")]


class Load(threading.Thread):
    def __init__(self, url: str, headers: dict[str, str], batch: int = 50, interval: float = 0.05):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, headers=headers, timeout=5)
        self.batch, self.interval = batch, interval
        self.stop_flag = threading.Event()
        self.acked: dict[str, dict] = {}
        self.statuses: dict[int, int] = {}
        self.seq = 0

    def make_batch(self) -> list[dict]:
        out = []
        for _ in range(self.batch):
            provider, model = MODELS[self.seq % len(MODELS)]
            out.append({"event_id": str(uuid.uuid4()), "event_type": "llm_call", "agent_id": f"load-{self.seq % 7}",
                        "provider": provider, "model": model, "tokens_in": 100 + self.seq % 50,
                        "tokens_out": 20 + self.seq % 30, "latency_ms": 100 + self.seq % 900,
                        "status_code": 500 if self.seq % 23 == 0 else 200,
                        "timestamp": datetime.now(UTC).isoformat()})
            self.seq += 1
        return out

    def run(self) -> None:
        pending: list[dict] | None = None
        while not self.stop_flag.is_set():
            pending = pending or self.make_batch()
            try:
                r = self.client.post("/api/events", json={"events": pending})
                code = r.status_code
            except httpx.HTTPError:
                code = 0
            self.statuses[code] = self.statuses.get(code, 0) + 1
            if code == 200:
                for e in pending:
                    self.acked[e["event_id"]] = e
                pending = None
            else:
                time.sleep(0.5)  # 503/connection refused: keep the batch (same event ids) and retry
            time.sleep(self.interval)
        # Drain: the last batch is retried until acknowledged so nothing is left in doubt.
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            try:
                if self.client.post("/api/events", json={"events": pending}).status_code == 200:
                    for e in pending:
                        self.acked[e["event_id"]] = e
                    pending = None
            except httpx.HTTPError:
                time.sleep(0.5)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(timeout=90)

    def totals(self) -> dict:
        calls = len(self.acked)
        cost = sum(cost_usd(e["provider"], model_family(e["provider"], e["model"]), e["tokens_in"], e["tokens_out"])[0]
                   for e in self.acked.values())
        errors = sum(1 for e in self.acked.values() if e["status_code"] >= 400)
        return {"calls": calls, "cost": cost, "errors": errors}
