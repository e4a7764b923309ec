"""The head check of spooled routes (agent/httpd/h1.py, web.Application.head_check; issue 14: an anonymous
PUT /v1/snapshot must not make the agent store a gigabyte): the check runs from the request head, before any body
byte is read, a spool opened or a 100 Continue sent; a refusal is answered and the connection closed with nothing
stored; an allowed request is spooled and handled as before; a failing or slow check answers 500 / 503."""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

import pytest

from pyconsul.agent.httpd import h1, web

MiB = 1024 * 1024


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every SpooledTemporaryFile the server opens."""
    made: list[Any] = []
    real = tempfile.SpooledTemporaryFile

    def spy(*args: Any, **kw: Any) -> Any:
        f = real(*args, **kw)
        made.append(f)
        return f

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", spy)  # h1 imports tempfile when it first spools
    monkeypatch.setattr(h1, "SPOOL_MEMORY", 64 * 1024)
    return made


def _app(seen: dict[str, Any]) -> web.Application:
    app = web.Application(client_max_size=1024, max_buffered=16 * MiB)

    async def upload(request: web.Request) -> web.Response:
        data = await asyncio.to_thread(request.body_file().read)
        seen["handled"].append(len(data))
        return web.Response(text=f"stored {len(data)}")

    async def check(request: web.Request) -> web.Response | None:
        seen["checked"].append(request.path)
        token = request.headers.get("X-Token", "")
        if token == "boom":
            raise RuntimeError("resolver broke")
        if token == "slow":
            await asyncio.sleep(60)
        return None if token == "ok" else web.Response(status=403, text="Permission denied\n")

    app.router.add_put("/up", upload, max_body=64 * MiB, spool=True)
    app.router.add_put("/small", upload)
    app.head_check = check
    return app


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    lines = head.decode().split("\r\n")
    length = next(int(ln.split(":")[1]) for ln in lines if ln.lower().startswith("content-length"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


def _run(test: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {"handled": [], "checked": []}

    async def main() -> None:
        server = await h1.serve(_app(seen), "127.0.0.1", 0)
        try:
            await asyncio.wait_for(test(server), 60)
        finally:
            await server.close()

    asyncio.run(main())
    return seen


async def _closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (what it still sends is read and dropped)."""
    try:
        while await asyncio.wait_for(reader.read(65536), 10):
            pass
    except ConnectionResetError:
        pass
    return True


def test_refused_before_the_body_is_read_or_stored(spools: list[Any]) -> None:
    async def t(server: h1.HTTPServer) -> None:
        srv = server._srv
        # with Expect: 100-continue the answer is the refusal, never a 100
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (32 * MiB))
        assert await _response(reader) == (403, b"Permission denied\n")
        assert await _closed(reader)
        writer.close()
        # a client that sends its body at once: 403, the body is dropped, nothing buffered beyond a window
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (8 * MiB) + b"x" * (2 * MiB))
        assert await _response(reader) == (403, b"Permission denied\n")
        assert srv.buffered == 0 and srv.spooled == 0
        assert await _closed(reader)
        writer.close()
        # chunked too
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Token: no\r\n\r\n"
                     b"100000\r\n" + b"y" * MiB + b"\r\n")
        assert await _response(reader) == (403, b"Permission denied\n")
        assert await _closed(reader)
        writer.close()
        assert srv.spooled == 0

    seen = _run(t)
    assert seen["checked"] == ["/up"] * 3
    assert seen["handled"] == []
    assert spools == [], "no spool file was opened for a refused request"


def test_allowed_request_is_spooled_and_a_non_spooled_route_is_not_checked(spools: list[Any]) -> None:
    async def t(server: h1.HTTPServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nX-Token: ok\r\nContent-Length: %d\r\n"
                     b"Expect: 100-continue\r\n\r\n" % (3 * MiB))
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"z" * (3 * MiB))
        assert await _response(reader) == (200, b"stored %d" % (3 * MiB))
        # keep-alive: a chunked upload, sent with its head, then a pipelined small request
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nX-Token: ok\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\nPUT /small HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
        assert await _response(reader) == (200, b"stored 5")
        assert await _response(reader) == (200, b"stored 2")
        writer.close()

    seen = _run(t)
    assert seen["checked"] == ["/up", "/up"]
    assert seen["handled"] == [3 * MiB, 5, 2]
    assert len(spools) == 2


def test_failing_slow_and_abandoned_checks(spools: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h1, "HEAD_TIMEOUT", 0.3)

    async def t(server: h1.HTTPServer) -> None:
        srv = server._srv
        for token, want in ((b"boom", (500, b"resolver broke\n")),
                            (b"slow", (503, b"checking the request took too long: retry later\n"))):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nX-Token: %b\r\nContent-Length: 10\r\n\r\n0123456789" % token)
            assert await _response(reader) == want
            writer.close()
        # a client that goes away while its check runs leaves nothing behind
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nX-Token: slow\r\nContent-Length: 10\r\n\r\n")
        for _ in range(200):
            if len(srv.conns) == 1 and next(iter(srv.conns)).task is not None:
                break
            await asyncio.sleep(0.01)
        writer.close()
        for _ in range(300):
            if not srv.conns:
                break
            await asyncio.sleep(0.01)
        assert not srv.conns and srv.spooled == 0 and srv.buffered == 0

    seen = _run(t)
    assert seen["handled"] == []
    assert spools == []
