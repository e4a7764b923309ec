"""`?dc=` requests cross the WAN: a BJ server or client agent forwards reads and writes to a server
of SH (Consul's forwardDC), and an unknown datacenter gets Consul's "No path to datacenter"."""

from __future__ import annotations

import base64
import json

import pytest

from tests.harness import Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import http

pytestmark = pytest.mark.integration


def test_dc_parameter_forwards_over_the_wan(cluster: Cluster) -> None:
    ip = new_block()
    bj = cluster.agent("bj1", f"{ip}.1", "-server", "-bootstrap", "-datacenter=BJ")
    sh = cluster.agent("sh1", f"{ip}.2", "-server", "-bootstrap", "-datacenter=SH")
    client = cluster.agent("bjc", f"{ip}.3", "-datacenter=BJ", f"-join={ip}.1")
    bj.cli("join", "-wan", f"{ip}.2")
    for p in (bj, sh):
        wait_for(lambda p=p: json.loads(http(p, "/v1/status/leader")[2]), 20, f"{p.name} leader")
    wait_for(lambda: json.loads(http(client, "/v1/catalog/datacenters")[2]) == ["bj", "sh"], 20, "both DCs known")

    # a write from a BJ server and one from a BJ client, both aimed at SH
    assert http(bj, "/v1/kv/where?dc=sh", "PUT", b"shanghai")[2].strip() == b"true"
    assert http(client, "/v1/kv/from-client?dc=SH", "PUT", b"via-client")[2].strip() == b"true"
    code, _, body = http(sh, "/v1/kv/where")  # it is in SH's store ...
    assert code == 200 and base64.b64decode(json.loads(body)[0]["Value"]) == b"shanghai"
    assert http(bj, "/v1/kv/where")[0] == 404  # ... and not in BJ's
    assert http(sh, "/v1/kv/from-client")[0] == 200

    # reads with ?dc= from BJ, in every consistency mode, and catalog/status views
    for mode in ("", "&consistent", "&stale"):
        code, headers, body = http(client, f"/v1/kv/where?dc=sh{mode}")
        assert code == 200 and base64.b64decode(json.loads(body)[0]["Value"]) == b"shanghai"
        assert headers["X-Consul-KnownLeader"] == "true"
    nodes = {n["Node"] for n in json.loads(http(bj, "/v1/catalog/nodes?dc=sh")[2])}
    wait_for(lambda: {n["Node"] for n in json.loads(http(bj, "/v1/catalog/nodes?dc=sh")[2])} == {"sh1"}, 20,
             "SH's catalog through BJ")
    assert "bjc" not in nodes
    assert json.loads(http(client, "/v1/status/leader?dc=sh")[2]) == f"{ip}.2:8300"
    peers = client.cli("operator", "raft", "list-peers", "-datacenter=sh").stdout
    assert "sh1" in peers and "bj1" not in peers
    assert client.cli("kv", "get", "-datacenter=sh", "where").stdout.strip() == "shanghai"

    # an unknown datacenter: 400 "No path to datacenter" (Consul 1.7: a 500), quickly, from servers and
    # clients alike
    for p in (bj, client):
        code, _, body = http(p, "/v1/kv/where?dc=nowhere", timeout=10)
        assert (code, body.strip()) == (400, b"No path to datacenter")
