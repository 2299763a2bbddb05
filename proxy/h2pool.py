"""A lean HTTP/2 client: multiplexed TLS connections per upstream origin, on asyncio's own transports.

Built on the `h2` state machine. httpcore's HTTP/2 client (TLS through anyio's memory BIO, locks around
every read) took about three times the CPU per call (in-process, 30 concurrent calls to the bench's TLS
fake: ~330 against ~115 µs). The proxy on httpx's HTTP/2 was tried too (commit ff2c51c, reverted): in
bench/proxy.py it used twice the CPU per call, could not keep 600 streamed req/s on 2 cores (+335 ms to
first token), and needed httpcore internals to cancel abandoned streams and to notice idle connections the
server had closed. The answer's body is kept per stream as it arrives and handed out in whatever
pieces are there (relayed at once, never waiting for more); the receive window is acknowledged as the
relay consumes it, so a slow agent holds the provider back instead of filling memory.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

_WINDOW = 1 << 24  # receive window per stream and connection (httpcore uses the same)
_ACK_STEP = 1 << 14
_CONFIG = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_inbound_headers=False)


class StreamError(Exception):
    """The upstream reset the stream or dropped the connection after the answer started."""


class Refused(ConnectionResetError):
    """The server said it did not process the stream (GOAWAY below its id, REFUSED_STREAM): safe to retry."""


class NotHttp2(Exception):
    """The server chose HTTP/1.1 in ALPN."""


class Stream:
    __slots__ = ("sid", "conn", "status", "headers", "buf", "pending", "ended", "error", "waiter", "head_seen",
                 "timeout")

    def __init__(self, conn: Connection, sid: int, timeout: float):
        self.sid = sid
        self.conn = conn
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.buf: deque[bytes] = deque()
        self.pending = 0  # flow-controlled bytes received, not yet acknowledged
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.head_seen = False
        self.timeout = timeout

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        loop = self.conn.loop
        fut = self.waiter = loop.create_future()
        timer = loop.call_later(self.timeout, _expire, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self.waiter = None

    async def head(self) -> None:
        while not self.head_seen:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def aiter_stream(self) -> AsyncIterator[bytes]:
        while True:
            if self.buf:
                data = self.buf[0] if len(self.buf) == 1 else b"".join(self.buf)
                self.buf.clear()
                self.conn.ack(self)
                yield data
            elif self.ended:
                return
            elif self.error is not None:
                raise self.error
            else:
                await self._wait()

    async def aread(self) -> bytes:
        parts = [chunk async for chunk in self.aiter_stream()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def aclose(self) -> None:
        self.conn.finish(self)


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("upstream read timeout"))


class Connection(asyncio.Protocol):
    def __init__(self, pool: Pool, key: tuple[str, int]):
        self.pool = pool
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.h2 = h2.connection.H2Connection(config=_CONFIG)
        self.streams: dict[int, Stream] = {}
        self.usable = False
        self.capacity: deque[asyncio.Future] = deque()  # callers waiting for a free stream slot
        self.window: dict[int, asyncio.Future] = {}  # streams waiting to send more request body
        self.ready: asyncio.Future = self.loop.create_future()  # the server's first SETTINGS arrived

    # -- transport side ------------------------------------------------------------------------------
    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            return  # the pool sees usable False and falls back to HTTP/1.1
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW, h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW - 65535)
        self.usable = True
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.flush()
            self._fail(StreamError(f"HTTP/2 protocol error: {exc}"))
            self.transport.close()
            return
        for ev in events:
            kind = type(ev)
            if kind is h2.events.DataReceived:
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    s.pending += ev.flow_controlled_length
                    if ev.data:  # an empty DATA frame only carries END_STREAM: nothing to relay
                        s.buf.append(ev.data)
                        s._wake()
                else:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif kind is h2.events.ResponseReceived:
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    for k, v in ev.headers:
                        if k == b":status":
                            s.status = int(v)
                        elif k[:1] != b":":
                            s.headers.append((k, v))
                    s.head_seen = True
                    s._wake()
            elif kind is h2.events.StreamEnded:
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    s.ended = True
                    s._wake()
            elif kind is h2.events.StreamReset:
                s = self.streams.pop(ev.stream_id, None)
                if s is not None:
                    s.error = (Refused("upstream refused the stream") if ev.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                               and not s.head_seen else StreamError(f"upstream reset the stream ({ev.error_code!r})"))
                    s._wake()
                self._unblock_sender(ev.stream_id)
                self._free()
            elif kind is h2.events.WindowUpdated or kind is h2.events.RemoteSettingsChanged:
                if not self.ready.done():
                    self.ready.set_result(None)
                for fut in list(self.window.values()):
                    if not fut.done():
                        fut.set_result(None)
                self._free()
            elif kind is h2.events.ConnectionTerminated:  # GOAWAY: no new streams here
                self.usable = False
                self.pool.forget(self)
                while self.capacity:
                    fut = self.capacity.popleft()
                    if not fut.done():
                        fut.set_result(None)
                for sid, s in list(self.streams.items()):
                    if sid > (ev.last_stream_id or 0):
                        del self.streams[sid]
                        s.error = Refused("upstream closed the connection before this stream (GOAWAY)")
                        s._wake()
                        self._unblock_sender(sid)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self.pool.forget(self)
        if not self.ready.done():
            self.ready.set_exception(ConnectionResetError("upstream closed the connection during setup"))
            self.ready.exception()
        self._fail(ConnectionResetError("upstream connection lost"))

    def _fail(self, error: BaseException) -> None:
        self.usable = False
        for s in self.streams.values():
            if not s.ended:
                s.error = error
                s._wake()
        self.streams.clear()
        for fut in (*self.capacity, *self.window.values()):
            if not fut.done():
                fut.set_exception(ConnectionResetError("upstream connection lost"))

    def _unblock_sender(self, sid: int) -> None:
        fut = self.window.get(sid)
        if fut is not None and not fut.done():
            fut.set_result(None)  # the sender finds the stream's error and stops

    def _free(self) -> None:
        while self.capacity and self._has_slot():
            fut = self.capacity.popleft()
            if not fut.done():
                fut.set_result(None)

    def _has_slot(self) -> bool:
        return self.h2.open_outbound_streams < self.h2.remote_settings.max_concurrent_streams

    # -- streams ---------------------------------------------------------------------------------------
    async def open(self, headers: list[tuple[bytes, bytes]], body: bytes, timeout: float) -> Stream:
        while not self._has_slot():
            fut = self.loop.create_future()
            self.capacity.append(fut)
            await fut
        if not self.usable:  # closed (GOAWAY) while this call waited for a slot: a fresh connection takes it
            raise Refused("upstream connection closing")
        sid = self.h2.get_next_available_stream_id()
        s = self.streams[sid] = Stream(self, sid, timeout)
        try:
            self.h2.send_headers(sid, headers, end_stream=not body)
        except h2.exceptions.H2Error as exc:  # e.g. a header HTTP/2 forbids
            self.streams.pop(sid, None)
            raise StreamError(f"request not sendable over HTTP/2: {exc}") from None
        view = memoryview(body)
        while view:
            if s.error is not None:
                self.streams.pop(sid, None)
                raise s.error
            try:
                room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size, len(view))
            except h2.exceptions.H2Error as exc:  # the server closed the stream before taking the body
                self.streams.pop(sid, None)
                raise StreamError(f"request body not sendable: {exc}") from None
            if room <= 0:
                self.flush()
                fut = self.window[sid] = self.loop.create_future()
                try:
                    await fut
                finally:
                    self.window.pop(sid, None)
                continue
            try:
                self.h2.send_data(sid, view[:room].tobytes(), end_stream=room == len(view))
            except h2.exceptions.H2Error as exc:  # the stream was closed meanwhile
                self.streams.pop(sid, None)
                raise StreamError(f"request body not sendable: {exc}") from None
            view = view[room:]
        self.flush()
        return s

    def ack(self, s: Stream) -> None:
        # Acknowledged in 16 kB steps (the rest when the stream is finished): most answers never need one,
        # and 16 kB times a server's usual stream limit stays well inside the 16 MB connection window.
        if s.pending >= _ACK_STEP:
            n, s.pending = s.pending, 0
            self.h2.acknowledge_received_data(n, s.sid)
            self.flush()

    def finish(self, s: Stream) -> None:
        """The relay is done with the stream: cancel it upstream if it is still running."""
        if self.streams.pop(s.sid, None) is not None and not s.ended and self.usable:
            try:
                self.h2.reset_stream(s.sid, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.H2Error:
                pass
        if s.pending:
            self.h2.acknowledge_received_data(s.pending, s.sid)
            s.pending = 0
        self.flush()
        self._free()


class Pool:
    """HTTP/2 connections per (host, port): calls share one until the server's MAX_CONCURRENT_STREAMS is
    reached, then another is opened (up to `max_per_origin`, after which calls wait for a free stream).
    `request` raises NotHttp2 for servers that choose HTTP/1.1."""

    def __init__(self, ssl_context: ssl.SSLContext, connect_timeout: float, read_timeout: float,
                 max_per_origin: int = 16):
        ssl_context.set_alpn_protocols(["h2", "http/1.1"])
        self.ssl = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_per_origin = max_per_origin
        self.conns: dict[tuple[str, int], list[Connection]] = {}
        self.connecting: dict[tuple[str, int], asyncio.Future] = {}

    def forget(self, conn: Connection) -> None:
        conns = self.conns.get(conn.key)
        if conns is not None and conn in conns:
            conns.remove(conn)

    async def _connection(self, host: str, port: int) -> Connection:
        key = (host, port)
        while True:
            conns = self.conns.get(key) or []
            for conn in conns:
                if conn.usable and conn._has_slot():
                    return conn
            pending = self.connecting.get(key)
            if conns and len(conns) + (pending is not None) >= self.max_per_origin:
                return min(conns, key=lambda c: len(c.streams) + len(c.capacity))  # all full: wait for a slot
            if pending is not None:  # share the handshake under way, then look again
                await asyncio.shield(pending)
                continue
            await self._connect(key)

    async def _connect(self, key: tuple[str, int]) -> None:
        fut = self.connecting[key] = asyncio.get_running_loop().create_future()
        try:
            conn = await asyncio.wait_for(self._handshake(key), self.connect_timeout)
            self.conns.setdefault(key, []).append(conn)
            fut.set_result(None)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # retrieved: waiters re-raise it, nobody else must log it
            raise
        finally:
            del self.connecting[key]

    async def _handshake(self, key: tuple[str, int]) -> Connection:
        """TLS with ALPN, then the server's SETTINGS (its stream limit is known before the first call)."""
        host, port = key
        _, conn = await asyncio.get_running_loop().create_connection(
            lambda: Connection(self, key), host, port, ssl=self.ssl, server_hostname=host)
        if not conn.usable:
            conn.transport.close()
            raise NotHttp2(f"{host}:{port}")
        try:
            await conn.ready
        except BaseException:
            conn.transport.close()
            raise
        return conn

    async def request(self, method: bytes, scheme: bytes, host: str, port: int, authority: bytes, path: bytes,
                      headers: list[tuple[bytes, bytes]], body: bytes) -> Stream:
        head = [(b":method", method), (b":authority", authority), (b":scheme", scheme), (b":path", path),
                *((k.lower(), v) for k, v in headers)]
        if body:
            head.append((b"content-length", str(len(body)).encode()))
        for attempt in (1, 2):
            conn = await self._connection(host, port)
            try:
                s = await conn.open(head, body, self.read_timeout)
            except Refused:
                if attempt == 2:
                    raise
                continue
            try:
                await s.head()
            except Refused:
                conn.finish(s)
                if attempt == 2:
                    raise
                continue  # never processed upstream: once more on a fresh connection
            except BaseException:
                conn.finish(s)
                raise
            return s
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for conn in [c for conns in self.conns.values() for c in conns]:
            if conn.usable:
                conn.h2.close_connection()
                conn.flush()
            conn.transport.close()
        self.conns.clear()
