"""Server RPC transport (port 8300): one TCP listener, persistent per-peer connections.

Raft messages are one-way and may be lost (Raft retransmits): each peer has a bounded outgoing
queue drained by a writer task that reconnects with backoff; a full queue drops the newest
message and counts it. Forwarded requests (`request()`) are request/response frames matched by id
on a separate multiplexed connection per target address.

Reply shape (between pyconsul agents of the same revision; see agent/raft/wire.py for framing):
    [RESPONSE, id, True,  result]                                   the handler's return value
    [RESPONSE, id, False, {"code": str, "message": str, "fields": {str: str}}]
The error body is `agent.errors.to_wire(exc)`; the caller raises `agent.errors.from_wire(body)`, so
a NoLeader raised on the leader is a NoLeader on the requester, with the same fields. Failures of
the transport itself are typed too: Unavailable (dial failed, connection lost before the answer)
and RequestTimeout (no answer in time: the outcome is unknown).

Limits on the listener (RpcLimits; documented in README, Limits): connections per source IP
(`limits.rpc_max_conns_per_client`) and in total; HELLO within 10 s; a connection that never carried
a Raft message is closed after 5 min without a frame or a request in progress; frame sizes by kind
(wire.inbound_limit), with the bodies of large frames read under one global byte budget; forwarded
requests in flight per connection and in total (excess: an immediate Unavailable "too many
requests"); replies back-pressured (each written after the previous one drained, with a deadline: a
client that does not read is disconnected) and their unsent bytes capped per connection and in total
(past a cap a reply is replaced by Unavailable).
Frames over wire.MAX_FRAME stream as PART frames of 4 MiB (wire.split / wire.Reassembly, at most wire.MAX_STREAM
in all): any reply, written piece by piece after each drain under the connection's write lock; and a request
only for a write method (a restore forwarded to the leader), checked at its first piece, the bytes of all
streamed requests being received or served under RpcLimits.max_stream_bytes.
Every refusal is counted in TransportStats and logged at most once per 10 s per kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pyconsul.agent import errors
from pyconsul.agent.raft import rpctls, wire
from pyconsul.agent.raft.messages import WireMessage
from pyconsul.agent.raft.wire import Kind, WireError
from pyconsul.agent.supervise import Supervisor, start_tracked

log = logging.getLogger("agent.server.rpc")

QUEUE_DEPTH = 4096
BACKOFF_MAX = 0.1  # a restarted peer must hear from us within a heartbeat or two (elections wait on it)


async def _no_requests(method: str, args: Any) -> Any:
    raise errors.BadRequest("this agent serves no server RPC")


@dataclass(frozen=True)
class RpcLimits:
    """What one server accepts on its RPC port (defaults are the documented limits)."""

    max_conns_per_client: int = 100  # per source IP, Consul's limits.rpc_max_conns_per_client; 0: no limit
    max_conns: int = 1024  # inbound connections in total
    hello_timeout: float = 10.0  # the whole first frame (HELLO) must arrive within it
    idle_timeout: float = 300.0  # a connection without Raft traffic: no frame and no request in progress
    body_timeout: float = 30.0  # a frame's body, once its length is read: this + 1 s per MiB
    max_inflight_per_conn: int = 512  # forwarded requests being served per connection (blocking queries too)
    max_inflight: int = 4096  # ... on all connections
    max_inflight_bytes: int = 64 * 1024 * 1024  # ... their frames' bytes, all connections
    frame_budget: int = wire.MAX_FRAME  # bodies of frames > UNBUDGETED being read at once, all connections
    frame_budget_wait: float = 10.0  # a frame waits this long for budget, then its connection is dropped
    max_unsent_reply_bytes: int = 16 * 1024 * 1024  # encoded replies not yet taken, per connection (and one more)
    max_unsent_reply_bytes_total: int = 48 * 1024 * 1024  # ... all connections
    reply_drain_timeout: float = 30.0  # a reply not taken by the client within it: the connection is dropped
    max_stream_bytes: int = wire.MAX_STREAM  # streamed (PART) requests being received or served, all connections


UNBUDGETED = 64 * 1024  # frames up to this size are read without the global budget (one at a time per connection)


@dataclass
class TransportStats:
    frames_in: int = 0
    frames_out: int = 0
    dropped_queue_full: int = 0
    bad_frames: int = 0
    connects: int = 0
    oversized_frames: int = 0  # a frame longer than its kind allows: connection dropped
    conns_refused: int = 0  # over limits.rpc_max_conns_per_client or the global connection cap
    hello_timeouts: int = 0  # no complete HELLO within RpcLimits.hello_timeout (slowloris, silence)
    idle_closed: int = 0  # no Raft traffic, no frame, no request for RpcLimits.idle_timeout
    body_timeouts: int = 0  # a frame body that did not arrive in time
    budget_timeouts: int = 0  # a large frame that waited too long for the global frame budget
    requests_refused: int = 0  # over the in-flight caps: answered Unavailable("too many requests")
    slow_readers: int = 0  # a reply not taken by the client in time: connection dropped
    replies_dropped: int = 0  # over the unsent reply caps: replaced by Unavailable
    tls_refused: int = 0  # TLS (rpctls.py): plaintext when TLS is required, a failed or slow handshake

    def as_map(self) -> dict[str, str]:
        """For /v1/agent/self Stats (`pyconsul info`)."""
        return {k: str(v) for k, v in vars(self).items()}


async def read_frame(reader: asyncio.StreamReader, limit: Callable[[bytes], int] = wire.response_limit,
                     body_timeout: float | None = None) -> list[Any]:
    """One frame; its length is checked against `limit(first bytes of the body)` before the rest is read."""
    head = await reader.readexactly(wire.HEADER.size)
    return await _read_body(reader, wire.HEADER.unpack(head)[0], limit, body_timeout)


class FrameTooLarge(WireError):
    pass


async def _read_body(reader: asyncio.StreamReader, n: int, limit: Callable[[bytes], int],
                     body_timeout: float | None, budget: _Budget | None = None) -> list[Any]:
    """The body of a frame of `n` bytes: the first PEEK bytes, the cap check, then the rest (large frames
    under the global budget). `body_timeout` (+ 1 s per MiB) bounds the whole body."""
    if n == 0:
        raise WireError("empty frame")

    async def body() -> list[Any]:
        want = min(n, wire.PEEK)
        prefix = b""
        while len(prefix) < want:  # only as many bytes as it takes to learn the kind (and a REQUEST's method)
            chunk = await reader.read(want - len(prefix))
            if not chunk:
                raise asyncio.IncompleteReadError(prefix, n)
            prefix += chunk
            if wire.peeked(prefix):
                break
        cap = limit(prefix)
        if n > cap:
            raise FrameTooLarge(f"frame of {n} bytes exceeds the {cap}-byte limit for its kind")
        if n == len(prefix):
            return wire.unframe(prefix)
        if budget is None or n <= UNBUDGETED:
            return wire.unframe(await _read_rest(reader, prefix, n))
        async with budget.hold(n):
            return wire.unframe(await _read_rest(reader, prefix, n))

    if body_timeout is None:
        return await body()
    async with asyncio.timeout(body_timeout + n / (1024 * 1024)):
        return await body()


async def _read_rest(reader: asyncio.StreamReader, prefix: bytes, n: int) -> bytearray:
    """The body into one buffer of n bytes (readexactly would hold the stream's buffer and its copy at once)."""
    buf = bytearray(n)
    buf[:len(prefix)] = prefix
    pos = len(prefix)
    while pos < n:
        chunk = await reader.read(min(n - pos, 256 * 1024))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", n)
        buf[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    return buf


class _BudgetTimeout(Exception):
    pass


class _Budget:
    """A byte budget shared by all inbound connections for the bodies of large frames: frames wait
    (reading nothing, so TCP holds the sender back) in arrival order until their size fits."""

    def __init__(self, total: int, wait: float) -> None:
        self.total = total
        self.wait = wait
        self.used = 0
        self.cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        n = min(n, self.total)
        async with self.cond:
            try:
                async with asyncio.timeout(self.wait):
                    await self.cond.wait_for(lambda: self.used + n <= self.total)
            except TimeoutError:
                raise _BudgetTimeout() from None
            self.used += n
        try:
            yield
        finally:
            async with self.cond:
                self.used -= n
                self.cond.notify_all()


class _Throttled:
    """Logs a warning per kind at most once per `every` seconds, saying how many were not logged."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last: dict[str, float] = {}
        self.skipped: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args: object) -> None:
        now = asyncio.get_running_loop().time()
        if now - self.last.get(kind, -self.every) < self.every:
            self.skipped[kind] = self.skipped.get(kind, 0) + 1
            return
        self.last[kind] = now
        skipped = self.skipped.pop(kind, 0)
        log.warning(msg + (f" ({skipped} more since the last such message)" if skipped else ""), *args)


class _Conn:
    """One inbound connection's state."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.raft = False  # has carried a Raft message: a peer, no idle timeout
        self.inflight = 0
        self.wlock = asyncio.Lock()
        self.unsent = 0  # bytes of encoded replies not yet drained
        self.dropped = False
        self.stream = wire.Reassembly()  # a request larger than a frame, arriving in PART frames
        self.stream_bytes = 0  # its total, reserved in Transport._streaming at its first piece
        self.stream_deadline = 0.0  # loop time by which the whole stream must have arrived


# Raft messages that a peer connection's bytes may carry past its task (see _Inbound): everything a _Peer sends
# but a snapshot's pieces (large: the task reads them under the frame budget).
_FAST_KINDS = frozenset({Kind.VOTE_REQUEST, Kind.VOTE_RESPONSE, Kind.APPEND_REQUEST, Kind.APPEND_RESPONSE,
                         Kind.SNAPSHOT_RESPONSE, Kind.TIMEOUT_NOW, Kind.SNAPSHOT_CHUNK_ACK})


class _Inbound(asyncio.StreamReaderProtocol):
    """An inbound connection's protocol: a StreamReaderProtocol feeding the connection's task (Transport._accept),
    with one shortcut for Raft traffic. Once the connection carried a Raft message (`on_frames` is set) and its
    task waits for the next frame's header with everything fed to it read (`waiting`, `fed == taken`), whole
    Raft frames at the start of the received bytes are decoded and delivered right here, in data_received: no
    wake-up of the task, no StreamReader buffering, no per-frame timeouts (measured: a third of a follower's
    CPU per single-client write was this path). The first frame it does not take -- incomplete, over UNBUDGETED,
    a request, a snapshot piece, malformed -- and everything after it go to the task, which reads and judges
    them exactly as before (so limits and errors are the task's); the shortcut resumes once the task caught up.
    Order is kept: a frame is handled here only when every earlier byte was handled here or by the task."""

    def __init__(self, reader: asyncio.StreamReader, cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                 Awaitable[None]], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(reader, cb, loop=loop)
        self.fed = 0  # bytes handed to the StreamReader
        self.taken = 0  # bytes of whole frames the task read from it
        self.waiting = False  # the task waits for a frame header
        self.on_frames: Callable[[bytes], int] | None = None  # takes whole frames off the front, returns bytes used

    def data_received(self, data: bytes) -> None:
        take = self.on_frames
        if take is not None and self.waiting and self.fed == self.taken:
            used = take(data)
            if used == len(data):
                return
            data = data[used:]
        self.fed += len(data)
        super().data_received(data)


class _Peer:
    def __init__(self, transport: Transport, address: str) -> None:
        self.t = transport
        self.address = address
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_DEPTH)
        self.direct: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        # send_threadsafe: every write to the connection happens under `lock`, through `fd` (a dup of its socket
        # that only this object closes, under the lock: a closed and reused descriptor number is never written);
        # `broken` is a connection a partial write from the thread left mid-frame, aborted by the loop
        self.lock = threading.Lock()
        self.fd = -1
        self.broken: asyncio.StreamWriter | None = None
        self.loop = asyncio.get_running_loop()
        # long-lived: supervised, restarted after a failure (a bug) instead of leaving this peer unreachable
        self.task = transport.supervisor.spawn(f"raft-send:{address}", self._run, restart=True)

    async def _run(self) -> None:
        """Contract: a batch is dropped only after it was handed to a connection we believed
        alive; a connection the peer closed (it restarted, or died) is detected BEFORE writing
        (the transport sees the FIN/RST even though we never read), so the first message after a
        peer restart -- often a vote request -- is sent on a fresh connection, not lost."""
        backoff = 0.01
        host, _, port = self.address.rpartition(":")
        pending: list[bytes] = []
        while True:
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow our cancellation (stop() hangs)
                async with asyncio.timeout(2.0):
                    reader, writer = await rpctls.dial(self.t.tls, host, int(port), self.t.local_addr(), True)
            except (OSError, TimeoutError, ValueError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self.t.stats.connects += 1
            backoff = 0.01
            try:
                writer.write(wire.frame([Kind.HELLO, self.t.server_id, self.t.datacenter]))
                # a TLS stream cannot take raw writes: no send_threadsafe shortcut over it
                sock = writer.get_extra_info("socket") if writer.get_extra_info("sslcontext") is None else None
                if sock is not None:
                    with self.lock:
                        self.fd = os.dup(sock.fileno())
                while True:
                    if not pending:
                        self.direct = (reader, writer)
                        try:
                            pending = [await self.queue.get()]
                        finally:
                            self.direct = None
                        while not self.queue.empty() and len(pending) < 256:
                            pending.append(self.queue.get_nowait())
                    if writer.is_closing() or reader.at_eof() or self.broken is writer:
                        break  # the peer went away while we were idle: reconnect, keep the batch
                    with self.lock:
                        writer.write(b"".join(pending))
                        self.t.stats.frames_out += len(pending)
                    pending = []
                    await writer.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                with self.lock:
                    if self.fd >= 0:
                        os.close(self.fd)
                    self.fd = -1
                    self.broken = None
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    def send(self, data: bytes) -> None:
        """Fire and forget (Raft tolerates loss). While the connection is up, idle and its buffer empty, the
        frame is written at once instead of waiting for this peer's task to wake: one loop iteration less on
        the leader's send and the follower's ack (measured: single-client p50 1.49 -> 1.42 ms)."""
        d = self.direct
        if d is not None and self.queue.empty():
            reader, writer = d
            with self.lock:
                if (not writer.is_closing() and not reader.at_eof() and self.broken is not writer
                        and writer.transport.get_write_buffer_size() == 0):
                    writer.write(data)
                    self.t.stats.frames_out += 1
                    return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.t.stats.dropped_queue_full += 1

    def send_threadsafe(self, data: bytes) -> bool:
        """From any thread: write `data` now if the connection is up and idle with nothing queued or buffered
        before it (else False: nothing was written; the caller sends it on the loop as usual). A frame only
        partly taken by the socket (its buffer full: the peer reads nothing) leaves the stream mid-frame: that
        connection is aborted (by the loop) and never written again; Raft retransmits what it carried."""
        with self.lock:
            d = self.direct
            if d is None or self.fd < 0 or not self.queue.empty():
                return False
            reader, writer = d
            if (writer.is_closing() or reader.at_eof() or self.broken is writer
                    or writer.transport.get_write_buffer_size()):
                return False
            try:
                n = os.write(self.fd, data)  # non-blocking (the socket's file status is shared with the dup)
            except OSError:  # BlockingIOError: nothing was written
                return False
            if n < len(data):
                self.broken = writer
                with contextlib.suppress(RuntimeError):  # the loop is closed: so is the connection
                    self.loop.call_soon_threadsafe(writer.transport.abort)
            self.t.stats.frames_out += 1
            return True


class _Client:
    """A request/response connection to one address, multiplexed by request id."""

    def __init__(self, transport: Transport, address: str) -> None:
        self.t = transport
        self.address = address
        self.lock = asyncio.Lock()
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.reader_task: asyncio.Task[None] | None = None
        self.last_used = 0.0

    async def _connect(self) -> asyncio.StreamWriter:
        async with self.lock:
            now = asyncio.get_running_loop().time()
            if self.writer is not None and not self.pending and now - self.last_used > self.t.limits.idle_timeout / 2:
                # the server closes connections idle for idle_timeout: never reuse one it may be closing right now
                self.writer.close()
                self.writer = None
            self.last_used = now
            if self.writer is not None and not self.writer.is_closing():
                return self.writer
            host, _, port = self.address.rpartition(":")
            async with asyncio.timeout(2.0):
                reader, writer = await rpctls.dial(self.t.tls, host, int(port), self.t.local_addr(), False)
            writer.write(wire.frame([Kind.HELLO, self.t.server_id, self.t.datacenter]))
            self.writer = writer
            self.pending = {}  # this connection's requests: the old one's reader fails only its own
            self.reader_task = asyncio.get_running_loop().create_task(self._read(reader, writer, self.pending))
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pending: dict[int, asyncio.Future[Any]]) -> None:
        stream = wire.Reassembly()  # a reply larger than a frame arrives in PART frames (wire.split)
        try:
            while True:
                obj = await read_frame(reader)
                if obj[0] == Kind.PART:
                    body = stream.add(*wire.decode_part(obj))
                    del obj
                    if body is None:
                        continue
                    # decoding hundreds of MiB: in a worker thread (msgpack copies large binaries there)
                    obj = await asyncio.to_thread(wire.unframe, body)
                    del body
                if obj[0] == Kind.RESPONSE and len(obj) == 4:
                    fut = pending.pop(obj[1], None)
                    if fut is not None and not fut.done():
                        if obj[2]:
                            fut.set_result(obj[3])
                        else:
                            fut.set_exception(errors.from_wire(obj[3]))
        except (OSError, asyncio.IncompleteReadError, WireError, ConnectionError):
            pass
        except Exception:  # a bug: never silent; the connection's requests fail below as Unavailable
            log.exception("server RPC: reading replies from %s failed", self.address)
        finally:
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(errors.Unavailable(f"connection to {self.address} lost"))
            pending.clear()
            writer.close()
            if self.writer is writer:
                self.writer = None

    async def call(self, method: str, args: Any, timeout: float) -> Any:
        rid = next(self.t.ids)
        try:  # encoded before anything is registered: arguments that cannot be encoded leave nothing pending
            data = wire.frame([Kind.REQUEST, rid, method, args])
        except (TypeError, ValueError, OverflowError) as exc:
            raise errors.Internal(f"rpc {method}: the request cannot be encoded: {exc}") from None
        try:
            writer = await self._connect()
        except (OSError, TimeoutError) as exc:
            raise errors.DialFailed(f"dial {self.address}: {exc}") from None  # nothing sent: retryable anywhere
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = self.pending
        pending[rid] = fut
        if len(data) > wire.MAX_FRAME + wire.HEADER.size:
            if len(data) > wire.MAX_STREAM + wire.HEADER.size:
                pending.pop(rid, None)
                raise errors.Internal(f"rpc {method}: the request of {len(data)} bytes exceeds the "
                                      f"{wire.MAX_STREAM}-byte stream limit")
            for part in wire.split(data):  # back to back: no other frame of this connection between them
                writer.write(part)
        else:
            writer.write(data)
        del data
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pending.pop(rid, None)
            raise errors.RequestTimeout(f"rpc {method} to {self.address} timed out") from None


class Transport:
    def __init__(
        self,
        server_id: str,
        datacenter: str,
        bind: tuple[str, int],
        on_message: Callable[[WireMessage], None] | None = None,
        on_request: Callable[[str, Any], Awaitable[Any]] | None = None,
        on_peer_lost: Callable[[str], None] | None = None,
        limits: RpcLimits | None = None,
        tls: rpctls.RpcTLS | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.server_id = server_id
        self.supervisor = supervisor or Supervisor()  # the agent's: the peers' senders and the TLS accept loop
        self.on_peer_lost = on_peer_lost
        self._stopping = False
        self.datacenter = datacenter
        self.bind = bind
        # The callbacks may be attached after construction (the agent wires Transport, RaftNode and
        # ConsulServer to each other); until then messages are dropped and requests refused.
        self.on_message: Callable[[WireMessage], None] = on_message or (lambda msg: None)
        self.on_request: Callable[[str, Any], Awaitable[Any]] = on_request or _no_requests
        self.stats = TransportStats()
        self.ids = itertools.count(1)
        self._peers: dict[str, _Peer] = {}
        self._clients: dict[str, _Client] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._serving: set[asyncio.Task[None]] = set()  # forwarded requests being served (_serve)
        self.limits = limits or RpcLimits()
        self.tls = tls  # TLS on this port and when dialling (rpctls.py); None: plaintext only
        self._mux: rpctls.Listener | None = None  # the listener when TLS is on (first byte RPC_TLS: TLS)
        self._per_ip: dict[str, int] = {}
        self._inflight = 0
        self._inflight_bytes = 0
        self._unsent = 0
        self._streaming = 0  # bytes of streamed requests being received or served (RpcLimits.max_stream_bytes)
        self._budget: _Budget | None = None  # made in start() (needs the running loop on 3.9-)
        self._warn = _Throttled()

    def local_addr(self) -> tuple[str, int] | None:
        return None if self.bind[0] in ("0.0.0.0", "") else (self.bind[0], 0)

    async def start(self) -> None:
        self._budget = _Budget(self.limits.frame_budget, self.limits.frame_budget_wait)
        # limit: a connection's read buffer pauses the socket at 2 x 16 KiB unless a frame body is being read
        loop = asyncio.get_running_loop()

        def factory() -> _Inbound:  # asyncio.start_server's, with our protocol
            return _Inbound(asyncio.StreamReader(limit=16 * 1024, loop=loop), self._accept, loop)

        if self.tls is not None and self.tls.listens():
            self._mux = rpctls.Listener(self, self.tls, factory)
            await self._mux.start(self.bind[0], self.bind[1])
            return
        self._server = await loop.create_server(factory, self.bind[0], self.bind[1], reuse_address=True)

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        if self._mux is not None:
            await self._mux.close()
        tasks = [p.task for p in self._peers.values()] + [c.reader_task for c in self._clients.values()
                                                          if c.reader_task is not None] + list(self._conns) \
            + list(self._serving)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for c in self._clients.values():
            if c.writer is not None:
                c.writer.close()

    # ------------------------------------------------------------ outgoing

    def send(self, address: str, msg: WireMessage) -> None:
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = _Peer(self, address)
        peer.send(wire.frame(wire.encode_message(msg)))

    def send_threadsafe(self, address: str, data: bytes) -> bool:
        """A frame (wire.frame) written from any thread -- the Raft writer thread sends a follower's
        acknowledgement as soon as its fsync returns, without waiting for the event loop to wake -- if the
        connection to `address` is up and idle; False (nothing written) otherwise: send it on the loop then."""
        peer = self._peers.get(address)
        return peer is not None and peer.send_threadsafe(data)

    def forget(self, address: str) -> None:
        peer = self._peers.pop(address, None)
        if peer is not None:
            peer.task.cancel()

    async def request(self, address: str, method: str, args: Any, timeout: float = 10.0) -> Any:
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = _Client(self, address)
        return await client.call(method, args, timeout)

    # ------------------------------------------------------------ incoming

    def _admit(self, ip: str) -> bool:
        lim = self.limits
        if len(self._conns) >= lim.max_conns:
            self.stats.conns_refused += 1
            self._warn.warn("conns", "refusing server RPC connection from %s: %d connections open (the limit)",
                            ip, len(self._conns))
            return False
        if lim.max_conns_per_client and self._per_ip.get(ip, 0) >= lim.max_conns_per_client:
            self.stats.conns_refused += 1
            self._warn.warn("conns_ip", "refusing server RPC connection from %s: %d connections from it "
                            "(limits.rpc_max_conns_per_client)", ip, lim.max_conns_per_client)
            return False
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self._admit(ip):
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        conn = _Conn(writer)
        lim = self.limits
        sender = ""
        proto = writer.transport.get_protocol()
        fast = proto if isinstance(proto, _Inbound) else None
        try:
            try:
                async with asyncio.timeout(lim.hello_timeout):
                    head = await reader.readexactly(wire.HEADER.size)
                    (n,) = wire.HEADER.unpack(head)
                    hello = await _read_body(reader, n, lambda prefix: wire.inbound_limit(prefix, False), None)
                    if fast is not None:
                        fast.taken += wire.HEADER.size + n
            except TimeoutError:
                self.stats.hello_timeouts += 1
                self._warn.warn("hello", "dropping server RPC connection from %s: no HELLO within %g s",
                                peer, lim.hello_timeout)
                return
            sender, _ = wire.decode_hello(hello)
            while True:
                try:
                    async with asyncio.timeout(self._stream_wait(conn) if conn.stream.active
                                               else None if conn.raft else lim.idle_timeout):
                        if fast is not None:
                            fast.waiting = True
                        try:
                            head = await reader.readexactly(wire.HEADER.size)
                        finally:
                            if fast is not None:
                                fast.waiting = False
                except TimeoutError:
                    if conn.stream.active:
                        self.stats.body_timeouts += 1
                        self._warn.warn("body", "dropping server RPC connection from %s: a streamed request of %d "
                                        "bytes did not arrive in time", peer, conn.stream.total)
                        return
                    if conn.inflight:
                        continue  # a long request (a blocking query) is still being served
                    self.stats.idle_closed += 1
                    log.debug("closing idle server RPC connection from %s", peer)
                    return
                (n,) = wire.HEADER.unpack(head)
                try:
                    obj = await _read_body(reader, n, lambda prefix: wire.inbound_limit(prefix, True),
                                           lim.body_timeout, self._budget)
                except TimeoutError:
                    self.stats.body_timeouts += 1
                    self._warn.warn("body", "dropping server RPC connection from %s: a %d-byte frame did not "
                                    "arrive in time", peer, n)
                    return
                except _BudgetTimeout:
                    self.stats.budget_timeouts += 1
                    self._warn.warn("budget", "dropping server RPC connection from %s: no room for a %d-byte "
                                    "frame within %g s", peer, n, lim.frame_budget_wait)
                    return
                self.stats.frames_in += 1
                if fast is not None:
                    fast.taken += wire.HEADER.size + n
                streamed = 0
                if obj[0] == Kind.PART:
                    body = self._part(conn, obj)
                    del obj
                    if body is None:
                        continue
                    # its bytes stay the connection's (released if it ends) until a request takes them over
                    streamed = conn.stream_bytes
                    obj = await asyncio.to_thread(wire.unframe, body)
                    del body
                    if obj[0] != Kind.REQUEST:
                        raise WireError("a streamed frame that is not a request")
                # no local keeps a frame alive while this loop waits for the next one (each connection would
                # otherwise hold its last frame: 6 idle peers x 40 MiB)
                if obj[0] == Kind.REQUEST:
                    rid, method, args = wire.decode_request(obj)
                    del obj
                    conn.stream_bytes = 0  # a streamed request's bytes: released by _serve, or just below
                    if self._take(conn, 0 if streamed else n):
                        start_tracked(self._serve(conn, 0 if streamed else n, rid, method, args, streamed),
                                      self._serving, "rpc-serve")
                        del args
                        continue
                    del args
                    self._streaming -= streamed
                    self.stats.requests_refused += 1
                    self._warn.warn("requests", "refusing server RPC request from %s: too many requests "
                                    "in flight", peer)
                    busy = errors.Unavailable("too many requests")
                    await self._reply(conn, rid, [wire.frame([Kind.RESPONSE, rid, False, errors.to_wire(busy)])])
                else:
                    msg = wire.decode_message(obj)
                    del obj
                    conn.raft = True
                    self.on_message(msg)
                    del msg
                    if fast is not None and fast.on_frames is None:
                        fast.on_frames = self._take_frames
        except FrameTooLarge as exc:
            self.stats.oversized_frames += 1
            self._warn.warn("oversized", "dropping server RPC connection from %s: %s", peer, exc)
        except WireError as exc:
            self.stats.bad_frames += 1
            self._warn.warn("bad", "dropping server RPC connection from %s: %s", peer, exc)
        except (OSError, asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            # the peer closed or reset the connection: its process may have died (a hint for Raft)
            if sender and not self._stopping and not conn.dropped and self.on_peer_lost is not None:
                self.on_peer_lost(sender)
        except Exception:  # a bug: never silent (asyncio would only report it when the task is collected)
            log.exception("server RPC: the connection from %s failed", peer)
        finally:
            conn.dropped = True
            self._streaming -= conn.stream_bytes  # a stream cut short
            conn.stream_bytes = 0
            conn.stream = wire.Reassembly()
            writer.close()
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)
            if task is not None:
                self._conns.discard(task)

    def _part(self, conn: _Conn, obj: list[Any]) -> bytearray | None:
        """A PART of a streamed request: the whole body once complete. Only a write (`apply`, a restore
        forwarded to the leader) may stream, and the bytes of every stream being received or served count
        against RpcLimits.max_stream_bytes: past it, or for anything else, the connection is dropped."""
        offset, total, piece = wire.decode_part(obj)
        if offset == 0:
            kind, method = wire.peek(piece[:wire.PEEK])
            if kind != Kind.REQUEST or method not in wire.WRITE_METHODS:
                raise FrameTooLarge(f"a streamed frame of {total} bytes that is not a write request")
            if self._streaming + total > self.limits.max_stream_bytes:
                raise FrameTooLarge(f"a streamed request of {total} bytes exceeds the stream budget "
                                    f"({self._streaming} of {self.limits.max_stream_bytes} bytes in use)")
            body = conn.stream.add(offset, total, piece)  # checks that no other stream is under way
            conn.stream_bytes = total  # reserved whole at its first piece
            # the whole stream arrives in the time a frame body of its size would (RpcLimits.body_timeout)
            conn.stream_deadline = asyncio.get_running_loop().time() + self.limits.body_timeout + total / (1 << 20)
            self._streaming += total
            return body
        return conn.stream.add(offset, total, piece)

    def _take_frames(self, data: bytes) -> int:
        """_Inbound's shortcut: decode and deliver the whole Raft frames at the start of `data`, in order, up to
        the first one the connection's task must read instead; returns the bytes used."""
        pos, end, hs = 0, len(data), wire.HEADER.size
        while end - pos > hs:
            (n,) = wire.HEADER.unpack_from(data, pos)
            if n == 0 or n > UNBUDGETED or end - pos - hs < n:
                break
            try:
                obj = wire.unframe(data[pos + hs:pos + hs + n])
                kind = obj[0]
                if kind not in _FAST_KINDS or (n > wire.MAX_SMALL_FRAME and kind != Kind.APPEND_REQUEST):
                    break  # not a Raft message, or over its kind's limit (wire.inbound_limit): the task decides
                msg = wire.decode_message(obj)
            except Exception:  # malformed: the task reads it again and drops the connection as it always did
                break
            del obj
            pos += hs + n
            self.stats.frames_in += 1
            self.on_message(msg)
        return pos

    def _stream_wait(self, conn: _Conn) -> float:
        """Seconds left for the rest of the streamed request under way on `conn`."""
        return max(0.0, conn.stream_deadline - asyncio.get_running_loop().time())

    def _take(self, conn: _Conn, n: int) -> bool:
        """Count a forwarded request in flight, unless that would pass a cap."""
        lim = self.limits
        if (conn.inflight >= lim.max_inflight_per_conn or self._inflight >= lim.max_inflight
                or self._inflight_bytes + n > lim.max_inflight_bytes):
            return False
        conn.inflight += 1
        self._inflight += 1
        self._inflight_bytes += n
        return True

    async def _serve(self, conn: _Conn, n: int, rid: int, method: str, args: Any, streamed: int = 0) -> None:
        """Serve one forwarded request; it counts as in flight until its reply has left (a streamed one's
        `streamed` bytes count against the stream budget until then too)."""
        try:
            try:
                result = await self.on_request(method, args)
                del args
                out = self._encode([Kind.RESPONSE, rid, True, result])
                del result  # the encoded reply is all that is kept of it
            except Exception as exc:  # the error travels back typed: code, message, fields
                if not isinstance(exc, errors.PyconsulError):
                    log.debug("rpc %s failed with an untyped error: %r", method, exc)
                out = self._encode([Kind.RESPONSE, rid, False, errors.to_wire(exc)])
            box = [out]
            del out  # _reply owns the only reference: a reply replaced or written is freed at once
            await self._reply(conn, rid, box)
        finally:
            conn.inflight -= 1
            self._inflight -= 1
            self._inflight_bytes -= n
            self._streaming -= streamed

    @staticmethod
    def _encode(reply: list[Any]) -> bytes:
        try:
            out = wire.frame(reply)
        except Exception as exc:  # a result msgpack cannot carry: the caller gets a typed error
            return wire.frame([Kind.RESPONSE, reply[1], False, errors.to_wire(errors.Internal(
                f"the reply cannot be encoded: {type(exc).__name__}"))])
        if len(out) > wire.MAX_STREAM + wire.HEADER.size:  # the client would drop the connection
            return wire.frame([Kind.RESPONSE, reply[1], False, errors.to_wire(errors.ReplyTooLarge(
                f"the reply of {len(out)} bytes exceeds the {wire.MAX_STREAM}-byte limit of a streamed server RPC "
                "reply"))])
        return out

    async def _reply(self, conn: _Conn, rid: int, box: list[bytes]) -> None:
        """Replies leave in order, each after the previous one drained (with a deadline: a client that does
        not read is disconnected). Encoded replies waiting to leave are capped per connection and in total;
        past a cap a reply is replaced by a typed Unavailable (the client may retry) and counted."""
        out = box.pop()
        if conn.dropped:
            return
        if len(out) > wire.MAX_FRAME + wire.HEADER.size:
            await self._reply_stream(conn, out)
            return
        lim = self.limits
        if (conn.unsent and conn.unsent + len(out) > lim.max_unsent_reply_bytes) or (
                self._unsent and self._unsent + len(out) > lim.max_unsent_reply_bytes_total):
            self.stats.replies_dropped += 1
            self._warn.warn("replies", "server RPC reply of %d bytes to %s dropped: %d bytes of replies already "
                            "wait for this connection, %d for all", len(out), conn.writer.get_extra_info("peername"),
                            conn.unsent, self._unsent)
            busy = errors.Unavailable("too many reply bytes waiting for this connection")
            out = wire.frame([Kind.RESPONSE, rid, False, errors.to_wire(busy)])
        n = len(out)
        conn.unsent += n
        self._unsent += n
        try:
            async with conn.wlock:
                if conn.dropped or conn.writer.is_closing():
                    return
                conn.writer.write(out)
                del out
                try:
                    async with asyncio.timeout(lim.reply_drain_timeout):
                        await conn.writer.drain()
                except TimeoutError:
                    self._slow_reader(conn, f"a reply not taken within {lim.reply_drain_timeout:g} s")
                except (OSError, ConnectionError):
                    pass
        finally:
            conn.unsent -= n
            self._unsent -= n

    async def _reply_stream(self, conn: _Conn, out: bytes) -> None:
        """A reply larger than a frame, as PART frames (wire.split) written back to back under the connection's
        write lock, each after the previous one drained (same deadline as a reply): the unsent bytes it adds
        are one piece at a time, whatever its size. A client that stops reading is disconnected."""
        lim = self.limits
        async with conn.wlock:
            total = len(out) - wire.HEADER.size
            for off in range(0, total, wire.STREAM_PIECE):
                if conn.dropped or conn.writer.is_closing():
                    return
                piece = wire.frame([Kind.PART, off, total, out[wire.HEADER.size + off:
                                                              wire.HEADER.size + off + wire.STREAM_PIECE]])
                n = len(piece)
                conn.unsent += n
                self._unsent += n
                try:
                    conn.writer.write(piece)
                    del piece
                    async with asyncio.timeout(lim.reply_drain_timeout):
                        await conn.writer.drain()
                except TimeoutError:
                    self._slow_reader(conn, f"a reply piece not taken within {lim.reply_drain_timeout:g} s")
                    return
                except (OSError, ConnectionError):
                    return
                finally:
                    conn.unsent -= n
                    self._unsent -= n

    def _slow_reader(self, conn: _Conn, why: str) -> None:
        if conn.dropped:
            return
        conn.dropped = True
        self.stats.slow_readers += 1
        self._warn.warn("slow", "dropping server RPC connection from %s: %s",
                        conn.writer.get_extra_info("peername"), why)
        conn.writer.transport.abort()  # frees the unsent bytes now; the read loop sees the connection end
