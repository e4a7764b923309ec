"""The KV client's outcome rules against a real agent, and the report of a real history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyconsul.chaos import history
from pyconsul.chaos.client import KVClient, Outcome
from pyconsul.chaos.experiment import Experiment, Step
from pyconsul.chaos.generator import Invocation
from pyconsul.chaos.history import FAIL, INFO, INVOKE, OK, Op
from pyconsul.chaos.report import write_report
from tests.harness import Cluster, new_block, wait_for

pytestmark = pytest.mark.integration


def test_client_outcomes_against_a_real_agent(cluster: Cluster) -> None:
    ip = new_block()
    p = cluster.agent("solo", f"{ip}.1", "-dev", f"-bind={ip}.1", f"-client={ip}.1", data_dir=False)
    wait_for(lambda: p.api("/v1/status/leader"), 20, "a leader")
    c = KVClient(prefix="t/")
    addr = f"{ip}.1:8500"
    assert c.invoke(addr, Invocation("read", "k", None)).type == OK  # absent: the initial None
    assert c.invoke(addr, Invocation("read", "k", None)).value is None
    assert c.invoke(addr, Invocation("write", "k", 3)).type == OK
    assert c.invoke(addr, Invocation("read", "k", None)).value == 3
    assert c.invoke(addr, Invocation("cas", "k", (3, 4))).type == OK
    bad = c.invoke(addr, Invocation("cas", "k", (3, 1)))
    assert bad.type == FAIL and "not 3" in (bad.error or "")
    assert c.invoke(addr, Invocation("read", "k", None)).value == 4
    for e in (5, 2, 9):
        assert c.invoke(addr, Invocation("add", "set", e)).type == OK
    assert c.invoke(addr, Invocation("read", "set", None)).value == (2, 5, 9)
    # nobody listens: refused before anything was sent -> fail, for writes too
    assert c.invoke(f"{ip}.2:8500", Invocation("write", "k", 1)).type == FAIL


def test_lock_outcomes_against_a_real_agent(cluster: Cluster) -> None:
    ip = new_block()
    p = cluster.agent("solo", f"{ip}.1", "-dev", f"-bind={ip}.1", f"-client={ip}.1", data_dir=False)
    wait_for(lambda: p.api("/v1/status/leader"), 20, "a leader")
    wait_for(lambda: p.api("/v1/catalog/node/solo"), 20, "the agent's own catalog registration")
    c = KVClient(prefix="t/")
    addr = f"{ip}.1:8500"
    s0, s1 = c.session(addr, "p0"), c.session(addr, "p1")
    info = p.api(f"/v1/session/info/{s0}")[0]
    assert info["Checks"] == [] and info["LockDelay"] == 0 and info["Behavior"] == "release"
    assert c.invoke_lock(addr, "read", "lock", None, s0) == Outcome(OK, None)
    assert c.invoke_lock(addr, "acquire", "lock", 0, s0).type == OK
    taken = c.invoke_lock(addr, "acquire", "lock", 1, s1)
    assert taken.type == FAIL and taken.error == "acquire refused"
    assert c.invoke_lock(addr, "read", "lock", None, s1) == Outcome(OK, 0)
    assert c.invoke_lock(addr, "release", "lock", 1, s1).type == FAIL, "only the holder releases"
    assert c.invoke_lock(addr, "release", "lock", 0, s0).type == OK
    assert c.invoke_lock(addr, "read", "lock", None, s0) == Outcome(OK, None)
    assert c.invoke_lock(addr, "acquire", "lock", 1, s1).type == OK
    assert c.invoke_lock(addr, "destroy", "lock", 1, s1).type == OK  # destroying the session frees the lock
    assert c.invoke_lock(addr, "read", "lock", None, s0) == Outcome(OK, None)
    assert c.invoke_lock(addr, "acquire", "lock", 0, s0).type == OK, "lock-delay 0 s: free at once"
    with pytest.raises(OSError):
        c.session(f"{ip}.2:8500", "nobody")


def test_report_shows_windows_outcomes_and_offending_ops(tmp_path: Path) -> None:
    ops = history.indexed([
        Op(0, INVOKE, "write", "r0", 1, time=1_000_000_000), Op(0, OK, "write", "r0", None, time=1_010_000_000),
        Op(1, INVOKE, "read", "r0", None, time=2_000_000_000), Op(1, OK, "read", "r0", 0, time=2_005_000_000),
        Op(2, INVOKE, "write", "r0", 2, time=3_000_000_000), Op(2, INFO, "write", "r0", None, time=3_500_000_000),
    ])
    from pyconsul.chaos.checker import compose, linearizable, stats

    composed = compose({"linearizable": linearizable.check, "stats": stats.check})(ops)
    assert composed.valid is False  # the read of 0 after the write of 1 completed is stale
    verdict = {"valid": composed.valid, "healed": True, "checks": composed.to_dict(), "counts": {"ok": 2},
               "nemesis": [{"at": 1.5, "f": "kill", "value": "leader:bj"}]}
    exp = Experiment("unit", duration=4, nemesis=(Step(1.5, "kill", "leader:bj"), Step(3, "start")))
    index = write_report(tmp_path, exp, ops, verdict)
    page = index.read_text()
    assert "Not linearizable: key r0" in page and "read 0" in page
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.dumps(verdict["checks"])  # JSON-able
