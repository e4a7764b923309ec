"""Supervision (issue 11 item 1): each named background task of a real agent is made to fail at start
(PYCONSUL_TEST_FAIL_TASK, supervise.py's test hook); the agent logs the traceback and either exits 1 with
the reason (critical tasks) or restarts the task and keeps serving (the others)."""

from __future__ import annotations

import signal
import sys

import pytest

from tests.harness import ROOT, AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import fast, http

pytestmark = pytest.mark.integration


def start(cluster: Cluster, ip: str, task: str, *flags: str) -> AgentProc:
    name = f"n-{task}"
    argv = [sys.executable, "-m", "pyconsul.agent", "agent", f"-node={name}", f"-bind={ip}", f"-client={ip}",
            f"-data-dir={cluster.tmp / name}", *flags]
    p = AgentProc(name, argv, cluster.tmp / f"{name}.log", ip=ip)
    p.start({"PYTHONPATH": str(ROOT), "PYCONSUL_TEST_FAIL_TASK": task})
    cluster.procs.append(p)
    return p


def test_a_critical_task_that_fails_stops_the_agent_with_exit_1(cluster: Cluster) -> None:
    p = start(cluster, f"{new_block()}.1", "bootstrap", "-server", "-bootstrap")
    assert p.popen is not None
    assert p.popen.wait(30) == 1
    log = p.log()
    assert "Traceback (most recent call last)" in log and "injected failure of task 'bootstrap'" in log
    assert "==> bootstrap failed: InjectedFailure" in log


def test_a_failed_leave_still_stops_the_agent_with_exit_1(cluster: Cluster) -> None:
    ip = f"{new_block()}.1"
    p = start(cluster, ip, "leave")  # a client: SIGTERM means a graceful leave
    wait_for(lambda: p.api("/v1/agent/self") if p.running() else None, 20, "agent HTTP")
    p.signal(signal.SIGTERM)
    assert p.popen is not None and p.popen.wait(30) == 1
    assert "injected failure of task 'leave'" in p.log()


@pytest.mark.parametrize("task", ["leader-duties", "tombstone-reaper", "session-expiry", "no-leader-logger",
                                  "member-snapshots", "retry-join", "rejoin"])
def test_a_restartable_task_that_fails_is_restarted_and_the_agent_serves(cluster: Cluster, task: str) -> None:
    ip = f"{new_block()}.1"
    p = start(cluster, ip, task, "-server", "-bootstrap", f"-retry-join={ip}", fast(cluster))
    wait_for(lambda: http(p, "/v1/kv/k", "PUT", b"v")[0] == 200 if p.running() else pytest.fail(p.log()), 30,
             "a leader that takes writes")
    code, _, body = http(p, "/v1/session/create", "PUT", b"{}")
    assert code == 200, body  # the leader's duties ran: its node is in the catalog
    log = p.log()
    assert "Traceback (most recent call last)" in log and f"injected failure of task '{task}'" in log
    if task != "rejoin":  # a one-shot task is reported, not restarted
        wait_for(lambda: f"restarting background task '{task}'" in p.log(), 10, "the restart")
    assert p.running()


def test_join_wan_on_a_client_is_a_typed_error_not_a_traceback(cluster: Cluster) -> None:
    ip = f"{new_block()}.1"
    p = cluster.agent("client", ip)
    code, _, body = http(p, f"/v1/agent/join/{ip}?wan=1", "PUT")
    assert (code, body.strip()) == (400, b"Must be a server to join WAN cluster")  # Consul 1.7: a 500
    cp = p.cli("join", "-wan", ip, check=False)
    assert cp.returncode == 1 and "Must be a server to join WAN cluster" in cp.stderr + cp.stdout
    assert "Traceback" not in p.log()
