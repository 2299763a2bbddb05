"""Pooled connections to the upstream providers.

https upstreams are spoken to over HTTP/2 when the server offers `h2` in ALPN: one multiplexed connection
per origin (proxy/h2pool.py). Everything else — plain http (tests, local vLLM/Ollama), https servers that
choose HTTP/1.1, providers forced to HTTP/1.1 — goes through aiohttp's keep-alive pool (httpx's costs far
more CPU per call, measured with bench/proxy.py).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from proxy import h2pool
from proxy.config import ProxySettings

# aiohttp must not add headers the agent did not send.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

# Failures before the answer's head arrived: a timeout shows as 504, anything else as a refused connection.
TIMEOUTS = (TimeoutError,)
UNREACHABLE = (aiohttp.ClientError, h2pool.StreamError, OSError)
# Failures while the body streams in.
BROKEN = (aiohttp.ClientError, TimeoutError, h2pool.StreamError, OSError)

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
            await self._resp.aclose()  # an unfinished HTTP/2 stream is cancelled, the connection stays
        elif abort:
            self._resp.close()
        else:
            self._resp.release()


class Upstreams:
    """Both pools; create inside the running event loop."""

    def __init__(self, ps: ProxySettings):
        self.ps = ps
        h1_ssl = ssl_context(ps)  # its own context: the HTTP/2 pool sets ALPN on the one it is given
        connector = aiohttp.TCPConnector(limit=ps.max_connections, limit_per_host=0, keepalive_timeout=60,
                                         ttl_dns_cache=300, ssl=h1_ssl)
        timeout = aiohttp.ClientTimeout(total=None, connect=ps.connect_timeout, sock_read=ps.read_timeout)
        # auto_decompress off: bytes are relayed exactly as the provider sent them.
        self.h1 = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                        trust_env=False, skip_auto_headers=_NO_AUTO_HEADERS,
                                        cookie_jar=aiohttp.DummyCookieJar())
        self.h2 = h2pool.Pool(ssl_context(ps), ps.connect_timeout, ps.read_timeout)
        # https origins whose server chose HTTP/1.1 in ALPN: later calls take the cheaper aiohttp pool.
        self._h1_origins: set[str] = set()
        self._h2_providers = {p: ps.http2_for(p) for p in ("openai", "anthropic", "google", "mistral", "cohere")}

    async def request(self, provider: str, method: str, url: str, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> Answer:
        if url.startswith("https://") and self._h2_providers.get(provider, self.ps.http2):
            split = urlsplit(url)
            origin = split.netloc
            if origin not in self._h1_origins:
                target = (split.path or "/") + (f"?{split.query}" if split.query else "")
                try:
                    s = await self.h2.request(method.encode(), b"https", split.hostname or "", split.port or 443,
                                              origin.encode("idna"), target.encode("latin-1"), headers, body)
                except h2pool.NotHttp2:
                    self._h1_origins.add(origin)  # this server chose HTTP/1.1: from now on, aiohttp's pool
                else:
                    return Answer(s.status, s.headers, HTTP2, s, True)
        resp = await self.h1.request(method, URL(url, encoded=True), allow_redirects=False, data=body or None,
                                     headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers])
        return Answer(resp.status, resp.raw_headers, HTTP11, resp, False)

    async def close(self) -> None:
        await self.h1.close()
        await self.h2.close()
