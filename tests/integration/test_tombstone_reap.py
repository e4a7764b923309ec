"""KV tombstones are reaped by the leader (issue 11 item 5): with tombstone_ttl 2s and granularity 1s, 2,000
deletes leave tombstones that every server drops within a deadline; a blocking query on the deleted prefix
still returns on the delete, and a recursive read of an unrelated prefix is unaffected."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import http, leader_of

pytestmark = pytest.mark.integration

GC_CONFIG = {"performance": {"raft_multiplier": 1}, "tombstone_ttl": "2s", "tombstone_ttl_granularity": "1s"}


def tombstones(p: AgentProc) -> int:
    return int(p.api("/v1/agent/self")["Stats"]["consul"]["kv_tombstones"])


def txn(p: AgentProc, ops: list[dict[str, Any]]) -> None:
    code, _, body = http(p, "/v1/txn", "PUT", json.dumps(ops).encode())
    assert code == 200, body


def test_tombstones_are_reaped_on_every_server(cluster: Cluster) -> None:
    ip = new_block()
    conf = cluster.tmp / "gc.json"
    conf.write_text(json.dumps(GC_CONFIG))
    ps = [cluster.agent(f"node{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", f"-config-file={conf}")
          for i in (1, 2, 3)]
    for p in ps[1:]:
        p.cli("join", f"{ip}.1")
    wait_for(lambda: leader_of(ps), 30, "one leader")
    p = ps[0]
    value = base64.b64encode(b"v").decode()
    for batch in range(0, 2000, 64):
        txn(p, [{"KV": {"Verb": "set", "Key": f"gone/{i:05d}", "Value": value}}
                for i in range(batch, min(batch + 64, 2000))])
    for i in range(3):
        assert http(p, f"/v1/kv/keep/{i}", "PUT", b"kept")[0] == 200
    code, headers, kept = http(p, "/v1/kv/keep?recurse")
    assert code == 200
    keep_index = headers["X-Consul-Index"]

    # a blocking query on the prefix that is about to be deleted
    _, headers, _ = http(p, "/v1/kv/gone?recurse")
    gone_index = int(headers["X-Consul-Index"])
    woke: list[tuple[int, int]] = []

    def block() -> None:
        code, h, _ = http(ps[1], f"/v1/kv/gone?recurse&index={gone_index}&wait=30s", timeout=40)
        woke.append((code, int(h["X-Consul-Index"])))

    waiter = threading.Thread(target=block)
    waiter.start()

    assert not woke, "nothing changed under gone/ yet"
    txn(p, [{"KV": {"Verb": "delete", "Key": f"gone/{i:05d}"}} for i in range(0, 64)])
    wait_for(lambda: tombstones(p) > 0, 1.5, "a tombstone left by the delete (reaped no earlier than ttl 2s)",
             interval=0.02)
    for batch in range(64, 1990, 64):
        txn(p, [{"KV": {"Verb": "delete", "Key": f"gone/{i:05d}"}} for i in range(batch, min(batch + 64, 1990))])
    for i in range(1990, 1995):
        assert http(p, f"/v1/kv/gone/{i:05d}", "DELETE")[0] == 200
    assert http(p, "/v1/kv/gone/?recurse", "DELETE")[0] == 200  # the last 5 as a delete-tree
    waiter.join(timeout=40)
    assert woke and woke[0][0] in (200, 404) and woke[0][1] > gone_index, "the blocking query saw the delete"

    wait_for(lambda: all(tombstones(s) == 0 for s in ps), 30, "tombstones reaped on every server")
    for s in ps:
        code, headers, body = http(s, "/v1/kv/keep?recurse&stale")
        assert (code, body) == (200, kept) and headers["X-Consul-Index"] == keep_index
        assert http(s, "/v1/kv/gone?recurse&stale")[0] == 404
    info = p.cli("info").stdout
    assert "kv_tombstones = 0" in info, info
