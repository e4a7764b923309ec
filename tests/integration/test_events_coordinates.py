"""User events and network coordinates with real agents on loopback.

- an event fired on one agent is listed on the others (filters applied on receipt), blocking lists wake;
- every node of a 3-server cluster (plus a client) has a coordinate in /v1/coordinate/nodes within a deadline
  (sync interval shortened through the config key), /v1/coordinate/datacenters lists the servers, the CLI
  `rtt` estimates a round trip, /v1/agent/self has Coord.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration

PROBES = {"probe_interval": "300ms", "probe_timeout": "150ms"}  # more acks, so coordinates move sooner
CONFIG = {"performance": {"raft_multiplier": 1}, "sync_coordinate_interval_min": "1s",
          "gossip_lan": PROBES, "gossip_wan": PROBES}


def _config(cluster: Cluster) -> str:
    path: Path = cluster.tmp / "coords.json"
    path.write_text(json.dumps(CONFIG))
    return f"-config-file={path}"


def _http(p: AgentProc, path: str, method: str = "GET", body: bytes | None = None,
          timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://{p.http}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _events(p: AgentProc, query: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = p.api("/v1/event/list" + query)
    return out


def test_event_fired_on_one_agent_is_listed_on_the_others(cluster: Cluster) -> None:
    ip = new_block()
    a = cluster.agent("ev-a", f"{ip}.1", "-dev", data_dir=False)
    b = cluster.agent("ev-b", f"{ip}.2", f"-join={ip}.1")
    c = cluster.agent("ev-c", f"{ip}.3", f"-join={ip}.1")
    wait_for(lambda: len(a.members()) == 3 and len(c.members()) == 3, 20, "3 members")

    status, _, body = _http(b, "/v1/event/fire/deploy", "PUT", b"v42")
    assert status == 200, body
    fired = json.loads(body)
    assert fired["Name"] == "deploy" and base64.b64decode(fired["Payload"]) == b"v42"
    assert fired["Version"] == 1 and fired["LTime"] == 0 and len(fired["ID"]) == 36

    for p in (a, b, c):
        got = wait_for(lambda p=p: [e for e in _events(p) if e["ID"] == fired["ID"]], 20, f"event on {p.name}")
        assert got[0]["Name"] == "deploy" and base64.b64decode(got[0]["Payload"]) == b"v42"
        assert got[0]["LTime"] >= 1

    # a node filter: only ev-c takes it
    status, _, body = _http(a, "/v1/event/fire/restart?node=ev-c$", "PUT", b"")
    assert status == 200, body
    rid = json.loads(body)["ID"]
    wait_for(lambda: any(e["ID"] == rid for e in _events(c)), 20, "filtered event on ev-c")
    # the others dropped it (a later unfiltered event arrives after it would have: gossip keeps order per origin)
    status, _, body = _http(a, "/v1/event/fire/marker", "PUT", b"")
    mid = json.loads(body)["ID"]
    wait_for(lambda: any(e["ID"] == mid for e in _events(b)), 20, "marker on ev-b")
    assert not any(e["ID"] == rid for e in _events(b))
    assert [e["Name"] for e in _events(c, "?name=restart")] == ["restart"]

    # blocking list: with the current index it waits for the next event
    status, headers, _ = _http(b, "/v1/event/list?name=wake")
    index = headers["X-Consul-Index"]
    assert index == "1"  # no such event yet: Consul's 1
    result: dict[str, Any] = {}

    def block() -> None:
        result["r"] = _http(b, f"/v1/event/list?name=wake&index={index}&wait=20s", timeout=30)

    t = threading.Thread(target=block)
    t.start()
    status, _, body = _http(c, "/v1/event/fire/wake", "PUT", b"x")
    t.join(30)
    st, h, out = result["r"]
    assert st == 200 and json.loads(out)[0]["ID"] == json.loads(body)["ID"]
    assert h["X-Consul-Index"] != "1"

    # bad input: 400 with Consul's messages; an oversized payload is 413
    assert _http(a, "/v1/event/fire/x?tag=web", "PUT", b"")[0] == 400
    status, _, body = _http(a, "/v1/event/fire/x?node=(", "PUT", b"")
    assert status == 400 and b"Invalid node filter" in body
    assert _http(a, "/v1/event/fire/big", "PUT", b"z" * 480)[0] == 413
    assert _http(a, "/v1/event/fire/huge", "PUT", b"z" * 5000)[0] == 413

    # the CLI
    out = b.cli("event", "-name=cli-ev", "hello").stdout
    assert "Event ID:" in out
    wait_for(lambda: any(e["Name"] == "cli-ev" for e in _events(a)), 20, "CLI event on ev-a")


def test_coordinates_reach_the_catalog_for_every_node(cluster: Cluster) -> None:
    ip = new_block()
    cfg = _config(cluster)
    servers = [cluster.agent(f"co{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", "-datacenter=BJ", cfg,
                             *([f"-join={ip}.1"] if i > 1 else [])) for i in range(1, 4)]
    client = cluster.agent("co-client", f"{ip}.4", "-datacenter=BJ", cfg, f"-join={ip}.1")
    names = {"co1", "co2", "co3", "co-client"}

    def all_coords() -> list[dict[str, Any]] | None:
        status, headers, body = _http(client, "/v1/coordinate/nodes")
        if status != 200:
            return None
        out: list[dict[str, Any]] = json.loads(body)
        return out if {c["Node"] for c in out} == names and int(headers["X-Consul-Index"]) > 0 else None

    coords = wait_for(all_coords, 60, "a coordinate for every node in /v1/coordinate/nodes")
    for c in coords:
        assert len(c["Coord"]["Vec"]) == 8 and c["Segment"] == ""
    # the nodes measured each other (a coordinate that moved off the origin)
    wait_for(lambda: any(any(x != 0.0 for x in c["Coord"]["Vec"]) for c in (all_coords() or [])), 60,
             "coordinates that moved")

    status, _, body = _http(servers[0], "/v1/coordinate/node/co-client")
    assert status == 200 and json.loads(body)[0]["Node"] == "co-client"
    assert _http(servers[0], "/v1/coordinate/node/nope")[0] == 404

    dcs = json.loads(_http(client, "/v1/coordinate/datacenters")[2])
    assert [d["Datacenter"] for d in dcs] == ["bj"] and dcs[0]["AreaID"] == "wan"
    wait_for(lambda: {c["Node"] for c in json.loads(_http(servers[1], "/v1/coordinate/datacenters")[2])[0]
                      ["Coordinates"]} >= {"co1", "co3"}, 60, "WAN coordinates of the other servers")

    me = client.api("/v1/agent/self")
    assert len(me["Coord"]["Vec"]) == 8

    out = client.cli("rtt", "co1", "co2").stdout
    assert out.startswith("Estimated co1 <-> co2 rtt:") and "(using LAN coordinates)" in out
    out = client.cli("rtt", "co1").stdout  # against the agent itself
    assert "co1 <-> co-client" in out
    wan = servers[0].cli("rtt", "-wan", "co2.bj").stdout
    assert "(using WAN coordinates)" in wan
    bad = client.cli("rtt", "nope", check=False)
    assert bad.returncode == 1 and "Could not find coordinates for both nodes" in bad.stderr

    # PUT /v1/coordinate/update: a valid coordinate of a catalog node lands, a bad one is a 400
    reg = json.dumps({"Node": "ext", "Address": "10.1.1.1"}).encode()
    assert _http(client, "/v1/catalog/register", "PUT", reg)[0] == 200
    vec = [0.5] + [0.0] * 7
    body_ok = json.dumps({"Node": "ext", "Coord": {"Vec": vec, "Error": 0.5, "Adjustment": 0.0,
                                                   "Height": 0.0001}}).encode()
    assert _http(client, "/v1/coordinate/update", "PUT", body_ok)[0] == 200

    def ext() -> list[dict[str, Any]] | None:  # the leader commits it with its next batch (every 5 s)
        status, _, body = _http(client, "/v1/coordinate/node/ext")
        return json.loads(body) if status == 200 else None

    assert wait_for(ext, 20, "the update of ext committed")[0]["Coord"]["Vec"] == vec
    bad_body = json.dumps({"Node": "co3", "Coord": {"Vec": [0.0] * 3, "Error": 0.5}}).encode()
    status, _, body = _http(client, "/v1/coordinate/update", "PUT", bad_body)
    assert status == 400 and b"dimensionality" in body


def test_event_for_another_datacenter_and_wan_coordinates(cluster: Cluster) -> None:
    """?dc= fires the event in the other datacenter's LAN (through server RPC), from a server and from a
    client; /v1/coordinate/datacenters shows both datacenters' servers."""
    ip = new_block()
    cfg = _config(cluster)
    bj = cluster.agent("dbj1", f"{ip}.1", "-server", "-bootstrap", "-datacenter=BJ", cfg)
    sh = cluster.agent("dsh1", f"{ip}.2", "-server", "-bootstrap", "-datacenter=SH", cfg)
    shc = cluster.agent("dshc", f"{ip}.3", "-datacenter=SH", cfg, f"-join={ip}.2")
    bjc = cluster.agent("dbjc", f"{ip}.4", "-datacenter=BJ", cfg, f"-join={ip}.1")
    bj.cli("join", "-wan", f"{ip}.2")
    wait_for(lambda: json.loads(_http(bjc, "/v1/catalog/datacenters")[2]) == ["bj", "sh"], 30, "both DCs known")

    ids = []
    for p in (bj, bjc):
        status, _, body = _http(p, "/v1/event/fire/cross?dc=sh", "PUT", p.name.encode())
        assert status == 200, body
        ids.append(json.loads(body)["ID"])
    for p in (sh, shc):
        wait_for(lambda p=p: {e["ID"] for e in _events(p)} >= set(ids), 20, f"both events on {p.name}")
    assert not any(e["Name"] == "cross" for e in _events(bjc))  # not in BJ
    assert _http(bj, "/v1/event/fire/x?dc=nowhere", "PUT", b"")[0] == 400  # No path to datacenter

    def both() -> list[dict[str, Any]] | None:
        out: list[dict[str, Any]] = json.loads(_http(bjc, "/v1/coordinate/datacenters")[2])
        nodes = {d["Datacenter"]: [c["Node"] for c in d["Coordinates"]] for d in out}
        return out if nodes.get("sh") == ["dsh1"] and nodes.get("bj") == ["dbj1"] else None

    wait_for(both, 60, "WAN coordinates of both datacenters' servers")
