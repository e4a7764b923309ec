"""ACLs with real agents (3 servers + 1 client, default deny): bootstrap once, a policy and a token over
/v1/acl/*, the token's rules enforced from a client agent, secrets redacted without acl:write, and a deleted
token refused on the client within acl.token_ttl."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import fast, http, leader_of

pytestmark = pytest.mark.integration

TOKEN_TTL = 2.0
AGENT_MASTER = "agent-master-secret"  # acl.tokens.agent_master: agent:write on its node, node:read, no server asked
ACL = (f'-hcl=acl {{ enabled = true\n default_policy = "deny"\n token_ttl = "{TOKEN_TTL:g}s"\n'
       f' tokens {{ agent_master = "{AGENT_MASTER}" }} }}')


def start(cluster: Cluster, name: str, ip: str, *flags: str) -> AgentProc:
    """An agent with ACLs on (default deny): up when /v1/agent/self answers the agent_master token."""
    p = cluster.agent(name, ip, "-datacenter=BJ", fast(cluster), ACL, *flags, wait=False)
    wait_for(lambda: call(p, "/v1/agent/self", token=AGENT_MASTER)[0] == 200, 20, f"agent {name} HTTP")
    return p


def join(p: AgentProc, addr: str) -> None:
    assert call(p, f"/v1/agent/join/{addr}", "PUT", token=AGENT_MASTER)[0] == 200


def call(p: AgentProc, path: str, method: str = "GET", body: Any = None, token: str = "") -> tuple[int, Any]:
    raw = json.dumps(body).encode() if body is not None else None
    sep = "&" if "?" in path else "?"
    code, _, out = http(p, path + (f"{sep}token={token}" if token else ""), method, raw)
    if code == 200 and out.strip():
        return code, json.loads(out)
    return code, out.decode(errors="replace").strip()


def test_bootstrap_policy_token_enforced_from_a_client_and_deletion(cluster: Cluster) -> None:
    ip = new_block()
    servers = [start(cluster, f"node{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3") for i in (1, 2, 3)]
    for p in servers[1:]:
        join(p, f"{ip}.1")
    wait_for(lambda: leader_of(servers), 30, "one leader agreed by all servers")
    client = start(cluster, "client1", f"{ip}.4")
    join(client, f"{ip}.1")
    a = servers[0]

    # the leader creates the builtin policy and the anonymous token; then bootstrap works exactly once
    code, boot = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(call(a, "/v1/acl/bootstrap", "PUT")),
                          30, "bootstrap")
    root = boot["SecretID"]
    assert boot["Policies"] == [{"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}]
    code, again = call(servers[1], "/v1/acl/bootstrap", "PUT")
    assert code == 403 and "ACL bootstrap no longer allowed (reset index:" in again

    # anonymous: nothing (default deny) -- ACL endpoints and KV alike
    assert call(a, "/v1/acl/policies")[0] == 403
    assert call(a, "/v1/kv/app/x", "PUT", "v")[0] == 403

    code, policy = call(a, "/v1/acl/policy", "PUT",
                        {"Name": "app-write", "Rules": 'key_prefix "app/" { policy = "write" }'}, token=root)
    assert code == 200, policy
    code, bad = call(a, "/v1/acl/policy", "PUT", {"Name": "bad", "Rules": 'nope "x" { policy = "write" }'},
                     token=root)
    assert code == 400 and "Failed to parse ACL rules" in bad
    code, tok = call(a, "/v1/acl/token", "PUT", {"Description": "app", "Policies": [{"Name": "app-write"}]},
                     token=root)
    assert code == 200, tok
    assert tok["Policies"] == [{"ID": policy["ID"], "Name": "app-write"}]
    secret, accessor = tok["SecretID"], tok["AccessorID"]

    # from the client agent: the token may write its prefix only
    wait_for(lambda: call(client, "/v1/kv/app/x", "PUT", "v", token=secret) == (200, True), 30,
             "token usable from the client agent")
    assert call(client, "/v1/kv/other/x", "PUT", "v", token=secret)[0] == 403
    assert call(client, "/v1/kv/app/x?raw", token=secret)[0] == 200
    code, me = call(client, "/v1/acl/token/self", token=secret)
    assert code == 200 and me["AccessorID"] == accessor
    assert call(client, "/v1/acl/token/self", token="00000000-dead-beef-0000-000000000000")[0] == 403

    # listing needs acl:read; a management token sees secrets
    code, listed = call(client, "/v1/acl/tokens", token=root)
    assert code == 200 and {t["AccessorID"] for t in listed} >= {accessor, "00000000-0000-0000-0000-000000000002"}
    assert all(t["SecretID"] != "<hidden>" for t in listed)
    assert call(client, "/v1/acl/tokens", token=secret)[0] == 403

    # the CLI: -token, or CONSUL_HTTP_TOKEN
    out = client.cli("acl", "policy", "list", f"-token={root}").stdout
    assert "app-write:" in out and "global-management:" in out
    created = json.loads(client.cli("acl", "token", "create", "-description=cli", "-policy-name=app-write",
                                    "-format=json", f"-token={root}").stdout)
    assert created["Policies"][0]["Name"] == "app-write"
    denied = client.cli("acl", "token", "list", check=False)
    assert denied.returncode == 1 and "403" in denied.stderr
    read = client.cli("acl", "token", "read", f"-id={created['AccessorID']}", f"-token={root}").stdout
    assert f"AccessorID:       {created['AccessorID']}" in read and "- app-write" in read
    assert "deleted successfully" in client.cli("acl", "token", "delete", f"-id={created['AccessorID']}",
                                                f"-token={root}").stdout

    # roles: a token linked to a role gets the role's policies
    role = json.loads(client.cli("acl", "role", "create", "-name=app-role", "-policy-name=app-write",
                                 "-format=json", f"-token={root}").stdout)
    via_role = json.loads(client.cli("acl", "token", "create", "-role-name=app-role", "-format=json",
                                     f"-token={root}").stdout)
    assert via_role["Roles"] == [{"ID": role["ID"], "Name": "app-role"}]
    wait_for(lambda: call(client, "/v1/kv/app/role", "PUT", "v", token=via_role["SecretID"]) == (200, True), 30,
             "a role's token usable from the client agent")
    assert call(client, "/v1/kv/other/role", "PUT", "v", token=via_role["SecretID"])[0] == 403

    # deletion: refused on the client within token_ttl (its cache), at once on the servers
    code, done = call(a, f"/v1/acl/token/{accessor}", "DELETE", token=root)
    assert (code, done) == (200, True)
    t0 = time.monotonic()
    wait_for(lambda: call(client, "/v1/kv/app/x", "PUT", "v", token=secret)[0] == 403, 30,
             "deleted token refused by the client agent")
    assert time.monotonic() - t0 < TOKEN_TTL + 10  # generous ceiling: the cache lives token_ttl
    assert call(servers[2], "/v1/kv/app/x", "PUT", "v", token=secret)[0] == 403


def test_reload_rereads_acl_tokens(cluster: Cluster) -> None:
    """acl.tokens.* are re-read on reload: a new default token applies to anonymous requests at once; a new
    master token is only created at the leader's next establishment (as Consul), so it is not valid yet."""
    ip = new_block()
    conf = cluster.tmp / "acl.json"

    def write_conf(**tokens: str) -> None:
        conf.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny",
                                            "tokens": {"agent_master": AGENT_MASTER, **tokens}}}))

    write_conf(master="master-one")
    s = cluster.agent("srv", f"{ip}.1", "-server", "-bootstrap-expect=1", fast(cluster), f"-config-file={conf}",
                      wait=False)
    wait_for(lambda: call(s, "/v1/acl/token/self", token="master-one")[0] == 200 or None, 30, "the master token")
    code, tok = call(s, "/v1/acl/token", "PUT", {"Policies": [], "Description": "reader"}, token="master-one")
    assert code == 200, tok
    code, pol = call(s, "/v1/acl/policy", "PUT", {"Name": "app-read", "Rules": 'key_prefix "app/" { policy = "read" }'},
                     token="master-one")
    assert code == 200, pol
    code, tok = call(s, f"/v1/acl/token/{tok['AccessorID']}", "PUT", {"Policies": [{"Name": "app-read"}]},
                     token="master-one")
    assert code == 200, tok
    assert call(s, "/v1/kv/app/x")[0] == 403  # anonymous, no default token

    write_conf(master="master-two", default=tok["SecretID"])
    assert call(s, "/v1/agent/reload", "PUT", token="master-one")[0] == 200
    assert call(s, "/v1/kv/app/x")[0] == 404  # read as the new default token: allowed, and no such key
    assert call(s, "/v1/kv/other/x")[0] == 403
    assert call(s, "/v1/acl/token/self", token="master-two")[0] == 403  # created at the next establishment
    assert call(s, "/v1/acl/token/self", token="master-one")[0] == 200
