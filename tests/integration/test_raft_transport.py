"""The server RPC transport on loopback: one-way Raft messages and forwarded requests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyconsul.agent.errors import Internal, Unavailable
from pyconsul.agent.raft.messages import Message, TimeoutNow, VoteRequest
from pyconsul.agent.raft.transport import Transport
from tests.harness import new_block

pytestmark = pytest.mark.integration


async def _scenario(ip: str) -> None:
    got: list[Message] = []

    async def handler(method: str, args: Any) -> Any:
        if method == "echo":
            return args
        raise ValueError(f"no such method {method}")

    a = Transport("a", "bj", (f"{ip}.1", 8300), got.append, handler)
    b = Transport("b", "bj", (f"{ip}.2", 8300), got.append, handler)
    await a.start()
    try:
        # b dials a before a's peer exists; messages queue and flow once connected
        b.send(f"{ip}.1:8300", VoteRequest(1, "b", "a", 0, 0))
        for i in range(100):
            b.send(f"{ip}.1:8300", TimeoutNow(i, "b", "a"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(got) < 101 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert got[0] == VoteRequest(1, "b", "a", 0, 0)
        assert [m.term for m in got[1:]] == list(range(100)), "order is kept on one connection"
        assert await b.request(f"{ip}.1:8300", "echo", {"k": [1, "x"]}) == {"k": [1, "x"]}
        with pytest.raises(Internal, match="no such method"):  # an untyped remote error
            await b.request(f"{ip}.1:8300", "nope", None)
        with pytest.raises(Unavailable):  # nothing listens there
            await b.request(f"{ip}.9:8300", "echo", 1, timeout=1.0)
        # messages to a dead address are dropped (bounded queue), never block the sender
        for i in range(5000):
            b.send(f"{ip}.9:8300", TimeoutNow(i, "b", "x"))
        assert b.stats.dropped_queue_full > 0
    finally:
        await a.stop()
        await b.stop()


def test_transport_messages_and_requests() -> None:
    asyncio.run(_scenario(new_block()))


async def _shortcut_scenario(ip: str) -> None:
    """Raft frames on a peer connection are taken in data_received (_Inbound) whole, and handed to the
    connection's task from the first one it cannot take (split across reads, large, malformed): every message
    arrives once, in order, and the task's limits still drop the connection."""
    from pyconsul.agent.raft import wire
    from pyconsul.agent.raft.messages import AppendRequest, Entry, EntryKind
    from pyconsul.agent.raft.wire import Kind

    got: list[Message] = []
    lost: list[str] = []
    a = Transport("a", "bj", (f"{ip}.1", 8300), got.append, on_peer_lost=lost.append)
    await a.start()
    loop = asyncio.get_running_loop()
    taken = [0]  # frames taken by the shortcut
    take = a._take_frames

    def counting(data: bytes) -> int:
        before = a.stats.frames_in
        used = take(data)
        taken[0] += a.stats.frames_in - before
        return used

    a._take_frames = counting  # type: ignore[method-assign]

    async def until(pred: Any, what: str) -> None:
        deadline = loop.time() + 5
        while not pred():
            assert loop.time() < deadline, what
            await asyncio.sleep(0.005)

    def fr(m: Message) -> bytes:
        return wire.frame(wire.encode_message(m))  # type: ignore[arg-type]

    try:
        reader, writer = await asyncio.open_connection(f"{ip}.1", 8300)
        writer.write(wire.frame([Kind.HELLO, "b", "bj"]) + fr(TimeoutNow(0, "b", "a")))
        await until(lambda: len(got) == 1, "the first message (read by the task)")
        big = AppendRequest(1, "b", "a", 0, 0, (Entry(1, 1, EntryKind.NORMAL, b"x" * 100_000),), 0, 0)
        stream = b"".join(fr(TimeoutNow(i, "b", "a")) for i in range(1, 50)) + fr(big) + b"".join(
            fr(TimeoutNow(i, "b", "a")) for i in range(50, 200))
        for cut in (7, 3, 1, 500, 2, 40_000, 70_000, 1000, 3):  # awkward pieces: headers and frames split
            piece, stream = stream[:cut], stream[cut:]
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.002)  # pacing, not a wait: each piece should arrive in a read of its own
        writer.write(stream)
        await until(lambda: len(got) == 201, "every message")
        assert [m.term for m in got if isinstance(m, TimeoutNow)] == list(range(200)), "order is kept"
        assert isinstance(got[50], AppendRequest) and got[50].entries == big.entries
        assert a.stats.frames_in == 201 and taken[0] > 0, taken
        # once the task caught up, frames arriving whole never wake it
        before = taken[0]
        for i in range(10):
            writer.write(fr(TimeoutNow(1000 + i, "b", "a")))
            await until(lambda i=i: got[-1].term == 1000 + i, "a frame arriving whole")
        assert taken[0] - before == 10
        del got[-10:]
        # a malformed frame after good ones: the good ones arrive, the connection is dropped and counted
        writer.write(fr(TimeoutNow(200, "b", "a")) + wire.HEADER.pack(3) + b"\xc1\xc1\xc1"
                     + fr(TimeoutNow(201, "b", "a")))
        await until(lambda: a.stats.bad_frames == 1, "the bad frame counted")
        assert [m.term for m in got[-2:]] == [199, 200]
        assert await reader.read() == b"", "the connection was closed"
        writer.close()
        # a small kind over its limit (wire.MAX_SMALL_FRAME) is refused by the task as before
        reader, writer = await asyncio.open_connection(f"{ip}.1", 8300)
        writer.write(wire.frame([Kind.HELLO, "b", "bj"]) + fr(TimeoutNow(300, "b", "a")))
        await until(lambda: got[-1].term == 300, "a second connection's first message")
        writer.write(wire.frame([Kind.TIMEOUT_NOW, 301, "b" * 5000, "a"]))
        await until(lambda: a.stats.oversized_frames == 1, "the oversized frame counted")
        assert got[-1].term == 300
        writer.close()
    finally:
        await a.stop()


