"""The leader's server management (server/autopilot.py): add joined servers as non-voters, promote them
once stable, remove left ones, and clean up dead ones only when the removals touch a minority, as
Consul's autopilot does."""

from __future__ import annotations

import pytest

from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.raft.messages import Configuration, Server, Suffrage
from pyconsul.agent.server.autopilot import (
    AutopilotConfig,
    Plan,
    ServerHealth,
    ServerStats,
    config_from_json,
    failure_tolerance,
    is_healthy,
    plan,
    promotion,
    update_health,
)

A, F, L = MemberStatus.ALIVE, MemberStatus.FAILED, MemberStatus.LEFT
NV = Suffrage.NONVOTER


def member(n: int, status: MemberStatus = A, dc: str = "bj", role: str = "consul") -> Member:
    return Member(f"node{n}", f"10.77.0.{n}", 8301, {"role": role, "dc": dc, "id": f"id{n}", "port": "8300"}, status)


def conf(*ns: int, nonvoters: tuple[int, ...] = ()) -> Configuration:
    return Configuration(tuple(Server(f"id{n}", f"10.77.0.{n}:8300",
                                      Suffrage.NONVOTER if n in nonvoters else Suffrage.VOTER) for n in ns))


@pytest.mark.parametrize(("configuration", "members", "want"), [
    # steady state: nothing to do
    (conf(1, 2, 3), [member(1), member(2), member(3)], Plan()),
    # a new server joined: add it (the first by name), as a non-voter
    (conf(1, 2, 3), [member(1), member(2), member(3), member(5), member(4)],
     Plan(add=Server("id4", "10.77.0.4:8300", NV))),
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
    assert plan(c, ms, "bj", "id1", cleanup_dead_servers=False) == Plan(add=Server("id6", "10.77.0.6:8300", NV),
                                                                         remove_left=("id3",))


def test_the_leader_never_plans_its_own_removal() -> None:
    assert plan(conf(1, 2, 3), [member(1, L), member(2), member(3)], "bj", "id1") == Plan()
    assert plan(conf(1, 2, 3, 4, 5), [member(2), member(3), member(4), member(5)], "bj", "id1") == Plan()


def test_a_joined_server_is_added_as_a_non_voter_and_a_known_non_voter_is_not_added_again() -> None:
    p = plan(conf(1, 2, 3), [member(1), member(2), member(3), member(4)], "bj", "id1")
    assert p.add == Server("id4", "10.77.0.4:8300", NV)
    assert plan(conf(1, 2, 3, 4, nonvoters=(4,)), [member(i) for i in (1, 2, 3, 4)], "bj", "id1") == Plan()


# ---------------------------------------------------------------- health and promotion

CFG = AutopilotConfig(last_contact_threshold=0.2, max_trailing_logs=250, server_stabilization_time=10.0)
TERM, LAST = 5, 1000


def stats(n: int, *, contact: float = 0.05, term: int = TERM, index: int = LAST, serf: str = "alive",
          voter: bool = True) -> ServerStats:
    return ServerStats(f"id{n}", f"node{n}", f"10.77.0.{n}:8300", serf, "1.7.0", n == 1, voter, contact, term, index)


@pytest.mark.parametrize(("s", "healthy"), [
    (stats(2), True),
    (stats(2, contact=0.2), True),  # the threshold itself is still healthy
    (stats(2, contact=0.21), False),  # not heard from recently enough
    (stats(2, contact=float("inf")), False),  # never heard from in this term (e.g. its RPC TLS is refused)
    (stats(2, contact=-1.0), False),
    (stats(2, term=TERM - 1), False),  # its log does not reach the leader's term yet
    (stats(2, index=LAST - 250), True),  # exactly max_trailing_logs behind
    (stats(2, index=LAST - 251), False),  # further behind
    (stats(2, serf="failed"), False),
    (stats(2, serf="none"), False),  # no LAN member at all
])
def test_is_healthy(s: ServerStats, healthy: bool) -> None:
    assert is_healthy(s, TERM, LAST, CFG) is healthy


def test_a_young_log_is_never_too_far_behind() -> None:
    # the leader's last index below max_trailing_logs: any index is close enough (Consul's rule)
    assert is_healthy(stats(2, index=0), TERM, 200, CFG)


def run_health(seq: list[tuple[float, ServerStats]]) -> dict[str, ServerHealth]:
    h: dict[str, ServerHealth] = {}
    for now, s in seq:
        h = update_health(h, [stats(1), s], TERM, LAST, now, CFG)
    return h


NV_CONF = conf(1, 2, 3, 4, nonvoters=(4,))


def test_a_non_voter_healthy_for_the_stabilization_time_is_promoted() -> None:
    h = run_health([(t, stats(4, voter=False)) for t in (100.0, 101.0, 105.0, 110.0)])
    assert h["id4"].stable_since == 100.0
    assert promotion(NV_CONF, h, 110.0, CFG) == Server("id4", "10.77.0.4:8300", Suffrage.VOTER)


def test_not_before_the_stabilization_time() -> None:
    h = run_health([(t, stats(4, voter=False)) for t in (100.0, 105.0, 109.9)])
    assert promotion(NV_CONF, h, 109.9, CFG) is None


def test_a_server_that_stops_being_healthy_before_is_not_promoted_and_starts_over() -> None:
    seq = [(100.0, stats(4, voter=False)), (105.0, stats(4, voter=False, contact=5.0)),
           (106.0, stats(4, voter=False)), (111.0, stats(4, voter=False))]
    h = run_health(seq)
    assert h["id4"].stable_since == 106.0  # healthy again since 106: the clock restarted
    assert promotion(NV_CONF, h, 111.0, CFG) is None
    h = update_health(h, [stats(1), stats(4, voter=False)], TERM, LAST, 116.0, CFG)
    assert promotion(NV_CONF, h, 116.0, CFG) == Server("id4", "10.77.0.4:8300", Suffrage.VOTER)


def test_a_never_healthy_server_is_never_promoted() -> None:
    h = run_health([(float(t), stats(4, voter=False, contact=float("inf"))) for t in range(100, 200, 5)])
    assert not h["id4"].healthy
    assert promotion(NV_CONF, h, 200.0, CFG) is None


def test_voters_are_not_promoted_again_and_a_zero_stabilization_promotes_at_once() -> None:
    h = run_health([(100.0, stats(4, voter=False))])
    assert promotion(conf(1, 2, 3, 4), h, 200.0, CFG) is None  # already a voter
    zero = AutopilotConfig(server_stabilization_time=0.0)
    assert promotion(NV_CONF, h, 100.0, zero) == Server("id4", "10.77.0.4:8300", Suffrage.VOTER)


def test_failure_tolerance_counts_healthy_voters_beyond_a_quorum() -> None:
    three = update_health({}, [stats(1), stats(2), stats(3)], TERM, LAST, 1.0, CFG)
    assert failure_tolerance(three.values()) == 1
    # 3 healthy voters + 1 rogue voter that never answers: quorum 3 of 4, no failure tolerated
    rogue = update_health({}, [stats(1), stats(2), stats(3), stats(4, contact=float("inf"))], TERM, LAST, 1.0, CFG)
    assert failure_tolerance(rogue.values()) == 0
    # the same rogue as a non-voter does not count
    nv = update_health({}, [stats(1), stats(2), stats(3), stats(4, contact=float("inf"), voter=False)],
                       TERM, LAST, 1.0, CFG)
    assert failure_tolerance(nv.values()) == 1


# ---------------------------------------------------------------- settings (PUT body)

def test_config_json_round_trip_and_go_forms() -> None:
    base = AutopilotConfig(create_index=3, modify_index=7)
    assert base.to_json()["LastContactThreshold"] == "200ms"
    assert base.to_json()["ServerStabilizationTime"] == "10s"
    got = config_from_json({"cleanupdeadservers": False, "LastContactThreshold": "1s", "MaxTrailingLogs": 10,
                            "ServerStabilizationTime": 2_000_000_000}, base)  # Go's JSON: nanoseconds
    assert got == AutopilotConfig(False, 1.0, 10, 2.0, 3, 7)


@pytest.mark.parametrize(("body", "message"), [
    ([], "must be a JSON object"),
    ({"LastContactThreshold": "soon", "ServerStabilizationTime": "1s"}, "invalid duration"),
    ({"LastContactThreshold": "0s", "ServerStabilizationTime": "1s", "MaxTrailingLogs": 1}, "LastContactThreshold"),
    ({"LastContactThreshold": "2h", "ServerStabilizationTime": "1s", "MaxTrailingLogs": 1}, "LastContactThreshold"),
    ({"LastContactThreshold": "1s", "ServerStabilizationTime": "-1s", "MaxTrailingLogs": 1},
     "ServerStabilizationTime"),
    ({"LastContactThreshold": "1s", "ServerStabilizationTime": "1s", "MaxTrailingLogs": -1}, "MaxTrailingLogs"),
    ({"LastContactThreshold": "1s", "ServerStabilizationTime": "1s", "MaxTrailingLogs": "x"}, "MaxTrailingLogs"),
    ({"LastContactThreshold": "1s", "CleanupDeadServers": "yes"}, "CleanupDeadServers"),
    ({"LastContactThreshold": True}, "expected a duration"),
])
def test_config_json_out_of_bounds(body: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_json(body, AutopilotConfig())


def test_a_setting_left_out_keeps_its_value() -> None:
    """py-consul's update_autopilot_configuration sends only the keys it changes (Consul would zero the rest)."""
    base = AutopilotConfig(True, 0.5, 100, 3.0, 1, 2)
    assert config_from_json({"CleanupDeadServers": False}, base) == AutopilotConfig(False, 0.5, 100, 3.0, 1, 2)
    assert config_from_json({}, base) == base
