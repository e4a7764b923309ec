"""agent.httpd.web (routing, requests, responses) and agent.httpd.h1 (the HTTP/1.1 server) over real sockets."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.http.api import json_response
from pyconsul.agent.http.server import errors
from pyconsul.agent.httpd import h1, web

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


# ---------------------------------------------------------------- helpers


def make_app(client_max_size: int = 1024) -> tuple[web.Application, dict[str, Any]]:
    seen: dict[str, Any] = {"started": asyncio.Event(), "release": asyncio.Event(), "finished": [], "cancelled": []}
    app = web.Application(middlewares=[errors], client_max_size=client_max_size)

    async def echo(request: web.Request) -> web.Response:
        return json_response({"path": request.path, "match": request.match_info, "query": dict(request.query),
                              "all_x": request.query.getall("x"), "method": request.method,
                              "ua": request.headers.get("user-agent"), "cl": request.content_length})

    async def body(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/octet-stream")

    async def slow(request: web.Request) -> web.Response:
        seen["started"].set()
        try:
            await seen["release"].wait()
        except asyncio.CancelledError:
            seen["cancelled"].append(request.path)
            raise
        seen["finished"].append(request.path)
        return web.Response(text="slow done")

    async def sleepy(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.match_info["secs"]))
        return web.Response(text=f"slept {request.match_info['secs']}")

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("kaboom detail")

    async def bad(request: web.Request) -> web.Response:
        raise BadRequest("Invalid thing")

    async def teapot(request: web.Request) -> web.Response:
        raise web.HTTPException("no coffee\n")

    r = app.router
    r.add_get("/v1/agent/members", echo)
    r.add_put("/v1/agent/members/x", echo)
    r.add_get("/v1/catalog/service/{name}", echo)
    r.add_get("/v1/kv/{key:.*}", echo)
    r.add_put("/v1/kv/{key:.*}", body)
    r.add_delete("/v1/kv/{key:.*}", echo)
    r.add_post("/body", body)
    r.add_get("/slow", slow)
    r.add_get("/sleep/{secs}", sleepy)
    r.add_get("/boom", boom)
    r.add_get("/bad", bad)
    r.add_get("/teapot", teapot)
    return app, seen


def run(test: Callable[[int, dict[str, Any]], Awaitable[None]], client_max_size: int = 1024) -> None:
    async def main() -> None:
        app, seen = make_app(client_max_size)
        server = await h1.serve(app, "127.0.0.1", 0)
        try:
            await asyncio.wait_for(test(server.port, seen), 20)
        finally:
            await server.close()

    asyncio.run(main())


async def connect(port: int) -> Conn:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    n = int(headers.get("content-length", "0"))
    return status, headers, await reader.readexactly(n) if n else b""


async def request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await connect(port)
    writer.write(raw)
    try:
        return await read_response(reader)
    finally:
        writer.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


async def closed(reader: asyncio.StreamReader) -> bool:
    """True if the server closes the connection (EOF) without sending anything more."""
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


# ---------------------------------------------------------------- routing and decoding


def test_routing_literal_segment_and_rest_of_path() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        import json

        st, _h, b = await request(port, get("/v1/agent/members"))
        assert st == 200 and json.loads(b)["match"] == {}
        st, _h, b = await request(port, get("/v1/catalog/service/web"))
        assert json.loads(b)["match"] == {"name": "web"}
        st, _h, b = await request(port, get("/v1/catalog/service/a/b"))
        assert st == 404, "{name} matches one segment only"
        st, _h, b = await request(port, get("/v1/kv/a/b/c"))
        assert json.loads(b)["match"] == {"key": "a/b/c"}
        st, _h, b = await request(port, get("/v1/kv/"))
        assert st == 200 and json.loads(b)["match"] == {"key": ""}
        st, _h, b = await request(port, get("/v1/kv/dir/"))
        assert json.loads(b)["match"] == {"key": "dir/"}

    run(t)


def test_path_and_query_are_url_decoded() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        import json

        st, _h, b = await request(port, get("/v1/kv/caf%C3%A9%20x%2Fy?recurse&x=1&x=2&sep=%2F&q=a+b%26c&empty="))
        body = json.loads(b)
        assert st == 200
        assert body["match"] == {"key": "café x/y"} and body["path"] == "/v1/kv/café x/y"
        assert body["query"] == {"recurse": "", "x": "1", "sep": "/", "q": "a b&c", "empty": ""}
        assert body["all_x"] == ["1", "2"]
        st, _h, b = await request(port, get("http://example.com/v1/kv/abs?x=9"))  # absolute-form target
        assert st == 200 and json.loads(b)["match"] == {"key": "abs"} and json.loads(b)["query"] == {"x": "9"}

    run(t)


def test_unknown_path_is_404_and_other_method_is_405() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        st, h, b = await request(port, get("/v1/no/such/thing"))
        assert (st, b) == (404, b"404 page not found\n") and h["content-type"].startswith("text/plain")
        st, h, b = await request(port, b"DELETE /v1/agent/members HTTP/1.1\r\nHost: t\r\n\r\n")
        assert st == 405 and b == b"method DELETE not allowed\n" and h["allow"] == "GET, HEAD"
        st, h, b = await request(port, b"POST /v1/kv/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert st == 405 and h["allow"] == "DELETE, GET, HEAD, PUT"

    run(t)


def test_head_has_content_length_but_no_body() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        writer.write(b"HEAD /v1/agent/members HTTP/1.1\r\n\r\n" + get("/v1/agent/members"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: " in head
        st, _h, b = await read_response(reader)  # the next bytes are the GET's response, not a body
        assert st == 200 and b.startswith(b"{")
        writer.close()

    run(t)


# ---------------------------------------------------------------- connections


def test_keep_alive_two_requests_on_one_connection_and_http10() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        for _i in range(2):
            writer.write(get("/v1/agent/members"))
            st, h, _b = await read_response(reader)
            assert st == 200 and "connection" not in h
        writer.write(get("/v1/agent/members", "Connection: close\r\n"))
        st, h, _b = await read_response(reader)
        assert st == 200 and h["connection"] == "close" and await closed(reader)

        reader, writer = await connect(port)
        writer.write(b"GET /v1/agent/members HTTP/1.0\r\n\r\n")
        st, h, _b = await read_response(reader)
        assert st == 200 and h["connection"] == "close" and await closed(reader)

        reader, writer = await connect(port)
        writer.write(b"GET /v1/agent/members HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        st, h, _b = await read_response(reader)
        assert h["connection"] == "keep-alive"
        writer.write(b"GET /v1/kv/again HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        writer.close()

    run(t)


def test_pipelined_requests_are_answered_in_order() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        writer.write(get("/sleep/0.3") + get("/v1/kv/second") + b"\r\n" + get("/sleep/0.01") + get("/v1/kv/fourth"))
        bodies = [(await read_response(reader))[2] for _ in range(4)]
        assert bodies[0] == b"slept 0.3" and b'"second"' in bodies[1]
        assert bodies[2] == b"slept 0.01" and b'"fourth"' in bodies[3]
        writer.close()

    run(t)


def test_pipelining_flood_is_flow_controlled() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        n = 8000  # ~350 KiB of requests behind a slow one: reading pauses, then resumes
        writer.write(get("/sleep/0.2") + b"".join(get(f"/v1/kv/{i}") for i in range(n)))
        assert (await read_response(reader))[2] == b"slept 0.2"
        for i in range(n):
            st, _h, b = await read_response(reader)
            assert st == 200 and f'"key": "{i}"'.encode() in b
        writer.close()

    run(t)


def test_half_closed_client_still_gets_its_answers() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        writer.write(get("/sleep/0.1") + get("/v1/kv/b"))
        writer.write_eof()
        assert (await read_response(reader))[2] == b"slept 0.1"
        assert (await read_response(reader))[0] == 200
        assert await closed(reader)

    run(t)


def test_slow_handler_does_not_block_other_connections() -> None:
    async def t(port: int, seen: dict[str, Any]) -> None:
        r1, w1 = await connect(port)
        w1.write(get("/slow"))
        await seen["started"].wait()
        st, _h, _b = await request(port, get("/v1/agent/members"))
        assert st == 200 and not seen["finished"]
        seen["release"].set()
        assert (await read_response(r1))[2] == b"slow done"
        w1.close()

    run(t)


def test_handler_outlives_its_client_but_is_cancelled_on_shutdown() -> None:
    async def main() -> None:
        app, seen = make_app()
        server = await h1.serve(app, "127.0.0.1", 0)
        reader, writer = await connect(server.port)
        writer.write(get("/slow"))
        await seen["started"].wait()
        writer.close()
        await closed(reader)
        # a negative assertion needs an observation window: watch 200 ms for a cancellation
        window_end = asyncio.get_running_loop().time() + 0.2
        while asyncio.get_running_loop().time() < window_end:
            assert not seen["cancelled"], "a client disconnect does not cancel the handler"
            await asyncio.sleep(0.01)
        seen["release"].set()
        deadline = asyncio.get_running_loop().time() + 5
        while seen["finished"] != ["/slow"] and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # poll with a deadline
        assert seen["finished"] == ["/slow"]

        seen["started"].clear()
        seen["release"].clear()
        reader, writer = await connect(server.port)
        writer.write(get("/slow"))
        await seen["started"].wait()
        await server.close()
        assert seen["cancelled"] == ["/slow"]
        assert await closed(reader)
        with pytest.raises(OSError):
            await connect(server.port)

    asyncio.run(asyncio.wait_for(main(), 20))


# ---------------------------------------------------------------- bodies


def test_content_length_and_chunked_bodies() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        writer.write(b"POST /body HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel")
        await asyncio.sleep(0.05)
        writer.write(b"lo")
        assert (await read_response(reader))[2] == b"hello"
        chunked = (b"POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n")
        writer.write(chunked[:40])
        await asyncio.sleep(0.05)
        writer.write(chunked[40:] + get("/v1/kv/after"))
        st, _h, b = await read_response(reader)
        assert st == 200 and b == b"hello 0123456789"
        assert (await read_response(reader))[0] == 200, "the connection stays usable after a chunked body"
        writer.close()

    run(t)


def test_expect_100_continue() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        writer.write(b"POST /body HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"data")
        assert (await read_response(reader))[2] == b"data"
        writer.write(b"POST /body HTTP/1.1\r\nContent-Length: 2\r\nExpect: something-else\r\n\r\nab")
        assert (await read_response(reader))[0] == 417
        writer.close()

    run(t)


def test_oversize_body_is_413_and_closes() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        writer.write(b"POST /body HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        st, h, b = await read_response(reader)  # no 100 Continue: the body is refused unread
        assert st == 413 and b"max size: 1024" in b and h["connection"] == "close"
        assert await closed(reader)
        body = b"x" * 3000
        st, h, b = await request(port, b"POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        assert st == 413 and h["connection"] == "close"

    run(t)


def test_kv_value_limit_keeps_consuls_413() -> None:
    from pyconsul.agent.http import kv

    class Backend:
        async def write(self, data: bytes) -> Any:
            return True

        async def read(self, *a: Any, **k: Any) -> Any:
            raise AssertionError

        async def status(self, *a: Any, **k: Any) -> Any:
            raise AssertionError

    async def main() -> None:
        app = web.Application(middlewares=[errors], client_max_size=1024 * 1024)
        kv.register(app, Backend())
        server = await h1.serve(app, "127.0.0.1", 0)
        try:
            # The route's own limit (512 KiB, below client_max_size) applies from Content-Length: refused
            # unread, with Consul's text.
            for n in (kv.MAX_VALUE + 1, 2 * 1024 * 1024):
                reader, writer = await connect(server.port)
                writer.write(b"PUT /v1/kv/big HTTP/1.1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % n)
                st, h, b = await read_response(reader)  # no 100 Continue first
                assert st == 413 and h["connection"] == "close", (st, h)
                assert b == b"Request body(%d bytes) too large, max size: 524288 bytes\n" % n, b
                writer.close()
            st, _h, b = await request(server.port, b"PUT /v1/kv/big HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
                                      % kv.MAX_VALUE + b"v" * kv.MAX_VALUE)
            assert (st, b) == (200, b"true")
            body = b"v" * (kv.MAX_VALUE + 1)  # chunked: stopped at the limit
            st, _h, b = await request(server.port, b"PUT /v1/kv/big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
            assert (st, b) == (413, b"Request body(more than 524288 bytes) too large, max size: 524288 bytes\n")
            n = kv.MAX_TXN_BODY + 1
            st, _h, b = await request(server.port, b"PUT /v1/txn HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % n)
            assert (st, b) == (413, b"Request body(%d bytes) too large, max size: 524288 bytes\n" % n)
        finally:
            await server.close()

    asyncio.run(main())


# ---------------------------------------------------------------- malformed input and limits


@pytest.mark.parametrize(("raw", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /x\r\n\r\n", 400),
    (b"GET  /x HTTP/1.1\r\n\r\n", 400),
    (b"G(T /x HTTP/1.1\r\n\r\n", 400),
    (b"GET x HTTP/1.1\r\n\r\n", 400),
    (b"GET /x HTTP/2.0\r\n\r\n", 505),
    (b"GET /x FTP/1.1\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nNo colon\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nBad Name: 1\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nA: a\x00b\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\nA: 1\r\n\r\n", 400),
    (b"POST /body HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /body HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
    (b"POST /body HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST /body HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400),
])
def test_malformed_requests_get_4xx_5xx_and_close(raw: bytes, status: int) -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        writer.write(raw)
        st, h, _b = await read_response(reader)
        assert st == status and h["connection"] == "close"
        assert await closed(reader)

    run(t)


def test_size_limits() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        st, _h, _b = await request(port, get("/v1/kv/" + "a" * 9000))
        assert st == 414
        st, _h, _b = await request(port, get("/v1/kv/x", "X-Big: " + "b" * 9000 + "\r\n"))
        assert st == 431
        st, _h, _b = await request(port, get("/v1/kv/x", "".join(f"X-{i}: {'c' * 4000}\r\n" for i in range(20))))
        assert st == 431
        st, _h, _b = await request(port, get("/v1/kv/x", "".join(f"X-{i}: 1\r\n" for i in range(101))))
        assert st == 431
        st, _h, _b = await request(port, get("/v1/kv/x", "".join(f"X-{i}: 1\r\n" for i in range(99))))
        assert st == 200
        reader, writer = await connect(port)  # a head that never ends
        writer.write(b"GET /x HTTP/1.1\r\n" + b"X: y\r\n" * 12000)
        assert (await read_response(reader))[0] == 431
        writer.close()

    run(t)


def test_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h1, "HEAD_TIMEOUT", 0.3)
    monkeypatch.setattr(h1, "BODY_TIMEOUT", 0.3)
    monkeypatch.setattr(h1, "KEEPALIVE_TIMEOUT", 0.3)

    async def t(port: int, _: dict[str, Any]) -> None:
        reader, writer = await connect(port)
        writer.write(b"GET /v1/kv/x HTTP/1.1\r\nHost:")  # slowloris: a head that never completes
        assert (await read_response(reader))[0] == 408
        reader, writer = await connect(port)
        writer.write(b"POST /body HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        assert (await read_response(reader))[0] == 408
        reader, writer = await connect(port)
        writer.write(get("/v1/kv/x"))
        assert (await read_response(reader))[0] == 200
        assert await closed(reader), "an idle keep-alive connection is closed silently"
        reader, writer = await connect(port)
        assert await closed(reader), "so is a connection that never sends anything"

    run(t)


# ---------------------------------------------------------------- errors


def test_handler_errors_never_leak_tracebacks() -> None:
    async def t(port: int, _: dict[str, Any]) -> None:
        st, h, b = await request(port, get("/boom"))
        assert st == 500 and b == b"kaboom detail\n" and b"Traceback" not in b
        assert h["content-type"] == "text/plain; charset=utf-8"
        st, _h, b = await request(port, get("/bad"))
        assert (st, b) == (400, b"Invalid thing\n")
        st, _h, b = await request(port, get("/teapot"))
        assert (st, b) == (500, b"no coffee\n")
        reader, writer = await connect(port)  # the connection survives a handler error
        writer.write(get("/boom") + get("/v1/kv/ok"))
        assert (await read_response(reader))[0] == 500
        assert (await read_response(reader))[0] == 200
        writer.close()

    run(t)


def test_response_construction() -> None:
    assert web.Response(text="hi").headers == {"Content-Type": "text/plain; charset=utf-8"}
    r = web.Response(text="[]", content_type="application/json", headers={"X-Consul-Index": "3"})
    assert r.headers == {"X-Consul-Index": "3", "Content-Type": "application/json; charset=utf-8"}
    assert web.Response(body=b"\x00").headers == {"Content-Type": "application/octet-stream"}
    assert web.Response(status=404).headers == {} and web.Response(status=404).body == b""
    with pytest.raises(ValueError):
        web.Response(text="a", body=b"b")
    h = web.Headers({"content-type": "x"})
    assert h["Content-Type"] == "x" and "CONTENT-TYPE" in h and h.get("missing") is None
    q = web.Query("a=1&a=2&flag&b=%20")
    assert dict(q) == {"a": "1", "flag": "", "b": " "} and q.getall("a") == ["1", "2"] and "flag" in q


def test_router_rejects_duplicates_and_bad_paths() -> None:
    app = web.Application()

    async def h(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/a/{x}", h)
    with pytest.raises(ValueError):
        app.router.add_get("/a/{x}", h)
    with pytest.raises(ValueError):
        app.router.add_get("a", h)


def test_parse_head_is_pure() -> None:
    method, target, version, fields = h1.parse_head(b"PUT /v1/kv/a?cas=1 HTTP/1.0\r\nX-A: 1\r\nx-a: 2\r\nHost:  h \t")
    assert (method, target, version) == ("PUT", "/v1/kv/a?cas=1", (1, 0))
    assert fields == {"x-a": "1, 2", "host": "h"}


def test_importing_the_agent_loads_neither_aiohttp_nor_cryptography() -> None:
    code = ("import sys, pyconsul.agent.agent; bad = [m for m in ('aiohttp', 'cryptography') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_http_package_has_no_import_cycle() -> None:
    """Route modules depend on agent.http.api only; agent.http.server (the app) imports them, never the reverse."""
    import ast
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[2] / "agent" / "http"
    imports: dict[str, set[str]] = {}
    for p in sorted(pkg.glob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "pyconsul.agent.http":
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pyconsul.agent.http."):
                found.add(node.module.removeprefix("pyconsul.agent.http."))
        imports[p.stem] = found
    assert imports["api"] == set()
    assert imports["authz"] == set()  # ACL enforcement helpers: like api, a leaf route modules may use
    routes = {"agent_routes", "kv", "catalog", "session", "snapshot"}
    for r in routes:
        assert imports[r] <= {"api", "authz"}, (r, imports[r])
    assert imports["server"] >= routes | {"api"}