def test_raft_frames_taken_in_data_received() -> None:
    asyncio.run(_shortcut_scenario(new_block()))


async def _threadsafe_scenario(ip: str) -> None:
    """send_threadsafe writes from another thread on an idle connection, refuses (writing nothing) when there
    is none, and a frame the socket takes only in part (the peer reads nothing) aborts that connection: the
    stream is never continued mid-frame."""
    from pyconsul.agent.raft import wire

    got: list[Message] = []
    a = Transport("a", "bj", (f"{ip}.1", 8300), got.append)
    b = Transport("b", "bj", (f"{ip}.2", 8300), got.append)
    await a.start()
    loop = asyncio.get_running_loop()

    async def until(pred: Any, what: str) -> None:
        deadline = loop.time() + 5
        while not pred():
            assert loop.time() < deadline, what
            await asyncio.sleep(0.005)

    def frame(term: int) -> bytes:
        return wire.frame(wire.encode_message(TimeoutNow(term, "b", "a")))

    stalled: list[asyncio.StreamWriter] = []

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.append(writer)
        await asyncio.sleep(3600)  # a peer that never reads (the server closes it at the end)

    sink = await asyncio.start_server(never_reads, f"{ip}.3", 8300)
    try:
        assert not await asyncio.to_thread(b.send_threadsafe, f"{ip}.1:8300", frame(0)), "no connection yet"
        b.send(f"{ip}.1:8300", TimeoutNow(1, "b", "a"))
        await until(lambda: len(got) == 1, "the first message")
        await until(lambda: b._peers[f"{ip}.1:8300"].direct is not None, "the connection idle")
        for t in range(2, 12):
            assert await asyncio.to_thread(b.send_threadsafe, f"{ip}.1:8300", frame(t))
        b.send(f"{ip}.1:8300", TimeoutNow(12, "b", "a"))  # the loop's writes and the thread's share one stream
        await until(lambda: len(got) == 12, "every message")
        assert [m.term for m in got] == list(range(1, 13))
        # a peer that reads nothing: a large frame is taken in part, and that connection is dropped
        b.send(f"{ip}.3:8300", TimeoutNow(1, "b", "c"))
        await until(lambda: bool(stalled) and b._peers[f"{ip}.3:8300"].direct is not None, "connected to the sink")
        big = wire.frame([wire.Kind.APPEND_REQUEST, 1, "b", "c", 0, 0, [[1, 1, 0, b"x" * (64 << 20)]], 0, 0])
        assert await asyncio.to_thread(b.send_threadsafe, f"{ip}.3:8300", big)
        peer = b._peers[f"{ip}.3:8300"]
        await until(lambda: peer.direct is None or peer.direct[1].is_closing(), "the connection aborted")
        assert not await asyncio.to_thread(b.send_threadsafe, f"{ip}.3:8300", frame(2))
    finally:
        sink.close()
        for w in stalled:
            w.close()
        await a.stop()
        await b.stop()


def test_send_threadsafe() -> None:
    asyncio.run(_threadsafe_scenario(new_block()))
