"""Webhook delivery: the seed's JSON body, signed with HMAC-SHA256.

Headers (document for receivers):
  X-AgentTrace-Timestamp: <unix seconds>
  X-AgentTrace-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<raw body>")>
  X-AgentTrace-Alert-Id:  the alert's deterministic id (use it to drop duplicates)
  X-AgentTrace-Attempt:   1..4
Verify by recomputing the HMAC over the timestamp, a dot and the raw body, comparing in constant
time, and refusing timestamps older than a few minutes (replay protection).
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from schemas.alerts import Alert

SIGNATURE_HEADER = "X-AgentTrace-Signature"
TIMESTAMP_HEADER = "X-AgentTrace-Timestamp"


def body_of(alert: Alert) -> bytes:
    return orjson.dumps({
        "agent_id": alert.agent_id or alert.subject,
        "rule_type": alert.rule_type,
        "message": alert.message,
        "timestamp": alert.timestamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{alert.timestamp.microsecond // 1000:03d}Z",
        "rule_id": alert.rule_id,
        "alert_id": alert.alert_id,
        "project_id": alert.project_id,
        "subject": alert.subject,
        "state": alert.state,
        "value": alert.value,
        "threshold": alert.threshold,
        "window_minutes": alert.window_minutes,
    })


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


async def post(client: httpx.AsyncClient, url: str, alert: Alert, secret: str, attempt: int,
               timeout: float) -> str | None:
    """POST the alert; None when the receiver took it (2xx), else the error text."""
    body = body_of(alert)
    ts = str(int(time.time()))
    headers = {"content-type": "application/json", TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, ts, body),
               "X-AgentTrace-Alert-Id": alert.alert_id, "X-AgentTrace-Attempt": str(attempt),
               "user-agent": "agenttrace-webhook/1"}
    try:
        resp = await client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= resp.status_code < 300:
        return None
    return f"HTTP {resp.status_code}: {resp.text[:200]}"
