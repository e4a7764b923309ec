"""The gossip pool's asyncio shell (agent/gossip/pool.py) on loopback, in-process: what only the shell
does (decryption and its counters, waking on deadlines and on core calls, waiting for query answers).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from agent.gossip import codec
from agent.gossip.config import GossipConfig
from agent.gossip.keyring import Keyring, encrypt
from agent.gossip.messages import Ping
from agent.gossip.pool import Pool
from tests.harness import new_block

pytestmark = pytest.mark.integration

KEY_A = bytes(range(16))
KEY_B = bytes(range(16, 32))


@asynccontextmanager
async def pool(ip: str, name: str, *, keyring: Keyring | None = None,
               gossip: GossipConfig | None = None) -> AsyncIterator[Pool]:
    p = Pool(label="lan", name=name, bind=(ip, 8301), advertise=(ip, 8301), gossip=gossip or GossipConfig.local(),
             tags={"role": "node"}, keyring=keyring)
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
