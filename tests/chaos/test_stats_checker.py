from __future__ import annotations

import json

import pytest

from pyconsul.chaos.checker import stats
from pyconsul.chaos.history import NEMESIS
from tests.chaos.histories import history


def test_counts_and_rates_per_f() -> None:
    h = history((0, "invoke", "read", None), (0, "ok", "read", 1),
                (0, "invoke", "write", 2), (0, "fail", "write", None),
                (0, "invoke", "write", 3), (0, "ok", "write", 3),
                (0, "invoke", "write", 4), (0, "info", "write", None),
                (NEMESIS, "info", "partition", None),
                (1, "invoke", "read", None))  # never completed: counts as info
    r = stats.check(h)
    assert r.valid is True
    assert (r.by_f["read"].count, r.by_f["read"].ok, r.by_f["read"].info) == (2, 1, 1)
    w = r.by_f["write"]
    assert (w.count, w.ok, w.fail, w.info) == (3, 1, 1, 1)
    assert (r.total.count, r.total.ok, r.total.fail, r.total.info) == (5, 2, 1, 2)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["by_f"]["write"]["ok_rate"] == pytest.approx(1 / 3)
    assert d["info_rate"] == pytest.approx(2 / 5)
    assert set(d["by_f"]) == {"read", "write"}


def test_an_f_without_any_ok_is_invalid() -> None:
    h = history((0, "invoke", "read", None), (0, "ok", "read", 1),
                (0, "invoke", "cas", (1, 2)), (0, "fail", "cas", None))
    r = stats.check(h)
    assert r.valid is False
    assert r.by_f["cas"].valid is False and r.by_f["read"].valid is True
    assert r.to_dict()["by_f"]["cas"]["valid"] is False


def test_empty_history_is_unknown() -> None:
    assert stats.check([]).valid == "unknown"
    assert stats.check(history((NEMESIS, "info", "kill", None))).valid == "unknown"
