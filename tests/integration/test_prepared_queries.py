"""Prepared queries with real agents: create/read/update/delete over /v1/query, execute (only healthy
instances, tag filters, OnlyPassing, limit, templates), explain, Consul's errors, and failover to a second
datacenter when the local one has no healthy instance (from a server and from a client agent)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import http, start_bj

pytestmark = pytest.mark.integration


def call(p: AgentProc, path: str, method: str = "GET", body: Any = None) -> tuple[int, dict[str, str], Any]:
    raw = json.dumps(body).encode() if body is not None else None
    code, headers, out = http(p, path, method, raw)
    if code == 200 and out.strip():
        return code, headers, json.loads(out)
    return code, headers, out.decode(errors="replace").strip()


def register(p: AgentProc, node: str, addr: str, status: str, tags: list[str], dc: str = "") -> None:
    body = {"Node": node, "Address": addr, "Service": {"Service": "web", "Port": 80, "Tags": tags},
            "Check": {"CheckID": "web-check", "Name": "web", "Status": status, "ServiceID": "web"}}
    if dc:
        body["Datacenter"] = dc
    code, _, out = call(p, "/v1/catalog/register", "PUT", body)
    assert (code, out) == (200, True)


def nodes_of(result: dict[str, Any]) -> set[str]:
    return {n["Node"]["Node"] for n in result["Nodes"]}


def test_query_crud_execute_explain_and_errors(cluster: Cluster) -> None:
    ip = new_block()
    a = cluster.agent("s1", f"{ip}.1", "-server", "-bootstrap")
    wait_for(lambda: json.loads(http(a, "/v1/status/leader")[2]), 20, "leader")
    register(a, "n1", "10.0.0.1", "passing", ["v1", "primary"])
    register(a, "n2", "10.0.0.2", "warning", ["V1"])  # tags match case-insensitively
    register(a, "n3", "10.0.0.3", "critical", ["v1"])
    register(a, "n4", "10.0.0.4", "passing", ["v1", "canary"])

    code, _, out = call(a, "/v1/query", "POST", {
        "Name": "web-q", "Service": {"Service": "web", "Tags": ["v1", "!canary"]}, "DNS": {"TTL": "10s"}})
    assert code == 200, out
    qid = out["ID"]
    assert len(qid) == 36

    code, headers, listed = call(a, "/v1/query")
    assert code == 200 and [q["ID"] for q in listed] == [qid]
    first_index = int(headers["X-Consul-Index"])
    code, _, got = call(a, f"/v1/query/{qid}")
    assert code == 200 and got[0]["Name"] == "web-q" and got[0]["Service"]["Tags"] == ["v1", "!canary"]
    assert got[0]["DNS"] == {"TTL": "10s"} and got[0]["CreateIndex"] == got[0]["ModifyIndex"]

    # execute by name and by ID: healthy instances only (critical n3 out, canary n4 excluded by "!canary")
    for ref in ("web-q", qid):
        code, _, res = call(a, f"/v1/query/{ref}/execute")
        assert code == 200, res
        assert nodes_of(res) == {"n1", "n2"}
        assert res["Service"] == "web" and res["Datacenter"] == "dc1" and res["Failovers"] == 0
        assert res["DNS"] == {"TTL": "10s"}
    code, _, res = call(a, "/v1/query/web-q/execute?limit=1")
    assert code == 200 and len(res["Nodes"]) == 1

    # update to OnlyPassing: the warning instance goes too; CreateIndex is kept
    code, _, _ = call(a, f"/v1/query/{qid}", "PUT", {"Name": "web-q", "Service": {
        "Service": "web", "Tags": ["v1", "!canary"], "OnlyPassing": True}})
    assert code == 200
    code, headers, got = call(a, f"/v1/query/{qid}")
    assert got[0]["Service"]["OnlyPassing"] is True and got[0]["ModifyIndex"] > got[0]["CreateIndex"]
    assert int(headers["X-Consul-Index"]) > first_index
    assert nodes_of(call(a, "/v1/query/web-q/execute")[2]) == {"n1"}
    # the instance turns critical: the query finds nothing (no failover configured)
    register(a, "n1", "10.0.0.1", "critical", ["v1", "primary"])
    code, _, res = call(a, "/v1/query/web-q/execute")
    assert code == 200 and res["Nodes"] == [] and res["Failovers"] == 0

    code, _, res = call(a, "/v1/query/web-q/explain")
    assert code == 200 and res["Query"]["ID"] == qid and res["Query"]["Service"]["Service"] == "web"

    # a template: any name starting with "geo-" queries the service named by the rest
    code, _, out = call(a, "/v1/query", "POST", {"Name": "geo-", "Template": {
        "Type": "name_prefix_match", "Regexp": "^geo-(.*)$"}, "Service": {"Service": "${match(1)}"}})
    assert code == 200, out
    code, _, res = call(a, "/v1/query/geo-web/execute")
    assert code == 200 and res["Service"] == "web" and nodes_of(res) == {"n2", "n4"}
    assert call(a, "/v1/query/geo-web/explain")[2]["Query"]["Service"]["Service"] == "web"
    code, _, body = call(a, f"/v1/query/{out['ID']}/execute")
    assert code == 400 and "templates can only be resolved up by name" in body

    # Consul's errors, as 400 (Consul: 500) and 404
    bad = [
        ({"Name": "x"}, "Must provide a Service name to query"),
        ({"Service": {"Service": "web"}}, "Must be bound to a session"),
        ({"Name": "web-q", "Service": {"Service": "db"}}, "name 'web-q' aliases an existing query name"),
        ({"Name": "y", "Service": {"Service": "web", "Failover": {"NearestN": -1}}}, "Bad NearestN '-1', must be >= 0"),
        ({"Name": "y", "Service": {"Service": "web"}, "DNS": {"TTL": "ten"}}, "Bad DNS TTL 'ten'"),
        ({"Name": "y", "Session": "no-such", "Service": {"Service": "web"}}, 'invalid session "no-such"'),
        ({"Name": "y", "Template": {"Type": "other"}, "Service": {"Service": "web"}}, "Bad Template.Type 'other'"),
        ({"Name": qid, "Service": {"Service": "web"}}, f"name '{qid}' aliases an existing query ID"),
        ({"ID": qid, "Name": "z", "Service": {"Service": "web"}}, "ID must be empty"),
        ({"Name": "y", "Service": "web"}, "Request decode failed"),
    ]
    for body, message in bad:
        code, _, text = call(a, "/v1/query", "POST", body)
        assert code == 400 and message in text, (body, code, text)
    assert call(a, "/v1/query/web-q/execute?connect=true")[0] == 400
    assert call(a, "/v1/query/web-q/execute?limit=x")[0] == 400
    assert call(a, "/v1/query/web-q/execute", "PUT", {})[0] == 405
    assert call(a, "/v1/query/web-q/explain", "DELETE")[0] == 405
    for path in ("/v1/query/nope/execute", "/v1/query/nope/explain", "/v1/query/5a0d4b4d-8a61-4c3f-9d0a-1b2c3d4e5f60"):
        code, _, text = call(a, path)
        assert (code, text) == (404, "Query not found"), path
    code, _, text = call(a, "/v1/query/5a0d4b4d-8a61-4c3f-9d0a-1b2c3d4e5f60", "DELETE")
    assert code == 404 and "Cannot modify non-existent prepared query" in text

    # delete
    assert call(a, f"/v1/query/{qid}", "DELETE")[0] == 200
    assert call(a, f"/v1/query/{qid}")[0] == 404
    assert [q["Name"] for q in call(a, "/v1/query")[2]] == ["geo-"]


def test_failover_to_another_datacenter(cluster: Cluster) -> None:
    ip = new_block()
    bj = cluster.agent("bj1", f"{ip}.1", "-server", "-bootstrap", "-datacenter=BJ")
    sh = cluster.agent("sh1", f"{ip}.2", "-server", "-bootstrap", "-datacenter=SH")
    client = cluster.agent("bjc", f"{ip}.3", "-datacenter=BJ", f"-join={ip}.1")
    bj.cli("join", "-wan", f"{ip}.2")
    for p in (bj, sh):
        wait_for(lambda p=p: json.loads(http(p, "/v1/status/leader")[2]), 20, f"{p.name} leader")
    wait_for(lambda: json.loads(http(client, "/v1/catalog/datacenters")[2]) == ["bj", "sh"], 20, "both DCs known")

    register(bj, "bj-web", "10.1.0.1", "critical", [])  # BJ has the service, but nothing healthy
    register(sh, "sh-web", "10.2.0.1", "passing", [])
    for name, failover in (("by-list", {"Datacenters": ["nowhere", "sh"]}), ("by-rtt", {"NearestN": 1})):
        body = {"Name": name, "Service": {"Service": "web", "Failover": failover}}
        code, _, out = call(bj, "/v1/query", "POST", body)
        assert code == 200, out
        for p in (bj, client):
            code, _, res = call(p, f"/v1/query/{name}/execute")
            assert code == 200, res
            assert (res["Datacenter"], res["Failovers"], nodes_of(res)) == ("sh", 1, {"sh-web"}), (name, p.name, res)

    # once BJ has a healthy instance, it answers locally
    register(bj, "bj-web", "10.1.0.1", "passing", [])
    code, _, res = call(client, "/v1/query/by-list/execute")
    assert (res["Datacenter"], res["Failovers"], nodes_of(res)) == ("bj", 0, {"bj-web"})

    # ?dc=sh runs the query in SH: SH has no such query
    assert call(client, "/v1/query/by-list/execute?dc=sh")[0] == 404
    # a query without failover finds nothing when BJ has nothing healthy
    register(bj, "bj-web", "10.1.0.1", "critical", [])
    code, _, out = call(client, "/v1/query", "POST", {"Name": "local-only", "Service": {"Service": "web"}})
    assert code == 200, out
    res = call(client, "/v1/query/local-only/execute")[2]
    assert (res["Datacenter"], res["Failovers"], res["Nodes"]) == ("bj", 0, [])


def test_queries_replicate_block_and_go_with_their_session(cluster: Cluster) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    leader = json.loads(http(ps[0], "/v1/status/leader")[2])
    follower = next(p for p in ps if f"{p.ip}:8300" != leader)
    register(follower, "n1", "10.0.0.1", "passing", [])

    # a write through a follower is forwarded to the leader and replicated to every server
    code, _, out = call(follower, "/v1/query", "POST", {"Name": "q1", "Service": {"Service": "web"}})
    assert code == 200, out
    for p in ps:
        wait_for(lambda p=p: [q["Name"] for q in call(p, "/v1/query?stale")[2]] == ["q1"], 20, f"{p.name} has q1")

    # a blocked list wakes when a query is written, with a higher index
    code, headers, _ = call(follower, "/v1/query")
    index = int(headers["X-Consul-Index"])
    code, _, session = call(ps[2], "/v1/session/create", "PUT", {"Node": "n1", "Checks": []})
    assert code == 200, session
    code, _, out = call(ps[2], "/v1/query", "POST", {"Session": session["ID"], "Service": {"Service": "web"}})
    assert code == 200, out
    code, headers, listed = call(follower, f"/v1/query?index={index}&wait=10s")
    assert code == 200 and int(headers["X-Consul-Index"]) > index and len(listed) == 2
    assert nodes_of(call(ps[1], f"/v1/query/{out['ID']}/execute")[2]) == {"n1"}  # an unnamed query runs by ID

    # destroying the session deletes the query bound to it
    assert call(ps[0], f"/v1/session/destroy/{session['ID']}", "PUT")[0] == 200
    wait_for(lambda: [q["Name"] for q in call(follower, "/v1/query")[2]] == ["q1"], 20, "the session's query gone")
    assert call(ps[0], f"/v1/query/{out['ID']}")[0] == 404
