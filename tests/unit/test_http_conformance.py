"""An HTTP/1.1 conformance corpus for agent.httpd.h1: raw bytes in, the exact sequence of responses out.

Each case sends its bytes on a fresh connection, half-closes it, and reads every response until the
server closes; then again through the protocol object, one byte at a time and in two segments split at
every point (as a slow or fragmenting peer delivers it), with the same expectations: the statuses in
order (a pipelined request after one that closes the connection is never answered), the echoed bodies
where they matter, and whether the last response says `Connection: close`. RFC 9112 is the reference;
where it lets a server choose, the choice is Go net/http's (what Consul's clients meet) or stricter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from pyconsul.agent.httpd import h1, web

MAX_BODY = 1024


@dataclass(frozen=True)
class Case:
    raw: bytes
    statuses: tuple[int, ...]
    close: bool = False  # the last response carries Connection: close (and the server closes)
    bodies: tuple[bytes | None, ...] = ()  # per response; None: not checked
    head: tuple[int, ...] = ()  # indices of responses to HEAD requests (they have no body)


def get(target: str = "/x", extra: str = "", version: str = "HTTP/1.1") -> bytes:
    return f"GET {target} {version}\r\nHost: t\r\n{extra}\r\n".encode()


def post(body: bytes, extra: str = "") -> bytes:
    return f"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def chunked(payload: bytes, extra: str = "") -> bytes:
    return f"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n{extra}\r\n".encode() + payload


CORPUS: dict[str, Case] = {
    # --- request line (RFC 9112 §3)
    "plain GET": Case(get(), (200,), bodies=(b"ok",)),
    "empty lines before the request line are ignored": Case(b"\r\n\r\n" + get(), (200,)),
    "absolute-form target": Case(get("http://t:8500/x?a=1"), (200,)),
    "methods are case-sensitive": Case(b"get /x HTTP/1.1\r\nHost: t\r\n\r\n", (405,)),
    "unknown method on a known path": Case(b"BREW /x HTTP/1.1\r\nHost: t\r\n\r\n", (405,)),
    "unknown path": Case(get("/nope"), (404,)),
    "asterisk-form": Case(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", (404,)),
    "HTTP/1.0 closes by default": Case(get(version="HTTP/1.0") + get(), (200,), close=True),
    "HTTP/1.0 keep-alive": Case(get(version="HTTP/1.0", extra="Connection: keep-alive\r\n") + get(), (200, 200)),
    "HTTP/0.9 request line": Case(b"GET /x\r\n\r\n", (400,), close=True),
    "unsupported major version": Case(get(version="HTTP/2.0"), (505,), close=True),
    "lower-case protocol name": Case(get(version="http/1.1"), (400,), close=True),
    "extra token in the request line": Case(b"GET /x HTTP/1.1 x\r\n\r\n", (400,), close=True),
    "tab as separator": Case(b"GET\t/x HTTP/1.1\r\n\r\n", (400,), close=True),
    "two spaces as separator": Case(b"GET  /x HTTP/1.1\r\n\r\n", (400,), close=True),
    "origin-form must start with /": Case(get("x"), (400,), close=True),
    "NUL in the target": Case(b"GET /x\x00y HTTP/1.1\r\n\r\n", (400,), close=True),
    "bare LF line ends": Case(b"GET /x HTTP/1.1\nHost: t\n\n", (400,), close=True),
    "bare CR inside the head": Case(b"GET /x HTTP/1.1\r\nA: 1\rB: 2\r\n\r\n", (400,), close=True),
    "request line of 8 KiB + 1": Case(get("/" + "a" * 8192), (414,), close=True),
    "percent-decoded path": Case(get("/%78"), (200,)),
    # --- header fields (RFC 9112 §5, RFC 9110 §5)
    "whitespace before the colon": Case(get(extra="Host : t\r\n"), (400,), close=True),
    "field name with a space": Case(get(extra="X Y: 1\r\n"), (400,), close=True),
    "line without a colon": Case(get(extra="nocolon\r\n"), (400,), close=True),
    "obs-fold": Case(get(extra="X: 1\r\n 2\r\n"), (400,), close=True),
    "empty field value": Case(get(extra="X-Empty:\r\n"), (200,)),
    "control character in a value": Case(get(extra="X: a\x01b\r\n"), (400,), close=True),
    "tab and obs-text in a value": Case(get(extra="X: a\tb\xe9\r\n"), (200,)),
    "100 fields": Case(b"GET /x HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n", (200,)),
    "101 fields": Case(b"GET /x HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", (431,),
                       close=True),
    "field line of 8 KiB + 1": Case(get(extra="X: " + "v" * (8192 - 2) + "\r\n"), (431,), close=True),
    "head over 64 KiB": Case(get(extra="".join(f"X-{i}: {'v' * 7000}\r\n" for i in range(10))), (431,), close=True),
    "conflicting Host fields": Case(get(extra="Host: u\r\n"), (400,), close=True),
    "Connection: close": Case(get(extra="Connection: close\r\n") + get(), (200,), close=True),
    "Connection: close among other tokens": Case(get(extra="Connection: keep-alive, Close\r\n") + get(), (200,),
                                                 close=True),
    # --- message body: Content-Length (RFC 9112 §6.3)
    "Content-Length body": Case(post(b"hello"), (200,), bodies=(b"hello",)),
    "Content-Length 0": Case(post(b""), (200,), bodies=(b"",)),
    "identical repeated Content-Length": Case(post(b"abc", "Content-Length: 3\r\n"), (200,), bodies=(b"abc",)),
    "conflicting Content-Length": Case(post(b"abc", "Content-Length: 4\r\n"), (400,), close=True),
    "Content-Length with a sign": Case(b"POST /echo HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", (400,), close=True),
    "Content-Length as a list": Case(b"POST /echo HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", (400,),
                                     close=True),
    "Content-Length of 19 digits": Case(b"POST /echo HTTP/1.1\r\nContent-Length: 1" + b"0" * 18 + b"\r\n\r\n",
                                        (400,), close=True),
    "Content-Length with leading zeros": Case(b"POST /echo HTTP/1.1\r\nContent-Length: 003\r\n\r\nabc", (200,),
                                              bodies=(b"abc",)),
    "Content-Length above client_max_size": Case(post(b"x" * (MAX_BODY + 1)), (413,), close=True),
    "Content-Length at client_max_size": Case(post(b"x" * MAX_BODY), (200,)),
    "Content-Length and Transfer-Encoding": Case(chunked(b"3\r\nabc\r\n0\r\n\r\n", "Content-Length: 3\r\n"),
                                                 (400,), close=True),
    # --- message body: chunked (RFC 9112 §7.1)
    "two chunks": Case(chunked(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), (200,), bodies=(b"abcde",)),
    "only the last chunk": Case(chunked(b"0\r\n\r\n"), (200,), bodies=(b"",)),
    "upper-case hex and leading zeros": Case(chunked(b"00A\r\n0123456789\r\n0\r\n\r\n"), (200,),
                                             bodies=(b"0123456789",)),
    "chunk extensions are ignored": Case(chunked(b"3;name=value;x\r\nabc\r\n0;last\r\n\r\n"), (200,),
                                         bodies=(b"abc",)),
    "trailer fields are dropped": Case(chunked(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"), (200,), bodies=(b"abc",)),
    "Transfer-Encoding is case-insensitive": Case(
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", (200,), bodies=(b"a",)),
    "non-hex chunk size": Case(chunked(b"xyz\r\nabc\r\n0\r\n\r\n"), (400,), close=True),
    "negative chunk size": Case(chunked(b"-1\r\nabc\r\n0\r\n\r\n"), (400,), close=True),
    "chunk size of 16 hex digits": Case(chunked(b"1" + b"0" * 15 + b"\r\nabc\r\n"), (400,), close=True),
    "chunk data longer than its size": Case(chunked(b"2\r\nabc\r\n0\r\n\r\n"), (400,), close=True),
    "chunk-size line over 1 KiB": Case(chunked(b"3;" + b"e" * 1100 + b"\r\nabc\r\n0\r\n\r\n"), (400,), close=True),
    "chunked body above client_max_size": Case(chunked(b"%x\r\n" % (MAX_BODY + 1) + b"x" * (MAX_BODY + 1)
                                                       + b"\r\n0\r\n\r\n"), (413,), close=True),
    "Transfer-Encoding chunked twice": Case(chunked(b"1\r\na\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n"), (501,),
                                            close=True),
    "whitespace before a chunk extension": Case(chunked(b"3 ;x=1\r\nabc\r\n0\r\n\r\n"), (200,), bodies=(b"abc",)),
    "transfer coding other than chunked": Case(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", (501,),
                                               close=True),
    "chunked not last": Case(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", (501,),
                             close=True),
    "Expect: 100-continue": Case(post(b"abc", "Expect: 100-continue\r\n"), (100, 200), bodies=(b"", b"abc")),
    "HTTP/1.0 gets no 100 Continue": Case(b"POST /echo HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
                                          b"abc", (200,), close=True, bodies=(b"abc",)),
    "unknown expectation": Case(post(b"abc", "Expect: teapot\r\n"), (417,), close=True),
    # --- pipelining (RFC 9112 §9.3.2): in order, one at a time; nothing after a close
    "two GETs in one write": Case(get("/x") + get("/nope"), (200, 404)),
    "GET, POST with a body, GET": Case(get() + post(b"body") + get(), (200, 200, 200), bodies=(b"ok", b"body", b"ok")),
    "GET, chunked POST, GET": Case(get() + chunked(b"2\r\nhi\r\n0\r\n\r\n") + get(), (200, 200, 200),
                                   bodies=(None, b"hi", None)),
    "nothing after a malformed request": Case(get() + b"BAD\r\n\r\n" + get(), (200, 400), close=True),
    "nothing after a 413": Case(post(b"x" * (MAX_BODY + 1)) + get(), (413,), close=True),
    "HEAD has a Content-Length and no body": Case(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n" + get(), (200, 200),
                                                  bodies=(b"", b"ok"), head=(0,)),
    "a partial request at EOF is dropped": Case(get() + b"GET /x HTTP/1.1\r\nHo", (200,)),
}


def parse_responses(data: bytes, head: tuple[int, ...]) -> list[tuple[int, dict[str, str], bytes]]:
    out: list[tuple[int, dict[str, str], bytes]] = []
    while data:
        end = data.index(b"\r\n\r\n")
        lines = data[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        if status >= 200:
            assert "content-length" in headers, f"every final response carries Content-Length: {lines}"
        n = 0 if len(out) in head or status < 200 else int(headers["content-length"])
        body, data = data[end + 4 : end + 4 + n], data[end + 4 + n :]
        assert len(body) == n, "truncated response"
        out.append((status, headers, body))
    return out


async def exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    writer.write_eof()
    chunks = []
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    writer.close()
    return b"".join(chunks)


def app() -> web.Application:
    a = web.Application(client_max_size=MAX_BODY)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    a.router.add_get("/x", ok)
    a.router.add_post("/echo", echo)
    return a


@pytest.mark.parametrize("name", list(CORPUS))
def test_conformance(name: str) -> None:
    case = CORPUS[name]

    async def main() -> list[tuple[int, dict[str, str], bytes]]:
        server = await h1.serve(app(), "127.0.0.1", 0)
        try:
            return parse_responses(await exchange(server.port, case.raw), case.head)
        finally:
            await server.close()

    got = asyncio.run(main())
    assert tuple(st for st, _, _ in got) == case.statuses
    for (_, _, body), want in zip(got, case.bodies, strict=False):
        if want is not None:
            assert body == want
    last = got[-1][1]
    assert (last.get("connection", "").lower() == "close") == case.close, last


class FakeTransport(asyncio.Transport):
    """Collects what the server writes; the protocol sees a peer that never stops reading."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


