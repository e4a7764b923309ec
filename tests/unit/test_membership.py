"""The pure SWIM/Lifeguard core, message by message (no network, explicit `now`)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from pyconsul.agent.gossip import codec
from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.membership import Membership, NodeEvent, SendPacket, TcpPing
from pyconsul.agent.gossip.messages import Ack, Alive, Dead, IndirectPing, Message, Nack, NodeState, Ping, Suspect

VSN = (1, 5, 2, 2, 5, 4)
ME = ("10.0.0.1", 8301)


def ip(n: int) -> bytes:
    return bytes([10, 0, 0, n])


def make(n_peers: int = 0) -> Membership:
    m = Membership(GossipConfig.lan(), "me", ME[0], ME[1], b"", random.Random(1), 0.0)
    for i in range(2, 2 + n_peers):
        m.handle_message(Alive(1, f"p{i}", ip(i), 8301, b"", VSN), ("10.0.0.2", 8301), 0.0)
    m.initial_effects()
    m.broadcasts.reset()
    m.broadcasts.finished.clear()
    return m


def sends(effects: Sequence[object]) -> list[tuple[tuple[str, int], list[Message]]]:
    return [(e.addr, codec.decode_packet(e.data)) for e in effects if isinstance(e, SendPacket)]


@pytest.mark.parametrize(
    ("first", "second", "expected_inc", "expected_state"),
    [
        (Alive(5, "p", ip(2), 8301, b"", VSN), Alive(4, "p", ip(2), 8301, b"", VSN), 5, NodeState.ALIVE),
        (Alive(5, "p", ip(2), 8301, b"", VSN), Suspect(4, "p", "x"), 5, NodeState.ALIVE),
        (Alive(5, "p", ip(2), 8301, b"", VSN), Suspect(5, "p", "x"), 5, NodeState.SUSPECT),
        (Alive(5, "p", ip(2), 8301, b"", VSN), Dead(4, "p", "x"), 5, NodeState.ALIVE),
        (Alive(5, "p", ip(2), 8301, b"", VSN), Dead(5, "p", "x"), 5, NodeState.DEAD),
        (Alive(5, "p", ip(2), 8301, b"", VSN), Dead(5, "p", "p"), 5, NodeState.LEFT),
        (Suspect(5, "p", "x"), Alive(6, "p", ip(2), 8301, b"", VSN), 6, NodeState.ALIVE),
    ],
)
def test_incarnation_precedence(first: codec.Message, second: codec.Message, expected_inc: int,
                                expected_state: NodeState) -> None:
    m = make()
    m.handle_message(Alive(5, "p", ip(2), 8301, b"", VSN), ("10.0.0.2", 8301), 0.0)
    m.handle_message(first, ("10.0.0.2", 8301), 1.0)
    m.handle_message(second, ("10.0.0.2", 8301), 2.0)
    node = m.node_map["p"]
    assert (node.incarnation, node.state) == (expected_inc, expected_state)


@pytest.mark.parametrize("accusation", [Suspect(7, "me", "p2"), Dead(7, "me", "p2")])
def test_refutes_accusations_about_itself(accusation: codec.Message) -> None:
    m = make(1)
    m.handle_message(accusation, ("10.0.0.2", 8301), 1.0)
    assert m.local.state == NodeState.ALIVE
    assert m.local.incarnation == 8, "refute with an incarnation above the accusation"
    assert m.awareness.score == 1, "Lifeguard: being accused raises our own health multiplier"
    queued = m.broadcasts.get(2, 1400, 2)
    assert [codec.decode_packet(b)[0] for b in queued] == [Alive(8, "me", ip(1), 8301, b"", VSN)]


def test_ping_is_acked_to_its_source_address() -> None:
    m = make()
    out = m.handle_packet(codec.encode(Ping(9, "me", ip(7), 9000, "p7")), ("10.0.0.99", 1), 0.0)
    assert sends(out) == [(("10.0.0.7", 9000), [Ack(9)])]


def test_ping_for_another_name_is_dropped_and_counted() -> None:
    m = make()
    assert m.handle_packet(codec.encode(Ping(9, "someone-else")), ("10.0.0.7", 8301), 0.0) == []
    assert m.stats.wrong_node_pings == 1


def test_garbage_is_counted_not_raised() -> None:
    m = make()
    for junk in (b"", b"\x00", b"\x07\x05", b"\xff" * 40, codec.encode(Ping(1, "me"))[:3]):
        assert m.handle_packet(junk, ("10.0.0.7", 8301), 0.0) == []
    assert m.stats.decode_errors == 5


def test_indirect_ping_relays_ack_or_nack() -> None:
    m = make(2)
    out = m.handle_packet(codec.encode(IndirectPing(42, ip(3), 8301, "p3", True, ip(2), 8301, "p2")),
                          ("10.0.0.2", 8301), 0.0)
    ((addr, msgs),) = sends(out)
    assert addr == ("10.0.0.3", 8301)
    (ping,) = [x for x in msgs if isinstance(x, Ping)]
    assert ping.node == "p3"
    # the target answers: the requester gets an ack with ITS sequence number
    out = m.handle_packet(codec.encode(Ack(ping.seq_no)), ("10.0.0.3", 8301), 0.1)
    assert [(a, [x for x in ms if isinstance(x, Ack)]) for a, ms in sends(out)] == [(("10.0.0.2", 8301), [Ack(42)])]
    # a second relay that gets no answer sends a nack once the probe timeout passes
    m.handle_packet(codec.encode(IndirectPing(43, ip(3), 8301, "p3", True, ip(2), 8301, "p2")),
                    ("10.0.0.2", 8301), 1.0)
    out = m.tick(1.0 + m.cfg.probe_timeout)
    assert any(isinstance(x, Nack) and x.seq_no == 43 for _, ms in sends(out) for x in ms)


def _drive_probe(m: Membership, answer: bool) -> list[object]:
    """Tick until a probe goes out, optionally ack it; then run past the probe interval."""
    t = 0.0
    effects: list[object] = []
    while m.probe is None:
        t += 0.01
        effects += m.tick(t)
    if answer:
        m.handle_message(Ack(m.probe.seq), ("10.0.0.2", 8301), t + 0.01)
    for _ in range(300):
        t += 0.01
        out = m.tick(t)
        effects += out
        for e in out:
            if isinstance(e, TcpPing):
                effects += m.tcp_ping_result(e.seq, False, t)
    return effects


def test_failed_probe_suspects_and_awareness_rises() -> None:
    m = make(4)
    effects = _drive_probe(m, answer=False)
    suspects = [n for n in m.nodes if n.state == NodeState.SUSPECT]
    assert len(suspects) == 1
    assert m.awareness.score >= 1
    assert any(isinstance(e, TcpPing) for e in effects), "peers at protocol >= 3 get a TCP fallback ping"
    indirect = [x for e in effects if isinstance(e, SendPacket) for x in codec.decode_packet(e.data)
                if isinstance(x, IndirectPing) and x.node == suspects[0].name]
    assert len(indirect) == 3, "indirect_checks peers are asked"


def test_acked_probe_keeps_everyone_alive() -> None:
    m = make(4)
    m.awareness.apply_delta(3)
    _drive_probe(m, answer=True)
    assert all(n.state == NodeState.ALIVE for n in m.nodes)
    assert m.awareness.score == 2


def test_suspicion_expires_into_dead_with_event() -> None:
    m = make(4)
    m.handle_message(Suspect(1, "p2", "p3"), ("10.0.0.3", 8301), 10.0)
    deadline = m.suspicions["p2"].deadline
    assert m.tick(deadline - 0.01) is not None and m.node_map["p2"].state == NodeState.SUSPECT
    out = m.tick(deadline)
    assert m.node_map["p2"].state == NodeState.DEAD
    assert any(isinstance(e, NodeEvent) and e.kind == "leave" and e.node.name == "p2" for e in out)


@pytest.mark.parametrize("how", ["own suspicion expires", "told by a peer"])
def test_a_death_is_gossiped_at_once_not_at_the_next_round(how: str) -> None:
    m = make(6)
    m.handle_message(Suspect(1, "p2", "p3"), ("10.0.0.3", 8301), 10.0)
    deadline = m.suspicions["p2"].deadline
    m.tick(deadline - 0.01)
    m.next_gossip = deadline + 10  # no scheduled round is due
    if how == "told by a peer":
        out = m.handle_message(Dead(1, "p2", "p4"), ("10.0.0.4", 8301), deadline)
    else:
        out = m.tick(deadline)
    told = [addr for addr, msgs in sends(out) if Dead(1, "p2", "p4" if how == "told by a peer" else "me") in msgs]
    assert len(told) == GossipConfig.lan().gossip_nodes
    assert sends(m.handle_message(Dead(1, "p2", "p5"), ("10.0.0.5", 8301), deadline + 0.1)) == [], "old news"


def test_address_conflict_is_refused_and_counted() -> None:
    m = make(1)
    m.handle_message(Alive(9, "p2", ip(50), 8301, b"", VSN), ("10.0.0.50", 8301), 1.0)
    assert m.node_map["p2"].addr == "10.0.0.2"
    assert m.stats.address_conflicts == 1


def test_leave_broadcasts_dead_self_as_left() -> None:
    m = make(2)
    m.leave(5.0)
    assert m.local.state == NodeState.LEFT
    (msg,) = [codec.decode_packet(b)[0] for b in m.broadcasts.get(2, 1400, 3)]
    assert msg == Dead(1, "me", "me")
