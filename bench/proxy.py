"""Proxy overhead benchmark: the same load sent directly to a fake OpenAI-compatible upstream and through
the proxy, non-streaming and streaming. Prints one JSON document.

    .venv/bin/python -m bench.proxy [--clients 200] [--duration 5] [--rate 600]

Roles run as separate processes so the load generator and the fake upstream do not share the proxy's
CPU: the fake upstream and the load generator are raw asyncio protocols on uvloop (tens of µs per
request); the proxy is `agenttrace proxy`, publishing to the broker at AGENTTRACE_KAFKA_BOOTSTRAP
(default 127.0.0.1:9092) under a throw-away topic prefix. Two phases per mode: `latency` paces the
clients to --rate requests/s in total (added latency without queueing), `throughput` lets every client
send back to back (proxied requests/s). Runtime is bounded: about 12 x (duration + 1) seconds plus startup.

`http2` adds the same paced load against a second fake upstream that speaks HTTP/2 over TLS (self-signed
CA made with trustme; the proxy trusts it through AGENTTRACE_PROXY_CA_BUNDLE and reaches it with
`x-target-url`). Direct calls reach that fake over TLS with HTTP/1.1, as the provider SDKs do; proxied
calls go agent -plain HTTP/1.1-> proxy -HTTP/2 over TLS-> fake, so the added figures include the proxy's
own TLS and HTTP/2 work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]

# -- fake upstream -----------------------------------------------------------------------------
_JSON = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, this is a benchmark answer."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34}})
JSON_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                 + str(len(_JSON)).encode() + b"\r\n\r\n" + _JSON)
_CHUNK = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
          "model": "gpt-4o-mini-2024-07-18"}


def added(mode: str, direct: dict, proxied: dict) -> dict:
    """Both measurements and what the proxy added (and, for streams, to the first token)."""
    entry = {"direct": direct, "proxied": proxied,
             "added_p50_ms": round(proxied["p50_ms"] - direct["p50_ms"], 3),
             "added_p99_ms": round(proxied["p99_ms"] - direct["p99_ms"], 3)}
    if mode == "stream":
        entry["ttft_added_p50_ms"] = round(proxied["ttft_p50_ms"] - direct["ttft_p50_ms"], 3)
        entry["ttft_added_p99_ms"] = round(proxied["ttft_p99_ms"] - direct["ttft_p99_ms"], 3)
    return entry


def _event(doc: dict) -> bytes:
    data = b"data: " + orjson.dumps(doc) + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
SSE_CHUNKS = [_event({**_CHUNK, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]})
              for w in ("Hello", " there", ", this", " is", " a", " benchmark")]
SSE_TAIL = (_event({**_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            + _event({**_CHUNK, "choices": [], "usage": {"prompt_tokens": 25, "completion_tokens": 9,
                                                         "total_tokens": 34}})
            + b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
TOKEN_GAP = 0.002  # seconds between streamed tokens


class FakeUpstream(asyncio.Protocol):
    def connection_made(self, transport):  # type: ignore[override]
        self.t = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15: head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None]) if i >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4: end + 4 + length])
            del self.buf[: end + 4 + length]
            if b'"stream":true' in body:
                self._stream()
            else:
                self.t.write(JSON_RESPONSE)

    def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        self.t.write(SSE_HEAD + SSE_CHUNKS[0])
        for k, chunk in enumerate(SSE_CHUNKS[1:], 1):
            loop.call_later(TOKEN_GAP * k, self._write, chunk)
        loop.call_later(TOKEN_GAP * len(SSE_CHUNKS), self._write, SSE_TAIL)

    def _write(self, data: bytes) -> None:
        if not self.t.is_closing():
            self.t.write(data)


async def serve_fake(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(FakeUpstream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


SSE_RAW = [b"data: " + orjson.dumps({**_CHUNK, "choices": [{"index": 0, "delta": {"content": w},
                                                             "finish_reason": None}]}) + b"\n\n"
           for w in ("Hello", " there", ", this", " is", " a", " benchmark")]
SSE_RAW_TAIL = (b"data: " + orjson.dumps({**_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                + b"\n\ndata: " + orjson.dumps({**_CHUNK, "choices": [], "usage": {
                    "prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34}}) + b"\n\ndata: [DONE]\n\n")


class FakeTlsUpstream(FakeUpstream):
    """The same answers over TLS: HTTP/2 when the client picks h2 in ALPN, HTTP/1.1 otherwise."""

    def connection_made(self, transport):  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        self.h2 = None
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            import h2.config
            import h2.connection
            import h2.settings

            self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
            self.h2.local_settings = h2.settings.Settings(
                client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
            self.h2.initiate_connection()
            self.bodies: dict[int, bytearray] = {}
            transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self.h2 is None:
            return super().data_received(data)
        import h2.events

        for ev in self.h2.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.bodies[ev.stream_id] = bytearray()
            elif isinstance(ev, h2.events.DataReceived):
                self.bodies[ev.stream_id] += ev.data
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self._answer(ev.stream_id, bytes(self.bodies.pop(ev.stream_id, b"")))
            elif isinstance(ev, h2.events.StreamReset):
                self.bodies.pop(ev.stream_id, None)
        self.t.write(self.h2.data_to_send())

    def _answer(self, sid: int, body: bytes) -> None:
        if b'"stream":true' not in body:
            self.h2.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/json"),
                                       (b"content-length", str(len(_JSON)).encode())])
            self.h2.send_data(sid, _JSON, end_stream=True)
            return
        loop = asyncio.get_running_loop()
        self.h2.send_headers(sid, [(b":status", b"200"), (b"content-type", b"text/event-stream")])
        self.h2.send_data(sid, SSE_RAW[0])
        for k, chunk in enumerate(SSE_RAW[1:], 1):
            loop.call_later(TOKEN_GAP * k, self._h2_write, sid, chunk, False)
        loop.call_later(TOKEN_GAP * len(SSE_RAW), self._h2_write, sid, SSE_RAW_TAIL, True)

    def _h2_write(self, sid: int, data: bytes, end: bool) -> None:
        import h2.exceptions

        if self.t.is_closing():
            return
        try:
            self.h2.send_data(sid, data, end_stream=end)
        except h2.exceptions.H2Error:  # the client reset the stream
            return
        self.t.write(self.h2.data_to_send())


async def serve_fake_tls(port: int, cert: str, key: str) -> None:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    server = await asyncio.get_running_loop().create_server(FakeTlsUpstream, "127.0.0.1", port, backlog=4096,
                                                            ssl=ctx)
    async with server:
        await server.serve_forever()


# -- load generator ----------------------------------------------------------------------------
class Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time (content-length or chunked answers)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.done: asyncio.Future | None = None
        self.first_body: float | None = None
        self.status = 0

    def connection_made(self, transport):  # type: ignore[override]
        self.t = transport

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        if self.done and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))

    def request(self, data: bytes) -> asyncio.Future:
        self.buf.clear()
        self.first_body = None
        self.done = asyncio.get_running_loop().create_future()
        self.t.write(data)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        if self.first_body is None and len(self.buf) > end + 4:
            self.first_body = time.perf_counter()
        head = bytes(self.buf[:end]).lower()
        self.status = int(head[9:12])
        i = head.find(b"content-length:")
        if i >= 0:
            j = head.find(b"\r\n", i)
            length = int(head[i + 15: j if j > 0 else None])
            if len(self.buf) >= end + 4 + length:
                self.done.set_result(None)
        elif self.buf.endswith(b"\r\n0\r\n\r\n") or self.buf[end + 4:] == b"0\r\n\r\n":
            self.done.set_result(None)


async def run_load(host: str, port: int, mode: str, clients: int, duration: float, rate: float,
                   warmup: float, tls_ca: str = "", target: str = "") -> dict:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}],
                         **({"stream": True, "stream_options": {"include_usage": True}} if mode == "stream" else {})})
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
           f"authorization: Bearer sk-bench-not-a-key\r\nx-agenttrace-agent: bench\r\n"
           + (f"x-target-url: {target}\r\n" if target else "")
           + f"content-length: {len(body)}\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    ctx = None
    if tls_ca:  # straight to the TLS fake, over HTTP/1.1 as the provider SDKs speak by default
        import ssl

        ctx = ssl.create_default_context(cafile=tls_ca)
        ctx.set_alpn_protocols(["http/1.1"])
    conns = []
    for _ in range(clients):
        _, proto = await loop.create_connection(Client, host, port, ssl=ctx)
        conns.append(proto)
    lat: list[float] = []
    ttft: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + duration
    interval = clients / rate if rate > 0 else 0.0

    async def worker(c: Client) -> None:
        nonlocal errors
        nxt = time.perf_counter() + (random.random() * interval if interval else 0)
        while True:
            if interval:
                delay = nxt - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                nxt += interval
            t = time.perf_counter()
            if t >= stop_at:
                return
            try:
                await c.request(req)
            except ConnectionError:
                errors += 1
                return
            if c.status != 200:
                errors += 1
            if t >= measure_from:
                lat.append(time.perf_counter() - t)
                if c.first_body is not None:
                    ttft.append(c.first_body - t)

    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        c.t.close()

    def pct(xs: list[float], q: float) -> float | None:
        if not xs:
            return None
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 3)

    return {"requests": len(lat), "errors": errors, "rps": round(len(lat) / duration, 1),
            "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
            "ttft_p50_ms": pct(ttft, 0.5) if mode == "stream" else None,
            "ttft_p99_ms": pct(ttft, 0.99) if mode == "stream" else None}


# -- orchestration -----------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def _rss_mb(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return {"rss_mb": out.get("VmRSS"), "peak_rss_mb": out.get("VmHWM")}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _load(port: int, mode: str, args: argparse.Namespace, rate: float, extra: tuple[str, ...] = ()) -> dict:
    cmd = [sys.executable, "-m", "bench.proxy", "--role", "load", "--port", str(port), "--mode", mode,
           "--clients", str(args.clients), "--duration", str(args.duration), "--rate", str(rate), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=args.duration * 4 + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout)


def _metric_sum(port: int, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def _make_certs(home: str) -> tuple[str, str, str]:
    """(CA bundle, certificate, key) of a throw-away CA for the TLS fake upstream."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = tuple(str(Path(home) / name) for name in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(paths[0])
    cert.cert_chain_pems[0].write_to_path(paths[1])
    cert.private_key_pem.write_to_path(paths[2])
    return paths  # type: ignore[return-value]


