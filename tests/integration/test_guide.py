"""The Consul 1.7 multi-DC guide with `consul` replaced by `pyconsul`, on 127.77.N.x.

Three BJ servers and one SH server start with the guide's own flags, then `join`,
`members`, `join -wan` and `members -wan` behave as the guide shows.
"""

from __future__ import annotations

import re
import signal
import sys

import pytest

from tests.harness import ROOT, STATUS, AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration


def _statuses(members: dict[str, dict[str, object]]) -> dict[str, str]:
    return {n: STATUS.get(int(m["Status"]), "?") for n, m in members.items()}  # type: ignore[call-overload]


def test_guide_walkthrough(cluster: Cluster) -> None:
    ip = new_block()
    bj = [
        cluster.agent(f"node{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", f"-client={ip}.{i}",
                      "-datacenter=BJ", "-ui")
        for i in (1, 2, 3)
    ]
    sh = cluster.agent("node4", f"{ip}.4", "-server", "-bootstrap-expect", "3", "-datacenter", "SH", "-ui")

    # node2 and node3: `pyconsul join <node1>`
    for n in bj[1:]:
        out = n.cli("join", f"{ip}.1").stdout
        assert "Successfully joined cluster by contacting 1 nodes." in out
    wait_for(lambda: all(_statuses(n.members()) == {f"node{i}": "alive" for i in (1, 2, 3)} for n in bj), 30,
             "BJ LAN pool to converge")

    out = bj[0].cli("members").stdout.splitlines()
    assert re.split(r"\s{2,}", out[0].strip()) == ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC",
                                                    "Segment"]
    rows = [re.split(r"\s+", line.strip()) for line in out[1:]]
    assert [r[0] for r in rows] == ["node1", "node2", "node3"]
    for r in rows:
        assert r[2:4] == ["alive", "server"]
        assert r[5:8] == ["2", "bj", "<all>"]
    assert rows[1][1] == f"{ip}.2:8301"

    # SH: `pyconsul join -wan <node1>`
    out2 = sh.cli("join", "-wan", f"{ip}.1").stdout
    assert "Successfully joined cluster by contacting 1 nodes." in out2
    expected = {f"node{i}.bj": "alive" for i in (1, 2, 3)} | {"node4.sh": "alive"}
    wait_for(lambda: all(_statuses(n.members(wan=True)) == expected for n in [*bj, sh]), 40,
             "WAN pool to converge from every server")
    wan_out = sh.cli("members", "-wan").stdout
    for name in expected:
        assert name in wan_out
    assert re.search(r"node4\.sh\s+\S+:8302\s+alive\s+server\s+\S+\s+2\s+sh\s+<all>", wan_out), wan_out
    assert sh.api("/v1/catalog/datacenters") == ["bj", "sh"]
    # the LAN pools stay separate per datacenter
    assert set(sh.members()) == {"node4"}


def test_restart_rejoins_from_data_dir(cluster: Cluster) -> None:
    ip = new_block()
    a = cluster.agent("a", f"{ip}.1")
    b = cluster.agent("b", f"{ip}.2", f"-join={ip}.1")
    wait_for(lambda: _statuses(a.members()).get("b") == "alive", 20, "b to join a")
    node_id = b.api("/v1/agent/self")["Config"]["NodeID"]
    wait_for(lambda: (cluster.tmp / "b" / "serf" / "local.snapshot.json").exists(), 10, "b's member snapshot")
    b.kill9()
    wait_for(lambda: _statuses(a.members()).get("b") == "failed", 30, "a to see b failed")
    b2 = cluster.agent("b", f"{ip}.2")  # no -join: it must rejoin from its snapshot
    wait_for(lambda: _statuses(a.members()).get("b") == "alive", 30, "b to rejoin by itself")
    assert b2.api("/v1/agent/self")["Config"]["NodeID"] == node_id, "node ID persists in the data dir"


def test_sigterm_on_client_leaves_sigint_on_server_does_not(cluster: Cluster) -> None:
    ip = new_block()
    s = cluster.agent("srv", f"{ip}.1", "-server", "-bootstrap-expect=1")
    c = cluster.agent("cli", f"{ip}.2", f"-join={ip}.1")
    s2 = cluster.agent("srv2", f"{ip}.3", "-server", "-bootstrap-expect=1", f"-join={ip}.1")
    wait_for(lambda: _statuses(s.members()) == {"srv": "alive", "cli": "alive", "srv2": "alive"}, 20, "3 members")
    c.signal(signal.SIGTERM)  # clients: leave_on_terminate defaults to true
    wait_for(lambda: _statuses(s.members()).get("cli") == "left", 20, "client SIGTERM to leave gracefully")
    s2.signal(signal.SIGINT)  # servers: skip_leave_on_interrupt defaults to true
    wait_for(lambda: _statuses(s.members()).get("srv2") == "failed", 30, "server SIGINT to just stop")


def test_join_failure_is_fatal_and_clear(cluster: Cluster) -> None:
    ip = new_block()
    argv = [sys.executable, "-m", "pyconsul.agent", "agent", "-node=lonely", f"-bind={ip}.1", f"-client={ip}.1",
            "-data-dir", str(cluster.tmp / "lonely"), f"-join={ip}.9"]
    p = AgentProc("lonely", argv, cluster.tmp / "lonely.log", ip=f"{ip}.1").start({"PYTHONPATH": str(ROOT)})
    cluster.procs.append(p)
    assert p.popen is not None
    assert p.popen.wait(30) == 1
    assert f"Failed to join {ip}.9" in p.log()
    assert "Traceback" not in p.log()
