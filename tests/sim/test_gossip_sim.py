"""Seeded simulations of the pure gossip core (virtual clock, lossy network).

Figures for N = 1,000 are printed by test_thousand_nodes_figures (run with -s to see them)
and recorded in docs/benchmarks.md. A failing seed reproduces exactly.
"""

from __future__ import annotations

import pytest

from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.serf import MemberEvent, MemberStatus, SerfConfig, SerfEffect
from tests.sim.simnet import SimNet, seed_converged, seen_alive_by, seen_failed_by

pytestmark = pytest.mark.sim


def _scenario(seed: int, n: int, loss: float = 0.0) -> tuple[float, float, int]:
    """(join convergence time to 99.99 %, time until every member sees a crash, packets)."""
    net = SimNet(seed, loss=loss)
    for i in range(n):
        net.add_node(f"n{i}")
    seed_converged(net)
    net.run_until(3.0)
    net.add_node("joiner")
    t0 = net.now
    assert net.join("joiner", "n0")
    assert net.run_until(t0 + 60, lambda: seen_alive_by(net, "joiner") >= 0.9999, check_every=0.01)
    converge = net.now - t0
    net.crash("n1")
    t1 = net.now
    assert net.run_until(t1 + 120, lambda: seen_failed_by(net, "n1") >= 1.0, check_every=0.05)
    return converge, net.now - t1, net.packets


def test_same_seed_same_result() -> None:
    assert _scenario(11, 60) == _scenario(11, 60)
    assert _scenario(11, 60) != _scenario(12, 60)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_small_pool_converges_and_detects(seed: int) -> None:
    converge, detect, _ = _scenario(seed, 25, loss=0.01)
    assert converge < 5.0
    # 25 nodes: suspicion min = 4 x log10(25) x 1 s = 5.6 s; plus a probe round or two
    assert 5.0 < detect < 30.0


def test_join_from_scratch_converges() -> None:
    """Nodes that each join one random earlier node end up with the full view everywhere."""
    net = SimNet(5)
    for i in range(40):
        net.add_node(f"n{i}")
    for i in range(1, 40):
        assert net.join(f"n{i}", f"n{net.rng.randrange(i)}")
    assert net.run_until(30, lambda: net.alive_fraction() == 1.0)


def test_partition_heals_and_nobody_stays_failed() -> None:
    net = SimNet(9)
    for i in range(10):
        net.add_node(f"n{i}")
    seed_converged(net)
    for a in range(5):
        for b in range(5, 10):
            net.cut(f"n{a}", f"n{b}")
    assert net.run_until(60, lambda: seen_failed_by(net, "n7") >= 0.5)
    net.heal()
    # serf reconnect (every 30 s) and push/pull rejoin the halves
    assert net.run_until(net.now + 240, lambda: net.alive_fraction() == 1.0)


def test_lifeguard_stalling_node_never_declared_failed() -> None:
    """Lifeguard's promise: under 5 % loss, a node that stalls for 500 ms now and then is
    slow, not dead. It must never be declared failed (nor must anyone else)."""
    net = SimNet(21, loss=0.05)
    for i in range(20):
        net.add_node(f"n{i}")
    seed_converged(net)
    failed: list[tuple[float, str, str]] = []

    def spy(observer: str, e: SerfEffect) -> None:
        if isinstance(e, MemberEvent) and e.kind == "member-failed":
            failed.append((net.now, observer, e.member.name))

    net.observers.append(spy)
    t = 0.0
    while t < 180.0:
        net.run_until(t)
        net.stall("n3", 0.5)
        t += 4.0 + net.rng.uniform(0, 2.0)
    net.run_until(200.0)
    assert failed == [], f"declared failed: {failed[:5]}"
    assert seen_alive_by(net, "n3") == 1.0


@pytest.mark.slow
def test_thousand_nodes_figures(capsys: pytest.CaptureFixture[str]) -> None:
    converge, detect, packets = _scenario(1000, 1000)
    with capsys.disabled():
        print(f"\nsim N=1000 seed=1000: join convergence to 99.99% = {converge:.3f} s; "
              f"crash seen failed by all = {detect:.3f} s; packets = {packets}")
    # memberlist LAN timing: suspicion min = 4 x log10(1000) x 1 s = 12 s
    assert converge < 5.0
    assert 12.0 <= detect < 40.0


def test_wan_timing_is_slower() -> None:
    net = SimNet(4, GossipConfig.wan())
    for i in range(8):
        net.add_node(f"s{i}")
    seed_converged(net)
    net.run_until(5.0)
    net.crash("s2")
    t = net.now
    assert net.run_until(t + 300, lambda: seen_failed_by(net, "s2") >= 1.0)
    # WAN: suspicion min = 6 x 1 x 5 s = 30 s
    assert net.now - t >= 30.0