async def feed(segments: list[bytes]) -> bytes:
    """Deliver `segments` to a fresh connection (each as one data_received), then EOF; what it wrote."""
    loop = asyncio.get_running_loop()
    conn = h1._Connection(h1._Server(app(), loop))
    transport = FakeTransport()
    conn.connection_made(transport)
    deadline = loop.time() + 10

    async def idle() -> None:  # let a running handler finish (it answers, then parses what is buffered)
        while conn.task is not None:
            assert loop.time() < deadline, "a handler never finished"
            await asyncio.sleep(0)

    for seg in segments:
        if transport.closed:
            break
        conn.data_received(seg)
        await idle()
    if not transport.closed:
        conn.eof_received()
        await idle()
    conn.connection_lost(None)
    return bytes(transport.out)


def check(case: Case, out: bytes, where: str) -> None:
    got = parse_responses(out, case.head)
    assert tuple(st for st, _, _ in got) == case.statuses, where
    for (_, _, body), want in zip(got, case.bodies, strict=False):
        if want is not None:
            assert body == want, where
    assert (got[-1][1].get("connection", "").lower() == "close") == case.close, where


@pytest.mark.parametrize("name", [n for n, c in CORPUS.items() if len(c.raw) < 20000])
def test_conformance_one_byte_at_a_time(name: str) -> None:
    case = CORPUS[name]
    check(case, asyncio.run(feed([case.raw[i : i + 1] for i in range(len(case.raw))])), "byte by byte")


@pytest.mark.parametrize("name", [n for n, c in CORPUS.items() if len(c.raw) < 2000])
def test_conformance_in_two_segments_split_anywhere(name: str) -> None:
    case = CORPUS[name]

    async def main() -> None:
        for i in range(1, len(case.raw)):
            check(case, await feed([case.raw[:i], case.raw[i:]]), f"split at {i}")

    asyncio.run(main())
