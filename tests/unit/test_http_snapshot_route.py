"""/v1/snapshot compresses (GET) and verifies (PUT) archives in a worker thread: while one takes a
second, the event loop keeps answering other requests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pyconsul.agent.http import snapshot
from pyconsul.agent.http.server import errors
from pyconsul.agent.httpd import h1, web
from pyconsul.agent.state import archive


class _Meta:
    index, known_leader, last_contact_ms = 7, True, 0


class _Backend:
    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]:
        assert name == "snapshot"
        return {"state": b"state", "index": 7, "term": 1}, _Meta()

    async def write(self, data: bytes) -> Any:
        raise AssertionError("nothing is restored in this test")

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        raise AssertionError


def _call(port: int, path: str, method: str = "GET", body: bytes = b"") -> tuple[int, bytes, float]:
    """A blocking client, run in a thread: it times the server's loop, not the test's."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        lengths = [int(ln.split(b":")[1]) for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")]
        if lengths:
            while len(rest) < lengths[0]:
                rest += s.recv(65536)
        else:  # a streamed (chunked) response ends with the connection
            while chunk := s.recv(65536):
                rest += chunk
            rest = _dechunk(rest)
    return int(head.split()[1]), rest, time.monotonic() - t0


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size, _, data = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out
        out, data = out + data[:n], data[n + 2:]


_SLOW_STARTED = threading.Event()  # set by the slow archive work once it runs


def _ping_later(port: int) -> tuple[int, bytes, float]:
    assert _SLOW_STARTED.wait(10), "the slow snapshot work never started"
    return _call(port, "/ping")


def test_snapshot_work_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow_write(*args: Any) -> Iterator[bytes]:
        _SLOW_STARTED.set()
        time.sleep(1.0)  # blocks whichever thread runs it
        yield b"\x1f\x8barchive"

    def slow_read(data: bytes, max_state: int = archive.MAX_STATE) -> tuple[Any, bytes]:
        _SLOW_STARTED.set()
        time.sleep(1.0)
        raise archive.ArchiveError("not a snapshot")

    monkeypatch.setattr(archive, "archive_chunks", slow_write)
    monkeypatch.setattr(archive, "read_archive", slow_read)

    async def main() -> None:
        app = web.Application(middlewares=[errors])
        snapshot.register(app, _Backend())

        async def ping(request: web.Request) -> web.Response:
            return web.Response(text="pong")

        app.router.add_get("/ping", ping)
        server = await h1.serve(app, "127.0.0.1", 0)
        try:
            for method, body, want in (("GET", b"", 200), ("PUT", b"junk", 400)):
                # The clients run in threads of their own: a blocked server loop cannot delay their clocks.
                _SLOW_STARTED.clear()
                with ThreadPoolExecutor(2) as pool:
                    slow = pool.submit(_call, server.port, "/v1/snapshot", method, body)
                    pinged = pool.submit(_ping_later, server.port)
                    while not (slow.done() and pinged.done()):
                        await asyncio.sleep(0.01)
                status, text, took = pinged.result()
                assert (status, text) == (200, b"pong") and took < 0.5, f"{method}: ping took {took:.2f} s"
                status, text, _ = slow.result()
                assert status == want, (method, status, text)
                if method == "GET":
                    assert text == b"\x1f\x8barchive"  # the generator's pieces, sent chunked
        finally:
            await server.close()

    asyncio.run(main())


def test_a_restore_larger_than_one_raft_entry_is_handed_to_the_backend_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A state over one Raft entry (wire.MAX_ENTRY) is no longer refused: the route hands the whole Restore to the
    backend, whose leader commits it in pieces (state/restore.py; tests/integration/test_large_state.py)."""
    from pyconsul.agent.raft import wire
    from pyconsul.agent.state import commands as c

    big = b"s" * (wire.MAX_ENTRY + 1)
    monkeypatch.setattr(archive, "read_archive", lambda data, max_state=archive.MAX_STATE: (None, big))
    written: list[bytes] = []

    class Backend(_Backend):
        async def write(self, data: bytes) -> Any:
            written.append(data)
            return True

    async def main() -> None:
        app = web.Application(middlewares=[errors])
        snapshot.register(app, Backend())
        server = await h1.serve(app, "127.0.0.1", 0)
        try:
            with ThreadPoolExecutor(1) as pool:
                call = pool.submit(_call, server.port, "/v1/snapshot", "PUT", b"archive")
                while not call.done():
                    await asyncio.sleep(0.01)
            status, text, _ = call.result()
            assert status == 200, text
        finally:
            await server.close()

    asyncio.run(main())
    assert len(written) == 1 and c.decode(written[0]) == c.Restore(big)
