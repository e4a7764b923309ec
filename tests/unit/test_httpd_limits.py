"""agent.httpd body limits and path decoding: per-route max_body (known from the head, enforced before
the body is read), the cap on request-body bytes buffered at once (max_buffered), and percent-decoded
paths that keep distinct byte strings distinct."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pyconsul.agent.httpd import h1, web


def _app(max_buffered: int = 1 << 20) -> tuple[web.Application, dict[str, Any]]:
    seen: dict[str, Any] = {"gate": asyncio.Event(), "entered": asyncio.Event(), "bodies": []}
    app = web.Application(client_max_size=100, max_buffered=max_buffered)

    async def body(request: web.Request) -> web.Response:
        data = await request.read()
        seen["bodies"].append(len(data))
        return web.Response(text=f"{len(data)} max {request.max_body}")

    async def held(request: web.Request) -> web.Response:
        seen["entered"].set()
        await seen["gate"].wait()
        return web.Response(text=str(len(await request.read())))

    async def path(request: web.Request) -> web.Response:
        q = request.query.get("q")
        return web.Response(body=web.path_bytes(request.match_info["key"] if q is None else q))

    app.router.add_put("/small", body, max_body=10)
    app.router.add_put("/big", body, max_body=1000)
    app.router.add_put("/default", body)
    app.router.add_put("/held", held, max_body=1000)
    app.router.add_get("/kv/{key:.*}", path)

    async def text(request: web.Request) -> web.Response:  # e.g. an error message naming the path
        return web.Response(status=404, text=f"no {request.match_info['name']}\n")

    app.router.add_get("/text/{name}", text)
    return app, seen


def _run(test: Callable[[int, h1.HTTPServer, dict[str, Any]], Awaitable[None]], max_buffered: int = 1 << 20) -> None:
    async def main() -> None:
        app, seen = _app(max_buffered)
        server = await h1.serve(app, "127.0.0.1", 0)
        try:
            await asyncio.wait_for(test(server.port, server, seen), 20)
        finally:
            await server.close()

    asyncio.run(main())


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    n = int(headers.get("content-length", "0"))
    return int(lines[0].split(" ")[1]), await reader.readexactly(n) if n else b""


async def _request(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    try:
        return await _read_response(reader)
    finally:
        writer.close()


def _put(path: str, n: int, body: bool = True) -> bytes:
    return f"PUT {path} HTTP/1.1\r\nContent-Length: {n}\r\n\r\n".encode() + (b"x" * n if body else b"")


async def _until(cond: Callable[[], bool]) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_each_route_has_its_own_body_limit_known_before_the_body() -> None:
    async def t(port: int, _s: h1.HTTPServer, seen: dict[str, Any]) -> None:
        assert await _request(port, _put("/small", 10)) == (200, b"10 max 10")
        assert await _request(port, _put("/big", 1000)) == (200, b"1000 max 1000")  # above client_max_size
        assert await _request(port, _put("/default", 100)) == (200, b"100 max 100")
        # Refused from the head: the body is never sent, and no 100 Continue is given.
        for path, n in (("/small", 11), ("/big", 1001), ("/default", 101)):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"PUT {path} HTTP/1.1\r\nContent-Length: {n}\r\nExpect: 100-continue\r\n\r\n".encode())
            status, text = await _read_response(reader)
            assert status == 413 and b"max size" in text, (path, status, text)
            writer.close()
        body = b"y" * 11
        status, _ = await _request(port, b"PUT /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        assert status == 413
        assert seen["bodies"] == [10, 1000, 100]

    _run(t)


def test_buffered_bodies_are_capped_across_connections() -> None:
    async def t(port: int, server: h1.HTTPServer, seen: dict[str, Any]) -> None:
        srv = server._srv
        # A held request keeps its 600-byte body reserved until its handler returns.
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        w1.write(_put("/held", 600))
        await asyncio.wait_for(seen["entered"].wait(), 5)
        assert srv.buffered == 600
        # A body whose head arrives while only part of another is in: reserved from its head too.
        _r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(_put("/big", 300, body=False) + b"x" * 10)
        await _until(lambda: srv.buffered == 900)
        # Beyond max_buffered (1000): 503 from the head, unread, the connection closed.
        status, text = await _request(port, _put("/big", 200))
        assert status == 503 and b"too many request bodies in progress" in text
        # Chunked bodies count as they arrive.
        status, text = await _request(port, b"PUT /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      b"c8\r\n" + b"z" * 200 + b"\r\n0\r\n\r\n")
        assert status == 503
        # A client that leaves mid-body gives its reservation back.
        w2.close()
        await _until(lambda: srv.buffered == 600)
        seen["gate"].set()
        assert await _read_response(r1) == (200, b"600")
        await _until(lambda: srv.buffered == 0)
        assert await _request(port, _put("/big", 1000)) == (200, b"1000 max 1000")
        assert srv.buffered == 0
        w1.close()

    _run(t, max_buffered=1000)


def test_paths_keep_distinct_bytes_distinct() -> None:
    async def t(port: int, _s: h1.HTTPServer, _seen: dict[str, Any]) -> None:
        got = {}
        for raw in ("a%ff", "a%fe", "a%EF%BF%BD", "caf%C3%A9", "x%2Fy"):
            status, body = await _request(port, f"GET /kv/{raw} HTTP/1.1\r\n\r\n".encode())
            assert status == 200
            got[raw] = body
        assert got == {"a%ff": b"a\xff", "a%fe": b"a\xfe", "a%EF%BF%BD": "a\ufffd".encode(),
                       "caf%C3%A9": "café".encode(), "x%2Fy": b"x/y"}
        # Raw (not percent-encoded) bytes in the target, and query values, are kept the same way.
        assert await _request(port, b"GET /kv/a\xff HTTP/1.1\r\n\r\n") == (200, b"a\xff")
        assert await _request(port, b"GET /kv/x?q=b%fe HTTP/1.1\r\n\r\n") == (200, b"b\xfe")
        # A text response naming such a path (an error message) sends its bytes back, never a 500.
        assert await _request(port, b"GET /text/a%ff HTTP/1.1\r\n\r\n") == (404, b"no a\xff\n")

    _run(t)
    assert web.decode_path("/a%ff") != web.decode_path("/a%fe")
    assert web.path_bytes(web.decode_path("/k/%80%81ok%e2%82")) == b"/k/\x80\x81ok\xe2\x82"
    assert web.decode_path("/plain") == "/plain"
