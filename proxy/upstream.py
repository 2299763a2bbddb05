"""Pooled connections to the upstream providers.

https upstreams (HTTP/2 allowed for their provider) go through one shared httpx client with HTTP/2 on: it
speaks HTTP/2 to servers that offer `h2` in ALPN and multiplexes concurrent calls over one connection per
origin. An origin whose server chose HTTP/1.1 is moved to aiohttp's keep-alive pool after its first answer;
plain http (tests, local vLLM/Ollama) and providers forced to HTTP/1.1 use aiohttp from the start (it costs
less CPU per call than httpx's HTTP/1.1, measured with bench/proxy.py).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import h2.errors
import h2.exceptions
import httpcore
import httpx
from httpcore._async.http2 import AsyncHTTP2Connection
from yarl import URL

from proxy.config import ProxySettings

# aiohttp must not add headers the agent did not send.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# Connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2); `te` is allowed only as "trailers".
_H2_FORBIDDEN = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})

# Failures before the answer's head arrived: a timeout shows as 504, anything else as a refused connection.
TIMEOUTS = (TimeoutError, httpx.TimeoutException)
UNREACHABLE = (aiohttp.ClientError, httpx.TransportError, OSError)
# Failures while the body streams in.
BROKEN = (aiohttp.ClientError, TimeoutError, httpx.TransportError, OSError)

HTTP11 = "HTTP/1.1"
HTTP2 = "HTTP/2"


def ssl_context(ps: ProxySettings) -> ssl.SSLContext:
    """Verifying context: the CA bundle of AGENTTRACE_PROXY_CA_BUNDLE if set, else the system store
    (which OpenSSL lets SSL_CERT_FILE / SSL_CERT_DIR replace)."""
    return ssl.create_default_context(cafile=ps.ca_bundle or None)


def _h2_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    out = []
    for k, v in headers:
        lk = k.lower()
        if lk in _H2_FORBIDDEN or (lk == b"te" and v.strip().lower() != b"trailers"):
            continue
        out.append((k, v))
    return out


async def _cancel_h2_stream(resp: httpx.Response) -> None:
    """Send RST_STREAM(CANCEL) for an HTTP/2 answer dropped before its end. httpcore only forgets such a
    stream: the provider would go on generating, and the DATA it still sends would never be acknowledged
    (eating the connection's receive window). Reached through httpcore's objects; does nothing if their
    shape differs."""
    try:
        inner = resp.stream._stream._httpcore_stream._stream  # type: ignore[attr-defined]
        conn, sid, request = inner._connection, inner._stream_id, inner._request
    except AttributeError:
        return
    if not isinstance(conn, AsyncHTTP2Connection) or sid not in conn._events or conn._connection_error:
        return
    try:
        conn._h2_state.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        await conn._write_outgoing_data(request)
    except (h2.exceptions.H2Error, httpcore.NetworkError):
        pass


_PROBE = httpcore.Request("GET", "https://probe.invalid/", extensions={"timeout": {"read": 0.05}})


async def _settle_idle_h2(client: httpx.AsyncClient) -> None:
    """Read what idle HTTP/2 connections have received (GOAWAY, a closed socket) before the next call
    picks one. httpcore reads an HTTP/2 connection only while a stream waits on it, so a connection the
    server closed while idle would otherwise take the next call down with it ("Server disconnected");
    its HTTP/1.1 connections have this check, its HTTP/2 ones do not."""
    for conn in client._transport._pool.connections:  # type: ignore[attr-defined]
        inner = getattr(conn, "_connection", None)
        if (isinstance(inner, AsyncHTTP2Connection) and inner.is_idle() and not inner._connection_error
                and inner._network_stream.get_extra_info("is_readable")):
            try:
                await inner._receive_events(_PROBE)  # GOAWAY: httpcore stops handing it out
            except Exception:  # closed by the server (or undecodable): drop it, the call gets a new one
                await conn.aclose()


class Answer:
    """The upstream's answer, whichever client it came from: status, raw headers, body chunks."""

    __slots__ = ("status", "headers", "protocol", "_resp", "_httpx")

    def __init__(self, status: int, headers: Any, protocol: str, resp: Any, via_httpx: bool):
        self.status = status
        self.headers = headers
        self.protocol = protocol
        self._resp = resp
        self._httpx = via_httpx

    def header(self, name: bytes) -> str:
        for k, v in self.headers:
            if k.lower() == name:
                return v.decode("latin-1")
        return ""

    def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive off the socket, exactly as sent (never decoded)."""
        return self._resp.aiter_raw() if self._httpx else self._resp.content.iter_any()

    async def read(self) -> bytes:
        if self._httpx:
            parts = [chunk async for chunk in self._resp.aiter_raw()]  # aread() would decode content-encoding
            return parts[0] if len(parts) == 1 else b"".join(parts)
        return await self._resp.read()

    async def close(self, abort: bool = False) -> None:
        """Done with the answer; `abort` drops an unfinished one (the agent went away)."""
        if self._httpx:
            if abort and not self._resp.is_closed and self.protocol == HTTP2:
                await _cancel_h2_stream(self._resp)  # only that stream: the connection stays
            await self._resp.aclose()
        elif abort:
            self._resp.close()
        else:
            self._resp.release()


class Upstreams:
    """Both clients; create inside the running event loop."""

    def __init__(self, ps: ProxySettings):
        self.ps = ps
        connector = aiohttp.TCPConnector(limit=ps.max_connections, limit_per_host=0, keepalive_timeout=60,
                                         ttl_dns_cache=300, ssl=ssl_context(ps))
        timeout = aiohttp.ClientTimeout(total=None, connect=ps.connect_timeout, sock_read=ps.read_timeout)
        # auto_decompress off: bytes are relayed exactly as the provider sent them.
        self.h1 = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                        trust_env=False, skip_auto_headers=_NO_AUTO_HEADERS,
                                        cookie_jar=aiohttp.DummyCookieJar())
        # Its own SSL context: httpcore sets ALPN on the one it is given. The pool wait counts as connecting,
        # as in aiohttp.
        self.h2 = httpx.AsyncClient(
            http2=True, verify=ssl_context(ps), trust_env=False, follow_redirects=False,
            timeout=httpx.Timeout(connect=ps.connect_timeout, read=ps.read_timeout, write=ps.read_timeout,
                                  pool=ps.connect_timeout),
            limits=httpx.Limits(max_connections=ps.max_connections, max_keepalive_connections=ps.max_connections,
                                keepalive_expiry=60),
            # A jar that accepts no cookie: set-cookie answers are relayed, never stored or resent.
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])))
        self.h2.headers.clear()  # no User-Agent / Accept / Accept-Encoding / Connection of httpx's own
        # https origins whose server chose HTTP/1.1 in ALPN: later calls take the cheaper aiohttp pool.
        self._h1_origins: set[str] = set()
        self._h2_providers = {p: ps.http2_for(p) for p in ("openai", "anthropic", "google", "mistral", "cohere")}

    async def request(self, provider: str, method: str, url: str, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> Answer:
        if url.startswith("https://") and self._h2_providers.get(provider, self.ps.http2):
            origin = urlsplit(url).netloc
            if origin not in self._h1_origins:
                await _settle_idle_h2(self.h2)
                req = self.h2.build_request(method, url, headers=_h2_headers(headers), content=body or None)
                resp = await self.h2.send(req, stream=True)
                if resp.http_version != HTTP2:
                    self._h1_origins.add(origin)  # this server chose HTTP/1.1: from now on, aiohttp's pool
                return Answer(resp.status_code, resp.headers.raw, resp.http_version, resp, True)
        resp = await self.h1.request(method, URL(url, encoded=True), allow_redirects=False, data=body or None,
                                     headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers])
        return Answer(resp.status, resp.raw_headers, HTTP11, resp, False)

    async def close(self) -> None:
        await self.h1.close()
        await self.h2.aclose()
