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
