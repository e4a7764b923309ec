"""Experiment files (chaos/experiment.py): every shipped experiment parses; bad ones name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyconsul.chaos.experiment import Experiment, ExperimentError, Step, available, load, parse

REQUIRED = {"leader-kill", "leader-isolation", "majorities-ring", "dc-split", "latency-200ms", "pause-leader",
            "rolling-kill", "stale-reads", "lock-leader-isolation"}


def test_shipped_experiments_parse_and_cover_the_issue() -> None:
    assert set(available()) >= REQUIRED
    for name in available():
        exp = load(name)
        assert exp.name == name and exp.nemesis, name
        assert all(0 <= s.at <= exp.duration for s in exp.nemesis)
    stale = load("stale-reads")
    assert stale.test_switches == ("TEST_STALE_READS",) and stale.agent_config == {}


def test_fault_windows_end_at_their_healing_step_or_the_end() -> None:
    exp = Experiment("x", duration=30, nemesis=(Step(5, "kill", "leader:bj"), Step(9, "start"),
                                                Step(12, "start-partition", "halves")))
    assert exp.windows() == [(5, 9, "kill leader:bj"), (12, 30, "partition halves")]


@pytest.mark.parametrize(("data", "message"), [
    ([], "expected a mapping"),
    ({"name": ""}, "name must be a non-empty string"),
    ({"name": "x", "bogus": 1}, "unknown field 'bogus'"),
    ({"name": "x", "workload": "queue"}, "workload must be one of"),
    ({"name": "x", "duration": 0}, "duration must be a number"),
    ({"name": "x", "nemesis": [{"at": 1, "f": "explode"}]}, "nemesis[0]: f must be one of"),
    ({"name": "x", "nemesis": [{"at": 5, "f": "kill"}, {"at": 1, "f": "start"}]}, "time order"),
    ({"name": "x", "duration": 10, "nemesis": [{"at": 11, "f": "kill"}]}, "at must be a number in [0, 10]"),
    ({"name": "x", "checks": ["set"]}, "checks for workload register"),
    ({"name": "x", "test_switches": ["debug_stale_reads"]}, "test_switches must be a list of TEST_STALE_READS"),
])
def test_bad_experiments_name_the_field(data: object, message: str) -> None:
    with pytest.raises(ExperimentError) as err:
        parse(data, "f.yaml")
    assert message in str(err.value) and str(err.value).startswith("f.yaml")


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ExperimentError, match="not valid YAML"):
        load(bad)


def test_the_lock_workload_defaults_to_the_lock_checker() -> None:
    exp = parse({"name": "x", "workload": "lock", "keys": 1})
    assert (exp.workload, exp.checks, exp.keys) == ("lock", ("lock", "stats"), 1)
    with pytest.raises(ExperimentError, match="checks for workload lock"):
        parse({"name": "x", "workload": "lock", "checks": ["linearizable"]})
