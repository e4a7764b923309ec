"""The gossip pool's asyncio shell (agent/gossip/pool.py) on loopback, in-process: what only the shell
does (decryption and its counters, waking on deadlines and on core calls, waiting for query answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest

from pyconsul.agent.gossip import codec
from pyconsul.agent.gossip import pool as pool_mod
from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.keyring import Keyring, encrypt
from pyconsul.agent.gossip.membership import TcpPing
from pyconsul.agent.gossip.messages import MsgType, NodeState, Ping, PushNodeState, PushPull
from pyconsul.agent.gossip.pool import Pool
from tests.harness import new_block

pytestmark = pytest.mark.integration

KEY_A = bytes(range(16))
KEY_B = bytes(range(16, 32))


@asynccontextmanager
async def pool(ip: str, name: str, *, keyring: Keyring | None = None, gossip: GossipConfig | None = None,
               on_event: Callable[[Any], None] | None = None) -> AsyncIterator[Pool]:
    p = Pool(label="lan", name=name, bind=(ip, 8301), advertise=(ip, 8301), gossip=gossip or GossipConfig.local(),
             tags={"role": "node"}, keyring=keyring, on_event=on_event)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.01)


def send_udp(data: bytes, dest: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, dest)


def test_unencrypted_packets_in_an_encrypted_pool_are_counted_apart() -> None:
    """README: unencrypted packets in an encrypted pool are dropped and counted as dropped_unencrypted;
    packets sealed with a key we do not have count as dropped_decrypt_failed."""
    ip = f"{new_block()}.1"

    async def main() -> None:
        async with pool(ip, "enc", keyring=Keyring(KEY_A)) as p:
            ping = codec.encode(Ping(7, "enc", codec.ip_to_bytes("127.0.0.1"), 9, "stranger"))
            send_udp(ping, (ip, 8301))
            await until(lambda: p.stats()["dropped_unencrypted"] == "1", 5, "the plaintext ping to be counted")
            assert p.stats()["dropped_decrypt_failed"] == "0"
            send_udp(encrypt(1, KEY_B, ping, b""), (ip, 8301))
            await until(lambda: p.stats()["dropped_decrypt_failed"] == "1", 5, "the wrong-key ping to be counted")
            assert p.stats()["dropped_unencrypted"] == "1"
            assert p.stats()["packets_received"] == "0", "neither reached the core"

    asyncio.run(main())


@asynccontextmanager
async def joined_pair(block: str) -> AsyncIterator[tuple[Pool, Pool]]:
    async with pool(f"{block}.1", "a") as a, pool(f"{block}.2", "b") as b:
        n, errors = await b.join([f"{block}.1"], 8301)
        assert (n, errors) == (1, [])
        await until(lambda: len(a.members()) == 2 and len(b.members()) == 2, 10, "both to see two members")
        yield a, b


def test_idle_pool_wakes_on_deadlines_only() -> None:
    """No polling period: an idle pool's timer fires at the core's deadlines (a probe a second, its
    timeouts, push/pull), not every 50 ms, and skipped gossip rounds (nothing queued) cost no wake-up:
    local() gossips every 100 ms, so waking for every round alone would be 10 per second."""

    async def main() -> None:
        async with joined_pair(new_block()) as (a, _):
            loop = asyncio.get_running_loop()
            start = a.counters.timer_wakeups
            t0 = loop.time()
            await asyncio.sleep(3.0)  # the measurement window itself (nothing is synchronised on it)
            rate = (a.counters.timer_wakeups - start) / (loop.time() - t0)
            assert rate < 6.0, f"{rate:.1f} timer wake-ups per second while idle"
            assert a.counters.timer_wakeups > start, "the probe timer still runs"

    asyncio.run(main())


def test_query_returns_once_every_member_answered() -> None:
    """Pool.query waits on the core's QueryComplete, not on its deadline (nor on a 20 ms poll)."""

    async def main() -> None:
        async with joined_pair(new_block()) as (a, _):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            responses = await a.query("_serf_list-keys", b"", timeout=30.0)
            assert sorted(responses) == ["a", "b"]
            assert loop.time() - t0 < 15.0, "returned at the deadline, not when both had answered"

    asyncio.run(main())


def test_leave_waits_for_its_broadcasts_without_polling() -> None:
    async def main() -> None:
        async with joined_pair(new_block()) as (a, b):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await b.leave(timeout=30.0)
            assert loop.time() - t0 < 15.0, "leave waited for its timeout instead of its broadcasts"
            assert b.core.intent_broadcast_done() and b.core.leave_done()
            await until(lambda: any(m.name == "b" and str(m.status) == "left" for m in a.members()), 10,
                        "a to see b left")

    asyncio.run(main())


