"""Hand-written lock histories (acquire / release / destroy / read of one Consul lock), valid and invalid."""

from __future__ import annotations

import pytest

from pyconsul.chaos.checker import lock
from pyconsul.chaos.history import HistoryError
from tests.chaos.histories import history


def check(*events: object) -> lock.LinearizableResult:
    return lock.check(history(*events, key="lock"))  # type: ignore[arg-type]


def ok(p: int, f: str, owner: object, out: object = None) -> list[tuple[object, ...]]:
    return [(p, "invoke", f, owner), (p, "ok", f, out)]


def test_owners_take_turns() -> None:
    r = check(*ok(0, "acquire", 0), *ok(9, "read", None, 0), *ok(0, "release", 0), *ok(9, "read", None, None),
              *ok(1, "acquire", 1), *ok(1, "release", 1))
    assert r.valid is True


def test_two_owners_at_once_is_a_violation() -> None:
    r = check(*ok(0, "acquire", 0), *ok(1, "acquire", 1))
    assert r.valid is False
    res = r.keys["lock"]
    assert res.blocking is not None and res.blocking.f == "acquire" and res.blocking.arg == 1
    assert any("held by 0" in x.reason for x in res.refused)


def test_overlapping_acquires_one_winner_is_valid() -> None:
    r = check((0, "invoke", "acquire", 0), (1, "invoke", "acquire", 1), (0, "ok", "acquire", None),
              (1, "fail", "acquire", None), *ok(9, "read", None, 0))
    assert r.valid is True


def test_a_stale_read_of_the_owner_is_a_violation() -> None:
    r = check(*ok(0, "acquire", 0), *ok(0, "release", 0), *ok(9, "read", None, 0))
    assert r.valid is False
    assert "read owner 0, but the lock is free" in {x.reason for x in r.keys["lock"].refused}


def test_a_release_by_a_non_owner_is_a_violation() -> None:
    assert check(*ok(0, "acquire", 0), *ok(1, "release", 1)).valid is False


def test_an_info_acquire_may_or_may_not_have_happened() -> None:
    took = check((0, "invoke", "acquire", 0), (0, "info", "acquire", None), *ok(9, "read", None, 0),
                 *ok(5, "destroy", 0), *ok(1, "acquire", 1))
    assert took.valid is True
    did_not = check((0, "invoke", "acquire", 0), (0, "info", "acquire", None), *ok(1, "acquire", 1))
    assert did_not.valid is True


def test_only_destroying_the_owners_session_frees_the_lock() -> None:
    assert check(*ok(0, "acquire", 0), *ok(5, "destroy", 3), *ok(1, "acquire", 1)).valid is False
    assert check(*ok(0, "acquire", 0), *ok(5, "destroy", 0), *ok(1, "acquire", 1)).valid is True


def test_unknown_operations_are_bad_input() -> None:
    with pytest.raises(HistoryError, match="the lock checker knows acquire, release, destroy and read"):
        check(*ok(0, "write", 1))
    with pytest.raises(HistoryError, match="names its owner"):
        check(*ok(0, "acquire", None))
