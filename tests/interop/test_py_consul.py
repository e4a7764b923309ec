"""The real py-consul client (PyPI `py-consul`, import name `consul`) against pyconsul servers,
unchanged: kv, txn, catalog, status, agent members."""

from __future__ import annotations

import base64
import json

import consul
import pytest

from tests.harness import Cluster, new_block, wait_for

pytestmark = pytest.mark.interop


def _cluster(cluster: Cluster) -> list[consul.Consul]:
    ip = new_block()
    cfg = cluster.tmp / "fast.json"
    cfg.write_text(json.dumps({"performance": {"raft_multiplier": 1}}))
    ps = [cluster.agent(f"s{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", f"-config-file={cfg}")
          for i in (1, 2, 3)]
    for p in ps[1:]:
        p.cli("join", f"{ip}.1")
    clients = [consul.Consul(host=p.ip, port=8500) for p in ps]
    wait_for(lambda: all(c.status.leader() for c in clients), 30, "a leader")
    return clients


def test_py_consul_kv(cluster: Cluster) -> None:
    c, c2, c3 = _cluster(cluster)
    assert c.kv.put("app/config", "v1") is True
    assert c2.kv.put("app/flags", "x", flags=42) is True
    index, data = c3.kv.get("app/config")
    assert data is not None and data["Value"] == b"v1" and int(index) >= data["ModifyIndex"]
    _, data = c.kv.get("app/flags", consistency="consistent")
    assert data is not None and data["Flags"] == 42
    _, items = c.kv.get("app/", recurse=True)
    assert [i["Key"] for i in items] == ["app/config", "app/flags"]
    _, keys = c.kv.get("app/", keys=True)
    assert keys == ["app/config", "app/flags"]
    _, data = c.kv.get("app/config")
    assert c.kv.put("app/config", "v2", cas=data["ModifyIndex"]) is True
    assert c.kv.put("app/config", "v3", cas=data["ModifyIndex"]) is False
    assert c.kv.put("app/new", "n", cas=0) is True
    assert c.kv.delete("app/new") is True
    assert c.kv.get("app/new")[1] is None
    assert c.kv.delete("app/", recurse=True) is True
    assert c.kv.get("app/", recurse=True)[1] is None
    # a blocking query through the client library returns after a change
    index, _ = c.kv.get("block")
    c2.kv.put("block", "1")
    index2, data = c.kv.get("block", index=index, wait="5s")
    assert int(index2) > int(index) and data is not None and data["Value"] == b"1"


def test_py_consul_txn_catalog_status(cluster: Cluster) -> None:
    c, c2, _ = _cluster(cluster)
    res = c.txn.put([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": base64.b64encode(b"1").decode()}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
    ])
    assert res["Results"][1]["KV"]["Key"] == "t/a"

    assert c.catalog.register("web1", "10.0.0.5", service={"service": "web", "port": 80, "tags": ["v1"]}) is True
    assert c2.catalog.register("web2", "10.0.0.6", service={"service": "web", "port": 81}) is True
    _, nodes = c2.catalog.nodes()
    assert {"web1", "web2"} <= {n["Node"] for n in nodes}
    _, services = c.catalog.services()
    assert services["web"] == ["v1"]
    _, instances = c.catalog.service("web")
    assert sorted((i["Node"], i["ServicePort"]) for i in instances) == [("web1", 80), ("web2", 81)]
    _, tagged = c.catalog.service("web", tag="v1")
    assert [i["Node"] for i in tagged] == ["web1"]
    _, node = c.catalog.node("web1")
    assert node["Node"]["Address"] == "10.0.0.5" and "web" in node["Services"]
    assert c.catalog.deregister("web1") is True
    _, instances = c.catalog.service("web")
    assert [i["Node"] for i in instances] == ["web2"]
    assert sorted(c.catalog.datacenters()) == ["dc1"]

    assert c.status.leader().endswith(":8300")
    assert len(c2.status.peers()) == 3
    assert {m["Name"] for m in c.agent.members()} == {"s1", "s2", "s3"}
