"""The comparison behind tests/interop/test_upstream_suites.py: junit xml -> outcomes -> regressions/fixed."""

from __future__ import annotations

from pathlib import Path

from tests.interop.upstream_suites import Result, compare, parse_junit, read_known

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.api.test_kv.TestKV" name="test_put[pyconsul]" file="tests/api/test_kv.py" line="3"/>
<testcase classname="tests.api.test_kv.TestKV" name="test_del[pyconsul]" file="tests/api/test_kv.py" line="9">
  <failure message="AssertionError: assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.test_std" name="test_x" file="tests/test_std.py" line="1">
  <error message="failed on teardown with &quot;JSONDecodeError&quot;">trace</error></testcase>
<testcase classname="tests.test_std" name="test_skip" file="tests/test_std.py" line="5">
  <skipped message="needs 1.11"/></testcase>
</testsuite></testsuites>
"""


def test_parse_junit_gives_node_ids_and_outcomes(tmp_path: Path) -> None:
    (tmp_path / "r.xml").write_text(JUNIT)
    r = parse_junit(tmp_path / "r.xml")
    assert r.outcomes == {
        "tests/api/test_kv.py::TestKV::test_put[pyconsul]": "passed",
        "tests/api/test_kv.py::TestKV::test_del[pyconsul]": "failed",
        "tests/test_std.py::test_x": "failed",
        "tests/test_std.py::test_skip": "skipped",
    }
    assert r.messages["tests/api/test_kv.py::TestKV::test_del[pyconsul]"] == "AssertionError: assert 1 == 2"
    assert r.counts() == {"passed": 1, "failed": 2, "skipped": 1}


def test_read_known_and_compare(tmp_path: Path) -> None:
    path = tmp_path / "known.txt"
    path.write_text("# header\n\na::b  # ACL: issue 14\nc::d  # Connect not implemented\ne::f  # gone\n")
    known = read_known(path)
    assert known == {"a::b": "ACL: issue 14", "c::d": "Connect not implemented", "e::f": "gone"}
    result = Result({"a::b": "failed", "c::d": "passed", "x::y": "failed", "z::z": "failed", "p::q": "passed"})
    rerun = Result({"x::y": "failed", "z::z": "passed"})
    cmp = compare(result, known, rerun)
    assert cmp.regressions == ["x::y"] and cmp.flaky == ["z::z"]
    assert cmp.fixed == ["c::d"] and cmp.missing == ["e::f"]
    assert compare(result, known).regressions == ["x::y", "z::z"]  # without a re-run both count