# ---------------------------------------------------------------- bounds (issue 11 item 4)


def _big_push_pull_prefix(n_nodes: int) -> tuple[bytes, bytes]:
    """A push/pull announcing n_nodes + 1 nodes: (n_nodes nodes' worth of bytes, the last node's bytes)."""
    vsn = (1, 5, 2, 2, 5, 4)
    node = codec.encode_push_pull(PushPull(False, (
        PushNodeState("trickled", codec.ip_to_bytes("127.0.0.1"), 8301, b"\xff" + b"m" * 450, 1, NodeState.ALIVE,
                      vsn),), b""))
    one = codec.encode_push_pull(PushPull(False, (), b""))  # type byte + header only
    last = node[len(one):]
    header = bytes([MsgType.PUSH_PULL]) + msgpack.packb({"Nodes": n_nodes + 1, "UserStateLen": 0, "Join": False})
    body = b"".join(
        msgpack.packb({"Name": f"node-{i}", "Addr": codec.ip_to_bytes("127.0.0.1"), "Port": 8301, "Meta": None,
                       "Incarnation": 1, "State": 0, "Vsn": bytes(vsn)}, use_bin_type=False)
        for i in range(n_nodes))
    return header + body, last


def test_trickled_streams_cost_little_cpu() -> None:
    """Three clients each send 20,000 nodes of a push/pull at once and then the last node one byte per
    10 ms for 3 s. Re-parsing the buffer from the start on every read (as before) made that ~100 % of a
    core; parsed once, incrementally, it is a few percent. CPU time of this process, generous ceiling."""
    ip = f"{new_block()}.1"
    prefix, last = _big_push_pull_prefix(20_000)
    trickle = last[:300]  # ~3 s at 10 ms a byte, never the whole message
    assert len(last) > len(trickle)

    async def client(n: int) -> None:
        _, w = await asyncio.open_connection(ip, 8301)
        w.write(prefix)
        await w.drain()
        for i in range(len(trickle)):
            w.write(trickle[i : i + 1])
            await w.drain()
            await asyncio.sleep(0.01)
        w.close()

    async def main() -> None:
        gossip = dataclasses.replace(GossipConfig.local(), tcp_timeout=60.0)
        async with pool(ip, "srv", gossip=gossip) as p:
            cpu0 = time.process_time()
            t0 = time.monotonic()
            await asyncio.gather(*(client(i) for i in range(3)))
            cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
            assert wall > 2.9 and p.counters.push_pull_ok == 0
            assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s for three trickled streams"

    asyncio.run(main())


