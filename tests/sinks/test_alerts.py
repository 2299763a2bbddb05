"""Alert delivery: signed webhooks with retries, failure after three retries, email over SMTP,
replays not delivered, and at most once per receiver across a restart mid-retry."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from aiosmtpd.controller import Controller

from schemas.alerts import Alert
from schemas.topics import ALERTS, DLQ
from sinks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.sinks.helpers import FAST, produce, running_sinks, until
from tests.support import free_port, read_topic


class Receiver:
    """A webhook receiver on loopback that fails the first `fail` requests with 503."""

    def __init__(self, fail: int = 0):
        self.fail, self.requests = fail, []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.requests.append((dict(self.headers), body))
                code = 503 if len(outer.requests) <= outer.fail else 200
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def alert(**kw) -> Alert:
    base = dict(alert_id=f"al-{kw.get('rule_id', 'r1')}-1", rule_id="r1", rule_type="error_rate", project_id="p1",
                agent_id="my-agent", subject="my-agent", state="fired", value=25.0, threshold=10.0, window_minutes=15,
                message='Agent "my-agent" error rate is 25.0% (5/20) over the last 15m (threshold: 10%)',
                timestamp=datetime.now(UTC))
    base.update(kw)
    return Alert(**base)


def send(settings, *alerts: Alert) -> None:
    produce(settings, ALERTS, [(f"{a.rule_id}/{a.subject}".encode(), a.model_dump_json().encode()) for a in alerts])


def history(client, alert_id: str, channel: str) -> list[dict]:
    return client.query(f"SELECT attempt, outcome, error FROM {client.database}.alerts FINAL "
                        "WHERE alert_id = {a:String} AND channel = {c:String} ORDER BY attempt",
                        {"a": alert_id, "c": channel})


async def test_webhook_fails_twice_then_delivered_once_signed(kafka_settings, clickhouse):
    rx = Receiver(fail=2)
    try:
        a = alert(webhook_url=rx.url)
        replayed = alert(alert_id="al-replay", rule_id="r9", webhook_url=rx.url, replay=True)
        send(kafka_settings, replayed, a)
        async with running_sinks(kafka_settings, clickhouse):
            await until(lambda: any(r["outcome"] == "delivered" for r in history(clickhouse, a.alert_id, "webhook")),
                        what="delivered")
            await asyncio.sleep(0.5)
        assert [(r["attempt"], r["outcome"]) for r in history(clickhouse, a.alert_id, "webhook")] == \
            [(1, "retry"), (2, "retry"), (3, "delivered")]
        assert len(rx.requests) == 3  # the replayed alert was never sent
        headers, body = rx.requests[-1]
        assert verify(FAST.webhook_secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        assert not verify("other-secret", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        doc = orjson.loads(body)
        assert doc["agent_id"] == "my-agent" and doc["rule_type"] == "error_rate" and doc["message"] == a.message
        assert doc["rule_id"] == "r1" and doc["state"] == "fired" and doc["value"] == 25.0 and doc["threshold"] == 10.0
        assert doc["timestamp"].endswith("Z")
        transitions = clickhouse.query(f"SELECT alert_id, outcome, replay FROM {clickhouse.database}.alerts FINAL "
                                       "WHERE channel = '' ORDER BY alert_id")
        assert transitions == [{"alert_id": a.alert_id, "outcome": "fired", "replay": False},
                               {"alert_id": "al-replay", "outcome": "fired", "replay": True}]
    finally:
        rx.close()


async def test_receiver_down_three_retries_then_failed_and_dlq(kafka_settings, clickhouse):
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    a = alert(webhook_url=url)
    send(kafka_settings, a)
    async with running_sinks(kafka_settings, clickhouse):
        await until(lambda: any(r["outcome"] == "failed" for r in history(clickhouse, a.alert_id, "webhook")),
                    what="failed")
    rows = history(clickhouse, a.alert_id, "webhook")
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, "retry"), (2, "retry"), (3, "retry"), (4, "failed")]
    assert all("Connect" in r["error"] for r in rows)
    dead = read_topic(kafka_settings.kafka_bootstrap, kafka_settings.topic(DLQ), expect=1, timeout=10)
    assert [dict(m.headers())["reason"] for m in dead] == [b"delivery_failed"]
    assert orjson.loads(dead[0].value())["alert_id"] == a.alert_id


async def test_restart_mid_retry_delivers_at_most_once(kafka_settings, clickhouse):
    rx = Receiver(fail=1)
    slow = FAST.model_copy(update={"delivery_retry_delays": [1.5, 1.5, 1.5]})
    try:
        a = alert(webhook_url=rx.url)
        send(kafka_settings, a)
        async with running_sinks(kafka_settings, clickhouse, slow):
            await until(lambda: history(clickhouse, a.alert_id, "webhook"), what="first attempt")
        # Stopped during the retry delay: nothing committed for this alert, the history says attempt 1 = retry.
        assert len(rx.requests) == 1
        async with running_sinks(kafka_settings, clickhouse, slow):
            await until(lambda: any(r["outcome"] == "delivered" for r in history(clickhouse, a.alert_id, "webhook")),
                        what="delivered after restart")
        async with running_sinks(kafka_settings, clickhouse, slow):  # a third start finds it done
            await asyncio.sleep(2)
        assert len(rx.requests) == 2
        assert [(r["attempt"], r["outcome"]) for r in history(clickhouse, a.alert_id, "webhook")] == \
            [(1, "retry"), (2, "delivered")]
    finally:
        rx.close()


async def test_interrupted_send_is_not_repeated(kafka_settings, clickhouse):
    """An intent with no outcome (process died mid-send) is recorded failed, never sent again."""
    rx = Receiver()
    try:
        a = alert(webhook_url=rx.url)
        clickhouse.command(f"INSERT INTO {clickhouse.database}.alert_delivery_intents (alert_id, channel, target, attempt) "
                           "VALUES ({a:String}, 'webhook', {t:String}, 1)", {"a": a.alert_id, "t": rx.url})
        send(kafka_settings, a)
        async with running_sinks(kafka_settings, clickhouse):
            await until(lambda: history(clickhouse, a.alert_id, "webhook"), what="outcome")
        assert [(r["attempt"], r["outcome"]) for r in history(clickhouse, a.alert_id, "webhook")] == [(1, "failed")]
        assert rx.requests == []
    finally:
        rx.close()


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl, inbox
    ctl.stop()


async def test_email_delivered_to_smtp_server(kafka_settings, clickhouse, smtp):
    ctl, inbox = smtp
    s = kafka_settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": ctl.port, "smtp_from": "at@example.com"})
    a = alert(email_to=["ops@example.com", "dev@example.com"])
    send(s, a)
    async with running_sinks(s, clickhouse):
        await until(lambda: len([r for r in history(clickhouse, a.alert_id, "email") if r["outcome"] == "delivered"]) == 2,
                    what="two emails delivered")
    assert sorted(r[0][0] for r in inbox.messages) == ["dev@example.com", "ops@example.com"]
    text = inbox.messages[0][1]
    assert a.message in text.replace("=\n", "") and "FIRED: error_rate on my-agent" in text


async def test_email_with_required_starttls(kafka_settings, clickhouse, tmp_path):
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=ctx, require_starttls=True)
    ctl.start()
    try:
        s = kafka_settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": ctl.port, "smtp_secure": True})
        a = alert(email_to=["sec@example.com"])
        send(s, a)
        async with running_sinks(s, clickhouse, FAST.model_copy(update={"smtp_cert_bundle": str(cert)})):
            await until(lambda: any(r["outcome"] == "delivered" for r in history(clickhouse, a.alert_id, "email")),
                        what="delivered over STARTTLS")
        assert [r[0] for r in inbox.messages] == [["sec@example.com"]]
    finally:
        ctl.stop()
