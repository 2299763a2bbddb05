"""Pooled connections to the upstream providers.

https upstreams are spoken to over HTTP/2 when the server offers `h2` in ALPN: one multiplexed connection
per origin (httpcore with h2). Everything else — plain http (tests, local vLLM/Ollama), https servers that
answer over HTTP/1.1, providers forced to HTTP/1.1 — goes through aiohttp's keep-alive pool, which costs
far less CPU per call than httpcore's HTTP/1.1 (measured with bench/proxy.py).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpcore
from yarl import URL

from proxy.config import ProxySettings

# aiohttp must not add headers the agent did not send.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

# Failures before the answer's head arrived: a timeout shows as 504, anything else as a refused connection.
TIMEOUTS = (TimeoutError, httpcore.TimeoutException)
UNREACHABLE = (aiohttp.ClientError, httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol,
               OSError)
# Failures while the body streams in.
BROKEN = (aiohttp.ClientError, TimeoutError, httpcore.TimeoutException, httpcore.NetworkError,
          httpcore.ProtocolError)

HTTP11 = "HTTP/1.1"
HTTP2 = "HTTP/2"


def ssl_context(ps: ProxySettings) -> ssl.SSLContext:
    """Verifying context: the CA bundle of AGENTTRACE_PROXY_CA_BUNDLE if set, else the system store
    (which OpenSSL lets SSL_CERT_FILE / SSL_CERT_DIR replace)."""
    return ssl.create_default_context(cafile=ps.ca_bundle or None)


class Answer:
    """The upstream's answer, whichever pool it came from: status, raw headers, body chunks."""

    __slots__ = ("status", "headers", "protocol", "_resp", "_h2")

    def __init__(self, status: int, headers: Any, protocol: str, resp: Any, h2: bool):
        self.status = status
        self.headers = headers
        self.protocol = protocol
        self._resp = resp
        self._h2 = h2

    def header(self, name: bytes) -> str:
        for k, v in self.headers:
            if k.lower() == name:
                return v.decode("latin-1")
        return ""

    def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive off the socket."""
        return self._resp.aiter_stream() if self._h2 else self._resp.content.iter_any()

    async def read(self) -> bytes:
        return await (self._resp.aread() if self._h2 else self._resp.read())

    async def close(self, abort: bool = False) -> None:
        """Done with the answer; `abort` drops an unfinished one (the agent went away)."""
        if self._h2:
            await self._resp.aclose()  # an unfinished HTTP/2 stream is closed, the connection stays
        elif abort:
            self._resp.close()
        else:
            self._resp.release()


class Upstreams:
    """Both pools; create inside the running event loop."""

    def __init__(self, ps: ProxySettings):
        self.ps = ps
        h1_ssl = ssl_context(ps)  # its own context: httpcore sets ALPN on the one it is given
        connector = aiohttp.TCPConnector(limit=ps.max_connections, limit_per_host=0, keepalive_timeout=60,
                                         ttl_dns_cache=300, ssl=h1_ssl)
        timeout = aiohttp.ClientTimeout(total=None, connect=ps.connect_timeout, sock_read=ps.read_timeout)
        # auto_decompress off: bytes are relayed exactly as the provider sent them.
        self.h1 = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                        trust_env=False, skip_auto_headers=_NO_AUTO_HEADERS,
                                        cookie_jar=aiohttp.DummyCookieJar())
        self.h2 = httpcore.AsyncConnectionPool(ssl_context=ssl_context(ps), http1=True, http2=True,
                                               max_connections=ps.max_connections, keepalive_expiry=60.0)
        self._timeouts = {"connect": ps.connect_timeout, "read": ps.read_timeout, "write": None, "pool": None}
        # https origins whose server chose HTTP/1.1 in ALPN: later calls take the cheaper aiohttp pool.
        self._h1_origins: set[str] = set()
        self._h2_providers = {p: ps.http2_for(p) for p in ("openai", "anthropic", "google", "mistral", "cohere")}

    def _wants_h2(self, provider: str, url: str) -> tuple[bool, str]:
        if not url.startswith("https://") or not self._h2_providers.get(provider, self.ps.http2):
            return False, ""
        origin = url[: url.find("/", 8)] if url.find("/", 8) > 0 else url
        return origin not in self._h1_origins, origin

    async def request(self, provider: str, method: str, url: str, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> Answer:
        h2, origin = self._wants_h2(provider, url)
        if not h2:
            resp = await self.h1.request(method, URL(url, encoded=True), allow_redirects=False, data=body or None,
                                         headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers])
            return Answer(resp.status, resp.raw_headers, HTTP11, resp, False)
        # httpcore wants HTTP/1.1-style framing headers; on HTTP/2 Host becomes :authority.
        extra = [(b"host", urlsplit(origin).netloc.encode("idna"))]
        if body:
            extra.append((b"content-length", str(len(body)).encode()))
        resp = await self.h2.handle_async_request(httpcore.Request(
            method, url, headers=extra + headers, content=body,
            extensions={"timeout": self._timeouts}))
        version = resp.extensions.get("http_version", b"HTTP/2")
        if version != b"HTTP/2":
            self._h1_origins.add(origin)
            return Answer(resp.status, resp.headers, HTTP11, resp, True)
        return Answer(resp.status, resp.headers, HTTP2, resp, True)

    async def close(self) -> None:
        await self.h1.close()
        await self.h2.aclose()
