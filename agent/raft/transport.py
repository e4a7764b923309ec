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
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent import errors
from agent.raft import wire
from agent.raft.messages import Message
from agent.raft.wire import Kind, WireError

log = logging.getLogger("agent.server.rpc")

QUEUE_DEPTH = 4096
BACKOFF_MAX = 0.1  # a restarted peer must hear from us within a heartbeat or two (elections wait on it)


async def _no_requests(method: str, args: Any) -> Any:
    raise errors.BadRequest("this agent serves no server RPC")


@dataclass
class TransportStats:
    frames_in: int = 0
    frames_out: int = 0
    dropped_queue_full: int = 0
    bad_frames: int = 0
    connects: int = 0


async def read_frame(reader: asyncio.StreamReader) -> list[Any]:
    head = await reader.readexactly(wire.HEADER.size)
    (n,) = wire.HEADER.unpack(head)
    if n > wire.MAX_FRAME:
        raise WireError(f"frame of {n} bytes exceeds the limit")
    return wire.unframe(await reader.readexactly(n))


class _Peer:
    def __init__(self, transport: Transport, address: str) -> None:
        self.t = transport
        self.address = address
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_DEPTH)
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Contract: a batch is dropped only after it was handed to a connection we believed
        alive; a connection the peer closed (it restarted, or died) is detected BEFORE writing
        (the transport sees the FIN/RST even though we never read), so the first message after a
        peer restart -- often a vote request -- is sent on a fresh connection, not lost."""
        backoff = 0.01
        host, _, port = self.address.rpartition(":")
        pending: list[bytes] = []
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port), local_addr=self.t.local_addr()), 2.0)
            except (OSError, TimeoutError, ValueError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self.t.stats.connects += 1
            backoff = 0.01
            try:
                writer.write(wire.frame([Kind.HELLO, self.t.server_id, self.t.datacenter]))
                while True:
                    if not pending:
                        pending = [await self.queue.get()]
                        while not self.queue.empty() and len(pending) < 256:
                            pending.append(self.queue.get_nowait())
                    if writer.is_closing() or reader.at_eof():
                        break  # the peer went away while we were idle: reconnect, keep the batch
                    writer.write(b"".join(pending))
                    self.t.stats.frames_out += len(pending)
                    pending = []
                    await writer.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    def send(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.t.stats.dropped_queue_full += 1


class _Client:
    """A request/response connection to one address, multiplexed by request id."""

    def __init__(self, transport: Transport, address: str) -> None:
        self.t = transport
        self.address = address
        self.lock = asyncio.Lock()
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.reader_task: asyncio.Task[None] | None = None

    async def _connect(self) -> asyncio.StreamWriter:
        async with self.lock:
            if self.writer is not None and not self.writer.is_closing():
                return self.writer
            host, _, port = self.address.rpartition(":")
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port), local_addr=self.t.local_addr()), 2.0)
            writer.write(wire.frame([Kind.HELLO, self.t.server_id, self.t.datacenter]))
            self.writer = writer
            self.reader_task = asyncio.get_running_loop().create_task(self._read(reader))
            return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                obj = await read_frame(reader)
                if obj[0] == Kind.RESPONSE and len(obj) == 4:
                    fut = self.pending.pop(obj[1], None)
                    if fut is not None and not fut.done():
                        if obj[2]:
                            fut.set_result(obj[3])
                        else:
                            fut.set_exception(errors.from_wire(obj[3]))
        except (OSError, asyncio.IncompleteReadError, WireError, ConnectionError):
            pass
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(errors.Unavailable(f"connection to {self.address} lost"))
            self.pending.clear()
            if self.writer is not None:
                self.writer.close()
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
        self.pending[rid] = fut
        writer.write(data)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.pending.pop(rid, None)
            raise errors.RequestTimeout(f"rpc {method} to {self.address} timed out") from None


class Transport:
    def __init__(
        self,
        server_id: str,
        datacenter: str,
        bind: tuple[str, int],
        on_message: Callable[[Message], None] | None = None,
        on_request: Callable[[str, Any], Awaitable[Any]] | None = None,
        on_peer_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.server_id = server_id
        self.on_peer_lost = on_peer_lost
        self._stopping = False
        self.datacenter = datacenter
        self.bind = bind
        # The callbacks may be attached after construction (the agent wires Transport, RaftNode and
        # ConsulServer to each other); until then messages are dropped and requests refused.
        self.on_message: Callable[[Message], None] = on_message or (lambda msg: None)
        self.on_request: Callable[[str, Any], Awaitable[Any]] = on_request or _no_requests
        self.stats = TransportStats()
        self.ids = itertools.count(1)
        self._peers: dict[str, _Peer] = {}
        self._clients: dict[str, _Client] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    def local_addr(self) -> tuple[str, int] | None:
        return None if self.bind[0] in ("0.0.0.0", "") else (self.bind[0], 0)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.bind[0], self.bind[1], reuse_address=True)

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        tasks = [p.task for p in self._peers.values()] + [c.reader_task for c in self._clients.values()
                                                          if c.reader_task is not None] + list(self._conns)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for c in self._clients.values():
            if c.writer is not None:
                c.writer.close()

    # ------------------------------------------------------------ outgoing

    def send(self, address: str, msg: Message) -> None:
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = _Peer(self, address)
        peer.send(wire.frame(wire.encode_message(msg)))

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

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        peer = writer.get_extra_info("peername")
        sender = ""
        try:
            hello = await asyncio.wait_for(read_frame(reader), 10.0)
            if hello[0] != Kind.HELLO:
                raise WireError("first frame must be HELLO")
            sender = str(hello[1]) if len(hello) > 1 else ""
            while True:
                obj = await read_frame(reader)
                self.stats.frames_in += 1
                if obj[0] == Kind.REQUEST:
                    if len(obj) != 4 or not isinstance(obj[1], int) or not isinstance(obj[2], str):
                        raise WireError("bad request frame")
                    asyncio.get_running_loop().create_task(self._serve(writer, obj[1], obj[2], obj[3]))
                else:
                    self.on_message(wire.decode_message(obj))
        except WireError as exc:
            self.stats.bad_frames += 1
            log.warning("dropping connection from %s: %s", peer, exc)
        except (OSError, asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            # the peer closed or reset the connection: its process may have died (a hint for Raft)
            if sender and not self._stopping and self.on_peer_lost is not None:
                self.on_peer_lost(sender)
        finally:
            writer.close()
            if task is not None:
                self._conns.discard(task)

    async def _serve(self, writer: asyncio.StreamWriter, rid: int, method: str, args: Any) -> None:
        try:
            result = await self.on_request(method, args)
            out = wire.frame([Kind.RESPONSE, rid, True, result])
        except Exception as exc:  # the error travels back typed: code, message, fields
            if not isinstance(exc, errors.PyconsulError):
                log.debug("rpc %s failed with an untyped error: %r", method, exc)
            out = wire.frame([Kind.RESPONSE, rid, False, errors.to_wire(exc)])
        if not writer.is_closing():
            writer.write(out)