def _http2_phase(args: argparse.Namespace, proxy_pid: int, proxy_port: int, tls_port: int, tls_pid: int,
                 ca: str) -> dict:
    """Paced load over the TLS fake: direct (TLS, HTTP/1.1) and through the proxy (HTTP/2 upstream).

    The fake's own CPU per call is reported for both: its HTTP/2 side (pure-Python h2) costs more than its
    HTTP/1.1 side, and that difference is inside the added latency though not the proxy's doing."""
    out: dict = {"upstream": "HTTP/2 over TLS (loopback)", "direct": "TLS + HTTP/1.1"}
    target = f"https://127.0.0.1:{tls_port}/v1"
    for mode in ("json", "stream"):
        fake0 = _cpu_s(tls_pid)
        direct = _load(tls_port, mode, args, args.rate, ("--tls-ca", ca))
        direct["upstream_cpu_us_per_call"] = round((_cpu_s(tls_pid) - fake0) / max(
            direct["requests"] * (args.duration + args.warmup) / args.duration, 1) * 1e6, 1)
        cpu0, wall0, fake0 = _cpu_s(proxy_pid), time.monotonic(), _cpu_s(tls_pid)
        proxied = _load(proxy_port, mode, args, args.rate, ("--target", target))
        cpu = _cpu_s(proxy_pid) - cpu0
        calls = proxied["requests"] * (args.duration + args.warmup) / args.duration
        proxied["upstream_cpu_us_per_call"] = round((_cpu_s(tls_pid) - fake0) / max(calls, 1) * 1e6, 1)
        proxied["proxy_cpu_us_per_call"] = round(cpu / max(calls, 1) * 1e6, 1)
        proxied["proxy_cpu_share"] = round(cpu / (time.monotonic() - wall0), 2)
        out[mode] = {"latency": added(mode, direct, proxied)}
    out["upstream_responses_http2"] = _metric_sum(proxy_port, 'proxy_upstream_responses_total{protocol="HTTP/2"')
    return out


