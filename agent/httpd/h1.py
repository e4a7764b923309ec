"""The HTTP/1.1 server for `agent.httpd.web` applications, on asyncio.Protocol.

Contracts:

* One request at a time per connection. A pipelined request is parsed only after the response to
  the previous one is written, so responses go out in request order (RFC 9112 §9.3.2).
* The route is resolved from the request head, before any body byte is read. The whole body
  (Content-Length or chunked) is received before the handler runs, up to the route's `max_body` (else
  the application's `client_max_size`). A larger body is not read: `read()` raises 413 and the
  connection is closed after the response (lingering: we shut down our side and drain the peer for a
  moment, so it reads the response instead of getting a reset).
* A route added with `spool=True` (PUT /v1/snapshot) takes its body, Content-Length or chunked, into a
  SpooledTemporaryFile (in memory up to SPOOL_MEMORY, then a temporary file on disk): what arrives is
  written by worker threads, one write at a time, in order, and the socket is not read while SPOOL_WINDOW
  bytes wait to be written, so the event loop never writes to disk and memory stays bounded whatever the
  body's size (up to the route's max_body). The handler runs once the last byte is written and gets the file
  from `request.body_file()`; it is closed (and its disk space freed) when the handler returns or the
  connection drops. A failed write (disk full) answers 503 and closes the connection. At most MAX_SPOOLED
  such bodies exist at once per listening server (one more gets 503 unread), so the disk they take is
  bounded by MAX_SPOOLED x the route's max_body.
* Before that, a spooled route's request with a body passes the application's `head_check` (web.py), from its
  head alone, within HEAD_TIMEOUT (else 503): no spool is opened, no 100 Continue sent and nothing of the body
  read until it allows the request. A refusal (the Consul API: 403 "Permission denied" for a token without the
  route's ACL rights) is sent and the connection closed, the rest of the body drained and dropped, never stored.
* Request bodies held at once, over all connections, are capped by the application's `max_buffered`:
  a Content-Length body is counted from its head (before it is read) until its handler returns, a
  chunked body as it arrives (a spooled body: min(its size, SPOOL_MEMORY + SPOOL_WINDOW) from its head).
  A request that would exceed the cap gets 503 unread, and the connection closes.
* Every response carries Content-Length; `Connection: close` is sent whenever we close after it. A
  `StreamResponse` (e.g. `/v1/agent/monitor`) is the exception: chunked, and the connection closes after it.
* Limits: request line 8 KiB (414); header line 8 KiB, head 64 KiB, 100 fields (431); a request
  head must arrive within 30 s of its first byte and a body may not stall for 30 s (408); an idle
  keep-alive connection is closed after 75 s. Malformed input gets 400 and the connection closes.
  A connection that sends nothing at all is closed 30 s after accept (the head timeout), so a
  slowloris client holds a connection for at most 30 s whatever it trickles.
* Connections per client IP (`ConnLimit`, Consul's `limits.http_max_conns_per_client`, default 200,
  0 = no limit), shared by every listener given the same ConnLimit: one beyond it is closed at once,
  nothing read or written (Consul 1.7's go-connlimit `HTTPConnStateFunc`; later Consul versions write a
  429 first), and counted in `refused`. An HTTPS connection is counted once its TLS handshake is done
  (asyncio creates the protocol then); the handshake itself is bounded by `limits.https_handshake_timeout`.
* A handler still running when its client disconnects is left to finish (blocking queries take
  minutes; its response is dropped). `HTTPServer.close()` cancels running handlers.
* No traceback ever reaches a client: an unexpected exception becomes a 500 with its message.

The parser is this module's own (tests/unit/test_http_conformance.py is its corpus: malformed request
lines, header limits, chunked edge cases, pipelining, input split at every byte). httptools was measured
here as the alternative: 2.4-3.6x faster on a request head (4-8 us vs 15-19 us), +0.2 MiB RSS, but the
head is ~10 % of a keep-alive GET's CPU, so it would save a few percent, for a compiled dependency and
re-implementing the limits above on llhttp's callbacks; not taken.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, cast

from pyconsul.agent.httpd.web import (
    REASONS,
    Application,
    Handler,
    HeadCheck,
    Headers,
    HTTPException,
    Request,
    Response,
    StreamResponse,
)

__all__ = ["ConnLimit", "HTTPServer", "Spool", "parse_head", "serve"]

log = logging.getLogger("agent.httpd")

MAX_LINE = 8 * 1024  # request line (414) and each header line (431)
MAX_HEAD = 64 * 1024  # request line + headers, and chunked trailers (431)
MAX_HEADERS = 100  # header fields (431)
MAX_CHUNK_LINE = 1024  # a chunk-size line with extensions (400)
HEAD_TIMEOUT = 30.0  # from the first byte of a request to the end of its head (408)
BODY_TIMEOUT = 30.0  # longest silence while a body is arriving (408)
KEEPALIVE_TIMEOUT = 75.0  # idle connection between requests (closed silently)
LINGER_TIMEOUT = 2.0  # draining the peer after we shut down our side
TLS_HANDSHAKE_TIMEOUT = 5.0  # HTTPS: from accept to the end of the TLS handshake, then closed (Consul's
# limits.https_handshake_timeout default; serve(handshake_timeout=...) sets it per listener)
MAX_PENDING = 256 * 1024  # input buffered while a handler runs; beyond it we stop reading the socket
SPOOL_MEMORY = 1024 * 1024  # a spooled body stays in memory up to this size, then goes to a temporary file
SPOOL_WINDOW = 4 * 1024 * 1024  # a spooled body's bytes received and not yet written; beyond it we stop reading
MAX_SPOOLED = 2  # spooled bodies being received or handled at once, per server (503 beyond): bounds the disk used

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
# Control characters other than HTAB, and any CR or LF that is not part of a CRLF line break.
_BAD_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")


# ---------------------------------------------------------------- the wire (pure parsing)


class _Error(Exception):
    """Input we reject before any handler runs; the connection is closed after the answer."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def parse_head(head: bytes) -> tuple[str, str, tuple[int, int], dict[str, str]]:
    """Method, request target, version and header fields (lower-case names) of a head without its final CRLF CRLF."""
    if _BAD_BYTES.search(head) is not None:
        raise _Error(400, "invalid characters in request head")
    lines = head.split(b"\r\n")
    if len(lines[0]) > MAX_LINE:
        raise _Error(414, "request line too long")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise _Error(400, "malformed request line")
    method, target, ver = parts
    if ver == b"HTTP/1.1":
        version = (1, 1)
    elif ver == b"HTTP/1.0":
        version = (1, 0)
    elif _VERSION.fullmatch(ver):
        raise _Error(505, "HTTP version not supported")
    else:
        raise _Error(400, "malformed request line")
    if _TOKEN.fullmatch(method) is None:
        raise _Error(400, "malformed request method")
    if target[:1] != b"/":
        scheme = target[:8].lower()
        if scheme.startswith((b"http://", b"https://")):  # absolute-form (RFC 9112 §3.2.2): keep the path
            slash = target.find(b"/", target.find(b"//") + 2)
            target = target[slash:] if slash >= 0 else b"/"
        elif target != b"*":
            raise _Error(400, "malformed request target")
    if len(lines) > MAX_HEADERS + 1:
        raise _Error(431, "too many header fields")
    fields: dict[str, str] = {}
    for i in range(1, len(lines)):
        raw = lines[i]
        if len(raw) > MAX_LINE:
            raise _Error(431, "header field too large")
        name, sep, value = raw.partition(b":")
        if not sep or _TOKEN.fullmatch(name) is None:  # also rejects obs-fold and "Name :"
            raise _Error(400, "malformed header field")
        k = name.decode("ascii").lower()
        v = value.strip(b" \t").decode("latin-1")
        old = fields.get(k)
        if old is None:
            fields[k] = v
        elif k in ("content-length", "host"):
            if old != v:
                raise _Error(400, f"conflicting {k} header fields")
        else:
            fields[k] = f"{old}, {v}"
    # surrogateescape: raw non-UTF-8 bytes in a target stay distinct, as percent-encoded ones do (web.decode_path)
    return method.decode("ascii"), target.decode("utf-8", "surrogateescape"), version, fields


