"""The role's ACL setup script (playbooks/roles/pyconsul/files/acl_setup.py, run by tasks/acl.yml) against a
real agent with ACLs on and default deny. While acl.tokens.default names a token not created yet, requests
without a token are refused but /v1/status/leader and peers answer (as Consul: no token resolution). The script
creates the agent policy and token and, with `dns`
(pyconsul_acl_dns_token), the DNS policy and the token whose secret is acl.tokens.default, after which DNS
answers and anonymous HTTP reads nodes (the default token) but still writes nothing; a second run changes
nothing; `dns_off` deletes the DNS token again and DNS answers nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import FAST_CONFIG, http

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "playbooks/roles/pyconsul/files/acl_setup.py"
DEFAULTS = ROOT / "playbooks/roles/pyconsul/defaults/main.yml"


def call(p: AgentProc, path: str, method: str = "GET", body: bytes | None = None, token: str = "") -> int:
    sep = "&" if "?" in path else "?"
    return http(p, path + (f"{sep}token={token}" if token else ""), method, body)[0]


def dns_addrs(p: AgentProc, name: str) -> set[str]:
    msg = dns.query.udp(dns.message.make_query(name, "A"), p.ip, port=8600, timeout=5)
    return {rr.address for s in msg.answer if s.rdtype == dns.rdatatype.A for rr in s}


def setup(p: AgentProc, config: Path, **extra: Any) -> dict[str, Any]:
    """One run of acl_setup.py as tasks/acl.yml runs it (python3 -c <file> <json>)."""
    args = {"url": f"http://{p.http}", "config": str(config), "policy": "pyconsul-agent",
            "rules": 'node_prefix "" { policy = "write" }\nservice_prefix "" { policy = "read" }\n',
            "accessor": AGENT_ACCESSOR, "timeout": 30, **extra}
    proc = subprocess.run([sys.executable, "-c", SETUP.read_text(), json.dumps(args)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


AGENT_ACCESSOR, DNS_ACCESSOR = str(uuid.uuid4()), str(uuid.uuid4())


def test_agent_and_dns_tokens(cluster: Cluster) -> None:
    import yaml

    dns_rules = yaml.safe_load(DEFAULTS.read_text())["pyconsul_acl_dns_rules"]  # the role's default rules
    master, agent, default = (str(uuid.uuid4()) for _ in range(3))
    config = cluster.tmp / "config.json"
    config.write_text(json.dumps({**FAST_CONFIG, "acl": {
        "enabled": True, "default_policy": "deny", "enable_token_persistence": False,
        "tokens": {"master": master, "agent": agent, "default": default}}}))
    ip = new_block()
    p = cluster.agent("node1", f"{ip}.1", "-server", "-bootstrap-expect=1", f"-config-file={config}", wait=False)
    wait_for(lambda: call(p, "/v1/acl/token/self", token=master) == 200 or None, 30,
             "the management token created by the leader")
    # acl.tokens.default names a token that does not exist yet (the role's order: config first, then the
    # token): requests without a token fail with it ("ACL not found"), except /v1/status/leader and peers,
    # which Consul answers without looking at the token (the role's health checks rely on them).
    assert call(p, "/v1/catalog/nodes") == 403
    status, _, body = http(p, "/v1/status/leader")
    assert status == 200 and json.loads(body) == f"{ip}.1:8300"
    assert http(p, "/v1/status/peers")[0] == 200
    dns_arg = {"policy": "pyconsul-dns", "rules": dns_rules, "accessor": DNS_ACCESSOR}

    first = setup(p, config, dns=dns_arg)
    assert first["changed"] and set(first["did"]) == {"agent policy created", "agent token created",
                                                      "DNS policy created", "DNS token created"}, first
    # DNS answers as acl.tokens.default, which now exists with node/service read; so does anonymous HTTP
    # (the documented price of the option), which still writes nothing.
    wait_for(lambda: dns_addrs(p, "node1.node.consul") == {f"{ip}.1"} or None, 30, "DNS answers with the token")
    assert dns_addrs(p, "consul.service.consul") == {f"{ip}.1"}
    status, _, body = http(p, "/v1/catalog/nodes")
    assert status == 200 and [n["Node"] for n in json.loads(body)] == ["node1"]
    assert call(p, "/v1/kv/x", "PUT", b"anon") == 403

    again = setup(p, config, dns=dns_arg)
    assert again == {"changed": False, "did": []}

    off = setup(p, config, dns_off=DNS_ACCESSOR)
    assert off == {"changed": True, "did": ["DNS token deleted"]}
    assert call(p, f"/v1/acl/token/{DNS_ACCESSOR}", token=master) != 200
    assert dns_addrs(p, "node1.node.consul") == set()
    assert setup(p, config, dns_off=DNS_ACCESSOR) == {"changed": False, "did": []}


def test_dns_needs_the_default_token_in_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"acl": {"tokens": {"master": "m", "agent": "a"}}}))
    args = {"url": "http://127.0.0.1:1", "config": str(config), "policy": "p", "rules": "", "accessor": "x",
            "dns": {"policy": "d", "rules": "", "accessor": "y"}}
    proc = subprocess.run([sys.executable, "-c", SETUP.read_text(), json.dumps(args)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "acl.tokens.default (the DNS token) is needed" in proc.stdout, proc.stdout
