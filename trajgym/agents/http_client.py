"""The model agents' HTTP/1.1 client: keep-alive connections on asyncio's protocols, responses
parsed by httptools (llhttp, the parser of Node.js and uvicorn).

Why not aiohttp, which trajgym used first: a rollout job keeps thousands of requests in flight, and
at 1,000 in flight (``bench/rollout_throughput.py``) an aiohttp ``ClientSession`` spent 0.84 ms of
CPU per episode of 4 requests, against 0.29 ms here, on the two cores it shares with everything
else. A job's CPU, not the server, was what bounded its episodes/s. What a model server needs is
small: one host, ``POST`` and ``GET`` with a body of known length, JSON back, keep-alive. This
client does that and nothing more: no cookies, redirects, proxies, compression or streaming.

One :class:`Pool` of connections per event loop and server (:func:`pool`); a connection returns to
it after a complete response the server did not mark ``Connection: close``. A request on a reused
connection that the server closed before answering (it timed the idle connection out) is sent
again on a new one, once. Everything else that goes wrong on the wire raises :class:`HTTPError`
(refused, reset, closed mid-response, malformed response) or :class:`TimeoutError`; the caller
decides what to retry.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import weakref
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from trajgym._version import __version__

DEFAULT_CONNECTIONS = 4096


class HTTPError(Exception):
    """The request got no complete HTTP response (the message says why, and from where)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its response parsed as bytes arrive."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.chunks: list[bytes] = []
        self.received = False  # any byte of the current response
        self.headers_done = False
        self.delimited = False  # the body has a Content-Length or is chunked (else it ends at EOF)
        self.reusable = True
        self.used = 0  # requests sent on it

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HTTPError(f"malformed HTTP response from {self.where}: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reusable = False
        if self.waiter is None or self.waiter.done():
            return
        if self.headers_done and not self.delimited:  # a body that ends when the connection does
            self._complete()
            return
        if not self.received:
            reason = "closed the connection without answering"
        else:
            reason = "closed the connection in the middle of its response"
        detail = f" ({type(exc).__name__}: {exc})" if exc else ""
        self._fail(_UnansweredError(f"{self.where} {reason}{detail}") if not self.received
                   else HTTPError(f"{self.where} {reason}{detail}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.reusable = False
        self._complete()

    # the pool's side
    async def send(self, data: bytes, loop: asyncio.AbstractEventLoop, deadline: float | None) -> Response:
        """Write a request; its response, or :class:`TimeoutError` at ``deadline`` (loop time)."""
        assert self.transport is not None
        waiter: asyncio.Future[Response] = loop.create_future()
        self.waiter = waiter
        self.chunks = []
        self.received = self.headers_done = self.delimited = False
        self.used += 1
        self.transport.write(data)
        if deadline is None:
            return await waiter
        timer = loop.call_at(deadline, self._timed_out, waiter)  # cheaper than asyncio.timeout
        try:
            return await waiter
        finally:
            timer.cancel()

    def _timed_out(self, waiter: asyncio.Future[Response]) -> None:
        if not waiter.done():
            self._fail(TimeoutError(f"no response from {self.where} in time"))
            self.close()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    @property
    def open(self) -> bool:
        return self.reusable and self.transport is not None and not self.transport.is_closing()

    def _complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            chunks = self.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            waiter.set_result(Response(self.parser.get_status_code(), body))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        self.reusable = False
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class _UnansweredError(HTTPError):
    """The server closed the connection before any byte of a response."""


class Pool:
    """Keep-alive connections to one server (``scheme://host:port``) on one event loop.

    At most ``limit`` connections are open; a request beyond them waits for one to come back.
    """

    def __init__(self, scheme: str, host: str, port: int, *, limit: int = DEFAULT_CONNECTIONS) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {scheme!r}: use http or https")
        self.scheme, self.host, self.port, self.limit = scheme, host, port, limit
        self.where = f"{scheme}://{host}:{port}"
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if scheme == "https" else None
        self.idle: collections.deque[_Connection] = collections.deque()
        self.open = 0
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self.closed = False

    async def request(self, head: bytes, body: bytes = b"", timeout: float | None = None) -> Response:
        """Send a request whose start is ``head`` (from :func:`request_head`) and ``body``; its
        response. ``timeout`` (seconds) bounds the whole request, a wait for a connection included:
        past it, :class:`TimeoutError`."""
        data = b"".join((head, str(len(body)).encode(), b"\r\n\r\n", body))
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        conn = await self._acquire(loop, deadline)
        reused = conn.used > 0
        try:
            response = await conn.send(data, loop, deadline)
        except _UnansweredError:
            self._release(conn)
            if not reused:
                raise
            conn = await self._acquire(loop, deadline, fresh=True)  # the server had timed the idle one out
            try:
                response = await conn.send(data, loop, deadline)
            except BaseException:
                conn.close()
                self._release(conn)
                raise
        except BaseException:  # cancelled (a timeout) or failed: the connection's state is unknown
            conn.close()
            self._release(conn)
            raise
        self._release(conn)
        return response

    async def _acquire(self, loop: asyncio.AbstractEventLoop, deadline: float | None,
                       fresh: bool = False) -> _Connection:
        if self.closed:
            raise HTTPError(f"the connection pool of {self.where} is closed")
        if not fresh and (conn := self._idle()) is not None:
            return conn
        while self.open >= self.limit:
            waiter = loop.create_future()
            self.waiting.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter in self.waiting:
                    self.waiting.remove(waiter)
                elif not waiter.cancelled():
                    self._wake()  # hand the slot on
                raise
            if not fresh and (conn := self._idle()) is not None:
                return conn
        self.open += 1
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(lambda: _Connection(self.where), self.host, self.port,
                                                       ssl=self.ssl)
        except BaseException as exc:
            self.open -= 1
            self._wake()
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise HTTPError(f"cannot connect to {self.where} ({type(exc).__name__}: {exc.strerror or exc})") from exc
            raise
        return conn

    def _idle(self) -> _Connection | None:
        """The most recently used idle connection still open (those the server closed are dropped)."""
        while self.idle:
            conn = self.idle.pop()
            if conn.open:
                return conn
            self.open -= 1
        return None

    def _release(self, conn: _Connection) -> None:
        if conn.open and not self.closed:
            self.idle.append(conn)
        else:
            conn.close()
            self.open -= 1
        self._wake()

    def _wake(self) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self.closed = True
        while self.idle:
            self.idle.pop().close()
            self.open -= 1
        for waiter in self.waiting:
            if not waiter.done():
                waiter.set_exception(HTTPError(f"the connection pool of {self.where} was closed"))
        self.waiting.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str, int], Pool]] = (
    weakref.WeakKeyDictionary())


