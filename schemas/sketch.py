"""A mergeable log-bucketed quantile sketch (DDSketch-style, fixed relative accuracy).

Values land in bucket `ceil(log(v) / log(GAMMA))`; a bucket's representative value is within
ALPHA relative error of every value in it. Sketches merge by adding counts per bucket, which
ClickHouse does with `sumMap`, so minutes merge into hours and days without losing accuracy.
Bucket 0 is reserved for values <= MIN_VALUE (zero latencies).

Quantile rule (same in Python and SQL): with n values, the q-quantile is the value of the first
bucket, in key order, whose cumulative count exceeds floor(q * (n - 1)).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

ALPHA = 0.005
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-3  # ms; anything smaller is "zero"
ZERO_KEY = -(2**31) + 1


def key_of(value: float) -> int:
    if value <= MIN_VALUE:
        return ZERO_KEY
    return math.ceil(math.log(value) / LOG_GAMMA)


def value_of(key: int) -> float:
    if key == ZERO_KEY:
        return 0.0
    return 2 * GAMMA**key / (GAMMA + 1)


class Sketch:
    __slots__ = ("counts",)

    def __init__(self, counts: dict[int, int] | None = None):
        self.counts: dict[int, int] = dict(counts or {})

    def add(self, value: float, count: int = 1) -> None:
        k = key_of(value)
        self.counts[k] = self.counts.get(k, 0) + count

    def merge(self, other: Sketch) -> Sketch:
        for k, c in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + c
        return self

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        n = self.count
        if n == 0:
            return None
        rank = math.floor(q * (n - 1))
        seen = 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen > rank:
                return value_of(k)
        return value_of(max(self.counts))

    def to_json(self) -> dict[str, int]:
        # JSON object keys are strings; sorted so equal sketches serialize to equal bytes.
        return {str(k): self.counts[k] for k in sorted(self.counts)}

    @classmethod
    def from_json(cls, data: dict[str, int] | None) -> Sketch:
        return cls({int(k): int(v) for k, v in (data or {}).items()})

    @classmethod
    def of(cls, values: Iterable[float]) -> Sketch:
        s = cls()
        for v in values:
            s.add(v)
        return s


def exact_quantile(values: list[float], q: float) -> float | None:
    """The exact quantile under the same rank rule, for tests and checks."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


# ClickHouse expression that computes a quantile from a Map(Int32, UInt64) column or sumMap
# result named by `m`; `q` is a bound parameter or literal. Mirrors Sketch.quantile.
def clickhouse_quantile_sql(m: str, q: str) -> str:
    keys = f"mapKeys({m})"
    cum = f"arrayCumSum(mapValues({m}))"
    n = f"arraySum(mapValues({m}))"
    idx = f"arrayFirstIndex(c -> c > floor({q} * ({n} - 1)), {cum})"
    key = f"{keys}[{idx}]"
    return (
        f"if({n} = 0, NULL, if({key} = {ZERO_KEY}, 0, "
        f"2 * pow({GAMMA!r}, {key}) / ({GAMMA!r} + 1)))"
    )
