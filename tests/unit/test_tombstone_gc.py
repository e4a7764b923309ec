"""The tombstone GC's timing rules (agent/state/tombstone_gc.py): bins, leadership, and the TTL invariant."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyconsul.agent.state.tombstone_gc import TombstoneGC


def test_disabled_gc_ignores_hints() -> None:
    gc = TombstoneGC(ttl=60, granularity=10)
    gc.hint(5, now=0)
    assert gc.next_deadline() == math.inf and gc.expired(10**6) == 0


def test_a_burst_of_deletes_is_one_reap_of_the_highest_index() -> None:
    gc = TombstoneGC(ttl=60, granularity=10, enabled=True)
    for i in range(1, 1001):
        gc.hint(i, now=100 + i / 1000)  # all within one 10 s window
    assert len(gc.bins) == 1 and gc.next_deadline() == 170
    assert gc.expired(169.9) == 0
    assert gc.expired(170) == 1000
    assert gc.expired(10**6) == 0  # consumed


def test_windows_expire_in_order() -> None:
    gc = TombstoneGC(ttl=60, granularity=10, enabled=True)
    gc.hint(3, now=0)
    gc.hint(7, now=15)
    gc.hint(9, now=35)
    assert gc.expired(70) == 3 and gc.expired(80) == 7 and gc.expired(10**6) == 9


def test_losing_leadership_forgets_pending_reaps() -> None:
    gc = TombstoneGC(ttl=60, granularity=10, enabled=True)
    gc.hint(3, now=0)
    gc.set_enabled(False)
    gc.set_enabled(True)
    assert gc.expired(10**6) == 0


@pytest.mark.parametrize("ttl,granularity", [(0, 1), (1, 0), (math.inf, 1), (-1, 1)])
def test_bad_settings_are_refused(ttl: float, granularity: float) -> None:
    with pytest.raises(ValueError):
        TombstoneGC(ttl=ttl, granularity=granularity)


@given(st.lists(st.floats(0, 10**6), min_size=1, max_size=50), st.floats(0, 2 * 10**6), st.floats(1, 1000),
       st.floats(0.1, 100))
def test_nothing_is_reaped_before_its_ttl(times: list[float], now: float, ttl: float, gran: float) -> None:
    """Raft indexes grow with time: hint i (1-based, in time order) is index i. A reap at `now` must stay
    below every index hinted less than ttl before now."""
    gc = TombstoneGC(ttl=ttl, granularity=gran, enabled=True)
    times = sorted(times)
    for index, at in enumerate(times, 1):
        gc.hint(index, at)
    reaped = gc.expired(now)
    young = [index for index, at in enumerate(times, 1) if now - at < ttl]
    assert reaped < min(young, default=math.inf)
    old_enough = [index for index, at in enumerate(times, 1) if now - at >= ttl + 2 * gran]
    assert reaped >= max(old_enough, default=0)  # and nothing older than ttl + granularity is kept
