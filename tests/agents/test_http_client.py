"""The model agents' HTTP/1.1 client against real servers: aiohttp's, and raw sockets for the
answers a well-behaved server never gives (torn, malformed, silent, closed early)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from trajgym.agents import http_client
from trajgym.agents.http_client import HTTPError, Pool, request_head

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (``Content-Length`` bodies only); ``(b"", b"")`` at EOF."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return b"", b""
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"\r\n".join([b"HTTP/1.1 200 OK", b"Content-Length: " + str(len(body)).encode(), *extra, b"", body])


class Raw:
    """A raw TCP server on 127.0.0.1 whose every connection runs ``handler``; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Raw:
        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def pool(self, **kw: Any) -> Pool:
        return Pool("http", "127.0.0.1", self.port, **kw)

    def head(self, method: str = "POST", path: str = "/v1/chat/completions") -> bytes:
        return request_head(("http", "127.0.0.1", self.port), method, path, {"Content-Type": "application/json"})


def run(coro: Awaitable[Any]) -> Any:
    async def go() -> Any:
        try:
            return await coro
        finally:
            await http_client.close_pools()
    return asyncio.run(go())


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request on the connection with its own body, keeping the connection open."""
    while True:
        head, body = await read_request(reader)
        if not head:
            return
        writer.write(ok(body))
        await writer.drain()


def test_requests_share_a_kept_alive_connection_and_get_their_own_answers() -> None:
    seen: list[bytes] = []

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            if not head:
                return
            seen.append(head)
            writer.write(ok(body))

    async def go() -> list[bytes]:
        async with Raw(recording) as srv:
            pool = srv.pool()
            bodies = [await pool.request(srv.head(), b'{"n": %d}' % i) for i in range(5)]
            assert srv.connections == 1 and pool.open == 1
            return [r.body for r in bodies if r.status == 200]

    assert run(go()) == [b'{"n": %d}' % i for i in range(5)]
    first = seen[0].decode().split("\r\n")
    assert first[0] == "POST /v1/chat/completions HTTP/1.1"
    assert "Content-Type: application/json" in first and "Content-Length: 8" in first
    assert any(line.startswith("Host: 127.0.0.1:") for line in first)


def test_chunked_answers_and_connection_close_from_aiohttp() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"choices": ', b'[1, 2', b', 3]}'):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def closing(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}, headers={"Connection": "close"})

    async def go() -> None:
        app = web.Application()
        app.router.add_post("/chunked", chunked)
        app.router.add_get("/closing", closing)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            pool = http_client.pool("http", "127.0.0.1", port)
            head = request_head(("http", "127.0.0.1", port), "POST", "/chunked", {})
            assert (await pool.request(head, b"{}")).body == b'{"choices": [1, 2, 3]}'
            assert pool.open == 1 and len(pool.idle) == 1  # kept for the next request
            get = request_head(("http", "127.0.0.1", port), "GET", "/closing", {})
            for _ in range(2):
                resp = await pool.request(get)
                assert (resp.status, resp.body) == (200, b'{"ok": true}')
            assert pool.open == 0 and not pool.idle  # a connection the server closes is not kept
        finally:
            await runner.cleanup()

    run(go())


def test_a_body_that_ends_with_the_connection() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"a\": ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"1}")
        await writer.drain()

    async def go() -> None:
        async with Raw(until_close) as srv:
            pool = srv.pool()
            for _ in range(2):
                assert (await pool.request(srv.head(), b"{}")).body == b'{"a": 1}'
            assert srv.connections == 2 and pool.open == 0

    run(go())


@pytest.mark.parametrize(("answer", "error"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"torn", "closed the connection in the middle of its response"),
    (b"HTTP/1.1 2OO OK\r\n\r\n", "malformed HTTP response from http://127.0.0.1:"),
    (b"", "closed the connection without answering"),
])
def test_broken_answers_are_errors_that_say_what_and_from_where(answer: bytes, error: str) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async def go() -> None:
        async with Raw(broken) as srv:
            pool = srv.pool()
            with pytest.raises(HTTPError, match=error):
                await pool.request(srv.head(), b"{}")
            assert pool.open == 0 and not pool.idle  # nothing broken is kept
            assert f"127.0.0.1:{srv.port}" in pool.where

    run(go())


def test_a_kept_connection_the_server_dropped_is_replaced_once_without_an_error() -> None:
    async def one_answer_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        writer.write(ok(body))  # kept alive as far as the client knows...
        await writer.drain()
        await read_request(reader)  # ...but the next request on it is dropped unanswered

    async def go() -> None:
        async with Raw(one_answer_per_connection) as srv:
            pool = srv.pool()
            assert (await pool.request(srv.head(), b"1")).body == b"1"
            assert (await pool.request(srv.head(), b"2")).body == b"2"  # sent again on a new connection
            assert srv.connections == 2
            # a fresh connection that closes unanswered is an error, not retried
            async with Raw(lambda r, w: read_request(r)) as silent:
                with pytest.raises(HTTPError, match="without answering"):
                    await silent.pool().request(silent.head(), b"x")
                assert silent.connections == 1

    run(go())


def test_a_timeout_closes_the_connection_and_frees_its_slot() -> None:
    async def stalls_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        if body == b"slow":
            await asyncio.sleep(5)
        writer.write(ok(body))
        await echo(reader, writer)

    async def go() -> None:
        async with Raw(stalls_once) as srv:
            pool = srv.pool(limit=1)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await pool.request(srv.head(), b"slow", timeout=0.2)
            assert loop.time() - t0 < 1.0
            assert pool.open == 0
            assert (await pool.request(srv.head(), b"fast", timeout=2)).body == b"fast"

    run(go())


def test_the_connection_limit_holds_and_waiters_get_the_freed_connections() -> None:
    live = 0
    peak = 0

    async def slow_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal live, peak
        while True:
            head, body = await read_request(reader)
            if not head:
                return
            live += 1
            peak = max(peak, live)
            await asyncio.sleep(0.02)
            live -= 1
            writer.write(ok(body))

    async def go() -> None:
        async with Raw(slow_echo) as srv:
            pool = srv.pool(limit=2)
            doomed = asyncio.create_task(pool.request(srv.head(), b"never"))
            tasks = [asyncio.create_task(pool.request(srv.head(), str(i).encode())) for i in range(8)]
            await asyncio.sleep(0)
            doomed.cancel()  # a request cancelled while it waits or flies gives its slot back
            answers = await asyncio.gather(*tasks)
            assert [a.body for a in answers] == [str(i).encode() for i in range(8)]
            assert peak <= 2 and srv.connections <= 3 and pool.open <= 2 and not pool.waiting

    run(go())


def test_unreachable_servers_and_wrong_schemes_say_where() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # to a TLS hello
        await writer.drain()

    async def go() -> None:
        async with Raw(plain) as srv:
            port = srv.port
            tls = Pool("https", "127.0.0.1", port)  # a TLS handshake with a plain HTTP server
            with pytest.raises(HTTPError, match=rf"cannot connect to https://127.0.0.1:{port} \(SSL"):
                await tls.request(request_head(("https", "127.0.0.1", port), "GET", "/", {}), timeout=5)
        with pytest.raises(HTTPError, match=rf"cannot connect to http://127.0.0.1:{port} \(ConnectionRefusedError"):
            await Pool("http", "127.0.0.1", port).request(b"GET / HTTP/1.1\r\nContent-Length: ")

    run(go())
    with pytest.raises(ValueError, match="not an http"):
        http_client.split_url("ftp://example.com/v1")
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        Pool("ftp", "example.com", 21)


def test_request_heads_name_the_host_as_http_wants_it() -> None:
    assert b"\r\nHost: example.com\r\n" in request_head(("https", "example.com", 443), "GET", "/v1/models", {})
    assert b"\r\nHost: example.com:8000\r\n" in request_head(("http", "example.com", 8000), "GET", "/", {})
    assert b"\r\nHost: [::1]:8000\r\n" in request_head(("http", "::1", 8000), "GET", "/", {})
    head = request_head(("http", "h", 80), "POST", "/v1/chat/completions", {"Authorization": "Bearer k"})
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert head.endswith(b"\r\nAuthorization: Bearer k\r\nContent-Length: ")
    assert http_client.split_url("http://[::1]:8000/v1") == ("http", "::1", 8000, "/v1")
    assert http_client.split_url("https://example.com") == ("https", "example.com", 443, "/")


def test_each_event_loop_has_its_own_pools() -> None:
    async def get() -> Pool:
        return http_client.pool("http", "127.0.0.1", 9)

    async def both() -> tuple[Pool, Pool]:
        return await get(), await get()

    a, b = run(both())
    assert a is b and a.closed  # one per server on a loop, closed with close_pools
    assert run(get()) is not a  # another loop, another pool
