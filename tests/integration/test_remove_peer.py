"""Removing Raft peers must never leave a cluster that cannot elect a leader (issue 11 item 7): the only
voter cannot be removed (Consul/hashicorp-raft: "Need at least one voter in configuration"), nor a live
voter while another is down (the remaining voters would have no reachable quorum). The agent keeps
serving, and X-Consul-LastContact stays a finite integer."""

from __future__ import annotations

import json

import pytest

from tests.harness import Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import http, leader_of

pytestmark = pytest.mark.integration


def test_the_only_voter_cannot_be_removed(cluster: Cluster) -> None:
    ip = new_block()
    p = cluster.agent("solo", f"{ip}.1", "-server", "-bootstrap")
    wait_for(lambda: http(p, "/v1/kv/x", "PUT", b"1")[0] == 200, 30, "a leader that takes writes")
    conf = json.loads(http(p, "/v1/operator/raft/configuration")[2])
    (me,) = conf["Servers"]
    code, _, body = http(p, f"/v1/operator/raft/peer?id={me['ID']}", "DELETE")
    assert code == 500 and b"Need at least one voter in configuration" in body, (code, body)
    cp = p.cli("operator", "raft", "remove-peer", f"-address={me['Address']}", check=False)
    assert cp.returncode == 1 and "Need at least one voter in configuration" in cp.stderr + cp.stdout
    assert http(p, "/v1/kv/x", "PUT", b"2")[0] == 200, "still the leader, still taking writes"
    code, headers, _ = http(p, "/v1/kv/x?stale")
    assert code == 200 and headers["X-Consul-LastContact"] == "0"
    assert len(json.loads(http(p, "/v1/operator/raft/configuration")[2])["Servers"]) == 1


def test_a_removal_that_would_lose_quorum_is_refused(cluster: Cluster) -> None:
    ip = new_block()
    conf = cluster.tmp / "c.json"
    conf.write_text(json.dumps({"performance": {"raft_multiplier": 1}, "autopilot": {"cleanup_dead_servers": False}}))
    ps = [cluster.agent(f"node{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", f"-config-file={conf}")
          for i in (1, 2, 3)]
    for p in ps[1:]:
        p.cli("join", f"{ip}.1")
    wait_for(lambda: leader_of(ps), 30, "one leader")
    leader_addr = leader_of(ps)
    leader = next(p for p in ps if leader_addr.startswith(p.ip + ":"))
    others = [p for p in ps if p is not leader]
    down, alive = others
    down.kill9()
    wait_for(lambda: leader.members()[down.name]["Status"] == 4, 30, "the killed server seen failed")
    code, _, body = http(leader, f"/v1/operator/raft/peer?address={alive.ip}:8300", "DELETE")
    assert code == 500 and b"less than a quorum" in body, (code, body)
    assert http(leader, "/v1/kv/y", "PUT", b"1")[0] == 200, "the cluster still commits"
    code, _, body = http(alive, f"/v1/operator/raft/peer?address={down.ip}:8300", "DELETE")  # via a follower
    assert code == 200, body
    wait_for(lambda: len(json.loads(http(leader, "/v1/operator/raft/configuration")[2])["Servers"]) == 2, 15,
             "the dead server removed")
    # a stale read on the follower (it applies the write once it hears the new commit index)
    code, headers, _ = wait_for(lambda: (r := http(alive, "/v1/kv/y?stale"))[0] == 200 and r, 10, "y on the follower")
    assert 0 <= int(headers["X-Consul-LastContact"]) < 10_000
