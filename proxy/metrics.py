"""Prometheus metrics of the proxy (names fixed by the pipeline dashboard).

Collectors are fetched if another component already registered the same name in this process
(tests import several services into one interpreter).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)


def _get(cls: type, name: str, doc: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
    existing = REGISTRY._names_to_collectors.get(name)  # noqa: SLF001 - no public lookup exists
    if existing is None and cls is Counter:
        existing = REGISTRY._names_to_collectors.get(name.removesuffix("_total"))
    if existing is not None:
        return existing
    return cls(name, doc, labels, **kw)


REQUESTS = _get(Counter, "proxy_requests_total", "Proxied LLM calls", ("provider", "model", "status"))
UPSTREAM = _get(Histogram, "proxy_upstream_latency_seconds", "Upstream latency to last byte", ("provider",),
                buckets=_SLOW)
OVERHEAD = _get(Histogram, "proxy_overhead_seconds", "Latency the proxy adds to a call", buckets=_FAST)
TTFT = _get(Histogram, "proxy_ttft_seconds", "Time to first token of streamed calls", ("provider",), buckets=_SLOW)
SPOOL_DEPTH = _get(Gauge, "proxy_spool_depth", "Events waiting in the on-disk spool")
DROPPED = _get(Counter, "proxy_events_dropped_total", "Events dropped because the spool was full")
PRODUCER_ERRORS = _get(Counter, "kafka_producer_errors_total", "Failed sends to the broker")

HTTP_REQUESTS = _get(Counter, "http_requests_total", "HTTP requests", ("method", "path", "status"))
HTTP_DURATION = _get(Histogram, "http_request_duration_seconds", "HTTP request duration", ("method", "path"),
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
HTTP_REQUEST_SIZE = _get(Histogram, "http_request_size_bytes", "HTTP request body size", ("method", "path"),
                         buckets=_SIZES)
HTTP_RESPONSE_SIZE = _get(Histogram, "http_response_size_bytes", "HTTP response body size", ("method", "path"),
                          buckets=_SIZES)


_children: dict[tuple, Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, memoized: the label lookup costs more than the observation itself."""
    key = (id(metric), labels)
    c = _children.get(key)
    if c is None:
        c = _children[key] = metric.labels(*labels)
    return c
