from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from pyconsul.chaos.checker import ErrorResult, compose, linearizable, merge_validity, stats
from pyconsul.chaos.checker import set as set_checker
from pyconsul.chaos.checker.result import Validity
from pyconsul.chaos.history import Op
from tests.chaos.histories import history, seq


@pytest.mark.parametrize(("validities", "expected"), [
    ([], True),
    ([True, True], True),
    ([True, "unknown"], "unknown"),
    (["unknown", False, True], False),
    ([False, "unknown"], False),
])
def test_merge_validity(validities: list[Validity], expected: Validity) -> None:
    assert merge_validity(validities) == expected


def test_merge_rejects_non_validities() -> None:
    with pytest.raises(ValueError):
        merge_validity([None])  # type: ignore[list-item]


def test_compose_runs_all_and_merges() -> None:
    h = history(*seq(("write", 1, 1), ("write", 2, 2), ("read", None, 1)))
    result = compose({"linear": linearizable.check, "stats": stats.check})(h)
    assert result.valid is False
    assert result.results["stats"].valid is True and result.results["linear"].valid is False
    d = json.loads(json.dumps(result.to_dict()))
    assert d["valid"] is False and d["results"]["linear"]["invalid_keys"] == ["k"]
    assert list(d["results"]) == ["linear", "stats"]


def test_unknown_beats_true() -> None:
    h = history(*seq(("add", 1, 1)))
    assert compose({"stats": stats.check})(h).valid is True
    result = compose({"stats": stats.check, "set": set_checker.check})(h)
    assert result.valid == "unknown"  # the set checker has no final read


def test_a_crashing_checker_is_unknown_not_a_verdict() -> None:
    def broken(history: Sequence[Op]) -> ErrorResult:
        raise RuntimeError("boom")

    result = compose({"broken": broken, "stats": stats.check})(history(*seq(("read", None, None))))
    assert result.valid == "unknown"
    assert result.to_dict()["results"]["broken"] == {"valid": "unknown", "checker": "broken",
                                                     "error": "RuntimeError: boom"}
