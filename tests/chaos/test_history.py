from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pyconsul.chaos.history import (
    NEMESIS,
    HistoryError,
    Op,
    dumps,
    indexed,
    load,
    loads,
    pairs,
    read_jsonl,
    save,
    write_jsonl,
)
from tests.chaos.histories import history

SAMPLE = indexed([
    Op(0, "invoke", "write", "k1", 3, time=10),
    Op(1, "invoke", "cas", "k2", (1, 2), time=11),
    Op(0, "ok", "write", "k1", 3, time=20),
    Op(1, "info", "cas", "k2", None, time=30, error="timeout"),
    Op(NEMESIS, "info", "partition", None, ("n1", "n2"), time=31),
    Op(2, "invoke", "read", 7, None, time=40),
    Op(2, "ok", "read", 7, ("a", ("nested", 1.5, True, None)), time=50),
])


def test_jsonl_round_trip() -> None:
    buf = io.StringIO()
    assert write_jsonl(SAMPLE, buf) == len(SAMPLE)
    text = buf.getvalue()
    assert text.count("\n") == len(SAMPLE)
    loaded = read_jsonl(io.StringIO(text))
    assert loaded.truncated is None
    assert loaded.ops == SAMPLE


def test_one_json_object_per_line() -> None:
    line = dumps(SAMPLE[1])
    assert "\n" not in line
    assert json.loads(line) == {"process": 1, "type": "invoke", "f": "cas", "key": "k2", "value": [1, 2],
                                "time": 11, "index": 1}
    assert loads(line) == SAMPLE[1]


def test_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    save(path, SAMPLE)
    assert load(path).ops == SAMPLE


def test_truncated_last_line_is_reported_not_raised() -> None:
    text = "".join(dumps(op) + "\n" for op in SAMPLE[:3]) + dumps(SAMPLE[3])[:25]
    loaded = read_jsonl(io.StringIO(text))
    assert loaded.ops == SAMPLE[:3]
    assert loaded.truncated_line == 4
    assert loaded.truncated is not None and "line 4" in loaded.truncated


def test_truncated_last_line_followed_by_blank_lines() -> None:
    text = dumps(SAMPLE[0]) + "\n" + '{"process": 1, "ty' + "\n\n  \n"
    loaded = read_jsonl(io.StringIO(text))
    assert loaded.ops == SAMPLE[:1]
    assert loaded.truncated_line == 2


def test_bad_line_in_the_middle_is_corruption() -> None:
    text = dumps(SAMPLE[0]) + "\n{garbage\n" + dumps(SAMPLE[2]) + "\n"
    with pytest.raises(HistoryError, match="line 2"):
        read_jsonl(io.StringIO(text))


@pytest.mark.parametrize("line", [
    '{"process": 1, "type": "bogus", "f": "read"}',
    '{"type": "ok", "f": "read"}',
    '[1, 2]',
    '{"process": 1, "type": "ok", "f": "read", "value": {"a": 1}}',
    '{"process": true, "type": "ok", "f": "read"}',
])
def test_invalid_events_rejected(line: str) -> None:
    with pytest.raises(HistoryError):
        loads(line)


def test_missing_index_gets_position() -> None:
    text = '{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0, "type": "ok", "f": "read", "value": 1}\n'
    ops = read_jsonl(io.StringIO(text)).ops
    assert [op.index for op in ops] == [0, 1]
    assert ops[1].value == 1 and ops[1].key is None


def test_pairs_match_invocations_with_completions() -> None:
    prs = pairs(SAMPLE)
    assert [(p.invoke_index, p.complete_index, p.type) for p in prs] == [(0, 2, "ok"), (1, 3, "info"), (5, 6, "ok")]
    assert prs[1].completion is not None and prs[1].completion.error == "timeout"


def test_unfinished_invocation_is_info() -> None:
    prs = pairs(history((0, "invoke", "write", 1), (1, "invoke", "read", None), (1, "ok", "read", None)))
    assert (prs[0].process, prs[0].completion, prs[0].type) == (0, None, "info")
    assert prs[1].type == "ok"


def test_crashed_process_is_never_reused() -> None:
    h = history((0, "invoke", "write", 1), (0, "info", "write", None), (0, "invoke", "read", None))
    with pytest.raises(HistoryError, match="new process id"):
        pairs(h)
    # the Jepsen way: continue under a new process id
    h2 = history((0, "invoke", "write", 1), (0, "info", "write", None), (5, "invoke", "read", None),
                 (5, "ok", "read", 1))
    assert [p.type for p in pairs(h2)] == ["info", "ok"]


@pytest.mark.parametrize(("events", "message"), [
    ([(0, "invoke", "read", None), (0, "invoke", "read", None)], "outstanding"),
    ([(0, "ok", "read", None)], "no outstanding invocation"),
    ([(0, "invoke", "read", None), (0, "ok", "write", 1)], "does not match"),
])
def test_malformed_histories(events: list[tuple[int, str, str, None]], message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        pairs(history(*events))  # type: ignore[arg-type]


def test_nemesis_events_are_not_client_operations() -> None:
    h = history((NEMESIS, "info", "start", None), (0, "invoke", "read", None), (NEMESIS, "info", "start", None),
                (0, "ok", "read", 1))
    assert [(p.process, p.invoke_index) for p in pairs(h)] == [(0, 1)]


def test_complete_builds_the_matching_completion() -> None:
    inv = Op(3, "invoke", "cas", "k", (1, 2), time=5)
    done = inv.complete("fail", time=9, error="cas mismatch")
    assert (done.process, done.type, done.f, done.key, done.time, done.error) == (3, "fail", "cas", "k", 9,
                                                                                   "cas mismatch")
    with pytest.raises(HistoryError):
        done.complete("ok")
    with pytest.raises(HistoryError):
        inv.complete("invoke")