class _Chunked:
    """Incremental decoder of the chunked transfer coding (RFC 9112 §7.1); trailer fields are dropped.

    Stops early with `too_large` once the body exceeds `limit` (keeping limit + 1 bytes of it).
    """

    __slots__ = ("body", "done", "left", "limit", "size", "state", "too_large", "trailer")

    def __init__(self, limit: int) -> None:
        self.body = bytearray()  # decoded data not yet taken (a spooled body takes it after every feed)
        self.limit, self.left, self.state, self.trailer, self.too_large = limit, 0, 0, 0, False
        self.size = 0  # decoded bytes so far
        self.done = False

    def feed(self, buf: bytearray) -> bool:
        """Consume what it can from the front of `buf`; True once the body is complete (or too large)."""
        while True:
            if self.state == 0:  # chunk-size [; extensions] CRLF
                i = buf.find(b"\r\n", 0, MAX_CHUNK_LINE + 2)
                if i < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise _Error(400, "chunk size line too long")
                    return False
                size = bytes(buf[:i]).split(b";", 1)[0].strip(b" \t")
                del buf[: i + 2]
                if _HEX.fullmatch(size) is None:
                    raise _Error(400, "invalid chunk size")
                self.left = int(size, 16)
                self.state = 1 if self.left else 3
            elif self.state == 1:  # chunk data
                n = min(self.left, len(buf), self.limit + 1 - self.size)
                if n <= 0:
                    return False
                self.body += buf[:n]
                del buf[:n]
                self.left -= n
                self.size += n
                if self.size > self.limit:
                    self.too_large = self.done = True
                    return True
                if self.left:
                    return False
                self.state = 2
            elif self.state == 2:  # CRLF after the data
                if len(buf) < 2:
                    return False
                if buf[0] != 13 or buf[1] != 10:
                    raise _Error(400, "malformed chunk: missing CRLF after data")
                del buf[:2]
                self.state = 0
            else:  # trailer section, up to an empty line
                i = buf.find(b"\r\n")
                if i < 0:
                    if self.trailer + len(buf) > MAX_HEAD:
                        raise _Error(431, "chunked trailer too large")
                    return False
                del buf[: i + 2]
                if i == 0:
                    self.done = True
                    return True
                self.trailer += i + 2


