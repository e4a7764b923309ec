"""Server robustness pieces that need no process: X-Consul-LastContact is always a finite integer; a new
leader registers the servers in the catalog before it takes a write."""

from __future__ import annotations

import asyncio
import math
from typing import Any, cast

import pytest

from pyconsul.agent.config import AgentConfig
from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.raft.messages import Role, SoftState
from pyconsul.agent.raft.node import RaftNode
from pyconsul.agent.raft.transport import Transport
from pyconsul.agent.server.server import MAX_LAST_CONTACT_MS, ConsulServer, StoreFSM, last_contact_ms
from pyconsul.agent.state import commands as c


@pytest.mark.parametrize(("ms", "expected"), [
    (0.0, 0), (12.7, 12), (-3.0, 0), (math.inf, MAX_LAST_CONTACT_MS), (math.nan, MAX_LAST_CONTACT_MS),
    (1e30, MAX_LAST_CONTACT_MS),
])
def test_last_contact_is_a_finite_integer(ms: float, expected: int) -> None:
    assert last_contact_ms(ms) == expected
    assert MAX_LAST_CONTACT_MS == 9223372036854  # Go's time.Since(time.Time{}) in ms, what Consul sends


# ---------------------------------------------------------------- a new leader establishes before writes


class _LeaderRaft:
    is_leader = True
    leader_id = "me"
    core = None

    def __init__(self) -> None:
        self.applied: list[str] = []

    async def apply(self, data: bytes) -> Any:
        self.applied.append(type(c.decode(data)).__name__)
        return True

    def change_config(self, add: Any = None, remove: str | None = None) -> int:
        return 0


class _NoTransport:
    async def request(self, address: str, method: str, args: Any, timeout: float = 10.0) -> Any:
        raise AssertionError("nothing is forwarded")


def test_a_new_leader_registers_the_servers_before_it_takes_a_write() -> None:
    async def go() -> None:
        raft = _LeaderRaft()
        members = [Member("other", "127.0.0.2", 8301, {"role": "consul", "dc": "dc1", "id": "id2", "port": "8300"},
                          MemberStatus.ALIVE),
                   Member("client", "127.0.0.3", 8301, {"role": "node", "dc": "dc1", "id": "id3"}, MemberStatus.ALIVE),
                   Member("me", "127.0.0.1", 8301, {"role": "consul", "dc": "dc1", "id": "me", "port": "8300"},
                          MemberStatus.ALIVE)]
        server = ConsulServer(AgentConfig(server=True), "me", lambda: members, cast(Transport, _NoTransport()),
                              cast(RaftNode, raft), StoreFSM())
        server.leader_changed(SoftState("me", Role.LEADER, 2))
        write = asyncio.get_running_loop().create_task(server.apply_local(c.encode(c.KVSet("k", b"v"))))
        await asyncio.sleep(0.01)
        assert raft.applied == [] and not write.done(), "the write waits for the leader to establish"
        await server.leader.establish(server.leader.term())
        async with asyncio.timeout(5):
            await write
        assert raft.applied == ["Register", "Register", "AutopilotSet", "KVSet"], \
            "this server, the other server, autopilot's settings from the config file, then the write"
        assert set(server.leader.reconciled) == {"me", "other"}

    asyncio.run(go())


def test_a_write_waiting_for_establishment_goes_on_when_leadership_is_lost() -> None:
    async def go() -> None:
        raft = _LeaderRaft()
        server = ConsulServer(AgentConfig(server=True), "me", lambda: [], cast(Transport, _NoTransport()),
                              cast(RaftNode, raft), StoreFSM())
        server.leader_changed(SoftState("me", Role.LEADER, 2))
        write = asyncio.get_running_loop().create_task(server.apply_local(c.encode(c.KVSet("k", b"v"))))
        await asyncio.sleep(0.01)
        assert not write.done()
        raft.is_leader = False
        server.leader_changed(SoftState("other", Role.FOLLOWER, 3))
        async with asyncio.timeout(1):  # not RPC_HOLD_TIMEOUT: it goes on at once (the fake raft accepts it)
            await write

    asyncio.run(go())