def orchestrate(args: argparse.Namespace) -> dict:
    fake_port, proxy_port, tls_port = _free_port(), _free_port(), _free_port()
    bootstrap = os.environ.get("AGENTTRACE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as home:
        env = {**os.environ, "AGENTTRACE_HOME": home, "AGENTTRACE_TOPIC_PREFIX": prefix,
               "AGENTTRACE_KAFKA_BOOTSTRAP": bootstrap, "AGENTTRACE_PROXY_PORT": str(proxy_port),
               "AGENTTRACE_PROXY_OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}", "AGENTTRACE_LOG_LEVEL": "warning"}
        ca, cert, key = _make_certs(home) if args.http2 else ("", "", "")
        env["AGENTTRACE_PROXY_CA_BUNDLE"] = ca
        try:
            from agenttrace import stack
            from schemas.settings import Settings

            stack.create_topics(Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=3))
            procs.append(subprocess.Popen([sys.executable, "-m", "bench.proxy", "--role", "fake", "--port",
                                           str(fake_port)], cwd=ROOT))
            if args.http2:
                tls_fake = subprocess.Popen([sys.executable, "-m", "bench.proxy", "--role", "fake-tls", "--port",
                                             str(tls_port), "--cert", cert, "--key", key], cwd=ROOT)
                procs.append(tls_fake)
            log = open(Path(home) / "proxy.log", "wb")  # noqa: SIM115
            proxy = subprocess.Popen([sys.executable, "-m", "agenttrace.cli", "proxy"], env=env, cwd=ROOT,
                                     stdout=log, stderr=subprocess.STDOUT)
            procs.append(proxy)
            _wait_port(fake_port)
            if args.http2:
                _wait_port(tls_port)
            _wait_port(proxy_port)
            time.sleep(1.0)
            results: dict = {"clients": args.clients, "duration_s": args.duration, "paced_rate": args.rate,
                             "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()[0]}
            for mode in ("json", "stream"):
                res: dict = {}
                for phase, rate in (("latency", args.rate), ("throughput", 0.0)):
                    direct = _load(fake_port, mode, args, rate)
                    cpu0, wall0 = _cpu_s(proxy.pid), time.monotonic()
                    proxied = _load(proxy_port, mode, args, rate)
                    cpu = _cpu_s(proxy.pid) - cpu0
                    # CPU the proxy spent per proxied call, and the share of a core it got: on a shared
                    # machine the proxy waits in the run queue, which latency and req/s include.
                    calls = proxied["requests"] * (args.duration + args.warmup) / args.duration
                    proxied["proxy_cpu_us_per_call"] = round(cpu / max(calls, 1) * 1e6, 1)
                    proxied["proxy_cpu_share"] = round(cpu / (time.monotonic() - wall0), 2)
                    if rate == 0:
                        proxied["rps_per_full_core"] = round(1e6 / max(proxied["proxy_cpu_us_per_call"], 1))
                    res[phase] = added(mode, direct, proxied)
                results[mode] = res
            if args.http2:
                results["http2"] = _http2_phase(args, proxy.pid, proxy_port, tls_port, tls_fake.pid, ca)
            results["proxy"] = _rss_mb(proxy.pid)
            results["proxy"]["calls_recorded"] = _metric_sum(proxy_port, "proxy_requests_total")
            results["proxy"]["spool_depth"] = _metric_sum(proxy_port, "proxy_spool_depth")
            ov = _metric_sum(proxy_port, "proxy_overhead_seconds_sum") / max(
                1.0, _metric_sum(proxy_port, "proxy_overhead_seconds_count"))
            results["proxy"]["mean_overhead_ms_self_measured"] = round(ov * 1000, 3)
            results["loadavg_after"] = os.getloadavg()[0]
            results["targets"] = {
                "added_p50_le_1ms": results["json"]["latency"]["added_p50_ms"] <= 1.0,
                "added_p99_le_5ms": results["json"]["latency"]["added_p99_ms"] <= 5.0,
                "ttft_added_le_1ms": results["stream"]["latency"]["ttft_added_p50_ms"] <= 1.0,
                "proxied_rps_ge_3000": results["json"]["throughput"]["proxied"]["rps"] >= 3000,
                "rss_le_200mb": (results["proxy"]["peak_rss_mb"] or 0) <= 200,
            }
            return results
        finally:
            for p in reversed(procs):
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
            _delete_topics(bootstrap, prefix)


def _delete_topics(bootstrap: str, prefix: str) -> None:
    try:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap})
        names = [t for t in admin.list_topics(timeout=5).topics if t.startswith(prefix)]
        if names:
            for f in admin.delete_topics(names).values():
                f.result(10)
    except Exception:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", choices=["main", "fake", "fake-tls", "load"], default="main")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=["json", "stream"], default="json")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=600.0, help="total paced rate of the latency phase (req/s)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--no-http2", dest="http2", action="store_false", help="skip the HTTP/2 TLS upstream figures")
    p.add_argument("--cert", default="")
    p.add_argument("--key", default="")
    p.add_argument("--tls-ca", default="", help="load role: connect over TLS trusting this CA")
    p.add_argument("--target", default="", help="load role: x-target-url header to send")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.role == "fake":
        asyncio.run(serve_fake(args.port))
    elif args.role == "fake-tls":
        asyncio.run(serve_fake_tls(args.port, args.cert, args.key))
    elif args.role == "load":
        res = asyncio.run(run_load("127.0.0.1", args.port, args.mode, args.clients, args.duration, args.rate,
                                   args.warmup, args.tls_ca, args.target))
        print(json.dumps(res))
    else:
        print(json.dumps(orchestrate(args), indent=2))


if __name__ == "__main__":
    main()
