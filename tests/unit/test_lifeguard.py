"""Pure pieces of the gossip core: suspicion timers, awareness, the broadcast queue."""

from __future__ import annotations

import pytest

from pyconsul.agent.gossip.awareness import Awareness
from pyconsul.agent.gossip.broadcast import BroadcastQueue, retransmit_limit
from pyconsul.agent.gossip.suspicion import Suspicion, remaining_fraction, suspicion_timeout


@pytest.mark.parametrize(
    ("mult", "n", "interval", "expected"),
    [
        (4, 1, 1.0, 4.0),  # log10 floor at 1
        (4, 10, 1.0, 4.0),
        (4, 100, 1.0, 8.0),
        (4, 1000, 1.0, 12.0),
        (6, 100, 5.0, 60.0),  # WAN
        (4, 50, 1.0, 4 * 1.698),  # log10(50) = 1.69897 -> truncated to ms
    ],
)
def test_suspicion_timeout(mult: int, n: int, interval: float, expected: float) -> None:
    assert suspicion_timeout(mult, n, interval) == pytest.approx(expected)


def test_suspicion_shrinks_with_confirmations() -> None:
    s = Suspicion("a", k=3, min_timeout=2.0, max_timeout=12.0, start=100.0)
    assert s.deadline == 112.0
    assert s.confirm("b")
    first = s.deadline
    assert 102.0 < first < 112.0
    assert not s.confirm("b"), "the same confirmer counts once"
    assert not s.confirm("a"), "the accuser does not confirm itself"
    assert s.confirm("c")
    assert s.confirm("d")
    assert s.deadline == pytest.approx(102.0)
    assert not s.confirm("e"), "no more than k confirmations"


def test_suspicion_without_expected_confirmations_uses_min() -> None:
    s = Suspicion("a", k=0, min_timeout=2.0, max_timeout=12.0, start=0.0)
    assert s.deadline == 2.0
    assert remaining_fraction(5, 0, 2.0, 12.0) == 2.0


def test_awareness_clamps_and_scales() -> None:
    a = Awareness(8)
    a.apply_delta(-3)
    assert a.score == 0
    assert a.scale(0.5) == 0.5
    a.apply_delta(100)
    assert a.score == 7
    assert a.scale(1.0) == 8.0


@pytest.mark.parametrize(("mult", "n", "limit"), [(4, 1, 4), (4, 9, 4), (4, 10, 8), (4, 999, 12), (4, 0, 0)])
def test_retransmit_limit(mult: int, n: int, limit: int) -> None:
    assert retransmit_limit(mult, n) == limit


def test_broadcast_queue_invalidates_and_limits() -> None:
    q = BroadcastQueue(retransmit_mult=1)
    q.queue(b"old-a", name="a", notify=1)
    q.queue(b"b", name="b")
    q.queue(b"new-a", name="a")
    assert 1 in q.finished, "an invalidated broadcast counts as finished"
    msgs = q.get(overhead=2, limit=100, n_nodes=9)
    assert sorted(msgs) == [b"b", b"new-a"]
    assert q.get(overhead=2, limit=100, n_nodes=9) == [], "limit 1 transmit for n=9, mult=1"


def test_broadcast_queue_respects_size_and_order() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    q.queue(b"x" * 50, name="big")
    q.queue(b"y" * 10, name="small")
    # newest first among equally-transmitted; the big one does not fit in 40 bytes
    assert q.get(overhead=2, limit=40, n_nodes=3) == [b"y" * 10]
    assert q.get(overhead=2, limit=100, n_nodes=3) == [b"x" * 50, b"y" * 10], "fewest transmits first"
