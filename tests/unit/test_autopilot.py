"""The leader's server management (server/autopilot.py): add joined servers, remove left ones, and
clean up dead ones only when the removals touch a minority, as Consul's autopilot does."""

from __future__ import annotations

import pytest

from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.raft.messages import Configuration, Server, Suffrage
from pyconsul.agent.server.autopilot import Plan, plan

A, F, L = MemberStatus.ALIVE, MemberStatus.FAILED, MemberStatus.LEFT


def member(n: int, status: MemberStatus = A, dc: str = "bj", role: str = "consul") -> Member:
    return Member(f"node{n}", f"10.77.0.{n}", 8301, {"role": role, "dc": dc, "id": f"id{n}", "port": "8300"}, status)


def conf(*ns: int, nonvoters: tuple[int, ...] = ()) -> Configuration:
    return Configuration(tuple(Server(f"id{n}", f"10.77.0.{n}:8300",
                                      Suffrage.NONVOTER if n in nonvoters else Suffrage.VOTER) for n in ns))


@pytest.mark.parametrize(("configuration", "members", "want"), [
    # steady state: nothing to do
    (conf(1, 2, 3), [member(1), member(2), member(3)], Plan()),
    # a new server joined: add it (the first by name)
    (conf(1, 2, 3), [member(1), member(2), member(3), member(5), member(4)], Plan(add=Server("id4", "10.77.0.4:8300"))),
    # clients and other datacenters' servers are never added
    (conf(1), [member(1), member(2, role="node"), member(3, dc="sh")], Plan()),
    # a server that left gracefully is removed, whatever the count
    (conf(1, 2, 3), [member(1), member(2), member(3, L)], Plan(remove_left=("id3",))),
    # three servers, one failed: 1 < 3 // 2 is false -> keep it, say why
    (conf(1, 2, 3), [member(1), member(2), member(3, F)],
     Plan(warning="Failed to remove dead servers: too many dead servers: 1/3")),
    # the replacement joined (4 peers): it is added, and the failed one goes (1 < 2)
    (conf(1, 2, 3, 4), [member(1), member(2), member(3, F), member(4)], Plan(force_leave=("node3",))),
    # five servers, two failed: 2 < 2 is false -> keep both
    (conf(1, 2, 3, 4, 5), [member(1), member(2), member(3), member(4, F), member(5, F)],
     Plan(warning="Failed to remove dead servers: too many dead servers: 2/5")),
    # a Raft server with no LAN member at all is stale
    (conf(1, 2, 3, 4, 5), [member(1), member(2), member(3), member(4)], Plan(remove_stale=("id5",))),
    # non-voters do not count as peers
    (conf(1, 2, 3, 4, nonvoters=(4,)), [member(1), member(2), member(3, F), member(4)],
     Plan(warning="Failed to remove dead servers: too many dead servers: 1/3")),
])
def test_plan(configuration: Configuration, members: list[Member], want: Plan) -> None:
    assert plan(configuration, members, "bj", "id1") == want


def test_cleanup_disabled_keeps_dead_servers_but_still_adds_and_removes_left() -> None:
    c = conf(1, 2, 3, 4, 5)
    ms = [member(1), member(2), member(3, L), member(4, F), member(6)]
    assert plan(c, ms, "bj", "id1", cleanup_dead_servers=False) == Plan(add=Server("id6", "10.77.0.6:8300"),
                                                                         remove_left=("id3",))


def test_the_leader_never_plans_its_own_removal() -> None:
    assert plan(conf(1, 2, 3), [member(1, L), member(2), member(3)], "bj", "id1") == Plan()
    assert plan(conf(1, 2, 3, 4, 5), [member(2), member(3), member(4), member(5)], "bj", "id1") == Plan()
