"""Three real servers with -bootstrap-expect=3 on loopback: election, forwarding, failover,
durability across kill -9 of every server, consistency modes, and HTTP bad input."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration

FAST_CONFIG = {"performance": {"raft_multiplier": 1}}  # Consul's production advice; 5x faster elections


def fast(cluster: Cluster) -> str:
    path = cluster.tmp / "fast.json"
    path.write_text(json.dumps(FAST_CONFIG))
    return f"-config-file={path}"


def http(p: AgentProc, path: str, method: str = "GET", body: bytes | None = None,
         timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://{p.http}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def leader_of(ps: list[AgentProc]) -> str:
    leaders = {json.loads(http(p, "/v1/status/leader")[2]) for p in ps}
    return leaders.pop() if len(leaders) == 1 and "" not in leaders else ""


def start_bj(cluster: Cluster, ip: str, n: int = 3, *extra: str) -> list[AgentProc]:
    ps = [cluster.agent(f"node{i}", f"{ip}.{i}", "-server", f"-bootstrap-expect={n}", "-datacenter=BJ", fast(cluster),
                        *extra) for i in range(1, n + 1)]
    for p in ps[1:]:
        p.cli("join", f"{ip}.1")
    wait_for(lambda: leader_of(ps), 30, "one leader agreed by all servers")
    return ps


def test_guide_cluster_elects_one_leader_and_list_peers(cluster: Cluster) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    out = ps[0].cli("operator", "raft", "list-peers").stdout.splitlines()
    assert out[0].split() == ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
    states = sorted(line.split()[3] for line in out[1:])
    assert states == ["follower", "follower", "leader"]
    assert all(line.split()[4] == "true" for line in out[1:])
    conf = json.loads(http(ps[1], "/v1/operator/raft/configuration")[2])
    assert sorted(s["Node"] for s in conf["Servers"]) == ["node1", "node2", "node3"]
    peers = json.loads(http(ps[2], "/v1/status/peers")[2])
    assert sorted(peers) == sorted(f"{ip}.{i}:8300" for i in (1, 2, 3))


def test_writes_forwarded_reads_in_every_mode(cluster: Cluster) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    client = cluster.agent("client1", f"{ip}.9", f"-join={ip}.1", "-datacenter=BJ")
    for i, p in enumerate([*ps, client]):
        code, _, body = http(p, f"/v1/kv/app/k{i}", "PUT", f"v{i}".encode())
        assert (code, body.strip()) == (200, b"true"), body
    for p in [*ps, client]:
        for mode in ("", "?consistent", "?stale"):
            code, headers, body = http(p, f"/v1/kv/app/k3{mode}")
            assert code == 200, body
            (entry,) = json.loads(body)
            assert base64.b64decode(entry["Value"]) == b"v3"
            assert int(headers["X-Consul-Index"]) >= entry["ModifyIndex"]
            assert headers["X-Consul-KnownLeader"] == "true"
    code, headers, body = http(client, "/v1/kv/app?recurse")
    assert [e["Key"] for e in json.loads(body)] == [f"app/k{i}" for i in range(4)]
    assert http(client, "/v1/kv/app/missing")[0] == 404


def test_cas_locks_and_bad_input(cluster: Cluster) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    p = ps[1]
    assert http(p, "/v1/kv/c?cas=0", "PUT", b"a")[2].strip() == b"true"
    assert http(p, "/v1/kv/c?cas=0", "PUT", b"b")[2].strip() == b"false"
    idx = json.loads(http(p, "/v1/kv/c")[2])[0]["ModifyIndex"]
    assert http(p, f"/v1/kv/c?cas={idx}", "PUT", b"c")[2].strip() == b"true"
    assert http(p, "/v1/kv/c?cas=abc", "PUT", b"d")[0] == 400
    assert http(p, "/v1/kv/c?flags=-1", "PUT", b"d")[0] == 400
    assert http(p, "/v1/kv/big", "PUT", b"x" * (512 * 1024 + 1))[0] == 413
    assert http(p, "/v1/kv/ok", "PUT", b"x" * (512 * 1024))[0] == 200
    assert http(p, "/v1/kv/c?index=zz")[0] == 400
    assert http(p, "/v1/kv/c?stale&consistent")[0] == 400
    assert http(p, "/v1/txn", "PUT", b"{nope")[0] == 400
    assert http(p, "/v1/catalog/register", "PUT", b'{"Node": 5}')[0] == 400
    ok = [{"KV": {"Verb": "set", "Key": "t1", "Value": base64.b64encode(b"1").decode()}},
          {"KV": {"Verb": "get", "Key": "t1"}}]
    code, _, body = http(p, "/v1/txn", "PUT", json.dumps(ok).encode())
    assert code == 200 and json.loads(body)["Results"][1]["KV"]["Key"] == "t1"
    bad = [{"KV": {"Verb": "check-not-exists", "Key": "t1"}}]
    assert http(p, "/v1/txn", "PUT", json.dumps(bad).encode())[0] == 409
    assert "Traceback" not in p.log()


def test_blocking_query_wakes_on_change(cluster: Cluster) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    http(ps[0], "/v1/kv/w", "PUT", b"1")
    _, headers, _ = http(ps[0], "/v1/kv/w")
    idx = int(headers["X-Consul-Index"])
    import threading

    result: dict[str, Any] = {}

    def block() -> None:
        result["r"] = http(ps[2], f"/v1/kv/w?index={idx}&wait=20s", timeout=30)

    t = threading.Thread(target=block)
    t.start()
    wait_for(lambda: http(ps[1], "/v1/kv/w", "PUT", b"2")[0] == 200, 10, "second write")
    t.join(25)
    code, headers2, body = result["r"]
    assert code == 200 and int(headers2["X-Consul-Index"]) > idx
    assert base64.b64decode(json.loads(body)[0]["Value"]) == b"2"
    # a timed-out blocking query returns the unchanged index
    code, headers3, _ = http(ps[2], f"/v1/kv/w?index={headers2['X-Consul-Index']}&wait=300ms")
    assert code == 200 and headers3["X-Consul-Index"] == headers2["X-Consul-Index"]


def test_leader_kill_elects_new_leader_and_loses_no_acked_write(cluster: Cluster) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    acked = []
    for i in range(30):
        if http(ps[i % 3], f"/v1/kv/d/{i}", "PUT", str(i).encode())[2].strip() == b"true":
            acked.append(i)
    old = leader_of(ps)
    victim = next(p for p in ps if old.startswith(p.ip + ":"))
    victim.kill9()
    rest = [p for p in ps if p is not victim]
    new = wait_for(lambda: (lead := leader_of(rest)) != old and lead, 30, "a new leader among the survivors")
    assert new in {f"{p.ip}:8300" for p in rest}
    for i in range(30, 40):
        if http(rest[i % 2], f"/v1/kv/d/{i}", "PUT", str(i).encode())[2].strip() == b"true":
            acked.append(i)
    # kill -9 every server, restart them all: every acknowledged write is still there
    for p in rest:
        p.kill9()
    again = [cluster.agent(f"node{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", "-datacenter=BJ", fast(cluster))
             for i in (1, 2, 3)]
    wait_for(lambda: leader_of(again), 40, "leader after restarting every server")
    code, _, body = http(again[0], "/v1/kv/d?recurse&consistent")
    assert code == 200
    have = {int(e["Key"].split("/")[1]) for e in json.loads(body)}
    assert set(acked) <= have, f"lost acknowledged writes: {sorted(set(acked) - have)}"


def test_no_leader_answers_500_in_bounded_time(cluster: Cluster) -> None:
    ip = new_block()
    lonely = cluster.agent("sh1", f"{ip}.1", "-server", "-bootstrap-expect=3", "-datacenter=SH", fast(cluster))
    code, _, body = http(lonely, "/v1/kv/x", "PUT", b"1", timeout=30)
    assert code == 500 and b"No cluster leader" in body
    code, _, body = http(lonely, "/v1/kv/x", timeout=30)
    assert code == 500 and b"No cluster leader" in body
    code, _, body = http(lonely, "/v1/kv/x?stale", timeout=30)
    assert code == 404, "stale reads are served locally even without a leader"


def test_leave_removes_server_from_raft_and_remove_peer(cluster: Cluster) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    leader = leader_of(ps)
    leaving = next(p for p in ps if not leader.startswith(p.ip + ":"))
    leaving.cli("leave")
    rest = [p for p in ps if p is not leaving]

    def servers() -> set[str]:
        return {s["Address"] for s in json.loads(http(rest[0], "/v1/operator/raft/configuration")[2])["Servers"]}

    wait_for(lambda: servers() == {f"{p.ip}:8300" for p in rest}, 30, "the leaving server removed from Raft")
    # the two left still commit writes (quorum of 2)
    assert http(rest[0], "/v1/kv/after-leave", "PUT", b"1")[2].strip() == b"true"
    # remove-peer by address: refuse an unknown one, clearly
    cp = rest[0].cli("operator", "raft", "remove-peer", f"-address={ip}.99:8300", check=False)
    assert cp.returncode == 1 and "not found" in (cp.stdout + cp.stderr)


def test_dead_server_replaced_the_autopilot_way(cluster: Cluster) -> None:
    """Three servers, one killed: it stays a peer (removing 1 of 3 is not a minority). A replacement
    server (fresh data dir, same -bootstrap-expect) must not bootstrap a second cluster: the leader
    adds it, and then autopilot force-leaves the dead one and drops it from Raft."""
    ip = new_block()
    ps = start_bj(cluster, ip)
    assert http(ps[0], "/v1/kv/before", "PUT", b"kept")[2].strip() == b"true"
    leader = leader_of(ps)
    victim = next(p for p in ps if not leader.startswith(p.ip + ":"))
    victim.kill9()
    rest = [p for p in ps if p is not victim]

    def config() -> set[str]:
        return {s["Node"] for s in json.loads(http(rest[0], "/v1/operator/raft/configuration")[2])["Servers"]}

    wait_for(lambda: rest[0].members()[victim.name]["Status"] == 4, 30, "the killed server seen failed")
    assert config() == {"node1", "node2", "node3"}  # 1 removal of 3 peers is not a minority: kept
    new = cluster.agent("node4", f"{ip}.4", "-server", "-bootstrap-expect=3", "-datacenter=BJ", fast(cluster),
                        f"-join={rest[0].ip}")
    want = {"node1", "node2", "node3", "node4"} - {victim.name}
    wait_for(lambda: config() == want, 40, f"Raft configuration {sorted(want)}")
    wait_for(lambda: rest[0].members()[victim.name]["Status"] == 3, 20, "the dead server force-left")
    assert "Existing Raft peers reported" in new.log()
    assert "attempting bootstrap" not in new.log()
    wait_for(lambda: http(new, "/v1/kv/before?stale")[0] == 200, 20, "the replacement replicated the log")
    assert http(new, "/v1/kv/after", "PUT", b"1")[2].strip() == b"true"
    assert leader_of([*rest, new])
