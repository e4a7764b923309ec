"""Catalog and health reads against real agents (issue 12 item 4): Consul 1.7 shapes with the new fields,
?tag / ?node-meta / ?filter / ?passing through a client agent (so the reads are forwarded and filtered on the
server), blocking queries that unrelated writes do not wake, and /v1/catalog/register honouring the body's
Datacenter across the WAN."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import http

pytestmark = pytest.mark.integration


def put(p: AgentProc, path: str, body: Any) -> tuple[int, bytes]:
    code, _, text = http(p, path, "PUT", json.dumps(body).encode())
    return code, text


def get(p: AgentProc, path: str) -> Any:
    code, _, body = http(p, path)
    assert code == 200, (path, code, body)
    return json.loads(body)


def reg(p: AgentProc, node: str, sid: str, name: str, *, tags: list[str], meta: dict[str, str],
        status: str = "passing", dc: str = "", **service: Any) -> None:
    body: dict[str, Any] = {
        "Node": node, "Address": "10.1.0." + node[-1], "NodeMeta": meta,
        "Service": {"ID": sid, "Service": name, "Tags": tags, "Port": 80, **service},
        "Check": {"CheckID": "svc:" + sid, "Name": sid, "ServiceID": sid, "Status": status, "Type": "http",
                  "Definition": {"HTTP": f"http://10.1.0.{node[-1]}/health", "Interval": "10s",
                                 "Timeout": "1s"}},
    }
    if dc:
        body["Datacenter"] = dc
    assert put(p, "/v1/catalog/register", body) == (200, b"true")


def world(p: AgentProc) -> None:
    reg(p, "n1", "web1", "web", tags=["v1", "primary"], meta={"rack": "r1"},
        Weights={"Passing": 10, "Warning": 1}, EnableTagOverride=True,
        TaggedAddresses={"wan": {"Address": "198.51.100.1", "Port": 8080}})
    reg(p, "n2", "web2", "web", tags=["v1"], meta={"rack": "r2"}, status="warning")
    reg(p, "n3", "db1", "db", tags=["leader"], meta={"rack": "r1"})


def server_and_client(cluster: Cluster) -> tuple[AgentProc, AgentProc]:
    ip = new_block()
    s = cluster.agent("s1", f"{ip}.1", "-server", "-bootstrap")
    c = cluster.agent("c1", f"{ip}.2", f"-join={ip}.1")
    wait_for(lambda: json.loads(http(s, "/v1/status/leader")[2]), 20, "leader")
    wait_for(lambda: http(c, "/v1/catalog/nodes")[0] == 200, 20, "client reaches the server")
    return s, c


def test_reads_in_consul_shapes_with_every_selection(cluster: Cluster) -> None:
    s, c = server_and_client(cluster)
    world(c)
    # catalog
    services = get(c, "/v1/catalog/services")
    assert services["web"] == ["primary", "v1"] and services["db"] == ["leader"]
    assert get(c, "/v1/catalog/services?node-meta=rack:r2") == {"web": ["v1"]}
    (web1,) = get(c, "/v1/catalog/service/web?tag=v1&tag=primary")
    assert (web1["ServiceID"], web1["ServiceWeights"], web1["ServiceEnableTagOverride"]) == (
        "web1", {"Passing": 10, "Warning": 1}, True)
    assert web1["ServiceTaggedAddresses"] == {"wan": {"Address": "198.51.100.1", "Port": 8080}}
    assert [x["Node"] for x in get(c, "/v1/catalog/service/web?node-meta=rack:r2")] == ["n2"]
    nodes = get(c, "/v1/catalog/nodes?filter=" + quote("Meta.rack == r1"))
    assert [n["Node"] for n in nodes] == ["n1", "n3"]
    node = get(c, "/v1/catalog/node/n1")
    assert node["Node"]["Meta"] == {"rack": "r1"} and node["Services"]["web1"]["Weights"]["Passing"] == 10
    assert get(c, "/v1/catalog/node/ghost") is None
    listed = get(c, "/v1/catalog/node-services/n1")
    assert [x["ID"] for x in listed["Services"]] == ["web1"]
    assert get(c, "/v1/catalog/node-services/ghost") == {"Node": None, "Services": None}
    # health
    (check,) = get(c, "/v1/health/node/n2")
    assert (check["Status"], check["Type"], check["Definition"]) == (
        "warning", "http", {"Interval": "10s", "Timeout": "1s", "HTTP": "http://10.1.0.2/health"})
    assert [x["CheckID"] for x in get(c, "/v1/health/checks/web")] == ["svc:web1", "svc:web2"]
    assert [x["CheckID"] for x in get(c, "/v1/health/state/warning")] == ["svc:web2"]
    assert [e["Service"]["ID"] for e in get(c, "/v1/health/service/web")] == ["web1", "web2"]
    assert [e["Service"]["ID"] for e in get(c, "/v1/health/service/web?passing")] == ["web1"]
    assert [e["Service"]["ID"] for e in get(c, "/v1/health/service/web?passing=false")] == ["web1", "web2"]
    flt = quote('Checks.Status == warning or Service.Tags contains "primary"')
    assert [e["Node"]["Node"] for e in get(c, f"/v1/health/service/web?filter={flt}&tag=v1")] == ["n1", "n2"]
    assert [e["Node"]["Node"] for e in get(c, "/v1/health/service/web?near=_agent")] == ["n1", "n2"]
    # the same from the server itself, in every consistency mode
    for mode in ("", "?stale", "?consistent"):
        assert [x["Node"] for x in get(s, "/v1/catalog/service/web" + mode)] == ["n1", "n2"]
    # bad input: 400 with Consul's text, the position for filters
    for path, text in (("/v1/health/state/bogus", b"Invalid state: bogus"),
                       ("/v1/health/service/web?passing=maybe", b"Invalid value for ?passing"),
                       ("/v1/catalog/nodes?filter=" + quote("Meta.rack =="), b"1:13 (12): no match found"),
                       ("/v1/health/service/web?filter=" + quote("Service.Nope == 1"),
                        b'Selector "Service.Nope" is not valid (at offset 0)')):
        for p in (s, c):
            code, _, body = http(p, path)
            assert code == 400 and text in body, (path, code, body)
    assert "Traceback" not in s.log() + c.log()


def blocked_get(p: AgentProc, path: str, index: int, wait: str) -> dict[str, Any]:
    """Start GET path?index=&wait= in a thread; the returned dict gets status, index, body, elapsed."""
    out: dict[str, Any] = {}

    def go() -> None:
        t0 = time.monotonic()
        sep = "&" if "?" in path else "?"
        code, headers, body = http(p, f"{path}{sep}index={index}&wait={wait}", timeout=120)
        out.update(status=code, index=int(headers["X-Consul-Index"]), body=json.loads(body),
                   elapsed=time.monotonic() - t0)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    out["thread"] = t
    return out


@pytest.mark.parametrize("path", ["/v1/health/service/web", "/v1/catalog/service/web", "/v1/health/checks/web"])
def test_blocking_watch_wakes_only_for_its_service(cluster: Cluster, path: str) -> None:
    _, c = server_and_client(cluster)
    world(c)
    code, headers, _ = http(c, path)
    assert code == 200
    x = int(headers["X-Consul-Index"])
    # unrelated writes while blocked: a KV write, another service on another node, a new node
    quiet = blocked_get(c, path, x, "3s")
    assert http(c, "/v1/kv/unrelated", "PUT", b"v")[0] == 200
    reg(c, "n3", "db1", "db", tags=["leader", "v2"], meta={"rack": "r1"})
    reg(c, "n4", "cache1", "cache", tags=[], meta={})
    assert put(c, "/v1/catalog/deregister", {"Node": "n4"}) == (200, b"true")
    quiet["thread"].join(60)
    assert quiet["status"] == 200 and quiet["index"] == x, quiet  # not woken: the wait ran out
    assert quiet["elapsed"] >= 2.5, quiet  # lower bound: it did wait
    # a related write wakes it promptly (generous ceiling)
    woken = blocked_get(c, path, x, "60s")
    reg(c, "n2", "web2", "web", tags=["v1"], meta={"rack": "r2"}, status="critical")
    woken["thread"].join(60)
    assert woken["status"] == 200 and woken["index"] > x and woken["elapsed"] < 30, woken


def test_register_honours_the_body_datacenter(cluster: Cluster) -> None:
    ip = new_block()
    bj = cluster.agent("bj1", f"{ip}.1", "-server", "-bootstrap", "-datacenter=BJ")
    sh = cluster.agent("sh1", f"{ip}.2", "-server", "-bootstrap", "-datacenter=SH")
    bj.cli("join", "-wan", f"{ip}.2")
    for p in (bj, sh):
        wait_for(lambda p=p: json.loads(http(p, "/v1/status/leader")[2]), 20, f"{p.name} leader")
    wait_for(lambda: get(bj, "/v1/catalog/datacenters") == ["bj", "sh"], 20, "both DCs known")

    reg(bj, "n1", "web1", "web", tags=["v1"], meta={}, dc="SH")  # sent to BJ, aimed at SH
    (inst,) = get(sh, "/v1/catalog/service/web")
    assert (inst["Node"], inst["Datacenter"]) == ("n1", "sh")
    assert get(bj, "/v1/catalog/service/web") == []  # not in BJ's catalog
    assert [e["Node"]["Node"] for e in get(bj, "/v1/health/service/web?dc=sh&passing")] == ["n1"]

    # a blocking query across the WAN wakes on the change in SH
    _, headers, _ = http(bj, "/v1/health/service/web?dc=sh")
    x = int(headers["X-Consul-Index"])
    woken = blocked_get(bj, "/v1/health/service/web?dc=sh&passing", x, "60s")
    reg(sh, "n1", "web1", "web", tags=["v1"], meta={}, status="critical")
    woken["thread"].join(60)
    assert woken["status"] == 200 and woken["index"] > x and woken["body"] == [], woken

    code, text = put(bj, "/v1/catalog/register", {"Datacenter": "nowhere", "Node": "n9", "Address": "a"})
    assert (code, text.strip()) == (400, b"No path to datacenter")
    assert put(bj, "/v1/catalog/deregister", {"Datacenter": "sh", "Node": "n1"}) == (200, b"true")
    assert get(sh, "/v1/catalog/service/web") == []