def test_stream_deadline_and_concurrency_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream that never completes is cut at tcp_timeout; while MAX_INBOUND_STREAMS are being
    served another connection is closed at once and counted (streams_rejected)."""
    monkeypatch.setattr(pool_mod, "MAX_INBOUND_STREAMS", 3)
    ip = f"{new_block()}.1"

    async def main() -> None:
        async with pool(ip, "srv") as p:  # local(): tcp_timeout 1 s
            loop = asyncio.get_running_loop()
            held = [await asyncio.open_connection(ip, 8301) for _ in range(3)]
            for _, w in held:
                w.write(bytes([MsgType.PUSH_PULL]))
                await w.drain()
            await until(lambda: p._inbound == 3, 5, "three streams being served")
            r, w = await asyncio.open_connection(ip, 8301)
            t0 = loop.time()
            assert await asyncio.wait_for(r.read(), 0.9) == b"", "the fourth connection is closed at once"
            assert loop.time() - t0 < 0.9
            assert p.stats()["streams_rejected"] == "1"
            w.close()
            for hr, hw in held:  # each is cut at its deadline
                with contextlib.suppress(ConnectionError):
                    assert await asyncio.wait_for(hr.read(), 10) == b""
                hw.close()
            await until(lambda: p._inbound == 0, 5, "the held streams to end")
            assert p.counters.stream_errors >= 3

    asyncio.run(main())


def _lzw_bomb(repeats: int) -> bytes:
    """A compress message whose LZW stream fills the table with runs of zeros, then repeats the longest
    (3,839 bytes per 12-bit code)."""
    acc = nbits = 0
    width, hi = 9, 257
    for code in [0, *range(258, 4096), *([4095] * repeats), 257]:
        acc |= code << nbits
        nbits += width
        hi += 1
        if hi >= 1 << width:
            hi, width = (hi - 1, width) if width == 12 else (hi, width + 1)
    body: bytes = msgpack.packb({"Algo": 0, "Buf": acc.to_bytes((nbits + 7) // 8, "little")}, use_bin_type=False)
    return bytes([MsgType.COMPRESS]) + body


def test_oversized_udp_and_stream_inputs_are_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    ip = f"{new_block()}.1"
    bomb = _lzw_bomb(1000)  # 6 KB -> ~11 MiB: over the UDP cap
    stream_bomb = _lzw_bomb(6000)  # 10 KB -> ~30 MiB: over the stream cap

    async def main() -> None:
        async with pool(ip, "srv") as p:
            caplog.set_level(logging.DEBUG, logger="agent.serf.lan")
            for _ in range(3):
                send_udp(bomb, (ip, 8301))
            await until(lambda: p.stats()["dropped_oversized"] == "3", 5, "three bombs counted")
            assert p.stats()["dropped_malformed"] == "0"
            r, w = await asyncio.open_connection(ip, 8301)
            w.write(stream_bomb)
            await w.drain()
            reply = await asyncio.wait_for(r.read(), 5)
            assert b"larger than limit" in reply, "the peer is told why (memberlist's ErrResp)"
            w.close()
            await until(lambda: p.stats()["dropped_oversized"] == "4", 5, "the stream bomb counted")
            drops = [r for r in caplog.records if "dropped input" in r.getMessage()]
            assert len(drops) == 1 and drops[0].levelno == logging.DEBUG, "rate-limited: one log line"

    asyncio.run(main())


# ---------------------------------------------------------------- supervision (issue 11 item 1)


def test_a_failed_background_task_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    ip = f"{new_block()}.1"

    async def main() -> None:
        async with pool(ip, "srv") as p:
            def broken(seq: int, ok: bool, now: float) -> list[Any]:
                raise RuntimeError("tcp ping result bug")

            p.core.tcp_ping_result = broken  # type: ignore[method-assign]
            loop = asyncio.get_running_loop()
            p._perform([TcpPing((ip, 9), "nobody", 1, b"", loop.time() + 0.2)])
            await until(lambda: p.stats()["task_failures"] == "1", 5, "the failed task to be counted")
            (rec,) = [r for r in caplog.records if "background task" in r.getMessage()]
            assert rec.levelno == logging.ERROR and rec.exc_info is not None
            assert "serf-lan-tcp-ping" in rec.getMessage()
            assert p.failed is None, "a failed side task does not fail the pool"

    asyncio.run(main())


def test_a_failed_timer_fails_the_pool_and_stops_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    """The core's tick raising used to be logged and the timer re-armed forever; now the pool is failed,
    its timer stops, and the agent (wired through on_failed) stops with a fatal reason (exit 1)."""
    from pyconsul.agent.agent import Agent
    from pyconsul.agent.config import AgentConfig

    ip = f"{new_block()}.1"

    async def main() -> None:
        agent = Agent(AgentConfig(bind_addr=ip))
        p = await agent._start_pool("lan", "agent.client.serf.lan", "n1", 8301, ip, None, 60.0)
        try:
            def broken(now: float) -> list[Any]:
                raise RuntimeError("tick bug")

            p.core.tick = broken  # type: ignore[method-assign]
            await asyncio.wait_for(agent.stopped.wait(), 10)
            assert "gossip" in agent.fatal and "lan" in agent.fatal.lower() and "tick bug" in agent.fatal
            assert isinstance(p.failed, RuntimeError) and p._timer is None
            assert p.stats()["task_failures"] == "1"
            (rec,) = [r for r in caplog.records if "gossip timer" in r.getMessage()]
            assert rec.exc_info is not None, "logged with its traceback"
        finally:
            await p.stop()

    asyncio.run(main())


def test_a_failing_event_handler_is_logged_and_the_pool_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    block = new_block()
    seen: list[str] = []

    def handler(e: Any) -> None:
        seen.append(e.member.name)
        raise ValueError("handler bug")

    async def main() -> None:
        async with pool(f"{block}.1", "a", on_event=handler) as a, pool(f"{block}.2", "b") as b:
            assert (await b.join([f"{block}.1"], 8301))[0] == 1
            await until(lambda: "b" in seen, 10, "a's handler to see b join")
            assert a.stats()["task_failures"] != "0" and a.failed is None
            assert any("event handler failed" in r.getMessage() and r.exc_info for r in caplog.records)
            await until(lambda: len(a.members()) == 2, 10, "a to keep going")

    asyncio.run(main())
