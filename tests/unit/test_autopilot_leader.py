"""The leader's autopilot pass (server/leader.py LeaderDuties.autopilot) with a fake Raft: a joined server
goes in as a non-voter and is promoted by a later pass once its health (from the leader's view) has been
stable for server_stabilization_time; an unhealthy one stays a non-voter. Also the health reply and the
settings' compare-and-set."""

from __future__ import annotations

import asyncio
from typing import Any

from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.raft.messages import Configuration, Server, Suffrage
from pyconsul.agent.server.autopilot import AutopilotConfig, ServerStats
from pyconsul.agent.server.leader import LeaderDuties

NV, V = Suffrage.NONVOTER, Suffrage.VOTER


class Raft:
    """Applies each configuration change at once (as the core does: in force once appended)."""

    def __init__(self, conf: Configuration) -> None:
        self.is_leader = True
        self.leader_id = "id1"
        self.conf = conf
        self.changes: list[Server | str] = []

    def change_config(self, add: Any = None, remove: str | None = None) -> int:
        servers = [s for s in self.conf.servers if s.id != (add.id if add is not None else remove)]
        if add is not None:
            old = [s.id for s in self.conf.servers]
            servers.insert(old.index(add.id) if add.id in old else len(servers), add)
        self.conf = Configuration(tuple(servers))
        self.changes.append(add if add is not None else str(remove))
        return len(self.changes)


def member(n: int) -> Member:
    return Member(f"node{n}", f"127.0.0.{n}", 8301, {"role": "consul", "dc": "bj", "id": f"id{n}", "port": "8300"},
                  MemberStatus.ALIVE)


class World:
    def __init__(self, rogue: bool = False) -> None:
        self.now = 100.0
        self.rogue = rogue  # id4 never answers the leader (its RPC TLS refused)
        self.raft = Raft(Configuration(tuple(Server(f"id{n}", f"127.0.0.{n}:8300") for n in (1, 2, 3))))
        members = [member(n) for n in (1, 2, 3, 4)]

        async def write(data: bytes) -> Any:
            return True

        self.duties = LeaderDuties(self.raft, lambda: self.raft.conf, "bj", "id1", lambda: members,
                                   lambda: None, write,  # type: ignore[arg-type,return-value]
                                   autopilot_config=AutopilotConfig(server_stabilization_time=2.0),
                                   server_stats=self.stats)

    def stats(self) -> tuple[float, int, int, list[ServerStats]]:
        out = []
        for s in self.raft.conf.servers:
            silent = self.rogue and s.id == "id4"
            contact = float("inf") if silent else 0.0 if s.id == "id1" else 0.01
            out.append(ServerStats(s.id, "node" + s.id[2:], s.address, "alive", "1.7.0", s.id == "id1",
                                   s.suffrage == V, contact, 0 if silent else 3, 0 if silent else 40))
        return self.now, 3, 40, out

    def passes(self, until: float, step: float = 0.5) -> None:
        while self.now <= until:
            self.duties.autopilot(stable=True)
            self.now += step

    def suffrage(self, sid: str) -> Suffrage | None:
        s = self.raft.conf.get(sid)
        return None if s is None else s.suffrage


def test_a_joined_server_is_a_non_voter_then_promoted_after_stabilization() -> None:
    w = World()
    w.passes(100.0)
    assert w.raft.changes == [Server("id4", "127.0.0.4:8300", NV)]
    w.passes(101.5)  # healthy since 100.5 (its first look as a member of the configuration): not yet
    assert w.suffrage("id4") == NV
    w.passes(103.0)
    assert w.suffrage("id4") == V
    assert w.raft.changes[1] == Server("id4", "127.0.0.4:8300", V)
    w.passes(110.0)
    assert len(w.raft.changes) == 2  # nothing more to do


def test_a_server_that_never_answers_stays_a_non_voter() -> None:
    w = World(rogue=True)
    w.passes(130.0)
    assert w.suffrage("id4") == NV and len(w.raft.changes) == 1
    h = w.duties.health_json()
    assert h["Healthy"] is False and h["FailureTolerance"] == 1  # the 3 real voters tolerate one failure
    rogue = next(s for s in h["Servers"] if s["ID"] == "id4")
    assert (rogue["Voter"], rogue["Healthy"], rogue["LastContact"]) == (False, False, "-1ns")
    assert h["Servers"][0]["Leader"] is True and h["Servers"][0]["LastContact"] == "0s"


def test_a_new_leader_watches_for_a_whole_stabilization_time_again() -> None:
    w = World()
    w.passes(101.0)
    w.duties.health = {}  # what run() does when this server takes over
    w.passes(102.5)
    assert w.suffrage("id4") == NV
    w.passes(103.5)
    assert w.suffrage("id4") == V


def test_settings_compare_and_set() -> None:
    w = World()
    d = w.duties
    new = AutopilotConfig(cleanup_dead_servers=False)
    assert asyncio.run(d.set_autopilot_config(new, cas=0)) is False  # none stored yet: a CAS fails (as Consul)
    asyncio.run(d.seed_autopilot_config())  # what establishment does
    seeded = d.autopilot_config
    assert seeded.server_stabilization_time == 2.0 and seeded.create_index == seeded.modify_index > 0
    asyncio.run(d.seed_autopilot_config())  # a seed never overwrites
    assert d.autopilot_config == seeded
    assert asyncio.run(d.set_autopilot_config(new, cas=seeded.modify_index + 5)) is False
    assert d.autopilot_config.cleanup_dead_servers is True
    assert asyncio.run(d.set_autopilot_config(new, cas=seeded.modify_index)) is True
    first = d.autopilot_config.modify_index
    assert first > seeded.modify_index and d.autopilot_config.cleanup_dead_servers is False
    assert asyncio.run(d.set_autopilot_config(AutopilotConfig(), cas=None)) is True
    assert d.autopilot_config.modify_index > first and d.autopilot_config.create_index == seeded.create_index
