from __future__ import annotations

import json

from pyconsul.chaos.checker import set as set_checker
from pyconsul.chaos.history import OpType
from tests.chaos.histories import Event, history


def adds(*outcomes: tuple[int, OpType]) -> list[Event]:
    """One process per add (so an info add never blocks a later one): (element, completion type)."""
    out: list[Event] = []
    for element, t in outcomes:
        out += [(element + 100, "invoke", "add", element), (element + 100, t, "add", element if t == "ok" else None)]
    return out


def final_read(*elements: int, process: int = 0) -> list[Event]:
    return [(process, "invoke", "read", None), (process, "ok", "read", tuple(elements))]


def test_all_acknowledged_present_is_valid() -> None:
    r = set_checker.check(history(*adds((0, "ok"), (1, "ok"), (2, "ok")), *final_read(2, 0, 1)))
    assert r.valid is True
    assert r.ok == {0, 1, 2} and not r.lost and not r.unexpected
    assert r.to_dict()["ok_count"] == 3


def test_lost_acknowledged_add_is_invalid() -> None:
    r = set_checker.check(history(*adds((0, "ok"), (1, "ok"), (2, "ok")), *final_read(0, 2)))
    assert r.valid is False
    assert r.lost == {1}
    assert r.to_dict()["lost"] == [1]


def test_unexpected_element_is_invalid() -> None:
    r = set_checker.check(history(*adds((0, "ok")), *final_read(0, 42)))
    assert r.valid is False
    assert r.unexpected == {42} and not r.lost


def test_info_adds_may_or_may_not_appear() -> None:
    r = set_checker.check(history(*adds((0, "ok"), (1, "info"), (2, "info")), *final_read(0, 1)))
    assert r.valid is True
    assert r.recovered == {1}
    assert r.missing_info == {2}
    d = r.to_dict()
    assert d["recovered"] == [1] and d["recovered_count"] == 1 and d["missing_info_count"] == 1


def test_failed_add_that_appears_is_invalid() -> None:
    r = set_checker.check(history(*adds((0, "ok"), (1, "fail")), *final_read(0, 1)))
    assert r.valid is False
    assert r.failed_present == {1} and not r.unexpected


def test_failed_add_absent_is_fine() -> None:
    r = set_checker.check(history(*adds((0, "ok"), (1, "fail")), *final_read(0)))
    assert r.valid is True


def test_the_last_ok_read_is_the_final_one() -> None:
    h = history(*final_read(process=1), *adds((0, "ok"), (1, "ok")), *final_read(0, 1, process=2),
                (3, "invoke", "read", None), (3, "info", "read", None))
    r = set_checker.check(h)
    assert r.valid is True and r.read_count == 2
    assert r.final_read_index == 7


def test_no_final_read_is_unknown() -> None:
    r = set_checker.check(history(*adds((0, "ok")), (0, "invoke", "read", None), (0, "fail", "read", None)))
    assert r.valid == "unknown"
    assert r.reason is not None
    assert json.loads(json.dumps(r.to_dict()))["valid"] == "unknown"


def test_duplicates_in_the_read_are_reported() -> None:
    r = set_checker.check(history(*adds((0, "ok")), *final_read(0, 0)))
    assert r.valid is True and r.duplicates == 1
