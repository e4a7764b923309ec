"""Property tests: histories from a real sequential execution are linearizable; corrupting a read breaks
them; and on small arbitrary histories the checker agrees with a brute-force search."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pyconsul.chaos.checker import linearizable
from pyconsul.chaos.generator import RegisterGenerator, RegisterWorkload, simulate_register
from pyconsul.chaos.history import Key, Op, OpType, Value, indexed

VALUES = st.integers(0, 3)


@dataclass(frozen=True)
class Planned:
    key: Key
    f: str
    arg: Value
    out: Value
    status: str  # ok | info | fail | open (never completed)
    start: int
    end: int


def to_history(plans: list[Planned]) -> list[Op]:
    """One process per operation; events ordered by time (ties: invocation order, then completion)."""
    events: list[tuple[int, int, Op]] = []
    for i, p in enumerate(plans):
        events.append((p.start, 2 * i, Op(i, "invoke", p.f, p.key, p.arg)))
        if p.status != "open":
            t: OpType = p.status  # type: ignore[assignment]
            value = (p.out if p.f == "read" else p.arg) if t == "ok" else None
            events.append((p.end, 2 * i + 1, Op(i, t, p.f, p.key, value)))
    events.sort(key=lambda e: (e[0], e[1]))
    return indexed(op for _, _, op in events)


@st.composite
def sequential_executions(draw: st.DrawFn) -> list[Planned]:
    """Operations applied one after another to real registers (linearization point of op i at 10i+5),
    each given a random interval around its point; info ops took effect or not; failed ones did not."""
    keys = draw(st.sampled_from([("k",), ("a", "b"), ("a", "b", 7)]))
    state: dict[Key, Value] = {}
    plans: list[Planned] = []
    for i in range(draw(st.integers(0, 30))):
        key = draw(st.sampled_from(keys))
        f = draw(st.sampled_from(["read", "read", "write", "cas"]))
        status = draw(st.sampled_from(["ok"] * 6 + ["info", "fail", "open"]))
        applied = status == "ok" or (status in ("info", "open") and draw(st.booleans()))
        current = state.get(key)
        arg: Value = None
        if f == "write":
            arg = draw(VALUES)
        elif f == "cas":
            arg = (draw(st.one_of(st.none(), VALUES)), draw(VALUES))
            if current != arg[0]:
                applied = False
                if status == "ok":
                    status = "fail"  # a cas whose comparison fails is recorded as fail, as Jepsen clients do
        if applied and f != "read":
            state[key] = arg[1] if isinstance(arg, tuple) else arg
        point = 10 * i + 5
        start = point - draw(st.integers(1, 60))
        end = point + draw(st.integers(1, 60)) if status == "ok" else start + draw(st.integers(1, 400))
        plans.append(Planned(key, f, arg, current, status, start, end))
    return plans


@settings(max_examples=300, deadline=None)
@given(sequential_executions())
def test_sequential_execution_is_linearizable(plans: list[Planned]) -> None:
    result = linearizable.check(to_history(plans))
    assert result.valid is True, result.to_dict()


@settings(max_examples=300, deadline=None)
@given(sequential_executions(), st.data())
def test_read_of_a_value_never_written_is_invalid(plans: list[Planned], data: st.DataObject) -> None:
    reads = [i for i, p in enumerate(plans) if p.f == "read" and p.status == "ok"]
    if not reads:
        plans = [*plans, Planned("k", "read", None, None, "ok", 10**6, 10**6 + 1)]
        reads = [len(plans) - 1]
    victim = data.draw(st.sampled_from(reads))
    plans[victim] = replace(plans[victim], out=999)
    result = linearizable.check(to_history(plans))
    assert result.valid is False
    assert result.invalid_keys == [plans[victim].key]


# --- agreement with brute force on arbitrary small histories -------------------------------------------

def brute_force(plans: list[Planned]) -> bool:
    """Is there an order of all ok ops plus any subset of info/open ops, consistent with real time
    (a before b if a returned before b was invoked) and legal for per-key registers starting at None?"""
    live = [p for p in plans if p.status != "fail" and not (p.f == "read" and p.status != "ok")]

    def legal(state: Value, p: Planned) -> tuple[bool, Value]:
        if p.f == "read":
            return state == p.out, state
        if p.f == "write":
            return True, p.arg
        assert isinstance(p.arg, tuple)
        if state == p.arg[0]:
            return True, p.arg[1]
        return p.status != "ok", state

    def search(placed: frozenset[int], state: dict[Key, Value]) -> bool:
        if all(i in placed for i, p in enumerate(live) if p.status == "ok"):
            return True
        for i, p in enumerate(live):
            if i in placed:
                continue
            if any(j not in placed and q.status == "ok" and q.end < p.start for j, q in enumerate(live)):
                continue  # an unplaced op returned before p was invoked
            ok, new = legal(state.get(p.key), p)
            if ok and search(placed | {i}, {**state, p.key: new}):
                return True
        return False

    return search(frozenset(), {})


@st.composite
def arbitrary_histories(draw: st.DrawFn) -> list[Planned]:
    n = draw(st.integers(1, 6))
    times = draw(st.permutations(range(2 * n)))
    plans = []
    for i in range(n):
        a, b = sorted((times[2 * i], times[2 * i + 1]))
        f = draw(st.sampled_from(["read", "write", "cas"]))
        arg: Value = None if f == "read" else draw(VALUES) if f == "write" else (draw(st.one_of(st.none(), VALUES)),
                                                                                draw(VALUES))
        out = draw(st.one_of(st.none(), VALUES)) if f == "read" else None
        status = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail", "open"]))
        plans.append(Planned(draw(st.sampled_from(["k", "k", "j"])), f, arg, out, status, a, b))
    return plans


@settings(max_examples=1500, deadline=None)
@given(arbitrary_histories())
def test_agrees_with_brute_force(plans: list[Planned]) -> None:
    expected = brute_force(plans)
    assert linearizable.check(to_history(plans)).valid is expected


def test_simulated_executions_are_linearizable() -> None:
    for seed in range(20):
        workload = RegisterWorkload(keys=("a", "b"), stagger_ns=50_000)
        h = simulate_register(RegisterGenerator(workload, seed=seed).take(400), processes=8, seed=seed,
                              latency_ns=1_000_000, info_rate=0.05, fail_rate=0.05)
        r = linearizable.check(h)
        assert r.valid is True, (seed, r.to_dict())
