"""A new leader registers itself and every alive server in the catalog before it takes writes (issue 11
item 7, Consul's establishLeadership + reconcile): the first session/create right after the first
successful KV PUT succeeds on every server (was 500 "Missing node registration" for 0.4-0.6 s)."""

from __future__ import annotations

import json
import time

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import fast, http

pytestmark = pytest.mark.integration


def first_put(p: AgentProc) -> None:
    wait_for(lambda: http(p, "/v1/kv/first", "PUT", b"1", timeout=10)[0] == 200, 30, "the first write",
             interval=0.01)


@pytest.mark.parametrize("attempt", range(3))
def test_session_create_as_soon_as_a_leader_is_known(cluster: Cluster, attempt: int) -> None:
    ip = new_block()
    p = cluster.agent("solo", f"{ip}.1", "-server", "-bootstrap", fast(cluster), wait=False)
    wait_for(lambda: json.loads(http(p, "/v1/status/leader", timeout=2)[2]), 30, "a leader", interval=0.005)
    code, _, body = http(p, "/v1/session/create", "PUT", b"{}")
    assert code == 200 and "ID" in json.loads(body), body


def test_every_server_is_in_the_catalog_before_the_first_write(cluster: Cluster) -> None:
    ip = new_block()
    ps = [cluster.agent(f"node{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", fast(cluster))
          for i in (1, 2, 3)]
    for p in ps[1:]:
        p.cli("join", f"{ip}.1")
    first_put(ps[2])
    for p in ps:
        code, _, body = http(p, "/v1/session/create", "PUT", b"{}")
        assert code == 200, (p.name, body)
    nodes = {n["Node"] for n in json.loads(http(ps[0], "/v1/catalog/nodes?stale")[2])}
    assert {"node1", "node2", "node3"} <= nodes


def test_a_ttl_session_is_destroyed_at_its_deadline(cluster: Cluster) -> None:
    ip = new_block()
    p = cluster.agent("solo", f"{ip}.1", "-server", "-bootstrap", fast(cluster))
    first_put(p)
    code, _, body = http(p, "/v1/session/create", "PUT", json.dumps({"TTL": "10s", "Behavior": "delete"}).encode())
    assert code == 200, body
    sid = json.loads(body)["ID"]
    created = time.monotonic()
    assert http(p, f"/v1/kv/locked?acquire={sid}", "PUT", b"x")[2].strip() == b"true"
    wait_for(lambda: json.loads(http(p, f"/v1/session/info/{sid}")[2]) in (None, []), 40, "the session expired",
             interval=0.2)
    assert time.monotonic() - created >= 19.0, "not before 2 x TTL (Consul's rule)"
    assert http(p, "/v1/kv/locked")[0] == 404, "behavior=delete removed the held key"
