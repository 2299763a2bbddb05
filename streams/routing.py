"""Where Bytewax 0.21 runs a key: worker = SipHash-1-3(key bytes + 0xff, keys 0,0) % total workers
(Rust's DefaultHasher over a String). The window stage is keyed per Kafka partition, a handful
of keys, so a plain "0", "1", ... could all land on one worker; `partition_key` picks for partition
p a key that lands on worker p % workers, and the events source names its partitions with the same
keys, so reading and windowing a partition happen on the same worker.
"""

from __future__ import annotations

_M = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M


def _round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _M
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _M
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _M
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes) -> int:
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0 ^= m
    b = ((n & 0xFF) << 56) | int.from_bytes(data[end:] + b"\0" * (8 - (n - end)), "little")
    v3 ^= b
    v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    return siphash13(key.encode() + b"\xff") % workers


def partition_key(partition: int, workers: int) -> str:
    """A routing key for `partition` that Bytewax places on worker partition % workers."""
    target = partition % max(1, workers)
    for n in range(10_000):
        key = f"{partition}" if n == 0 else f"{partition}~{n}"
        if worker_of(key, max(1, workers)) == target:
            return key
    return f"{partition}"


def partition_of(key: str) -> int:
    return int(key.split("~", 1)[0])
