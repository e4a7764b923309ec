"""Shared fixtures: real-process clusters on loopback (see tests/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Cluster, cluster_fixture


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/lab/testinfra and testinfra_secure check a deployed cluster: they run from molecule's verify step
    (and by hand with --hosts=ansible://... --ansible-inventory=...), never as part of a plain `pytest tests`."""
    if collection_path.name in ("testinfra", "testinfra_secure") and collection_path.parent.name == "lab" \
            and not config.getoption("hosts", None):
        return True
    return None


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    gen = cluster_fixture(tmp_path)
    c = next(gen)
    yield c
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(c.logs())
    try:
        next(gen)
    except StopIteration:
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
