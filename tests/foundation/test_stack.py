"""The stack launcher against a broker of its own (not the session broker), start to stop to start."""

import asyncio
import os
import subprocess
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from confluent_kafka.admin import ConfigResource

from agenttrace import stack
from schemas.settings import Settings
from schemas.topics import ALERT_RULES, CATALOGUE, EVENTS
from tests.support import free_port


async def _produce_and_read(bootstrap: str, topic: str, value: bytes) -> list[bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"p/a", headers=[("event_type", b"heartbeat")])
    finally:
        await producer.stop()
    return await _read_all(bootstrap, topic)


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for msgs in batch.values():
                out.extend(m.value for m in msgs)
        return out
    finally:
        await consumer.stop()


def test_stack_up_status_down_up_keeps_data(tmp_path):
    port = free_port()
    s = Settings(home=tmp_path, kafka_port=port, kafka_controller_port=free_port(),
                 kafka_bootstrap=f"127.0.0.1:{port}", topic_partitions=4)
    try:
        first = stack.up(s, progress=lambda *_: None)
        assert first["started"] and set(first["created_topics"]) == {t.name for t in CATALOGUE}
        assert stack.up(s, progress=lambda *_: None)["started"] is False  # second up is a no-op

        adm = stack.admin(s.kafka_bootstrap)
        md = adm.list_topics(timeout=10)
        assert len(md.topics[EVENTS].partitions) == 4
        assert len(md.topics[ALERT_RULES].partitions) == 1
        cfgs = adm.describe_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, ALERT_RULES), ConfigResource(ConfigResource.Type.TOPIC, EVENTS)])
        values = {res.name: fut.result() for res, fut in cfgs.items()}
        assert values[ALERT_RULES]["cleanup.policy"].value == "compact"
        assert values[EVENTS]["cleanup.policy"].value == "delete"
        assert values[EVENTS]["retention.ms"].value == str(s.retention_days * 24 * 3600 * 1000)

        assert asyncio.run(_produce_and_read(s.kafka_bootstrap, EVENTS, b'{"hello":1}')) == [b'{"hello":1}']
        st = stack.status(s)
        assert st["broker"]["state"] == "running" and st["topics"][EVENTS]["end_offsets_total"] == 1

        assert stack.down(s) is True
        assert stack.status(s)["broker"]["state"] == "stopped"
        assert stack.down(s) is False
        assert (tmp_path / "kafka" / "data" / "meta.properties").exists()

        again = stack.up(s, progress=lambda *_: None)
        assert again["started"] and again["created_topics"] == []
        assert asyncio.run(_read_all(s.kafka_bootstrap, EVENTS)) == [b'{"hello":1}']  # data survived
    finally:
        stack.down(s)


def test_crashed_broker_is_reported_as_stale(tmp_path):
    s = Settings(home=tmp_path, kafka_port=free_port(), kafka_controller_port=free_port())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "broker.pid").write_text(str(dead.pid))
    st = stack.status(s)
    assert st["broker"]["state"] == "stale" and "stale lock" in st["broker"]["problem"]
    messages = []
    port = s.kafka_port
    s = s.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
    try:
        stack.up(s, progress=messages.append)
        assert any("stale broker lock" in m for m in messages)
        assert stack.broker_state(s)[0] == "running"
    finally:
        stack.down(s)


def test_stack_cli_status_exit_code(tmp_path):
    env = dict(os.environ, AGENTTRACE_HOME=str(tmp_path), AGENTTRACE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    out = subprocess.run([sys.executable, "-m", "agenttrace.cli", "stack", "status"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and '"state": "stopped"' in out.stdout
