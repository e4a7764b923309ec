"""ACLs across two datacenters (Consul's primary_datacenter): BJ is the primary, SH replicates its policies and
global tokens; ACL writes made in SH land in BJ; a local token stays in SH; a deletion in BJ reaches SH."""

from __future__ import annotations

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_acl import AGENT_MASTER, call
from tests.integration.test_raft_cluster import fast

pytestmark = pytest.mark.integration

ACL = (f'-hcl=primary_datacenter = "BJ"\nacl {{ enabled = true\n default_policy = "deny"\n'
       f' enable_token_replication = true\n tokens {{ agent_master = "{AGENT_MASTER}" }} }}')


def start(cluster: Cluster, name: str, ip: str, dc: str, *flags: str, acl: str = ACL) -> AgentProc:
    p = cluster.agent(name, ip, f"-datacenter={dc}", fast(cluster), acl, *(flags or ("-server", "-bootstrap")),
                      wait=False)
    wait_for(lambda: call(p, "/v1/agent/self", token=AGENT_MASTER)[0] == 200, 20, f"agent {name} HTTP")
    return p


def ok(r: tuple[int, object]) -> object:
    return r[1] if r[0] == 200 else None


def test_policies_and_tokens_replicate_from_the_primary(cluster: Cluster) -> None:
    ip = new_block()
    bj = start(cluster, "bj1", f"{ip}.1", "BJ")
    sh = start(cluster, "sh1", f"{ip}.2", "SH")
    assert call(bj, f"/v1/agent/join/{ip}.2?wan=1", "PUT", token=AGENT_MASTER)[0] == 200
    boot = wait_for(lambda: ok(call(bj, "/v1/acl/bootstrap", "PUT")), 30, "bootstrap in BJ")
    assert isinstance(boot, dict)
    root = boot["SecretID"]
    # SH's servers know the management token (asked of BJ until replicated); the replication token is set
    wait_for(lambda: call(sh, "/v1/agent/token/replication", "PUT", {"Token": root}, token=root)[0] == 200, 30,
             "replication token set in SH")

    code, policy = call(bj, "/v1/acl/policy", "PUT", {"Name": "app-write", "Rules": 'key_prefix "app/" '
                                                      '{ policy = "write" }'}, token=root)
    assert code == 200, policy
    code, tok = call(bj, "/v1/acl/token", "PUT", {"Description": "app", "Policies": [{"Name": "app-write"}]},
                     token=root)
    assert code == 200, tok
    secret, accessor = tok["SecretID"], tok["AccessorID"]

    # the policy and the token arrive in SH's own state: its KV takes the token's writes
    wait_for(lambda: ok(call(sh, f"/v1/acl/token/{accessor}", token=root)), 40, "the token replicated to SH")
    assert ok(call(sh, f"/v1/acl/policy/{policy['ID']}", token=root))
    assert call(sh, "/v1/kv/app/x", "PUT", "v", token=secret) == (200, True)
    assert call(sh, "/v1/kv/app/x", "PUT", "v")[0] == 403  # anonymous, default deny
    assert call(sh, "/v1/kv/other/x", "PUT", "v", token=secret)[0] == 403  # outside the policy
    status = call(sh, "/v1/acl/replication", token=root)[1]
    assert isinstance(status, dict)
    assert status["Enabled"] and status["Running"] and status["SourceDatacenter"] == "bj"
    assert status["ReplicationType"] == "tokens" and status["ReplicatedIndex"] > 0
    assert call(bj, "/v1/acl/replication", token=root)[1]["Enabled"] is False  # the primary replicates nothing

    # WAN forwarding with the token: a ?dc=sh read from BJ is enforced by SH
    code, rows = call(bj, "/v1/kv/app/x?dc=sh", token=secret)
    assert code == 200 and rows[0]["Key"] == "app/x"
    assert call(bj, "/v1/kv/app/x?dc=sh")[0] == 403  # anonymous: SH denies the key (acl_enforce.check_read)

    # a policy written through SH's API is written in BJ (then replicated back)
    code, via_sh = call(sh, "/v1/acl/policy", "PUT", {"Name": "from-sh", "Rules": 'key "k" { policy = "read" }'},
                        token=root)
    assert code == 200, via_sh
    assert ok(call(bj, f"/v1/acl/policy/{via_sh['ID']}", token=root))
    wait_for(lambda: ok(call(sh, f"/v1/acl/policy/{via_sh['ID']}", token=root)), 40, "from-sh replicated back")
    # a global token created through SH lives in BJ; a local one only in SH
    code, glob = call(sh, "/v1/acl/token", "PUT", {"Description": "global via sh"}, token=root)
    assert code == 200 and ok(call(bj, f"/v1/acl/token/{glob['AccessorID']}", token=root))
    code, loc = call(sh, "/v1/acl/token", "PUT", {"Description": "sh only", "Local": True,
                                                  "Policies": [{"Name": "app-write"}]}, token=root)
    assert code == 200 and loc["Local"] is True
    assert call(bj, f"/v1/acl/token/{loc['AccessorID']}", token=root)[0] == 403  # "ACL not found" there
    assert call(sh, "/v1/kv/app/local", "PUT", "v", token=loc["SecretID"]) == (200, True)

    # a token deleted in BJ stops working in SH; the local token is left alone by replication
    assert call(bj, f"/v1/acl/token/{accessor}", "DELETE", token=root) == (200, True)
    wait_for(lambda: call(sh, "/v1/kv/app/x", "PUT", "v", token=secret)[0] == 403, 40, "deletion reached SH")
    assert call(sh, "/v1/kv/app/local", "PUT", "w", token=loc["SecretID"]) == (200, True)