def test_failed_members_are_reaped_after_reconnect_timeout_and_left_after_tombstone() -> None:
    cfg = SerfConfig(reconnect_timeout=60.0, tombstone_timeout=120.0, reap_interval=5.0)
    net = SimNet(8, serf_config=cfg)
    for i in range(6):
        net.add_node(f"n{i}")
    seed_converged(net)
    net.crash("n1")
    assert net.run_until(30, lambda: seen_failed_by(net, "n1") >= 1.0)
    net.nodes["n2"].serf.leave(net.now)
    assert net.run_until(45, lambda: net.status("n0", "n2") == MemberStatus.LEAVING
                         or net.status("n0", "n2") == MemberStatus.LEFT)
    net.nodes["n2"].serf.leave_memberlist(net.now)
    assert net.run_until(60, lambda: net.status("n0", "n2") == MemberStatus.LEFT)
    net.crash("n2")
    # failed: kept through reconnect attempts, gone after reconnect_timeout (+ one reap interval)
    assert net.run_until(60 + 30, lambda: net.status("n0", "n1") is None)
    assert net.status("n0", "n2") == MemberStatus.LEFT, "left members outlive failed ones"
    assert net.run_until(60 + 130 + 10, lambda: all(net.status(o, "n2") is None for o in ("n0", "n3", "n4", "n5")))


def test_graceful_leave_with_a_single_peer_is_gossiped() -> None:
    """A two-member pool: the leaving node must still broadcast its leave (serf checks for alive
    members other than itself), so the peer records `left`, not `failed`."""
    net = SimNet(13)
    net.add_node("a")
    net.add_node("b")
    assert net.join("b", "a")
    assert net.run_until(5, lambda: net.status("a", "b") == MemberStatus.ALIVE)
    b = net.nodes["b"]
    b.serf.leave(net.now)
    assert not b.serf.intent_broadcast_done(), "the leave intent waits to be gossiped"
    assert net.run_until(net.now + 5, b.serf.intent_broadcast_done)
    net._perform(b, b.serf.leave_memberlist(net.now))
    assert not b.serf.leave_done()
    assert net.run_until(net.now + 5, b.serf.leave_done)
    net.crash("b")
    assert net.run_until(net.now + 30, lambda: net.status("a", "b") == MemberStatus.LEFT)
    net.run_until(net.now + 30)
    assert net.status("a", "b") == MemberStatus.LEFT, "and it stays left (never failed)"


def test_intents_learned_by_push_pull_live_recent_intent_timeout() -> None:
    """A left member that memberlist has already forgotten (after gossip_to_the_dead_time) still sits
    in serf's tombstones, so a newcomer learns its leave intent only from push/pull, about a node it
    does not know. serf keeps such an intent for recent_intent_timeout (5 min), measured from when it
    was learned. The clock starts far from 0: an intent stamped at t=0 would be reaped at once."""
    net = SimNet(31, start=100_000.0)
    for name in ("a", "b", "c"):
        net.add_node(name)
    seed_converged(net)
    c = net.nodes["c"]
    net._perform(c, c.serf.leave(net.now))
    assert net.run_until(net.now + 5, c.serf.intent_broadcast_done)
    net._perform(c, c.serf.leave_memberlist(net.now))
    assert net.run_until(net.now + 5, lambda: net.status("a", "c") == MemberStatus.LEFT)
    net.crash("c")
    gone = net.now + net.gossip.gossip_to_the_dead_time + 5
    a = net.nodes["a"].serf
    def forgotten() -> bool:
        return net.now > gone and "c" not in {n.name for n in a.local_push_pull(False).nodes}

    assert net.run_until(gone + 30, forgotten)
    assert net.status("a", "c") == MemberStatus.LEFT, "serf's tombstone outlives memberlist's"
    net.add_node("d")
    assert net.join("d", "a")
    d = net.nodes["d"].serf
    learned = net.now
    assert "c" in d.intents and d.intents["c"][0] == "leave"
    timeout = d.cfg.recent_intent_timeout
    net.run_until(learned + 3 * d.cfg.reap_interval)  # several reaps later
    assert "c" in d.intents, "intent reaped long before recent_intent_timeout"
    assert learned <= d.intents["c"][2] <= net.now, "intent stamped with the time it was (last) learned"
    net.crash("a")  # nobody left to teach d the intent again by push/pull
    net.crash("b")
    stamp = d.intents["c"][2]
    net.run_until(stamp + timeout - d.cfg.reap_interval)
    assert "c" in d.intents, "kept until recent_intent_timeout"
    net.run_until(stamp + timeout + 2 * d.cfg.reap_interval)
    assert "c" not in d.intents, "and reaped once recent_intent_timeout has passed"
