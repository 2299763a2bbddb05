"""The local stack: a single-node Apache Kafka broker (KRaft) run as a background process.

Jars come from Maven Central through `mvn` on first use and are cached; broker data, config,
pid file and log live under `$AGENTTRACE_HOME/kafka`. Topics of the catalogue are created with
their configuration on every `up` (idempotent).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from schemas.settings import Settings
from schemas.topics import CATALOGUE

KAFKA_VERSION = "4.1.1"


class StackError(RuntimeError):
    pass


def jar_cache() -> Path:
    return Path(os.environ.get("AGENTTRACE_KAFKA_JARS", f"~/.cache/agenttrace/kafka-{KAFKA_VERSION}")).expanduser()


def ensure_jars(progress=print) -> Path:
    """Resolve the broker's jars with Maven once; later calls return the cached folder."""
    target = jar_cache()
    marker = target / ".complete"
    if marker.exists():
        return target
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not installed; it is needed once to fetch the Kafka broker jars")
    if shutil.which("java") is None:
        raise StackError("Java 17+ is not installed; the local Kafka broker needs it")
    progress(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central (first run only)...")
    pom = resources.files("agenttrace").joinpath("kafka/pom.xml")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "pom.xml").write_text(pom.read_text())
    proc = subprocess.run(
        ["mvn", "-B", "-q", "-f", str(tmp / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={tmp / 'jars'}", "-DincludeScope=runtime", f"-Dkafka.version={KAFKA_VERSION}"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise StackError(f"could not resolve the Kafka jars from Maven Central (mvn exit {proc.returncode}):\n{tail}")
    shutil.rmtree(target, ignore_errors=True)
    (tmp / "jars").rename(target)
    shutil.rmtree(tmp, ignore_errors=True)
    marker.write_text(KAFKA_VERSION)
    return target


@dataclass
class Paths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pid(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log(self) -> Path:
        return self.root / "broker.log"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.properties"


def paths(settings: Settings) -> Paths:
    return Paths(settings.home_dir / "kafka")


CORES = os.cpu_count() or 2


def server_properties(settings: Settings, p: Paths) -> str:
    host = settings.host
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{settings.kafka_controller_port}",
        f"listeners=PLAINTEXT://{host}:{settings.kafka_port},CONTROLLER://{host}:{settings.kafka_controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{settings.kafka_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={p.data}",
        f"num.partitions={settings.topic_partitions}",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=4",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "log.retention.check.interval.ms=60000",
        # Sized to the machine: on the 2-core default extra threads only add switching (CPU per event
        # measured by bench/e2e: 9 -> 7 µs with these and the GC below).
        f"num.network.threads={max(1, CORES // 2)}",
        f"num.io.threads={max(2, CORES)}",
        "",
    ])


LOG4J = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def read_pid(p: Paths) -> int | None:
    try:
        return int(p.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def broker_state(settings: Settings) -> tuple[str, int | None]:
    """('running'|'stopped'|'stale', pid)."""
    p = paths(settings)
    pid = read_pid(p)
    if pid is None:
        return "stopped", None
    if _alive(pid):
        return "running", pid
    return "stale", pid


_QUIET = logging.getLogger("agenttrace.stack.rdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    # librdkafka logs every refused connection while the broker boots; keep that out of the terminal.
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000}, logger=_QUIET)


def wait_ready(bootstrap: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise StackError(f"the Kafka broker exited with code {proc.returncode} while starting:\n{tail}")
        try:
            md = admin(bootstrap).list_topics(timeout=2)
            if md.brokers:
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.3)
    raise StackError(f"the Kafka broker at {bootstrap} did not answer within {timeout:.0f}s ({last})")


def create_topics(settings: Settings, bootstrap: str | None = None) -> list[str]:
    """Create every catalogue topic that is missing; return the names created."""
    from confluent_kafka.admin import NewTopic

    client = admin(bootstrap or settings.kafka_bootstrap)
    existing = set(client.list_topics(timeout=10).topics)
    new = [
        NewTopic(settings.topic(t.name), num_partitions=t.partition_count(settings.topic_partitions),
                 replication_factor=1, config=t.topic_config(settings.retention_days))
        for t in CATALOGUE if settings.topic(t.name) not in existing
    ]
    created = []
    for name, fut in (client.create_topics(new, request_timeout=30).items() if new else []):
        try:
            fut.result()
            created.append(name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"could not create topic {name}: {exc}") from exc
    _wait_for_leaders(client, [settings.topic(t.name) for t in CATALOGUE])
    return created


def _wait_for_leaders(client, topics: list[str], timeout: float = 30.0) -> None:
    """A new topic answers NOT_LEADER until its partitions have leaders; return once they all do,
    so that consumers started right after `stack up` find them ready."""
    deadline = time.monotonic() + timeout
    while True:
        md = client.list_topics(timeout=10)
        missing = [t for t in topics if t not in md.topics or md.topics[t].error is not None
                   or any(p.leader < 0 for p in md.topics[t].partitions.values())]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise StackError(f"topics without partition leaders after {timeout:.0f}s: {', '.join(missing)}")
        time.sleep(0.2)


def up(settings: Settings, progress=print, timeout: float = 90.0) -> dict:
    """Start the broker unless it runs already; create topics. Returns what was done."""
    p = paths(settings)
    state, pid = broker_state(settings)
    if state == "running":
        wait_ready(settings.kafka_bootstrap, timeout=timeout)
        created = create_topics(settings)
        return {"started": False, "pid": pid, "created_topics": created}
    if state == "stale":
        progress(f"found a stale broker lock (pid {pid} is not running; the broker crashed or was killed); restarting")
        p.pid.unlink(missing_ok=True)
    if _port_open(settings.host, settings.kafka_port):
        raise StackError(
            f"port {settings.kafka_port} on {settings.host} is taken by another process; "
            "set AGENTTRACE_KAFKA_PORT or stop it"
        )
    jars = ensure_jars(progress)
    p.root.mkdir(parents=True, exist_ok=True)
    p.properties.write_text(server_properties(settings, p))
    p.log4j.write_text(LOG4J)
    java = shutil.which("java") or "java"
    cp = f"{jars}/*"
    jvm = [java, f"-Xms{settings.kafka_heap}", f"-Xmx{settings.kafka_heap}", "-XX:+UseParallelGC",
           f"-XX:ParallelGCThreads={max(1, CORES // 2)}",  # throughput GC: young pauses of a few ms at 1 GB
           "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={p.log4j}", "-cp", cp]
    if not (p.data / "meta.properties").exists():
        cluster_id = subprocess.run(jvm + ["kafka.tools.StorageTool", "random-uuid"],
                                    capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        fmt = subprocess.run(jvm + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(p.properties)],
                             capture_output=True, text=True)
        if fmt.returncode != 0:
            raise StackError(f"formatting the broker storage failed: {fmt.stdout}{fmt.stderr}")
    progress(f"starting Kafka {KAFKA_VERSION} broker on {settings.host}:{settings.kafka_port}...")
    log = open(p.log, "ab")
    proc = subprocess.Popen(jvm + ["kafka.Kafka", str(p.properties)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    p.pid.write_text(str(proc.pid))
    try:
        wait_ready(f"{settings.host}:{settings.kafka_port}", timeout=timeout, proc=proc, log=p.log)
    except StackError:
        _terminate(proc.pid)
        p.pid.unlink(missing_ok=True)
        raise
    created = create_topics(settings, f"{settings.host}:{settings.kafka_port}")
    return {"started": True, "pid": proc.pid, "created_topics": created}


def _terminate(pid: int, timeout: float = 30.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Reap it if it is our child, so it does not linger as a zombie.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not _alive(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def down(settings: Settings) -> bool:
    """Stop the broker (data stays). Returns False when nothing was running."""
    p = paths(settings)
    state, pid = broker_state(settings)
    p.pid.unlink(missing_ok=True) if state != "running" else None
    if state != "running" or pid is None:
        return False
    _terminate(pid)
    p.pid.unlink(missing_ok=True)
    return True


def status(settings: Settings) -> dict:
    state, pid = broker_state(settings)
    out: dict = {
        "broker": {"state": state, "pid": pid, "bootstrap": settings.kafka_bootstrap,
                   "data": str(paths(settings).data), "log": str(paths(settings).log)},
        "clickhouse": settings.clickhouse_url or f"embedded chDB at {settings.clickhouse_path}",
        "topics": {},
    }
    if state == "stale":
        out["broker"]["problem"] = f"stale lock: pid {pid} is not running (crashed?); run `agenttrace stack up`"
    try:
        out["topics"] = topic_offsets(settings)
        out["broker"]["reachable"] = True
    except Exception as exc:
        out["broker"]["reachable"] = False
        out["broker"]["error"] = str(exc)
    return out


def topic_offsets(settings: Settings) -> dict[str, dict]:
    from confluent_kafka import Consumer, TopicPartition

    md = admin(settings.kafka_bootstrap).list_topics(timeout=5)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "agenttrace-status",
                         "enable.auto.commit": False}, logger=_QUIET)
    try:
        out = {}
        for t in CATALOGUE:
            name = settings.topic(t.name)
            if name not in md.topics:
                out[name] = {"exists": False}
                continue
            parts = sorted(md.topics[name].partitions)
            ends = [consumer.get_watermark_offsets(TopicPartition(name, i), timeout=5)[1] for i in parts]
            out[name] = {"exists": True, "partitions": len(parts), "end_offsets": ends, "end_offsets_total": sum(ends)}
        return out
    finally:
        consumer.close()


if __name__ == "__main__":  # pragma: no cover - debugging aid
    print(status(Settings()), file=sys.stderr)