class Spool:
    """A request body going to a SpooledTemporaryFile: `feed` queues bytes, worker threads write them one write
    at a time in order; `on_progress` runs on the loop after each write. `close` frees the file (after a write in
    flight, in a worker thread: closing a large temporary file frees its disk blocks)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_progress: Callable[[], None],
                 on_close: Callable[[], None] = lambda: None) -> None:
        import tempfile  # here: only spooled routes (PUT /v1/snapshot) need it, most agents never do

        self.loop, self.on_progress, self.on_close = loop, on_progress, on_close
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 -- closed by close()
        self.pending = bytearray()
        self.writing = self.closed = False
        self.error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return self.writing or bool(self.pending)

    def feed(self, data: bytes | bytearray) -> None:
        self.pending += data
        self._kick()

    def _kick(self) -> None:
        if self.writing or not self.pending or self.closed or self.error is not None:
            return
        data, self.pending = self.pending, bytearray()
        self.writing = True
        self.loop.run_in_executor(None, self.file.write, data).add_done_callback(self._written)

    def _written(self, fut: asyncio.Future[int]) -> None:
        self.writing = False
        if self.closed:
            self._close_file()
            return
        exc = OSError("write cancelled") if fut.cancelled() else fut.exception()
        if exc is not None:
            self.error = exc
            self.pending = bytearray()
        self._kick()
        self.on_progress()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.on_close()
        self.pending = bytearray()
        if not self.writing:
            self._close_file()

    def _close_file(self) -> None:
        self.loop.run_in_executor(None, self.file.close).add_done_callback(_ignore_result)


def _ignore_result(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("closing a spooled request body failed: %s", fut.exception())


# ---------------------------------------------------------------- the connection


class ConnLimit:
    """Open connections per client IP, shared by the listeners it is given to (HTTP and HTTPS, as Consul's
    one httpConnLimiter). `max_per_ip` 0: no limit. Counters: `open` (all IPs) and `refused`."""

    __slots__ = ("max_per_ip", "per_ip", "refused")

    def __init__(self, max_per_ip: int = 200) -> None:
        if max_per_ip < 0:
            raise ValueError(f"max_per_ip must be >= 0: {max_per_ip}")
        self.max_per_ip = max_per_ip
        self.per_ip: dict[str, int] = {}
        self.refused = 0

    def acquire(self, ip: str) -> bool:
        n = self.per_ip.get(ip, 0)
        if self.max_per_ip and n >= self.max_per_ip:
            self.refused += 1
            return False
        self.per_ip[ip] = n + 1
        return True

    def release(self, ip: str) -> None:
        n = self.per_ip.get(ip, 0) - 1
        if n > 0:
            self.per_ip[ip] = n
        else:
            self.per_ip.pop(ip, None)

    @property
    def open(self) -> int:
        return sum(self.per_ip.values())

    def stats(self) -> dict[str, str]:
        """For `pyconsul info` (section http)."""
        return {"conns_open": str(self.open), "conns_refused": str(self.refused),
                "max_conns_per_client": str(self.max_per_ip)}


_HEAD, _BODY, _CHUNKED, _BUSY, _LINGER, _CLOSED = range(6)


class _Server:
    """What all connections of one listening server share."""

    def __init__(self, app: Application, loop: asyncio.AbstractEventLoop, limit: ConnLimit | None = None) -> None:
        self.app, self.loop = app, loop
        self.limit = limit if limit is not None else ConnLimit(0)
        self.router = app.router
        self.max_buffered = app.max_buffered
        self.buffered = 0  # request-body bytes reserved by requests being received or handled
        self.spooled = 0  # spooled request bodies open (received or being handled)
        self.conns: set[_Connection] = set()

    def reserve(self, req: Request, n: int) -> None:
        """Count `n` more body bytes of `req` against max_buffered; 503 (unread) beyond it."""
        if self.buffered + n > self.max_buffered:
            raise _Error(503, f"too many request bodies in progress ({self.buffered} bytes buffered, "
                              f"limit {self.max_buffered} bytes): retry later")
        self.buffered += n
        req._reserved += n

    def release(self, req: Request) -> None:
        self.buffered -= req._reserved
        req._reserved = 0

    def spool(self, req: Request, conn: _Connection, reserve: int) -> None:
        """Give `req` a Spool (503 if MAX_SPOOLED are open) and reserve its in-memory share of max_buffered."""
        if self.spooled >= MAX_SPOOLED:
            raise _Error(503, f"too many large request bodies in progress (limit {MAX_SPOOLED}): retry later")
        self.reserve(req, reserve)
        self.spooled += 1
        req._spool = Spool(self.loop, conn._spool_progress, self._unspool)

    def _unspool(self) -> None:
        self.spooled -= 1

    async def sweep(self) -> None:
        """Once a second, time out connections past their deadline (one timer for all of them)."""
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for c in [c for c in self.conns if c.deadline is not None and c.deadline <= now]:
                try:
                    c.on_timeout()
                except Exception:  # a bug: logged; the sweep goes on, it guards every connection's deadline
                    log.exception("timing out an HTTP connection failed")


class _Connection(asyncio.Protocol):
    """One client connection. States: _HEAD (awaiting a request head; idle if the buffer is empty),
    _BODY / _CHUNKED (receiving a body), _BUSY (a handler runs; input is only buffered), _LINGER
    (our side shut down, draining the peer), _CLOSED.

    Invariant: at most one request is in flight, and the next is parsed only after its response is written.
    """

    def __init__(self, srv: _Server) -> None:
        self.srv, self.loop = srv, srv.loop
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.counted = False  # holds a place in the server's ConnLimit (released in connection_lost)
        self.tls = False  # an HTTPS connection (serve(ssl=...))
        self.buf = bytearray()
        self.state = _HEAD
        self.scan = 0  # where to resume looking for the end of a head
        self.partial = False  # a request head has begun to arrive
        self.deadline: float | None = None
        self.req: Request | None = None  # whose body is being received
        self.need = 0
        self.chunks: _Chunked | None = None
        self.task: asyncio.Task[None] | None = None
        self.eof = self.read_paused = self.write_paused = False
        self.spool_paused = False  # reading paused while a spooled body's writes catch up
        self.stream_wake: asyncio.Future[None] | None = None  # a StreamResponse waits on it (see _stream)

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) else None
        if self.remote is not None:
            if not self.srv.limit.acquire(self.remote):  # over limits.http_max_conns_per_client
                self.state = _CLOSED
                self.transport.close()
                self.transport = None
                return
            self.counted = True
        self.tls = transport.get_extra_info("sslcontext") is not None
        self.srv.conns.add(self)
        self.deadline = self.loop.time() + HEAD_TIMEOUT  # the first request must come soon

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.counted:
            self.counted = False
            assert self.remote is not None
            self.srv.limit.release(self.remote)
        self.state = _CLOSED
        self.deadline = None
        self.buf = bytearray()
        self._drop_partial()
        self._wake_stream()
        if self.task is None:  # else the handler finishes first (see _run)
            self.srv.conns.discard(self)

    def data_received(self, data: bytes) -> None:
        st = self.state
        if st >= _LINGER:
            return
        self.buf += data
        if st == _BUSY or self.write_paused:
            if len(self.buf) > MAX_PENDING and not self.read_paused and self.transport is not None:
                self.transport.pause_reading()
                self.read_paused = True
            return
        self._process()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_stream()  # a client that stops sending ends a streamed response too
        if self.state == _LINGER:
            self._close()
        elif self.state != _BUSY and not self.write_paused:
            self._process()
        return not self.tls  # keep our side open to answer what was already sent (TLS cannot: asyncio closes)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.deadline = self.loop.time() + KEEPALIVE_TIMEOUT  # a peer that never reads is dropped

    def resume_writing(self) -> None:
        self.write_paused = False
        self.deadline = None
        self._wake_stream()
        if self.state < _BUSY:
            self._process()

    def on_timeout(self) -> None:
        if self.state >= _LINGER or self.write_paused:
            if self.transport is not None:
                self.transport.abort()
        elif self.state == _HEAD and not self.partial:
            self._close()  # idle keep-alive connection
        elif self.state < _BUSY:
            self._reject(408, "request timeout")

    def shutdown(self) -> None:
        """Server shutdown: cancel a running handler and close."""
        self.state = _CLOSED
        self.deadline = None
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.close()

    # -- requests

    def _process(self) -> None:
        """Parse and dispatch every complete request in the buffer until a handler has to run."""
        try:
            while self.state < _BUSY and not self.write_paused:
                req = self._receive()
                if req is None:
                    if self.state == _BUSY:  # a head check runs; _run_check goes on
                        return
                    if self.eof:
                        self._close()  # the peer is done sending and nothing complete is left
                    elif self.read_paused and self.transport is not None:
                        self.read_paused = False
                        self.transport.resume_reading()
                    return
                self._dispatch(req)
        except _Error as exc:
            self._reject(exc.status, exc.text)

    def _receive(self) -> Request | None:
        """The next complete request, or None (and a deadline) when more input is needed."""
        buf = self.buf
        if self.state == _HEAD:
            if buf and buf[0] in b"\r\n":  # RFC 9112 §2.2: ignore empty lines before a request line
                i = 0
                while i < len(buf) and buf[i] in b"\r\n":
                    i += 1
                del buf[:i]
            if not buf:
                self.deadline = self.loop.time() + KEEPALIVE_TIMEOUT
                return None
            end = buf.find(b"\r\n\r\n", self.scan)
            if end < 0:
                if buf.find(b"\n\n", self.scan) >= 0:  # a head ended by bare LFs: refuse it now,
                    raise _Error(400, "invalid characters in request head")  # not at the head timeout
                n = len(buf)
                if n > MAX_LINE and buf.find(b"\r\n", 0, MAX_LINE + 2) < 0:
                    raise _Error(414, "request line too long")
                if n > MAX_HEAD:
                    raise _Error(431, "request header fields too large")
                self.scan = max(n - 3, 0)  # (a negative start would count from the end of a longer buffer)
                if not self.partial:
                    self.partial = True
                    self.deadline = self.loop.time() + HEAD_TIMEOUT
                return None
            if end > MAX_HEAD:
                raise _Error(431, "request header fields too large")
            head = bytes(buf[:end])
            del buf[: end + 4]
            self.scan = 0
            self.partial = False
            req = self._start(head)
            if req is not None:
                return req
            if self.state == _BUSY:  # a head check runs (_run_check)
                return None
        req = self.req
        assert req is not None
        if req._spool is not None:
            return self._receive_spooled(req, req._spool)
        if self.state == _BODY:
            if len(buf) < self.need:
                self.deadline = self.loop.time() + BODY_TIMEOUT
                return None
            req._body = bytes(buf[: self.need])
            del buf[: self.need]
        else:
            chunks = self.chunks
            assert chunks is not None
            done = chunks.feed(buf)
            grown = len(chunks.body) - req._reserved
            if grown > 0:
                self.srv.reserve(req, grown)
            if not done:
                self.deadline = self.loop.time() + BODY_TIMEOUT
                return None
            req._body = bytes(chunks.body)
            if chunks.too_large:
                req._too_large = True
                req.keep_alive = False
            self.chunks = None
        self.state = _HEAD
        self.req = None
        return req

    def _receive_spooled(self, req: Request, sp: Spool) -> Request | None:
        """_receive for a spooled body: hand what arrived to the spool; the request once all of it is written."""
        if sp.error is not None:
            raise _Error(503, f"could not store the request body: {sp.error}")
        buf = self.buf
        if self.state == _BODY:
            take = min(len(buf), self.need)
            if take:
                sp.feed(buf[:take])
                del buf[:take]
                self.need -= take
            more = self.need > 0
        else:
            chunks = self.chunks
            assert chunks is not None
            if not chunks.done:
                chunks.feed(buf)
                if chunks.body:
                    sp.feed(chunks.body)
                    chunks.body = bytearray()
            if chunks.too_large:
                sp.close()
                req._spool = None
                req._too_large = True
                req.keep_alive = False
                self.chunks = None
                self.state = _HEAD
                self.req = None
                return req
            more = not chunks.done
        t = self.transport
        if len(sp.pending) >= SPOOL_WINDOW or (not more and sp.busy):
            if not self.spool_paused and t is not None:  # until the writes catch up (see _spool_progress)
                t.pause_reading()
                self.spool_paused = True
            self.deadline = None
            return None
        if more:
            self.deadline = self.loop.time() + BODY_TIMEOUT
            return None
        if sp.busy:
            self.deadline = None
            return None
        self.chunks = None
        self.state = _HEAD
        self.req = None
        return req

    def _spool_progress(self) -> None:
        """A write of the spooled body being received finished: read again, and run the request if it is complete."""
        if self.spool_paused:
            self.spool_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        if self.state in (_BODY, _CHUNKED) and not self.write_paused:
            self._process()

    def _start(self, head: bytes) -> Request | None:
        """A request from its head: returned at once if it has no body, else set up to receive the body."""
        method, target, version, fields = parse_head(head)
        headers = Headers(fields)
        req = Request(self.srv.app, method, target, version, headers, self.remote)
        try:  # the route decides the body limit, so it is known before the body is read
            req._handler, req.match_info, limit, spool = self.srv.router.match_route(method, req.path)
        except HTTPException as exc:
            req._route_error = exc
            spool = False
        else:
            if limit is not None:
                req._max = limit
        conn = fields.get("connection")
        if conn is not None:
            tokens = [t.strip() for t in conn.lower().split(",")]
            req.keep_alive = "close" not in tokens if version == (1, 1) else "keep-alive" in tokens
        elif version == (1, 0):
            req.keep_alive = False
        te, cl = fields.get("transfer-encoding"), fields.get("content-length")
        n = -1  # the body's length; -1: chunked
        if te is not None:
            if cl is not None:
                raise _Error(400, "both Content-Length and Transfer-Encoding")  # a smuggling vector
            if te.lower() != "chunked":
                raise _Error(501, f"unsupported Transfer-Encoding: {te}")
        elif cl is not None:
            if not (cl.isascii() and cl.isdigit()) or len(cl) > 18:
                raise _Error(400, "invalid Content-Length")
            n = int(cl)
            req.content_length = n
            if n > req._max:  # not read: the handler sees content_length, read() raises 413
                req._too_large = True
                req.keep_alive = False
                return req
            if not n:
                return req
        else:
            return req
        expect = fields.get("expect")
        cont = False
        if expect is not None:
            if expect.lower() != "100-continue":
                raise _Error(417, f"unsupported expectation: {expect}")
            cont = version == (1, 1)
        check = self.srv.app.head_check if spool else None
        if check is not None:  # nothing of the body is read, nor a spool opened, before the check allows it
            self.state = _BUSY
            self.deadline = None
            self.req = req
            self.task = self.loop.create_task(self._run_check(req, check, n, cont))
            return None
        self._setup_body(req, n, spool, cont)
        return None

    def _setup_body(self, req: Request, n: int, spool: bool, cont: bool) -> None:
        """Get ready to receive `req`'s body of `n` bytes (-1: chunked); `cont`: answer its 100-continue now."""
        if n < 0:
            self.chunks = _Chunked(req._max)
            self.state = _CHUNKED
            if spool:
                self.srv.spool(req, self, SPOOL_MEMORY + SPOOL_WINDOW)
        else:
            if spool:
                self.srv.spool(req, self, min(n, SPOOL_MEMORY + SPOOL_WINDOW))
            else:
                self.srv.reserve(req, n)  # before reading it
            self.need = n
            self.state = _BODY
        if cont and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.req = req

    async def _run_check(self, req: Request, check: HeadCheck, n: int, cont: bool) -> None:
        """The application's head_check on a spooled route's request (state _BUSY meanwhile: what arrives is only
        buffered, up to MAX_PENDING). A refusal is sent and the connection closed (lingering: the rest of the
        body is read and dropped for LINGER_TIMEOUT at most, never stored); else the body is received as usual."""
        try:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT):
                    refusal = await check(req)
            except TimeoutError:
                refusal = Response(status=503, text="checking the request took too long: retry later\n")
            except Exception as exc:
                log.exception("checking request %s %s failed", req.method, req.path)
                refusal = Response(status=500, text=f"{exc}\n")
        finally:
            self.task = None
            if self.transport is None:
                self.srv.conns.discard(self)
        if self.transport is None or self.state != _BUSY or self.req is not req:
            return
        self.state = _HEAD
        if refusal is not None:
            self.req = None
            req.keep_alive = False
            self._respond(req, refusal, linger=True)
            return
        try:
            self._setup_body(req, n, True, cont)
        except _Error as exc:
            self.req = None
            self._reject(exc.status, exc.text)
            return
        self._process()

    def _dispatch(self, req: Request) -> None:
        handler = req._handler
        if handler is None:
            self.srv.release(req)
            self._respond(req, (req._route_error or HTTPException()).response())
            return
        self.state = _BUSY
        self.deadline = None
        self.task = self.loop.create_task(self._run(req, handler))

    async def _run(self, req: Request, handler: Handler) -> None:
        streamed = False
        try:
            try:
                resp = await handler(req)
                if not isinstance(resp, Response):
                    raise TypeError(f"handler returned {type(resp).__name__}, not a Response")
            except HTTPException as exc:
                resp = exc.response()
            except Exception as exc:
                log.exception("request %s %s failed", req.method, req.path)
                resp = Response(status=500, text=f"{exc}\n")
            if isinstance(resp, StreamResponse):
                streamed = True
                self.srv.release(req)
                await self._stream(req, resp)
        finally:
            self.task = None
            self.srv.release(req)
            if req._spool is not None:
                req._spool.close()
            if self.transport is None:
                self.srv.conns.discard(self)
        if self.state == _BUSY and not streamed:
            self.state = _HEAD
            self._respond(req, resp)
            if self.state == _HEAD:
                self._process()

    def _respond(self, req: Request, resp: Response, linger: bool = False) -> None:
        t = self.transport
        if t is None:
            return
        status, body, keep = resp.status, resp.body, req.keep_alive
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"]
        lines += [f"{k}: {v}\r\n" for k, v in resp.headers.items()]
        if status < 200 or status == 204:
            body = b""
        else:
            lines.append(f"Content-Length: {len(body)}\r\n")
        if not keep:
            lines.append("Connection: close\r\n")
        elif req.version == (1, 0):
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        head = "".join(lines)
        if head.count("\n") != len(lines) or head.count("\r") != len(lines):  # CR/LF smuggled into a header
            log.error("response to %s %s has a header with CR or LF; sending 500", req.method, req.path)
            head, body = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", b""
            keep = False
        data = head.encode("latin-1", "replace")
        if req.method == "HEAD":
            body = b""
        if len(body) <= 65536:
            t.write(data + body)
        else:
            t.write(data)
            t.write(body)
        if not keep:
            self._close(linger=linger or req._too_large or bool(self.buf))

    def _wake_stream(self) -> None:
        w = self.stream_wake
        if w is not None and not w.done():
            w.set_result(None)

    async def _stream(self, req: Request, resp: StreamResponse) -> None:
        """Send a StreamResponse: the head now, then every chunk the iterator yields, then close.

        Stops (closing the iterator) when the client goes away or half-closes; waits while the transport is paused
        (a client reading slower than we write). Invariant: the connection is closed on return.
        """
        it, nxt = resp.chunks, None
        chunked = req.version != (1, 0)
        try:
            t = self.transport
            if t is None or self.state != _BUSY:
                return
            lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}\r\n"]
            lines += [f"{k}: {v}\r\n" for k, v in resp.headers.items()]
            lines += ["Transfer-Encoding: chunked\r\n"] if chunked else []
            lines += ["Connection: close\r\n", "\r\n"]
            head = "".join(lines)
            if head.count("\n") != len(lines) or head.count("\r") != len(lines):
                log.error("response to %s %s has a header with CR or LF; sending 500", req.method, req.path)
                t.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            t.write(head.encode("latin-1", "replace"))
            if req.method == "HEAD":
                return
            while self.transport is not None and not self.eof:
                self.stream_wake = self.loop.create_future()
                if self.write_paused:
                    await self.stream_wake  # resume_writing or connection_lost
                    continue
                if nxt is None:
                    nxt = asyncio.ensure_future(anext(it))
                await asyncio.wait((nxt, self.stream_wake), return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done() or self.transport is None or self.eof:
                    continue
                try:
                    chunk = nxt.result()
                except StopAsyncIteration:
                    if chunked:
                        self.transport.write(b"0\r\n\r\n")
                    break
                except Exception:
                    log.exception("streamed response to %s %s failed", req.method, req.path)
                    break  # no terminating chunk: the client sees the body cut short
                finally:
                    if nxt.done():
                        nxt = None
                if chunk:
                    self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        finally:
            self.stream_wake = None
            if nxt is not None:
                nxt.cancel()
                await asyncio.wait((nxt,))  # the generator must be idle before aclose()
                if not nxt.cancelled() and not isinstance(exc := nxt.exception(), StopAsyncIteration | None):
                    # it failed as the connection went: retrieved and logged, not left to vanish
                    log.error("streamed response to %s %s failed", req.method, req.path, exc_info=exc)
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    log.exception("closing the stream of %s %s failed", req.method, req.path)
            self._close()

    def _reject(self, status: int, text: str) -> None:
        if self.transport is not None and self.state < _LINGER:
            body = f"{text}\n".encode()
            self.transport.write(f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: text/plain; "
                                 f"charset=utf-8\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                                 + body)
        self._close(linger=True)

    def _drop_partial(self) -> None:
        """Forget a request whose body was still arriving (and its buffered-bytes reservation)."""
        req = self.req
        if req is not None:
            self.req = None
            self.chunks = None
            self.srv.release(req)
            if req._spool is not None:
                req._spool.close()

    def _close(self, linger: bool = False) -> None:
        """Close after the written data is flushed; with `linger`, half-close and drain the peer first."""
        t = self.transport
        self.buf = bytearray()
        self._drop_partial()
        if t is None or self.state == _CLOSED:
            return
        if linger and not self.eof and self.state != _LINGER and t.can_write_eof():
            self.state = _LINGER
            self.deadline = self.loop.time() + LINGER_TIMEOUT
            if self.read_paused:
                self.read_paused = False
                t.resume_reading()
            t.write_eof()
        else:
            self.state = _CLOSED
            self.deadline = None
            t.close()


# ---------------------------------------------------------------- serving


class HTTPServer:
    """A listening server: `port` is the bound port, `await close()` stops it and cancels running handlers."""

    def __init__(self, server: asyncio.Server, srv: _Server, sweeper: asyncio.Task[None]) -> None:
        self._server, self._srv, self._sweeper = server, srv, sweeper
        self.limit = srv.limit
        self.port = int(server.sockets[0].getsockname()[1]) if server.sockets else 0

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self._server.sockets)

    async def close(self, timeout: float = 5.0) -> None:
        self._server.close()
        self._sweeper.cancel()
        conns = list(self._srv.conns)
        tasks = [c.task for c in conns if c.task is not None]
        for c in conns:
            c.shutdown()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        try:
            await self._sweeper
        except asyncio.CancelledError:
            pass
        await self._server.wait_closed()


async def serve(app: Application, host: str | list[str] | None, port: int, *, backlog: int = 1024,
                ssl: Any = None, limit: ConnLimit | None = None,
                handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT) -> HTTPServer:
    """Listen on host:port, or on each of several hosts (port 0: any free port); raises OSError if an
    address cannot be bound. `ssl`: an ssl.SSLContext serves HTTPS (agent/tlsutil.py); a TLS handshake
    must finish within `handshake_timeout` (limits.https_handshake_timeout), and the connection exists for the
    app only once it has.
    `limit`: connections per client IP (None: no limit; pass one ConnLimit to several listeners to share it)."""
    loop = asyncio.get_running_loop()
    srv = _Server(app, loop, limit)
    tls: dict[str, Any] = {"ssl": ssl, "ssl_handshake_timeout": handshake_timeout} if ssl is not None else {}
    server = await loop.create_server(lambda: _Connection(srv), host, port, reuse_address=True, backlog=backlog,
                                      **tls)
    return HTTPServer(server, srv, loop.create_task(srv.sweep()))
