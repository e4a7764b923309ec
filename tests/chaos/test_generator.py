from __future__ import annotations

from collections import Counter

import pytest

from pyconsul.chaos.checker import linearizable
from pyconsul.chaos.generator import (
    Invocation,
    RegisterGenerator,
    RegisterMix,
    RegisterWorkload,
    SetGenerator,
    SetWorkload,
    simulate_register,
)
from pyconsul.chaos.history import pairs


def test_register_generator_is_deterministic_for_a_seed() -> None:
    a = RegisterGenerator(seed=42).take(200)
    assert a == RegisterGenerator(seed=42).take(200)
    assert a != RegisterGenerator(seed=43).take(200)


def test_register_values_keys_and_stagger_stay_in_range() -> None:
    w = RegisterWorkload(keys=("x", "y"), values=3, stagger_ns=1000)
    ops = RegisterGenerator(w, seed=1).take(2000)
    assert {op.key for op in ops} == {"x", "y"}
    for op in ops:
        assert 0 <= op.stagger_ns < 2000
        if op.f == "read":
            assert op.value is None
        elif op.f == "write":
            assert op.value in range(3)
        else:
            assert isinstance(op.value, tuple) and len(op.value) == 2
            assert all(v in range(3) for v in op.value)
    mean = sum(op.stagger_ns for op in ops) / len(ops)
    assert 900 < mean < 1100  # uniform in [0, 2 × mean)


@pytest.mark.parametrize(("mix", "expected"), [
    (RegisterMix(read=1, write=0, cas=0), {"read": 1.0}),
    (RegisterMix(read=0.5, write=0.25, cas=0.25), {"read": 0.5, "write": 0.25, "cas": 0.25}),
    (RegisterMix(read=0, write=3, cas=1), {"write": 0.75, "cas": 0.25}),
])
def test_mix_ratios(mix: RegisterMix, expected: dict[str, float]) -> None:
    n = 8000
    counts = Counter(op.f for op in RegisterGenerator(RegisterWorkload(mix=mix), seed=3).take(n))
    assert set(counts) == set(expected)
    for f, share in expected.items():
        assert abs(counts[f] / n - share) < 0.03, (f, counts)


def test_zero_stagger_and_final_reads() -> None:
    g = RegisterGenerator(RegisterWorkload(keys=("a", "b", "c"), stagger_ns=0), seed=0)
    assert all(op.stagger_ns == 0 for op in g.take(100))
    assert g.final_reads() == [Invocation("read", k, None, 0) for k in ("a", "b", "c")]


@pytest.mark.parametrize("workload", [
    RegisterWorkload(keys=()),
    RegisterWorkload(values=0),
    RegisterWorkload(stagger_ns=-1),
    RegisterWorkload(mix=RegisterMix(read=0, write=0, cas=0)),
    RegisterWorkload(mix=RegisterMix(read=-1)),
])
def test_register_workload_validation(workload: RegisterWorkload) -> None:
    with pytest.raises(ValueError):
        RegisterGenerator(workload)


def test_set_generator_adds_unique_elements_then_stops() -> None:
    g = SetGenerator(SetWorkload(key="s", adds=50, stagger_ns=10), seed=9)
    ops = list(g)
    assert [op.value for op in ops] == list(range(50))
    assert all(op.f == "add" and op.key == "s" and 0 <= op.stagger_ns < 20 for op in ops)
    assert g.final_reads() == [Invocation("read", "s", None, 0)]
    assert [op.stagger_ns for op in SetGenerator(SetWorkload(adds=50, stagger_ns=10), seed=9)] == \
        [op.stagger_ns for op in ops]


def test_endless_set_generator() -> None:
    assert len(SetGenerator(SetWorkload(adds=None), seed=0).take(5000)) == 5000
    with pytest.raises(ValueError):
        SetGenerator(SetWorkload(adds=-1))


def test_simulation_is_deterministic_and_well_formed() -> None:
    invs = RegisterGenerator(RegisterWorkload(stagger_ns=100_000), seed=5).take(500)
    h = simulate_register(invs, processes=4, seed=5, info_rate=0.1, fail_rate=0.1)
    assert h == simulate_register(invs, processes=4, seed=5, info_rate=0.1, fail_rate=0.1)
    assert len(h) == 1000 and [op.index for op in h] == list(range(1000))
    assert [op.time for op in h] == sorted(op.time for op in h)
    prs = pairs(h)  # raises on reuse of a crashed process or overlapping operations of one process
    types = Counter(p.type for p in prs)
    assert types["info"] > 20 and types["fail"] > 20 and types["ok"] > 300
    assert len({p.process for p in prs}) > 4  # crashed processes were replaced
    assert linearizable.check(h).valid is True


def test_simulation_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        simulate_register([], processes=0)
    with pytest.raises(ValueError, match="cas"):
        simulate_register([Invocation("cas", "k", 1)])
    with pytest.raises(ValueError, match="unsupported"):
        simulate_register([Invocation("add", "k", 1)])
