"""Prometheus metrics of the proxy (names fixed by the pipeline dashboard).

Collectors come from `agenttrace.metrics.metric`, shared with any service of the same process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from agenttrace.metrics import (  # noqa: F401 - re-exported for proxy modules
    HTTP_DURATION,
    HTTP_REQUEST_SIZE,
    HTTP_REQUESTS,
    HTTP_RESPONSE_SIZE,
    child,
    metric,
)

_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


REQUESTS = metric(Counter, "proxy_requests_total", "Proxied LLM calls", ("provider", "model", "status"))
UPSTREAM = metric(Histogram, "proxy_upstream_latency_seconds", "Upstream latency to last byte", ("provider",),
                  buckets=_SLOW)
OVERHEAD = metric(Histogram, "proxy_overhead_seconds", "Latency the proxy adds to a call", buckets=_FAST)
PROTOCOL = metric(Counter, "proxy_upstream_responses_total", "Upstream answers by negotiated HTTP version",
                  ("provider", "protocol"))
TTFT = metric(Histogram, "proxy_ttft_seconds", "Time to first token of streamed calls", ("provider",), buckets=_SLOW)
SPOOL_DEPTH = metric(Gauge, "proxy_spool_depth", "Events waiting in the on-disk spool")
DROPPED = metric(Counter, "proxy_events_dropped_total", "Events dropped because the spool was full")
PRODUCER_ERRORS = metric(Counter, "kafka_producer_errors_total", "Failed sends to the broker")