def test_without_token_replication_a_secondary_asks_the_primary(cluster: Cluster) -> None:
    """Consul's default (acl.enable_token_replication false): policies replicate, tokens stay in the primary and
    SH's servers and client agents resolve them there."""
    ip = new_block()
    acl = ACL.replace(" enable_token_replication = true\n", "")
    bj = start(cluster, "bj1", f"{ip}.1", "BJ", acl=acl)
    sh = start(cluster, "sh1", f"{ip}.2", "SH", acl=acl)
    client = start(cluster, "shc", f"{ip}.3", "SH", f"-join={ip}.2", acl=acl)
    assert call(bj, f"/v1/agent/join/{ip}.2?wan=1", "PUT", token=AGENT_MASTER)[0] == 200
    boot = wait_for(lambda: ok(call(bj, "/v1/acl/bootstrap", "PUT")), 30, "bootstrap in BJ")
    assert isinstance(boot, dict)
    root = boot["SecretID"]
    wait_for(lambda: call(sh, "/v1/agent/token/replication", "PUT", {"Token": root}, token=root)[0] == 200, 30,
             "replication token set in SH")
    code, policy = call(bj, "/v1/acl/policy", "PUT", {"Name": "app-write", "Rules": 'key_prefix "app/" '
                                                      '{ policy = "write" }'}, token=root)
    assert code == 200, policy
    code, tok = call(bj, "/v1/acl/token", "PUT", {"Policies": [{"Name": "app-write"}]}, token=root)
    assert code == 200, tok
    wait_for(lambda: ok(call(sh, f"/v1/acl/policy/{policy['ID']}", token=root)), 40, "the policy replicated")
    assert call(sh, f"/v1/acl/token/{tok['AccessorID']}", token=root)[0] == 403  # not in SH's state
    assert call(client, "/v1/kv/app/c", "PUT", "v", token=tok["SecretID"]) == (200, True)
    assert call(client, "/v1/kv/other/c", "PUT", "v", token=tok["SecretID"])[0] == 403
    status = call(sh, "/v1/acl/replication", token=root)[1]
    assert isinstance(status, dict) and status["ReplicationType"] == "policies" and status["ReplicatedTokenIndex"] == 0
