"""Server RPC frames larger than MAX_FRAME stream as PART frames (wire.split / wire.Reassembly): any reply (a
forwarded read, a snapshot), and a write request (a restore forwarded to the leader); nothing else may stream,
and streamed requests share a byte budget."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyconsul.agent.errors import Unavailable
from pyconsul.agent.raft import wire
from pyconsul.agent.raft.transport import RpcLimits, Transport
from tests.harness import new_block

BIG = wire.MAX_FRAME + 3 * wire.STREAM_PIECE + 12345  # a body that needs 20 pieces, the last one short


def test_split_and_reassemble_round_trip() -> None:
    data = wire.frame([wire.Kind.RESPONSE, 7, True, b"x" * BIG])
    parts = wire.split(data)
    assert len(parts) > 16 and all(len(p) <= wire.MAX_PART_FRAME + wire.HEADER.size for p in parts)
    r = wire.Reassembly()
    out = None
    for p in parts:
        assert out is None
        out = r.add(*wire.decode_part(wire.unframe(p[wire.HEADER.size:])))
    assert out is not None and bytes(out) == data[wire.HEADER.size:] and not r.active
    small = wire.frame([wire.Kind.RESPONSE, 1, True, b"y"])
    assert wire.split(small) == [small]


def test_reassembly_refuses_gaps_and_oversized_totals() -> None:
    r = wire.Reassembly(cap=100)
    with pytest.raises(wire.WireError, match="does not continue"):
        r.add(10, 50, b"a" * 10)
    with pytest.raises(wire.WireError, match="exceeds"):
        r.add(0, 101, b"a")
    assert r.add(0, 4, b"ab") is None
    with pytest.raises(wire.WireError, match="does not continue"):
        r.add(2, 5, b"cd")  # another total mid-stream
    with pytest.raises(wire.WireError):
        wire.decode_part([wire.Kind.PART, 0, 1, b"ab"])  # a piece beyond its total


def test_large_reply_and_large_write_request_stream() -> None:
    ip = new_block()
    seen: dict[str, int] = {}

    async def handler(method: str, args: Any) -> Any:
        seen[method] = len(args) if isinstance(args, bytes) else -1
        if method == "big":
            return b"r" * BIG
        return args

    async def main() -> None:
        a = Transport("a", "bj", (f"{ip}.1", 8300), lambda m: None, handler)
        b = Transport("b", "bj", (f"{ip}.2", 8300), lambda m: None, handler)
        await a.start()
        try:
            addr = f"{ip}.1:8300"
            out = await b.request(addr, "big", None, timeout=30)
            assert out == b"r" * BIG
            del out
            arg = b"w" * BIG
            assert await b.request(addr, "apply", arg, timeout=30) == arg  # a streamed request, then its reply
            assert seen["apply"] == BIG
            assert a._streaming == 0 and a._unsent == 0 and a._inflight == 0
            assert await b.request(addr, "echo", {"n": 1}) == {"n": 1}  # the same connection goes on
            with pytest.raises(Unavailable):  # only writes may stream: the server drops the connection
                await b.request(addr, "read", arg, timeout=30)
            assert a.stats.oversized_frames == 1
            assert await b.request(addr, "echo", {"n": 2}) == {"n": 2}  # a new connection
            assert a._streaming == 0
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_streamed_requests_share_a_byte_budget() -> None:
    ip = new_block()

    async def handler(method: str, args: Any) -> Any:
        return len(args)

    async def main() -> None:
        a = Transport("a", "bj", (f"{ip}.1", 8300), lambda m: None, handler,
                      limits=RpcLimits(max_stream_bytes=wire.MAX_FRAME + wire.STREAM_PIECE))
        b = Transport("b", "bj", (f"{ip}.2", 8300), lambda m: None, handler)
        await a.start()
        try:
            addr = f"{ip}.1:8300"
            with pytest.raises(Unavailable):
                await b.request(addr, "apply", b"w" * BIG, timeout=30)
            assert a.stats.oversized_frames == 1 and a._streaming == 0
            fits = wire.MAX_FRAME + 1024
            assert await b.request(addr, "apply", b"w" * fits, timeout=30) == fits
            assert a._streaming == 0
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_stalled_streamed_request_is_dropped_and_its_budget_released() -> None:
    ip = new_block()

    async def handler(method: str, args: Any) -> Any:
        return None

    async def main() -> None:
        a = Transport("a", "bj", (f"{ip}.1", 8300), lambda m: None, handler, limits=RpcLimits(body_timeout=0.3))
        await a.start()
        try:
            reader, writer = await asyncio.open_connection(f"{ip}.1", 8300)
            writer.write(wire.frame([wire.Kind.HELLO, "x", "bj"]))
            body = wire.frame([wire.Kind.REQUEST, 1, "apply", b"z" * 1000])[wire.HEADER.size:]
            writer.write(wire.frame([wire.Kind.PART, 0, len(body), body[:100]]))  # the rest never comes
            await writer.drain()
            async with asyncio.timeout(10):
                assert await reader.read() == b""  # closed by the server
            assert a.stats.body_timeouts == 1 and a._streaming == 0
            writer.close()
        finally:
            await a.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_part_frames_have_their_own_small_cap() -> None:
    part = wire.frame([wire.Kind.PART, wire.MAX_STREAM - wire.STREAM_PIECE, wire.MAX_STREAM,
                       b"p" * wire.STREAM_PIECE])[wire.HEADER.size:]
    assert len(part) <= wire.MAX_PART_FRAME  # the largest piece, at the largest offset, fits its cap
    assert wire.inbound_limit(part[:wire.PEEK], True) == wire.response_limit(part[:wire.PEEK]) == wire.MAX_PART_FRAME
    assert wire.inbound_limit(part[:wire.PEEK], False) == wire.MAX_SMALL_FRAME  # nothing but HELLO first
    assert wire.MAX_PART_FRAME < wire.MAX_FRAME


def test_a_malformed_streamed_request_releases_its_budget() -> None:
    ip = new_block()

    async def handler(method: str, args: Any) -> Any:
        return None

    async def main() -> None:
        a = Transport("a", "bj", (f"{ip}.1", 8300), lambda m: None, handler)
        await a.start()
        try:
            reader, writer = await asyncio.open_connection(f"{ip}.1", 8300)
            writer.write(wire.frame([wire.Kind.HELLO, "x", "bj"]))
            body = wire.frame([wire.Kind.REQUEST, -1, "apply", b"z" * 1000])[wire.HEADER.size:]  # a bad request id
            for off, piece in ((0, body[:500]), (500, body[500:])):
                writer.write(wire.frame([wire.Kind.PART, off, len(body), piece]))
            await writer.drain()
            async with asyncio.timeout(10):
                assert await reader.read() == b""  # dropped: a malformed frame
            assert a.stats.bad_frames == 1 and a._streaming == 0
            writer.close()
        finally:
            await a.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