def split_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of an absolute http(s) URL, with a clear error otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r} (expected e.g. http://localhost:8000/v1)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"bad port in URL {url!r}: {exc}") from None
    return parts.scheme, parts.hostname, port, parts.path or "/"


def request_head(server: tuple[str, str, int], method: str, target: str, headers: dict[str, str]) -> bytes:
    """A request's line and headers up to ``Content-Length: ``, which :meth:`Pool.request` completes
    (build it once per endpoint: most of a request's bytes are the same every time). ``server`` is
    ``(scheme, host, port)``."""
    scheme, host, port = server
    name = f"[{host}]" if ":" in host else host  # an IPv6 literal
    if port != (443 if scheme == "https" else 80):
        name = f"{name}:{port}"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {name}", f"User-Agent: trajgym/{__version__}",
             "Accept: application/json", *(f"{k}: {v}" for k, v in headers.items()), "Content-Length: "]
    return "\r\n".join(lines).encode("latin-1")


def pool(scheme: str, host: str, port: int) -> Pool:
    """The running event loop's pool of connections to ``scheme://host:port`` (made on first use)."""
    pools = _pools.setdefault(asyncio.get_running_loop(), {})
    key = (scheme, host, port)
    found = pools.get(key)
    if found is None or found.closed:
        found = pools[key] = Pool(scheme, host, port)
    return found


async def close_pools() -> None:
    """Close the running event loop's pools: their idle connections now, the others when their
    request ends (call before the loop ends)."""
    pools = _pools.pop(asyncio.get_running_loop(), {})
    for found in pools.values():
        found.close()
    if pools:
        await asyncio.sleep(0)  # let the transports finish closing
