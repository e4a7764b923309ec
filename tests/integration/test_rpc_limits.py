"""Server RPC (port 8300) under hostile clients, in process with small limits (issue 11 item 4).

Measured before: no idle timeout, no connection caps, any kind up to 64 MiB, unlimited requests in flight, and
replies buffered for clients that never read (60 unread 5 MiB replies = +309 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from pyconsul.agent import errors
from pyconsul.agent.raft import wire
from pyconsul.agent.raft.messages import Message, TimeoutNow
from pyconsul.agent.raft.transport import RpcLimits, Transport, read_frame
from tests.harness import new_block

pytestmark = pytest.mark.integration

Handler = Callable[[str, Any], Awaitable[Any]]


async def _echo(method: str, args: Any) -> Any:
    return args


@contextlib.asynccontextmanager
async def server(ip: str, limits: RpcLimits, handler: Handler = _echo,
                 got: list[Message] | None = None) -> AsyncIterator[Transport]:
    t = Transport("srv", "dc1", (f"{ip}.1", 8300), (got if got is not None else []).append, handler, limits=limits)
    await t.start()
    try:
        yield t
    finally:
        await t.stop()


async def dial(ip: str, src: int = 2, hello: bool = True) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection(f"{ip}.1", 8300, local_addr=(f"{ip}.{src}", 0))
    if hello:
        w.write(wire.frame([wire.Kind.HELLO, f"client{src}", "dc1"]))
    return r, w


async def closed_within(r: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection within `seconds` (anything it sends is skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        async with asyncio.timeout(seconds):
            while loop.time() < deadline:
                if not await r.read(65536):
                    return True
    except ConnectionError:  # closed with our bytes unread: a reset
        return True
    except TimeoutError:
        return False
    return False


async def until(cond: Callable[[], bool], seconds: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def run(coro: Callable[[str], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(new_block()), 60))


def test_slowloris_hello_and_idle_connections_are_closed() -> None:
    async def scenario(ip: str) -> None:
        got: list[Message] = []
        async with server(ip, RpcLimits(hello_timeout=0.5, idle_timeout=0.5), got=got) as t:
            slow_r, slow_w = await dial(ip, hello=False)
            idle_r, _ = await dial(ip, 3)
            raft_r, raft_w = await dial(ip, 4)
            raft_w.write(wire.frame(wire.encode_message(TimeoutNow(1, "client4", "srv"))))
            hello = wire.frame([wire.Kind.HELLO, "slow", "dc1"])
            for b in hello[:-1]:  # one byte every 0.1 s: never a complete HELLO within the timeout
                slow_w.write(bytes([b]))
                await asyncio.sleep(0.1)
                if slow_r.at_eof():
                    break
            assert await closed_within(slow_r, 3)
            assert t.stats.hello_timeouts == 1
            assert await closed_within(idle_r, 3), "HELLO and then silence: closed after the idle timeout"
            assert t.stats.idle_closed == 1
            # a connection that carried Raft traffic is a peer's: kept through silence
            assert not await closed_within(raft_r, 1.0)
            raft_w.write(wire.frame(wire.encode_message(TimeoutNow(2, "client4", "srv"))))
            await until(lambda: len(got) == 2, 5, "the peer's second message")
    run(scenario)


def test_frames_over_their_kinds_limit_drop_the_connection_before_the_body() -> None:
    async def scenario(ip: str) -> None:
        async with server(ip, RpcLimits()) as t:
            # a vote claiming 10 MiB: only its header and first bytes are sent; the server must not wait for more
            r, w = await dial(ip)
            vote = wire.frame(wire.encode_message(TimeoutNow(1, "x", "srv")))[4:]
            w.write(wire.HEADER.pack(10 * 1024 * 1024) + vote)
            assert await closed_within(r, 3)
            # a HELLO of 1 MiB before anything else; garbage length prefixes
            for head in (wire.HEADER.pack(1024 * 1024) + wire.frame([wire.Kind.HELLO, "a", "b"])[4:],
                         b"\xff\xff\xff\xff" + b"\x00" * 64):
                r, w = await dial(ip, hello=False)
                w.write(head)
                assert await closed_within(r, 3)
            # a forwarded read of 3 MiB (> 2 MiB): refused; a forwarded write of 3 MiB (a restore): served
            r, w = await dial(ip)
            w.write(wire.frame([wire.Kind.REQUEST, 1, "read_forward", b"x" * (3 * 1024 * 1024)])[:100])
            assert await closed_within(r, 3)
            assert t.stats.oversized_frames == 4
            r, w = await dial(ip)
            w.write(wire.frame([wire.Kind.REQUEST, 1, "apply_forward", b"x" * (3 * 1024 * 1024)]))
            reply = await read_frame(r)
            assert reply[:3] == [wire.Kind.RESPONSE, 1, True] and len(reply[3]) == 3 * 1024 * 1024
            w.close()
    run(scenario)


def test_connections_over_the_caps_are_closed_at_once() -> None:
    async def scenario(ip: str) -> None:
        async with server(ip, RpcLimits(max_conns_per_client=3, max_conns=5)) as t:
            same = [await dial(ip, 2) for _ in range(3)]
            await until(lambda: len(t._conns) == 3, 5, "three connections accepted")
            r, _ = await dial(ip, 2)
            assert await closed_within(r, 2), "a 4th connection from one address"
            others = [await dial(ip, 3), await dial(ip, 4)]
            await until(lambda: len(t._conns) == 5, 5, "five connections accepted")
            r, _ = await dial(ip, 5)
            assert await closed_within(r, 2), "a 6th connection in total"
            assert t.stats.conns_refused == 2
            for _, w in same + others:  # the ones admitted still work
                w.write(wire.frame([wire.Kind.REQUEST, 9, "echo", "hi"]))
            for r, _ in same + others:
                assert await read_frame(r) == [wire.Kind.RESPONSE, 9, True, "hi"]
            same[0][1].close()
            await until(lambda: len(t._conns) == 4, 5, "a slot freed")
            r, w = await dial(ip, 2)
            w.write(wire.frame([wire.Kind.REQUEST, 10, "echo", 1]))
            assert await read_frame(r) == [wire.Kind.RESPONSE, 10, True, 1]
    run(scenario)


def test_requests_over_the_in_flight_caps_get_an_immediate_typed_refusal() -> None:
    async def scenario(ip: str) -> None:
        release = asyncio.Event()

        async def blocking(method: str, args: Any) -> Any:
            await release.wait()
            return args

        async with server(ip, RpcLimits(max_inflight_per_conn=2, max_inflight=3), blocking) as t:
            r1, w1 = await dial(ip, 2)
            r2, w2 = await dial(ip, 3)
            for rid in (1, 2, 3):
                w1.write(wire.frame([wire.Kind.REQUEST, rid, "wait", rid]))
            busy = await asyncio.wait_for(read_frame(r1), 5)  # before anything is released
            assert busy[:3] == [wire.Kind.RESPONSE, 3, False]
            exc = errors.from_wire(busy[3])
            assert isinstance(exc, errors.Unavailable) and "too many requests" in str(exc)
            for rid in (4, 5):
                w2.write(wire.frame([wire.Kind.REQUEST, rid, "wait", rid]))
            busy = await asyncio.wait_for(read_frame(r2), 5)  # the global cap of 3
            assert busy[:3] == [wire.Kind.RESPONSE, 5, False]
            assert t.stats.requests_refused == 2
            release.set()
            done = [(await read_frame(r1))[1], (await read_frame(r1))[1], (await read_frame(r2))[1]]
            assert sorted(done) == [1, 2, 4]
            await until(lambda: t._inflight == 0 and t._inflight_bytes == 0, 5, "nothing left in flight")
    run(scenario)


def test_a_client_that_never_reads_its_replies_is_disconnected() -> None:
    async def scenario(ip: str) -> None:
        async def big(method: str, args: Any) -> Any:
            return b"r" * (args or 1024 * 1024)

        limits = RpcLimits(max_unsent_reply_bytes=8 * 1024 * 1024, reply_drain_timeout=1.0)
        async with server(ip, limits, big) as t:
            peak = 0

            def watch() -> bool:
                nonlocal peak
                peak = max(peak, t._unsent)
                return t.stats.replies_dropped >= 50 and t._unsent == 0

            r, w = await dial(ip)
            for rid in range(60):  # 5 MiB replies asked for, none read
                w.write(wire.frame([wire.Kind.REQUEST, rid, "big", 5 * 1024 * 1024]))
            await until(watch, 10, "replies past the cap replaced, not buffered")
            assert peak <= 8 * 1024 * 1024 + 5 * 1024 * 1024 + 4096, f"{peak} reply bytes buffered"
            w.close()
            await until(lambda: not t._conns, 5, "the first client gone")
            slow = t.stats.slow_readers
            # one reply larger than the kernel's socket buffers take, never read: dropped after the drain deadline
            r, w = await dial(ip)
            w.write(wire.frame([wire.Kind.REQUEST, 1, "big", 32 * 1024 * 1024]))
            await until(lambda: t.stats.slow_readers == slow + 1 and not t._conns, 10, "the non-reader dropped")
            # a client that reads gets every reply within the cap, and a typed refusal past it
            r, w = await dial(ip)
            for rid in range(6):
                w.write(wire.frame([wire.Kind.REQUEST, rid, "big", None]))
            replies = [await read_frame(r) for _ in range(6)]
            assert sorted(x[1] for x in replies) == list(range(6)) and all(x[2] for x in replies)
            for rid in range(20):
                w.write(wire.frame([wire.Kind.REQUEST, rid, "big", 2 * 1024 * 1024]))
            replies = [await read_frame(r) for _ in range(20)]
            refused = [x for x in replies if not x[2]]
            assert refused and all(isinstance(errors.from_wire(x[3]), errors.Unavailable) for x in refused)
            assert t.stats.slow_readers == slow + 1
    run(scenario)


def test_large_frames_share_one_budget_and_a_stalled_body_times_out() -> None:
    async def scenario(ip: str) -> None:
        got: list[Message] = []
        mib = 1024 * 1024
        limits = RpcLimits(frame_budget=mib + 4096, frame_budget_wait=0.5, body_timeout=0.5)
        async with server(ip, limits, got=got) as t:
            # holds the budget: announces a 1 MiB AppendRequest and stalls after 64 KiB
            big = wire.frame([wire.Kind.APPEND_REQUEST, 1, "x", "srv", 0, 0, [[1, 1, 0, b"e" * (mib - 200)]], 0, 0])
            r1, w1 = await dial(ip, 2)
            w1.write(big[:65536])
            await until(lambda: t._budget is not None and t._budget.used > 0, 5, "the budget taken")
            r2, w2 = await dial(ip, 3)
            w2.write(big)
            assert await closed_within(r2, 3), "no room within frame_budget_wait"
            assert t.stats.budget_timeouts == 1
            assert await closed_within(r1, 5), "the stalled body times out (0.5 s + 1 s per MiB)"
            assert t.stats.body_timeouts == 1
            assert t._budget is not None and t._budget.used == 0
            _, w3 = await dial(ip, 4)
            w3.write(big)
            await until(lambda: len(got) == 1, 5, "a complete large frame delivered")
    run(scenario)


def test_a_client_reopens_a_connection_idle_for_half_the_idle_timeout() -> None:
    """The server closes connections idle for idle_timeout; a requester never reuses one idle for half of it, so
    its request cannot meet the server's close (a write lost that way is not retried: it may have applied)."""
    async def scenario(ip: str) -> None:
        async with server(ip, RpcLimits(idle_timeout=0.6)) as t:
            client = Transport("c", "dc1", (f"{ip}.2", 0), limits=RpcLimits(idle_timeout=0.6))
            try:
                addr = f"{ip}.1:8300"
                assert await client.request(addr, "echo", 1) == 1
                first = client._clients[addr].writer
                assert await client.request(addr, "echo", 2) == 2
                assert client._clients[addr].writer is first, "reused while fresh"
                loop = asyncio.get_running_loop()
                since = loop.time()
                await until(lambda: loop.time() - since > 0.35, 5, "half the idle timeout to pass")
                assert await client.request(addr, "echo", 3) == 3
                assert client._clients[addr].writer is not first
                assert t.stats.idle_closed == 0
            finally:
                await client.stop()
    run(scenario)
