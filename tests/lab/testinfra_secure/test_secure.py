"""A cluster deployed with TLS and ACLs, default deny (see conftest.py for how to run these).

Per host: the key is 0600 and the certificate and config.json 0640, owned by the agent's user; the certificate
names `server.<dc>.consul` or `client.<dc>.consul`; no management token on clients.
Per cluster: HTTPS only with a certificate of the cluster's CA; the agent token registers every node under
default deny; `members -wan` is complete; anonymous requests write nothing and read nothing (HTTP and DNS); a
token with `key_prefix "app/"` write writes app/ and not other/ (403), locally and forwarded to the other
datacenter; servers whose certificate is from another CA, or is a client certificate, join the gossip pool but
never become voters, never learn the leader and never get the Raft log.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.harness import wait_for
from tests.lab.testinfra.conftest import Agent
from tests.lab.testinfra_secure.conftest import call, first_server

BIN = Path(sys.executable).parent
TLS = "/etc/pyconsul/tls"


# ------------------------------------------------------------------ per host


def test_tls_and_acl_files(host: Any, agent: Agent) -> None:
    key, cert = host.file(f"{TLS}/agent-key.pem"), host.file(f"{TLS}/agent.pem")
    config = host.file("/etc/pyconsul/agent.d/config.json")
    assert (key.mode, key.user) == (0o600, "pyconsul")
    assert (cert.mode, cert.user) == (0o640, "pyconsul")
    assert (config.mode, config.user) == (0o640, "pyconsul")
    san = host.check_output(f"openssl x509 -in {TLS}/agent.pem -noout -ext subjectAltName")
    assert f"{'server' if agent.server else 'client'}.{agent.dc}.consul" in san, san
    acl = json.loads(config.content_string)["acl"]
    assert acl["default_policy"] == "deny" and acl["tokens"]["agent"]
    assert ("master" in acl["tokens"]) is agent.server, "the management token is on servers only"


# ------------------------------------------------------------------ per cluster


def _https_status(a: Agent, ca: Path, cert: tuple[str, str] | None) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(*cert)
    with urllib.request.urlopen(f"https://{a.addr}:8501/v1/status/leader", timeout=10, context=ctx) as resp:
        return int(resp.status)


def test_https_needs_a_certificate_of_the_ca(everyone: list[Agent], secrets: Path) -> None:
    bj = first_server(everyone, "bj")
    client = next(a for a in everyone if not a.server)
    certs = sorted((secrets / "tls" / client.name).glob("*-client-consul-0.pem"))
    assert certs, f"no client certificate of {client.name} on the controller"
    pem = str(certs[0])
    assert _https_status(bj, secrets / "tls" / "consul-agent-ca.pem", (pem, pem[:-4] + "-key.pem")) == 200
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError, OSError)):
        _https_status(bj, secrets / "tls" / "consul-agent-ca.pem", None)


def test_agent_token_registers_every_node(everyone: list[Agent], master: str) -> None:
    bj = first_server(everyone, "bj")
    for dc in sorted({a.dc for a in everyone}):
        want = {a.name for a in everyone if a.dc == dc}

        def registered(dc: str = dc, want: set[str] = want) -> bool | None:
            status, body = call(bj, f"/v1/catalog/nodes?dc={dc}", token=master)
            assert status == 200, body
            return {n["Node"] for n in body} == want or None

        wait_for(registered, 60, f"every node of {dc} registered (anti-entropy)")


def test_members_wan_complete(everyone: list[Agent], master: str) -> None:
    want = {a.wan_name for a in everyone if a.server}
    for a in everyone:
        if a.server:
            status, wan = call(a, "/v1/agent/members?wan=1", token=master)
            assert status == 200 and {m["Name"] for m in wan if m["Status"] == 1} == want, (a.name, wan)
    assert call(first_server(everyone, "bj"), "/v1/agent/members?wan=1") == (200, []), "anonymous sees none"


def _dns_a(a: Agent, name: str) -> set[str]:
    msg = dns.query.udp(dns.message.make_query(name, "A"), a.addr, port=8600, timeout=5)
    return {rr.address for s in msg.answer if s.rdtype == dns.rdatatype.A for rr in s}


def test_anonymous_gets_nothing(everyone: list[Agent], master: str) -> None:
    bj, sh = first_server(everyone, "bj"), first_server(everyone, "sh")
    assert call(bj, "/v1/kv/app/x", method="PUT", body=b"anon")[0] == 403
    assert call(sh, "/v1/kv/other/x", method="PUT", body=b"anon")[0] == 403
    for dc in ("bj", "sh"):
        assert call(bj, f"/v1/catalog/nodes?dc={dc}") == (200, [])
    assert call(bj, "/v1/catalog/services")[1] == {}
    assert call(bj, "/v1/kv/?recurse")[0] == 404 and call(bj, "/v1/kv/?keys")[0] == 404
    # DNS answers as acl.tokens.default: none here (pyconsul_acl_dns_token is off), so the anonymous token.
    assert call(bj, "/v1/catalog/node/" + bj.name, token=master)[0] == 200
    assert _dns_a(bj, f"{bj.name}.node.consul") == set()
    assert _dns_a(bj, "consul.service.consul") == set()


def test_key_prefix_token_writes_its_prefix_only(everyone: list[Agent], master: str) -> None:
    """Created in each datacenter (ACLs are per datacenter) with the same secret: it writes app/ and not
    other/, locally and forwarded to SH from BJ. The management token is valid in both."""
    bj, sh = first_server(everyone, "bj"), first_server(everyone, "sh")
    app = str(uuid.uuid4())
    for server in (bj, sh):
        status, pol = call(server, "/v1/acl/policy", method="PUT", token=master,
                           body={"Name": f"app-writer-{app[:8]}", "Rules": 'key_prefix "app/" { policy = "write" }'})
        assert status == 200, pol
        status, tok = call(server, "/v1/acl/token", method="PUT", token=master,
                           body={"SecretID": app, "Policies": [{"Name": f"app-writer-{app[:8]}"}]})
        assert status == 200, tok
    # A follower resolves tokens from its own state: it knows the token once it has applied the write.
    wait_for(lambda: call(bj, "/v1/acl/token/self", token=app)[0] == 200 or None, 10, "the token known to BJ")
    assert call(bj, "/v1/kv/app/x", method="PUT", token=app, body=b"1") == (200, True)
    assert call(bj, "/v1/kv/other/x", method="PUT", token=app, body=b"1")[0] == 403
    assert call(bj, "/v1/kv/app/y?dc=sh", method="PUT", token=app, body=b"2") == (200, True)
    assert call(bj, "/v1/kv/other/y?dc=sh", method="PUT", token=app, body=b"2")[0] == 403
    status, got = call(bj, "/v1/kv/app/y?dc=sh", token=app)
    assert status == 200 and got[0]["Key"] == "app/y"
    # Anonymous: a denied key is a 403 (Consul's KVS.Get).
    assert call(bj, "/v1/kv/app/x")[0] == 403 and call(bj, "/v1/kv/app/y?dc=sh")[0] == 403


def _cli(cwd: Path, *args: str) -> None:
    proc = subprocess.run([str(BIN / "pyconsul"), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_servers_without_a_valid_certificate_never_get_the_log(everyone: list[Agent], master: str, secrets: Path,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    """Another CA's server certificate, and a client certificate of the cluster's CA: both rogue servers join
    the gossip pool with the gossip key, but never learn the leader nor receive the Raft log. They run on two
    BJ hosts beside the real agents (other ports) and are removed afterwards."""
    tmp = tmp_path_factory.mktemp("rogues")
    bj_servers = [a for a in everyone if a.server and a.dc == "bj"]
    assert len(bj_servers) >= 3, "needs three BJ servers"
    leader_host, ca_host, client_host = bj_servers[0], bj_servers[1], bj_servers[2]
    other = tmp / "other-ca"
    other.mkdir()
    _cli(other, "tls", "ca", "create")
    _cli(other, "tls", "cert", "create", "-server", "-dc=bj", f"-additional-ipaddress={ca_host.addr}")
    mine = tmp / "client-cert"
    mine.mkdir()
    _cli(mine, "tls", "cert", "create", "-client", "-dc=bj", f"-additional-ipaddress={client_host.addr}",
         f"-ca={secrets}/tls/consul-agent-ca.pem", f"-key={secrets}/tls/consul-agent-ca-key.pem")
    key = (secrets / "gossip.key").read_text().strip()
    rogues = {"rogue-ca": (ca_host, other / "consul-agent-ca.pem", other / "bj-server-consul-0"),
              "rogue-client": (client_host, secrets / "tls" / "consul-agent-ca.pem", mine / "bj-client-consul-0")}
    pids: dict[str, str] = {}
    try:
        for name, (a, ca, cert) in rogues.items():
            conf = tmp / f"{name}.json"
            conf.write_text(json.dumps({
                "node_name": name, "datacenter": "bj", "server": True, "data_dir": str(tmp / f"{name}-data"),
                "bind_addr": a.addr, "client_addr": a.addr, "retry_join": [f"{leader_host.addr}:8301"],
                "retry_interval": "1s", "encrypt": key,
                "ports": {"http": 18500, "dns": -1, "server": 18300, "serf_lan": 18301, "serf_wan": 18302},
                "ca_file": str(ca), "cert_file": f"{cert}.pem", "key_file": f"{cert}-key.pem",
                "verify_incoming": True, "verify_outgoing": True, "verify_server_hostname": True}))
            pids[name] = a.host.check_output(
                f"setsid nohup {a.venv}/bin/pyconsul agent -config-file={conf} >{tmp / name}.log 2>&1 </dev/null "
                "& echo $!").strip()

        def lan_alive() -> set[str]:
            return {m["Name"] for m in call(leader_host, "/v1/agent/members", token=master)[1] if m["Status"] == 1}

        wait_for(lambda: set(rogues) <= lan_alive() or None, 60, "the rogue servers in the LAN pool")
        assert call(leader_host, "/v1/kv/app/z", method="PUT", token=master, body=b"3") == (200, True)
        wait_for(lambda: call(client_host, "/v1/kv/app/z?stale", token=master)[0] == 200 or None, 30,
                 "a real follower has the write")
        for name, (a, _ca, _cert) in rogues.items():
            assert call(a, "/v1/status/leader", port=18500) == (200, ""), f"{name} knows a leader"
            assert call(a, "/v1/status/peers", port=18500) == (200, []), f"{name} has Raft peers"
            assert call(a, "/v1/kv/app/z?stale", port=18500)[0] != 200, f"{name} has the log"
        status, raft = call(leader_host, "/v1/operator/raft/configuration", token=master)
        assert status == 200
        # The leader may add a rogue to the configuration as a non-voter (autopilot: a new server waits there
        # until it is healthy), but it never becomes a voter: it cannot get the log over server RPC.
        voters = {s["Node"] for s in raft["Servers"] if s["Voter"]}
        assert voters == {a.name for a in bj_servers}, raft
        leaders = [s["Node"] for s in raft["Servers"] if s["Leader"]]
        assert len(leaders) == 1 and leaders[0] in voters, raft
        want = {a.wan_name for a in everyone if a.server}
        status, wan = call(leader_host, "/v1/agent/members?wan=1", token=master)
        assert {m["Name"] for m in wan if m["Status"] == 1} >= want, wan
    finally:
        for name, pid in pids.items():
            if pid.isdigit():
                rogues[name][0].host.run(f"kill {pid}")
        # Gone for good (later runs restart servers: dead voters would cost BJ its quorum).
        for name, (a, _ca, _cert) in rogues.items():
            call(leader_host, f"/v1/operator/raft/peer?address={a.addr}:18300", method="DELETE", token=master)
            call(leader_host, f"/v1/agent/force-leave/{name}", method="PUT", token=master)

    def raft_nodes() -> set[str]:
        return {s["Node"] for s in call(leader_host, "/v1/operator/raft/configuration", token=master)[1]["Servers"]}

    wait_for(lambda: raft_nodes() == {a.name for a in bj_servers} or None, 30, "BJ's Raft without rogues")
