"""Hand-written register histories, valid and invalid, for the WGL checker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pyconsul.chaos.checker import linearizable
from pyconsul.chaos.checker.linearizable import RegisterModel
from pyconsul.chaos.history import HistoryError
from tests.chaos.histories import history, seq


def check(*events: object, **kw: object) -> linearizable.LinearizableResult:
    return linearizable.check(history(*events), **kw)  # type: ignore[arg-type]


# --- valid ---------------------------------------------------------------------------------------------

def test_empty_history_is_valid() -> None:
    assert linearizable.check([]).valid is True


def test_sequential_reads_and_writes() -> None:
    r = check(*seq(("read", None, None), ("write", 1, 1), ("read", None, 1), ("cas", (1, 2), (1, 2)),
                   ("read", None, 2)))
    assert r.valid is True
    assert r.keys["k"].ops == 5


def test_concurrent_writes_with_reads_valid_in_some_order() -> None:
    # w1 and w2 overlap each other and the first read; reads see 1 then 1: order w2, w1.
    r = check((0, "invoke", "write", 1), (1, "invoke", "write", 2), (2, "invoke", "read", None),
              (0, "ok", "write", 1), (1, "ok", "write", 2), (2, "ok", "read", 1),
              (2, "invoke", "read", None), (2, "ok", "read", 1))
    assert r.valid is True


def test_read_may_see_either_overlapping_write() -> None:
    # Two reads, both overlapping both writes, see 2 then 1: w2 r2 w1 r1.
    r = check((0, "invoke", "write", 1), (1, "invoke", "write", 2), (2, "invoke", "read", None),
              (2, "ok", "read", 2), (3, "invoke", "read", None), (3, "ok", "read", 1),
              (0, "ok", "write", 1), (1, "ok", "write", 2))
    assert r.valid is True


def test_info_write_that_took_effect_is_valid() -> None:
    r = check((0, "invoke", "write", 1), (0, "ok", "write", 1),
              (1, "invoke", "write", 2), (1, "info", "write", None),
              (2, "invoke", "read", None), (2, "ok", "read", 2))
    assert r.valid is True


def test_info_write_that_did_not_take_effect_is_valid() -> None:
    r = check((0, "invoke", "write", 1), (0, "ok", "write", 1),
              (1, "invoke", "write", 2), (1, "info", "write", None),
              (2, "invoke", "read", None), (2, "ok", "read", 1),
              (2, "invoke", "read", None), (2, "ok", "read", 1))
    assert r.valid is True


def test_info_write_may_take_effect_long_after_its_timeout() -> None:
    # The client gave up (info) before the reads; the write lands between them.
    r = check((1, "invoke", "write", 2), (1, "info", "write", None),
              (0, "invoke", "read", None), (0, "ok", "read", None),
              (0, "invoke", "read", None), (0, "ok", "read", 2))
    assert r.valid is True


def test_info_cas_may_or_may_not_have_succeeded() -> None:
    base = [*seq(("write", 1, 1)), (1, "invoke", "cas", (1, 5)), (1, "info", "cas", None)]
    assert check(*base, *seq(("read", None, 5), process=2)).valid is True
    assert check(*base, *seq(("read", None, 1), process=2)).valid is True
    # but it cannot have produced a value it did not write
    assert check(*base, *seq(("read", None, 6), process=2)).valid is False


def test_unfinished_invocation_counts_as_info() -> None:
    r = check((1, "invoke", "write", 7), (0, "invoke", "read", None), (0, "ok", "read", 7))
    assert r.valid is True


def test_fail_ops_are_ignored() -> None:
    r = check(*seq(("write", 1, 1)), (1, "invoke", "write", 9), (1, "fail", "write", None),
              (1, "invoke", "cas", (3, 4)), (1, "fail", "cas", None), *seq(("read", None, 1), process=2))
    assert r.valid is True
    assert r.keys["k"].ops == 2  # the failed write and cas are dropped


def test_initial_value_is_a_model_parameter() -> None:
    events = seq(("read", None, 0))
    assert check(*events).valid is False
    assert linearizable.check(history(*events), model=RegisterModel(initial=0)).valid is True


# --- invalid -------------------------------------------------------------------------------------------

def test_stale_read() -> None:
    r = check(*seq(("write", 1, 1), ("write", 2, 2)), *seq(("read", None, 1), process=1))
    assert r.valid is False
    k = r.keys["k"]
    assert k.blocking is not None and (k.blocking.f, k.blocking.out, k.blocking.invoke_index) == ("read", 1, 4)
    assert [op.invoke_index for op in k.linearized] == [0, 2]
    assert k.state == 2
    assert [(x.op.invoke_index, x.reason) for x in k.refused] == [(4, "read 1, but the register holds 2")]


def test_lost_write() -> None:
    # w2 acknowledged after w1, yet later reads keep seeing 1.
    r = check(*seq(("write", 1, 1)), *seq(("write", 2, 2), process=1), *seq(("read", None, 1), ("read", None, 1),
                                                                             process=2))
    assert r.valid is False
    k = r.keys["k"]
    assert k.blocking is not None and k.blocking.invoke_index == 4 and k.state == 2


def test_cas_succeeding_on_a_wrong_value() -> None:
    r = check(*seq(("write", 1, 1), ("cas", (2, 3), (2, 3))))
    assert r.valid is False
    k = r.keys["k"]
    assert k.blocking is not None and k.blocking.f == "cas"
    assert k.refused[0].reason == "cas expected 2, but the register holds 1"


def test_reads_going_back_in_time_across_concurrent_writes() -> None:
    # Both writes overlap all three reads, yet 1, 2, 1 needs w1 twice.
    r = check((0, "invoke", "write", 1), (1, "invoke", "write", 2),
              *seq(("read", None, 1), ("read", None, 2), ("read", None, 1), process=2),
              (0, "ok", "write", 1), (1, "ok", "write", 2))
    assert r.valid is False
    assert r.keys["k"].blocking is not None and r.keys["k"].blocking.invoke_index == 6


def test_value_seen_before_its_write_was_invoked() -> None:
    r = check(*seq(("read", None, 5)), (1, "invoke", "write", 5), (1, "info", "write", None))
    assert r.valid is False


def test_failed_write_must_not_be_visible() -> None:
    r = check((1, "invoke", "write", 9), (1, "fail", "write", None), *seq(("read", None, 9)))
    assert r.valid is False


def test_multi_key_one_bad_key_names_it() -> None:
    good_a = seq(("write", 1, 1), ("read", None, 1), key="a")
    bad_b = seq(("write", 1, 1), ("write", 2, 2), ("read", None, 1), key="b")
    good_c = seq(("write", 3, 3), ("read", None, 3), key=7)
    r = linearizable.check(history(*good_a, *bad_b, *good_c))
    assert r.valid is False
    assert r.invalid_keys == ["b"] and r.unknown_keys == []
    assert r.keys["a"].valid is True and r.keys[7].valid is True
    d = json.loads(json.dumps(r.to_dict()))
    assert d["invalid_keys"] == ["b"]
    assert [f["key"] for f in d["failures"]] == ["b"]
    assert d["failures"][0]["blocking"]["value"] == 1
    assert d["failures"][0]["linearized"] == [4, 6]


def test_keys_are_independent() -> None:
    # Interleaved: the same values on two keys, each fine on its own (a single register would be invalid).
    r = linearizable.check(history(*seq(("write", 1, 1), key="a"), *seq(("write", 2, 2), key="b"),
                                   *seq(("read", None, 1), key="a"), *seq(("read", None, 2), key="b")))
    assert r.valid is True


def test_unsupported_operation_is_an_error() -> None:
    with pytest.raises(HistoryError, match="add"):
        check(*seq(("add", 1, 1)))
    with pytest.raises(HistoryError, match="expected, new"):
        check(*seq(("cas", 1, 1)))


# --- budget --------------------------------------------------------------------------------------------

def _many_concurrent_writes(n: int) -> list[object]:
    """n concurrent writes of distinct values and an impossible read: exhaustive search is 2^n-ish."""
    events: list[object] = [(p, "invoke", "write", p) for p in range(n)]
    events += [(p, "ok", "write", p) for p in range(n)]
    events += seq(("read", None, 999), process=n)
    return events


def test_step_budget_gives_unknown_not_a_verdict() -> None:
    r = check(*_many_concurrent_writes(12), max_steps=100)
    assert r.valid == "unknown"
    assert r.unknown_keys == ["k"]
    assert r.keys["k"].reason == "step budget exhausted"
    assert check(*_many_concurrent_writes(6)).valid is False  # with enough budget: the real verdict


def test_time_limit_uses_the_injected_clock() -> None:
    ticks: Iterator[float] = iter(float(i) for i in range(10**6))
    r = check(*_many_concurrent_writes(12), time_limit=3.0, clock=lambda: next(ticks))
    assert r.valid == "unknown"
    assert r.keys["k"].reason == "time limit exceeded"


def test_keys_after_an_exhausted_budget_are_not_checked() -> None:
    events = [*_many_concurrent_writes(12), *seq(("read", None, 5), key="later")]
    r = check(*events, max_steps=100)
    assert r.keys["later"].valid == "unknown"
    assert r.keys["later"].reason is not None and r.keys["later"].reason.startswith("not checked")


def test_time_limit_without_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="clock"):
        linearizable.check([], time_limit=1.0)
