"""Spooled request bodies (agent/httpd/h1.py, routes added with spool=True): Content-Length and chunked bodies go to
a temporary file written by worker threads, the handler reads it with body_file(), memory stays within the window,
limits still answer 413, and a pipelined request after a spooled body is served."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import pytest

from pyconsul.agent.httpd import h1, web

MiB = 1024 * 1024
REAL_MEMORY, REAL_WINDOW = h1.SPOOL_MEMORY, h1.SPOOL_WINDOW  # before the fixture below shrinks them


@pytest.fixture(autouse=True)
def _small_spool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h1, "SPOOL_MEMORY", 64 * 1024)
    monkeypatch.setattr(h1, "SPOOL_WINDOW", 256 * 1024)


def _app(seen: dict[str, Any]) -> web.Application:
    app = web.Application(client_max_size=1024, max_buffered=2 * MiB)

    async def upload(request: web.Request) -> web.Response:
        f = request.body_file()
        seen["rolled"] = getattr(f, "_rolled", None)
        data = await asyncio.to_thread(f.read)
        seen["files"].append(f)
        return web.Response(text=f"{len(data)} {hashlib.sha256(data).hexdigest()}")

    async def small(request: web.Request) -> web.Response:
        return web.Response(text=f"small {len(await request.read())}")

    app.router.add_put("/up", upload, max_body=16 * MiB, spool=True)
    app.router.add_put("/small", small)
    return app


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    lines = head.decode().split("\r\n")
    length = next(int(ln.split(":")[1]) for ln in lines if ln.lower().startswith("content-length"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


def _run(test: Any) -> None:
    async def main() -> None:
        seen: dict[str, Any] = {"files": []}
        server = await h1.serve(_app(seen), "127.0.0.1", 0)
        try:
            await asyncio.wait_for(test(server, seen), 60)
        finally:
            await server.close()

    asyncio.run(main())


def test_content_length_and_chunked_bodies_are_spooled() -> None:
    body = os.urandom(8 * MiB + 3)
    want = f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()

    async def t(server: h1.HTTPServer, seen: dict[str, Any]) -> None:
        srv = server._srv
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        peak = 0
        for i in range(0, len(body), 256 * 1024):
            writer.write(body[i : i + 256 * 1024])
            await writer.drain()
            peak = max(peak, srv.buffered)
        # and a pipelined small request right behind it
        writer.write(b"PUT /small HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        assert await _response(reader) == (200, want)
        assert seen["rolled"] is True, "8 MiB went to a file on disk"
        assert await _response(reader) == (200, b"small 3")
        assert peak <= h1.SPOOL_MEMORY + h1.SPOOL_WINDOW, "the reservation is the window, not the body"
        assert srv.buffered == 0
        # chunked, in odd pieces
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 100_003):
            piece = body[i : i + 100_003]
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        assert await _response(reader) == (200, want)
        # a small body stays in memory
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        assert await _response(reader) == (200, f"5 {hashlib.sha256(b'hello').hexdigest()}".encode())
        assert seen["rolled"] is False
        writer.close()
        for _ in range(200):  # closed by worker threads after each handler
            if all(f.closed for f in seen["files"]):
                break
            await asyncio.sleep(0.01)
        assert all(f.closed for f in seen["files"])
        assert srv.buffered == 0

    _run(t)


def test_limits_still_apply() -> None:
    async def t(server: h1.HTTPServer, seen: dict[str, Any]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (16 * MiB + 1))
        status, text = await _response(reader)
        assert status == 413 and b"max size: 16777216 bytes" in text
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"z" * MiB
        try:
            for _ in range(17):
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await writer.drain()
        except ConnectionError:
            pass
        status, text = await _response(reader)
        assert status == 413
        writer.close()
        assert seen["files"] == []  # the handler never saw a body
        for _ in range(200):
            if server._srv.buffered == 0:
                break
            await asyncio.sleep(0.01)
        assert server._srv.buffered == 0

    _run(t)


def test_a_client_that_goes_away_mid_body_frees_its_spool() -> None:
    async def t(server: h1.HTTPServer, seen: dict[str, Any]) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (4 * MiB))
        writer.write(os.urandom(MiB))
        await writer.drain()
        conn = next(iter(server._srv.conns))
        for _ in range(500):
            if conn.req is not None and conn.req._spool is not None and not conn.req._spool.busy:
                break
            await asyncio.sleep(0.01)
        sp = conn.req._spool if conn.req is not None else None
        assert sp is not None
        writer.close()
        for _ in range(500):
            if sp.file.closed and server._srv.buffered == 0:
                break
            await asyncio.sleep(0.01)
        assert sp.closed and sp.file.closed and server._srv.buffered == 0
        assert seen["files"] == []

    _run(t)


def test_spooled_bodies_at_once_are_capped() -> None:
    async def t(server: h1.HTTPServer, seen: dict[str, Any]) -> None:
        conns = []
        for _ in range(h1.MAX_SPOOLED):  # uploads in progress
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            conns.append((r, w))
        for _ in range(500):
            if server._srv.spooled == h1.MAX_SPOOLED:
                break
            await asyncio.sleep(0.01)
        assert server._srv.spooled == h1.MAX_SPOOLED
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        status, text = await _response(r)
        assert status == 503 and b"too many large request bodies" in text
        w.close()
        for r, w in conns:  # the first ones finish
            w.write(b"defghij")
            assert (await _response(r))[0] == 200
            w.close()
        for _ in range(500):
            if server._srv.spooled == 0:
                break
            await asyncio.sleep(0.01)
        assert server._srv.spooled == 0 and server._srv.buffered == 0

    _run(t)


def test_a_spool_route_needs_a_limit() -> None:
    app = web.Application()

    async def h(request: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(ValueError, match="max_body"):
        app.router.add_put("/x", h, spool=True)


def test_readme_rows_match_the_code() -> None:
    from pathlib import Path

    from pyconsul.agent.http import snapshot

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| What")}
    assert rows["`PUT /v1/snapshot` body (compressed archive)"] == f"{snapshot.MAX_ARCHIVE // MiB} MiB"
    assert rows["`PUT /v1/snapshot` body held in memory while it arrives (the rest is spooled to a temporary file by "
                "worker threads; the restore reads that file)"] == (
        f"{REAL_MEMORY // MiB} MiB kept + {REAL_WINDOW // MiB} MiB not yet written")
    assert (f"at most {h1.MAX_SPOOLED} such uploads at once (503 beyond), so at most "
            f"{h1.MAX_SPOOLED * snapshot.MAX_ARCHIVE // 1024 ** 3} GiB of temporary files") in table
