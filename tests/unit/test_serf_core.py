"""The serf core's public surface: every method that changes state returns the effects it produced
(the shell never collects leftovers), and deadlines never lie in the past after a tick."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

from pyconsul.agent.gossip import codec
from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.messages import Dead, NodeState, PushNodeState, PushPull
from pyconsul.agent.gossip.serf import (
    MemberEvent,
    MemberStatus,
    QueryComplete,
    QueryReceived,
    Serf,
    SerfEffect,
    UserEventReceived,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = 50_000.0  # a clock far from 0, like the event loop's


def make(name: str = "me", n: int = 1, now: float = T0) -> Serf:
    """A serf core that knows n-1 alive peers p2..pn (all on 10.0.0.x)."""
    s = Serf(GossipConfig.lan(), name, "10.0.0.1", 8301, {"role": "node"}, random.Random(7), now)
    s.initial_effects()
    peers = [PushNodeState(f"p{i}", codec.ip_to_bytes(f"10.0.0.{i}"), 8301, codec.encode_tags({}), 1, NodeState.ALIVE,
                           (1, 5, 2, 2, 5, 4)) for i in range(2, n + 1)]
    if peers:
        s.merge_remote(PushPull(False, tuple(peers), b""), now)
    return s


def kinds(effects: list[SerfEffect]) -> list[str]:
    return [e.kind if isinstance(e, MemberEvent) else type(e).__name__ for e in effects]


def test_construction_effects_are_taken_once() -> None:
    s = Serf(GossipConfig.lan(), "me", "10.0.0.1", 8301, {}, random.Random(1), T0)
    first = s.initial_effects()
    assert kinds(first) == ["member-join"] and isinstance(first[0], MemberEvent) and first[0].member.name == "me"
    assert s.initial_effects() == []


def test_user_event_returns_its_own_delivery() -> None:
    s = make()
    out = s.user_event("deploy", b"v2")
    assert [e for e in out if isinstance(e, UserEventReceived)] == [UserEventReceived("deploy", b"v2", 1)]


def test_force_leave_returns_known_and_effects() -> None:
    s = make(n=2)
    assert s.force_leave("nobody", False, T0) == (False, [])
    s.members["p2"].status = MemberStatus.FAILED  # as after a failed probe + suspicion timeout
    known, out = s.force_leave("p2", False, T0 + 1)
    assert known and kinds(out) == ["member-leave"]
    assert s.members["p2"].status == MemberStatus.LEFT
    known, out = s.force_leave("p2", True, T0 + 2)  # prune: reaped at once
    assert known and "member-reap" in kinds(out) and "p2" not in s.members


def test_query_completes_when_every_alive_member_answered() -> None:
    s = make(n=2)
    started = s.start_query("_serf_list-keys", b"", T0, timeout=10.0)
    assert started.deadline == T0 + 10.0
    received = [e for e in started.effects if isinstance(e, QueryReceived)]
    assert len(received) == 1, "our own _serf_ query is for the shell to answer"
    assert not [e for e in started.effects if isinstance(e, QueryComplete)]
    out = s.respond(received[0].query, b"mine", T0 + 0.1)
    assert QueryComplete(started.key) not in out, "p2 has not answered yet"
    # p2 is declared dead: every member still alive has answered
    out = s.handle_packet(codec.encode(Dead(1, "p2", "p3")), ("10.0.0.3", 8301), T0 + 0.2)
    assert "member-failed" in kinds(out) and QueryComplete(started.key) in out
    pq = s.finish_query(started.key)
    assert pq is not None and pq.responses == {"me": b"mine"}


def test_query_complete_is_emitted_by_the_last_response() -> None:
    s = make(n=1)
    started = s.start_query("_serf_list-keys", b"", T0, timeout=10.0)
    (received,) = [e for e in started.effects if isinstance(e, QueryReceived)]
    out = s.respond(received.query, b"only me", T0 + 0.1)
    assert out == [QueryComplete(started.key)]


@pytest.mark.parametrize("n", [1, 2, 5])
def test_next_deadline_is_in_the_future_after_every_tick(n: int) -> None:
    """The shell sleeps until next_deadline(); a deadline tick() leaves behind would spin it."""
    s = make(n=n)
    now = T0
    for _ in range(200):
        now = max(now, s.next_deadline())
        s.tick(now)
        assert s.next_deadline() > now, f"deadline {s.next_deadline()} not after tick at {now}"


def test_idle_gossip_rounds_cost_no_deadline() -> None:
    """With nothing queued, next_deadline() does not include the gossip ticker (0.2 s on a LAN)."""
    s = make(n=3)
    now = T0
    for _ in range(50):  # drain the broadcasts that learning the peers queued
        now = s.next_deadline()
        s.tick(now)
    wakes = 0
    end = now + 10.0
    while now < end:
        now = s.next_deadline()
        s.tick(now)
        wakes += 1
    assert wakes < 10.0 / GossipConfig.lan().gossip_interval / 2, f"{wakes} wake-ups in 10 s"


def test_shell_reaches_no_core_internals() -> None:
    """Outside the gossip cores, nobody calls a core's `_take()` or reaches into `Serf.ml`."""
    cores = {ROOT / "agent/gossip/serf.py", ROOT / "agent/gossip/membership.py"}
    bad = []
    for path in sorted((ROOT / "agent").rglob("*.py")):
        if path in cores:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        core_modules = ("gossip.serf", "gossip.membership")
        holds_a_core = any(isinstance(n, ast.ImportFrom) and (n.module or "").endswith(core_modules)
                           for n in ast.walk(tree))
        if not holds_a_core:  # only modules that import the cores can hold one (others may have a _take of their own)
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("_take", "ml"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert not bad, bad
