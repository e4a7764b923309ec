"""py-consul's and python-consul2's own test suites against pyconsul agents (tests/interop/upstream_suites.py).

Fails on a REGRESSION: a test that fails (also when re-run once) and is not in
tests/interop/upstream/<suite>-known-failures.txt. Tests in the list that now pass are printed (and reported as
a warning) so the list shrinks: `.venv/bin/python -m tests.interop.upstream_suites --update` rewrites it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.interop.upstream_suites import SUITES, check_suite, read_known, report

pytestmark = [pytest.mark.interop, pytest.mark.slow]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_upstream_suite(name: str, tmp_path: Path) -> None:
    suite = SUITES[name]
    known = read_known(suite.known_failures_file)
    assert known, f"{suite.known_failures_file} is missing or empty"
    assert all(reason for reason in known.values()), "every known failure needs its reason"
    result, cmp = check_suite(suite, tmp_path)
    text = report(suite, result, cmp)
    print(text)
    counts = result.counts()
    assert counts["passed"] > 0, f"no {name} test passed: the fixture cannot start agents?\n{text}"
    if cmp.fixed:
        warnings.warn(f"{name}: {len(cmp.fixed)} known failures now pass, take them out of "
                      f"{suite.known_failures_file.name}: {', '.join(cmp.fixed)}", stacklevel=1)
    assert not cmp.regressions, text
