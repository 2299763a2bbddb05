"""Per-key token bucket counted in events (the seed's "1000 events/minute per API key").

State is per process: a gateway run with N workers admits up to N times the limit in bursts.
"""

from __future__ import annotations

import math
import time

from prometheus_client import Counter

RATE_LIMITED = Counter("rate_limited_total", "requests refused with 429")


class RateLimiter:
    def __init__(self, default_per_minute: int):
        self.default = default_per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill time)

    def take(self, key_id: str, n: int, per_minute: int | None = None) -> float:
        """Take `n` events from the key's bucket; return 0 when allowed, else seconds to wait."""
        limit = per_minute or self.default
        if limit <= 0:
            return 0.0
        rate = limit / 60.0
        now = time.monotonic()
        tokens, last = self._buckets.get(key_id, (float(limit), now))
        tokens = min(float(limit), tokens + (now - last) * rate)
        # A batch larger than the whole bucket passes once the bucket is full (it then runs into debt).
        need = min(float(n), float(limit))
        if tokens + 1e-9 < need:
            self._buckets[key_id] = (tokens, now)
            RATE_LIMITED.inc()
            return max(1.0, math.ceil((need - tokens) / rate))
        self._buckets[key_id] = (tokens - n, now)
        return 0.0
