"""agent.logfeed (the log fan-out behind /v1/agent/monitor: levels, bounded queues that drop and count,
the subscriber limit) and the streamed route over a real loopback socket (httpd's StreamResponse)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from pyconsul.agent import logfeed
from pyconsul.agent.http import monitor
from pyconsul.agent.http.server import errors
from pyconsul.agent.httpd import h1, web
from pyconsul.agent.logfeed import LogFeed, TooManySubscribers


def _feed(name: str) -> tuple[LogFeed, logging.Logger]:
    root = logging.getLogger(name)
    root.propagate = False
    root.handlers[:] = []
    feed = LogFeed()
    feed.attach(root, logging.INFO, logging.Formatter("[%(levelname)s] %(name)s: %(message)s"))
    return feed, root


async def _next(it: AsyncIterator[bytes]) -> str:
    return (await asyncio.wait_for(anext(it), 5)).decode()


def test_levels_and_root_level_follow_subscribers() -> None:
    async def main() -> None:
        feed, root = _feed("t-feed-levels")
        assert root.level == logging.INFO
        info = feed.subscribe(logging.INFO)
        debug = feed.subscribe(logging.DEBUG)
        assert root.level == logging.DEBUG  # lowered for the debug reader
        log = root.getChild("x")
        log.debug("d1")
        log.info("i1")
        assert await _next(debug.lines()) == "[DEBUG] t-feed-levels.x: d1\n[INFO] t-feed-levels.x: i1\n"
        info_lines = info.lines()
        assert await _next(info_lines) == "[INFO] t-feed-levels.x: i1\n"
        feed.unsubscribe(debug)
        assert root.level == logging.INFO
        await info_lines.aclose()  # closing the stream unsubscribes
        assert feed.subs == []

    asyncio.run(main())


def test_slow_reader_loses_lines_and_is_told() -> None:
    async def main() -> None:
        feed, root = _feed("t-feed-drop")
        sub = feed.subscribe(logging.INFO)
        extra = 10
        for i in range(logfeed.MAX_QUEUED + extra):
            root.info("line %d", i)
        assert sub.dropped == extra and feed.dropped_total == extra
        text = await _next(sub.lines())
        lines = text.splitlines()
        assert lines[0].startswith(f"[WARN] monitor: dropped {extra} log lines")
        assert len(lines) == 1 + logfeed.MAX_QUEUED
        assert lines[-1].endswith(f"line {logfeed.MAX_QUEUED - 1}")  # the newest lines were the ones dropped
        root.info("after")
        it = sub.lines()
        assert await _next(it) == "[INFO] t-feed-drop: after\n"  # told once only
        await it.aclose()

    asyncio.run(main())


def test_subscriber_limit_and_level_names() -> None:
    async def main() -> None:
        feed, _ = _feed("t-feed-limit")
        subs = [feed.subscribe(logging.INFO) for _ in range(logfeed.MAX_SUBSCRIBERS)]
        with pytest.raises(TooManySubscribers):
            feed.subscribe(logging.INFO)
        for s in subs:
            feed.unsubscribe(s)

    asyncio.run(main())
    assert logfeed.parse_level("TRACE") == logging.DEBUG
    assert logfeed.parse_level("err") == logging.ERROR
    with pytest.raises(ValueError, match="Unknown log level: loud"):
        logfeed.parse_level("loud")


def test_json_lines() -> None:
    async def main() -> None:
        feed, root = _feed("t-feed-json")
        sub = feed.subscribe(logging.INFO, as_json=True)
        root.warning("careful <now>")
        text = await _next(sub.lines())
        assert '"@level": "warn"' in text and '"@message": "careful <now>"' in text
        assert '"@module": "t-feed-json"' in text and text.endswith("}\n")
        feed.unsubscribe(sub)

    asyncio.run(main())


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    return int(lines[0].split()[1]), headers


async def _chunk(reader: asyncio.StreamReader) -> bytes:
    size = int((await asyncio.wait_for(reader.readline(), 5)).strip(), 16)
    data = await reader.readexactly(size + 2)
    return data[:-2]


def test_monitor_route_streams_lines_and_lets_go_of_a_closed_client() -> None:
    async def main() -> None:
        feed, root = _feed("t-feed-http")
        app = web.Application(middlewares=[errors])
        monitor.register(app, feed)
        server = await h1.serve(app, "127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /v1/agent/monitor?loglevel=bogus HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers = await _head(reader)
            assert status == 400
            assert await reader.readexactly(int(headers["content-length"])) == b"Unknown log level: bogus\n"
            writer.close()

            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /v1/agent/monitor?loglevel=debug HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers = await _head(reader)
            assert status == 200 and headers["transfer-encoding"] == "chunked"
            assert len(feed.subs) == 1
            root.getChild("agent").debug("hello monitor")
            assert await _chunk(reader) == b"[DEBUG] t-feed-http.agent: hello monitor\n"
            writer.close()
            for _ in range(100):  # the server notices the closed connection and unsubscribes
                if not feed.subs:
                    break
                await asyncio.sleep(0.05)
            assert feed.subs == []

            _, writer2 = await asyncio.open_connection("127.0.0.1", server.port)  # still open at shutdown
            writer2.write(b"GET /v1/agent/monitor HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(100):
                if feed.subs:
                    break
                await asyncio.sleep(0.05)
            assert len(feed.subs) == 1
        finally:
            await asyncio.wait_for(server.close(), 10)  # cancels the open stream
        assert feed.subs == []
        writer2.close()

    asyncio.run(main())


def test_readme_limits_match_the_code() -> None:
    from pathlib import Path

    from pyconsul.agent.cli import services

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split(" | ")[0].lstrip("| ").strip(): line.split(" | ")[1].strip() for line in table.splitlines()
            if line.startswith("| ")}
    assert rows["`/v1/agent/monitor` streams at once / lines queued per stream"] == (
        f"{logfeed.MAX_SUBSCRIBERS} / {logfeed.MAX_QUEUED}")
    assert rows["A service definition file given to `pyconsul services register\\|deregister`"] == (
        f"{services.MAX_DEFINITION_FILE // (1024 * 1024)} MiB")


def test_a_client_that_stops_reading_loses_lines_not_memory() -> None:
    """The server stops writing while the client's socket is full (transport paused); lines logged
    meanwhile wait in the bounded queue, then are dropped and counted; the stream tells the reader."""
    import socket

    async def main() -> None:
        feed, root = _feed("t-feed-slow")
        app = web.Application(middlewares=[errors])
        monitor.register(app, feed)
        server = await h1.serve(app, "127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            await loop.sock_sendall(sock, b"GET /v1/agent/monitor HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(100):
                if feed.subs:
                    break
                await asyncio.sleep(0.05)
            sub = feed.subs[0]
            line = "x" * 2000
            for i in range(5000):  # 10 MB of log while the client reads nothing
                root.info("%d %s", i, line)
                if i % 50 == 0:
                    await asyncio.sleep(0)  # let the stream write what the socket takes
            assert sub.dropped > 0
            (conn,) = [c for c in server._srv.conns if c.transport is not None]
            assert conn.transport is not None
            buffered = conn.transport.get_write_buffer_size()
            assert buffered < 2 * 1024 * 1024, buffered  # one batch beyond the high-water mark at most
            received = b""
            while b"dropped" not in received:  # reading again: the stream resumes and says what was lost
                received += await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5)
            told = int(received.split(b"monitor: dropped ", 1)[1].split(b" ", 1)[0])
            assert 0 < told <= sub.dropped
        finally:
            sock.close()
            await asyncio.wait_for(server.close(), 10)

    asyncio.run(main())


def test_http10_client_gets_the_stream_unchunked_and_head_gets_no_body() -> None:
    async def main() -> None:
        feed, root = _feed("t-feed-http10")
        app = web.Application(middlewares=[errors])
        monitor.register(app, feed)
        server = await h1.serve(app, "127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /v1/agent/monitor HTTP/1.0\r\n\r\n")
            status, headers = await _head(reader)
            assert status == 200 and "transfer-encoding" not in headers and headers["connection"] == "close"
            root.info("plain")
            assert await asyncio.wait_for(reader.readline(), 5) == b"[INFO] t-feed-http10: plain\n"
            writer.close()

            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"HEAD /v1/agent/monitor HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _ = await _head(reader)
            assert status == 200
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no body
            writer.close()
            for _ in range(100):
                if not feed.subs:
                    break
                await asyncio.sleep(0.05)
            assert feed.subs == []
        finally:
            await asyncio.wait_for(server.close(), 10)

    asyncio.run(main())
