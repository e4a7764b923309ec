"""ACL enforcement with real agents (issue 14 item 1): a server and a client agent with acl.enabled.

default_policy=deny: an anonymous KV write is 403 (through the server and through the client, whose forwarded
write the server enforces), a `key_prefix "app/" write` token writes app/x but not other/x, KV listings show only
readable keys, the keyring, snapshot, join and agent/self need their rights, and a raw server-RPC client without
a token writes nothing. default_policy=allow: everything keeps working without a token.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from pyconsul.agent.raft import wire
from pyconsul.agent.state import commands as c
from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import fast

pytestmark = pytest.mark.integration

MASTER = "0b7e1f5c-6d6a-4c55-9a7e-3f2d1c0b9a88"


def call(p: AgentProc, path: str, method: str = "GET", body: bytes | None = None, token: str = "",
         header: str = "X-Consul-Token") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://{p.http}{path}", data=body, method=method)
    if token:
        req.add_header(header, f"Bearer {token}" if header == "Authorization" else token)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def acl_config(cluster: Cluster, policy: str) -> str:
    path = cluster.tmp / f"acl-{policy}.json"
    path.write_text(json.dumps({"acl": {"enabled": True, "default_policy": policy, "tokens": {"master": MASTER}}}))
    return f"-config-file={path}"


def start(cluster: Cluster, policy: str) -> tuple[AgentProc, AgentProc]:
    ip = new_block()
    acl = acl_config(cluster, policy)
    server = cluster.agent("s1", f"{ip}.1", "-server", "-bootstrap-expect=1", fast(cluster), acl, wait=False)
    # /v1/agent/self needs agent:read: the harness's own wait cannot be used
    wait_for(lambda: call(server, "/v1/agent/self", token=MASTER)[0] == 200, 20, "agent s1 HTTP")
    client = cluster.agent("c1", f"{ip}.2", f"-join={ip}.1", fast(cluster), acl, wait=False)
    wait_for(lambda: call(client, "/v1/agent/self", token=MASTER)[0] == 200, 20, "agent c1 HTTP")
    # the leader has created the master token once a write with it succeeds
    wait_for(lambda: call(server, "/v1/kv/ready", "PUT", b"1", MASTER)[0] == 200, 30, "the master token works")
    return server, client


def make_token(p: AgentProc, name: str, rules: str) -> str:
    status, body = call(p, "/v1/acl/policy", "PUT", json.dumps({"Name": name, "Rules": rules}).encode(), MASTER)
    assert status == 200, body
    status, body = call(p, "/v1/acl/token", "PUT", json.dumps({"Policies": [{"Name": name}]}).encode(), MASTER)
    assert status == 200, body
    secret: str = json.loads(body)["SecretID"]
    return secret


def dns_addrs(p: AgentProc, name: str) -> set[str]:
    """A answers of the agent's DNS interface (port 8600) for `name`."""
    msg = dns.query.udp(dns.message.make_query(name, "A"), p.ip, port=8600, timeout=5)
    return {rr.address for s in msg.answer if s.rdtype == dns.rdatatype.A for rr in s}


def raw_rpc(server: AgentProc, method: str, args: Any) -> list[Any]:
    """One request on the server's RPC port, as any process that reaches 8300 could send it."""
    with socket.create_connection((server.ip, 8300), timeout=10) as s:
        s.sendall(wire.frame([wire.Kind.HELLO, "outsider", "dc1"]))
        s.sendall(wire.frame([wire.Kind.REQUEST, 1, method, args]))
        f = s.makefile("rb")
        while True:
            n = wire.HEADER.unpack(f.read(wire.HEADER.size))[0]
            obj = wire.unframe(f.read(n))
            if obj[0] == wire.Kind.RESPONSE:
                return obj


def test_default_deny(cluster: Cluster) -> None:
    server, client = start(cluster, "deny")
    for p in (server, client):  # anonymous: nothing
        status, body = call(p, "/v1/kv/app/x", "PUT", b"v")
        assert (status, body) == (403, b"Permission denied\n")
        assert call(p, "/v1/kv/ready") == (403, b"Permission denied\n")  # a single key: denied (Consul 1.7)
    app = make_token(server, "app-write", 'key_prefix "app/" { policy = "write" }')
    for p in (server, client):
        assert call(p, "/v1/kv/app/x", "PUT", b"v", app) == (200, b"true")
        assert call(p, "/v1/kv/other/x", "PUT", b"v", app)[0] == 403
        assert call(p, "/v1/kv/app/y?token=" + app, "PUT", b"v")[0] == 200  # ?token=
        assert call(p, "/v1/kv/app/z", "PUT", b"v", app, header="Authorization")[0] == 200  # Bearer
        assert call(p, "/v1/kv/?recurse", "DELETE", None, app)[0] == 403  # key_write_prefix ""
    assert call(server, "/v1/kv/secret/s", "PUT", b"s", MASTER)[0] == 200
    ops = [{"KV": {"Verb": "set", "Key": "app/t", "Value": "eA=="}}, {"KV": {"Verb": "set", "Key": "other/t"}}]
    for p in (server, client):  # a transaction: Consul's 409 with one error per denied operation, nothing applied
        status, body = call(p, "/v1/txn", "PUT", json.dumps(ops).encode(), app)
        assert status == 409 and json.loads(body)["Errors"] == [{"OpIndex": 1, "What": "Permission denied"}]
        assert call(p, "/v1/kv/app/t", token=app)[0] == 404
    status, body = call(client, "/v1/txn", "PUT", json.dumps([{"KV": {"Verb": "get", "Key": "app/x"}}]).encode(), app)
    assert status == 200 and json.loads(body)["Results"][0]["KV"]["Key"] == "app/x"
    for p in (server, client):  # listings show only what the token may read, never other key names
        status, body = call(p, "/v1/kv/?keys", token=app)
        assert status == 200 and json.loads(body) == ["app/x", "app/y", "app/z"]
        status, body = call(p, "/v1/kv/?recurse", token=app)
        assert sorted(e["Key"] for e in json.loads(body)) == ["app/x", "app/y", "app/z"]
        status, body = call(p, "/v1/kv/?keys", token=MASTER)
        assert "secret/s" in json.loads(body)
        assert call(p, "/v1/kv/secret/s", token=app)[0] == 403  # a single key is denied, never filtered
        assert call(p, "/v1/kv/secret/s?recurse", token=app)[0] == 404  # a listing is filtered
    # a blocking listing is filtered again when it wakes: a new key it cannot read wakes it, and is not shown
    req = urllib.request.Request(f"http://{client.http}/v1/kv/?keys", headers={"X-Consul-Token": app})
    with urllib.request.urlopen(req, timeout=15) as resp:
        index = int(resp.headers["X-Consul-Index"])
    woke: list[tuple[int, bytes]] = []
    path = f"/v1/kv/?keys&index={index}&wait=20s"
    waiter = threading.Thread(target=lambda: woke.append(call(client, path, token=app)))
    waiter.start()  # the write may land before or after the read blocks: either way it answers filtered
    assert call(server, "/v1/kv/secret/new", "PUT", b"s", MASTER)[0] == 200
    waiter.join(25)
    assert woke and woke[0][0] == 200 and json.loads(woke[0][1]) == ["app/x", "app/y", "app/z"]
    # the agent's own endpoints
    for p in (server, client):
        assert call(p, "/v1/operator/keyring", token=app)[0] == 403
        assert call(p, "/v1/operator/keyring", token=MASTER)[0] == 200
        assert call(p, "/v1/agent/join/127.0.0.1", "PUT", token=app)[0] == 403
        assert call(p, "/v1/agent/self", token=app)[0] == 403
        assert call(p, "/v1/snapshot", token=app)[0] == 403
        assert call(p, "/v1/operator/raft/configuration", token=app)[0] == 403
        assert call(p, "/v1/status/leader")[0] == 200  # no ACL, as Consul
        assert call(p, "/v1/catalog/nodes", token=app) == (200, b"[]")  # no node:read: no node shown
    status, body = call(server, "/v1/agent/self", token=MASTER)
    assert status == 200 and MASTER.encode() not in body
    ring = make_token(server, "ring-read", 'keyring = "read"')
    assert call(client, "/v1/operator/keyring", token=ring)[0] == 200
    assert call(client, "/v1/operator/keyring", "PUT", b'{"Key": "x"}', ring)[0] == 403
    assert call(server, "/v1/snapshot", token=MASTER)[0] == 200
    # a raw server-RPC client: no token is the anonymous token, and an unknown one is refused
    cmd = c.encode(c.KVSet("other/raw", b"x"))
    for args in (cmd, [cmd, "not-a-token"]):
        reply = raw_rpc(server, "apply_forward", args)
        assert reply[2] is False and reply[3]["code"] == "permission_denied", reply
    reply = raw_rpc(server, "read_forward", {"name": "kv.list", "args": {"prefix": ""}, "mode": "default",
                                             "index": 0, "wait": 0.0})
    assert reply[2] is True and reply[3]["value"] == []  # nothing readable for anonymous
    assert raw_rpc(server, "apply_forward", [cmd, app])[3]["code"] == "permission_denied"
    assert raw_rpc(server, "apply_forward", [c.encode(c.KVSet("app/raw", b"x")), app])[2] is True
    assert call(server, "/v1/kv/other/raw", token=MASTER)[0] == 404
    for args in ("victim-id", ["victim-id", app]):  # removing a Raft peer needs operator:write
        reply = raw_rpc(server, "remove_self", args)
        assert reply[2] is False and reply[3]["code"] == "permission_denied", reply
    reply = raw_rpc(server, "status", {"what": "remove_peer", "args": {"id": "victim-id"}})
    assert reply[2] is False and reply[3]["code"] == "permission_denied", reply
    # catalog, health, sessions, events, the agent's own services
    web = make_token(server, "web-ext", 'node "ext" { policy = "write" }\nservice_prefix "web" { policy = "write" }')
    reg = {"Node": "ext", "Address": "10.0.0.9", "Service": {"Service": "web", "Port": 80}}
    assert call(client, "/v1/catalog/register", "PUT", json.dumps(reg).encode(), app)[0] == 403
    assert call(client, "/v1/catalog/register", "PUT", json.dumps(reg).encode(), web) == (200, b"true")
    db = {**reg, "Service": {"Service": "db", "Port": 5432}}
    assert call(client, "/v1/catalog/register", "PUT", json.dumps(db).encode(), web)[0] == 403
    status, body = call(client, "/v1/catalog/services", token=web)
    assert status == 200 and set(json.loads(body)) == {"web"}  # not "consul": no service:read on it
    status, body = call(client, "/v1/health/service/web", token=web)
    assert [r["Node"]["Node"] for r in json.loads(body)] == ["ext"]
    assert json.loads(call(client, "/v1/health/service/web", token=app)[1]) == []
    assert json.loads(call(client, "/v1/agent/members", token=app)[1]) == []
    assert len(json.loads(call(client, "/v1/agent/members", token=MASTER)[1])) == 2
    sess = json.dumps({"Node": "s1"}).encode()
    assert call(client, "/v1/session/create", "PUT", sess, app)[0] == 403
    assert call(client, "/v1/session/create", "PUT", sess, MASTER)[0] == 200
    assert json.loads(call(client, "/v1/session/list", token=app)[1]) == []
    assert call(client, "/v1/event/fire/deploy", "PUT", b"", app)[0] == 403
    svc = json.dumps({"Name": "db", "Port": 5432}).encode()
    assert call(client, "/v1/agent/service/register", "PUT", svc, web)[0] == 403
    svc = json.dumps({"Name": "web", "Port": 80}).encode()
    assert call(client, "/v1/agent/service/register", "PUT", svc, web)[0] == 200
    assert set(json.loads(call(client, "/v1/agent/services", token=web)[1])) == {"web"}
    assert json.loads(call(client, "/v1/agent/services", token=app)[1]) == {}
    # DNS answers as acl.tokens.default (none here: the anonymous token, which may read no node or service)
    status, body = call(server, "/v1/catalog/service/consul", token=MASTER)
    assert status == 200 and json.loads(body)  # the server's "consul" service is there
    for p in (server, client):
        assert dns_addrs(p, "consul.service.consul") == set()
        assert dns_addrs(p, "s1.node.consul") == set()


def test_default_allow_keeps_everything_working(cluster: Cluster) -> None:
    server, client = start(cluster, "allow")
    for p in (server, client):
        assert call(p, "/v1/kv/other/x", "PUT", b"v") == (200, b"true")
        assert call(p, "/v1/operator/keyring")[0] == 200
        assert call(p, "/v1/agent/self")[0] == 200
        assert "other/x" in json.loads(call(p, "/v1/kv/?keys")[1])
    deny = make_token(server, "deny-other", 'key_prefix "other/" { policy = "deny" }')
    assert call(client, "/v1/kv/other/y", "PUT", b"v", deny)[0] == 403
    assert call(client, "/v1/kv/free/y", "PUT", b"v", deny)[0] == 200
    assert "other/x" not in json.loads(call(client, "/v1/kv/?keys", token=deny)[1])
    for p in (server, client):
        wait_for(lambda p=p: dns_addrs(p, "consul.service.consul") == {server.ip}, 20, "DNS answers (allow)")
