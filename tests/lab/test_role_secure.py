"""The role with TLS and ACLs on the lab (tests/lab/secure_inventory: the guide's BJ/SH topology,
pyconsul_tls_enabled, pyconsul_acl_enabled, default deny): site.yml deploys it and a second run changes
nothing; key files are 0600 and config 0640, owned by the agent's user; HTTPS needs a certificate of the
cluster's CA; anonymous requests write nothing and read nothing; a token with `key_prefix "app/"` write writes
app/ and not other/ (403), also forwarded to the other datacenter with a token valid there; the agent token
(default deny) registers every node; `members -wan` is complete; servers whose certificate is from another CA,
or is a client certificate, join the gossip pool but never receive the Raft log. The lab is taken down
afterwards whatever happens."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INV = "tests/lab/secure_inventory"
SECRETS = ROOT / ".secrets" / "secure_inventory"
HOSTS = ["sec-bj1", "sec-bj2", "sec-bj3", "sec-sh1", "sec-sh2"]
BJ, SH = "10.77.14.11", "10.77.14.14"
SERVERS_WAN = {"sec-bj1.bj", "sec-bj2.bj", "sec-bj3.bj", "sec-sh1.sh"}

pytestmark = pytest.mark.slow


def _run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def on(host: str, command: str) -> str:
    proc = _run(str(BIN / "pyconsul-lab"), "ssh", host, "-i", INV, "--", command, timeout=60)
    assert proc.returncode == 0, f"{host}: {command}: {proc.stdout}{proc.stderr}"
    return proc.stdout.strip()


def call(addr: str, path: str, *, method: str = "GET", token: str = "", body: Any = None,
         port: int = 8500) -> tuple[int, Any]:
    """(status, decoded JSON body or None) of one plain-HTTP request."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"http://{addr}:{port}{path}", data=data, method=method,
                                 headers={"X-Consul-Token": token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, raw.decode(errors="replace")


def recap(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^(sec-\w+)\s+:\s+(.*)$", stdout, re.M))


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    assert os.geteuid() == 0, "the lab needs root"
    _run(str(BIN / "pyconsul-lab"), "down", "-i", INV)
    shutil.rmtree(SECRETS, ignore_errors=True)  # a new lab: a new CA and new tokens
    up = _run(str(BIN / "pyconsul-lab"), "up", "-i", INV, timeout=600)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield
    finally:
        down = _run(str(BIN / "pyconsul-lab"), "down", "-i", INV)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, str]:
    """A frozen copy of the sources: edits in the work tree during the test must not look like an upgrade."""
    src = tmp_path / "src"
    proc = _run(sys.executable, str(ROOT / "playbooks/roles/pyconsul/files/build_wheelhouse.py"), "--source",
                str(ROOT), "--snapshot", str(src), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"pyconsul_source_dir": str(src)}


def _cli(cwd: Path, *args: str) -> None:
    proc = subprocess.run([str(BIN / "pyconsul"), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _https_leader(cert: tuple[str, str] | None) -> int:
    ctx = ssl.create_default_context(cafile=str(SECRETS / "tls" / "consul-agent-ca.pem"))
    if cert:
        ctx.load_cert_chain(*cert)
    with urllib.request.urlopen(f"https://{BJ}:8501/v1/status/leader", timeout=10, context=ctx) as resp:
        return int(resp.status)


def test_secure_cluster(lab: None, sources: dict[str, str], tmp_path: Path) -> None:
    site = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", json.dumps(sources))
    assert site.returncode == 0, site.stdout[-8000:] + site.stderr[-2000:]
    again = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", json.dumps(sources))
    assert again.returncode == 0, again.stdout[-8000:] + again.stderr[-2000:]
    counts = recap(again.stdout)
    assert sorted(counts) == sorted(HOSTS)
    for host, line in counts.items():
        assert "changed=0" in line and "failed=0" in line, f"{host}: {line}"

    # Files: the controller keeps the CA and the tokens (0600); hosts get their own certificate.
    secrets = json.loads((SECRETS / "acl.json").read_text())
    master = secrets["master"]
    assert (SECRETS / "acl.json").stat().st_mode & 0o777 == 0o600
    assert (SECRETS / "tls" / "consul-agent-ca-key.pem").stat().st_mode & 0o777 == 0o600
    tls = "/etc/pyconsul/tls"
    assert on("sec-bj1", f"stat -c '%a %U' {tls}/agent-key.pem {tls}/agent.pem /etc/pyconsul/agent.d/config.json"
              ).splitlines() == ["600 pyconsul", "640 pyconsul", "640 pyconsul"]
    assert "server.bj.consul" in on("sec-bj1", f"openssl x509 -in {tls}/agent.pem -noout -ext subjectAltName")
    assert "client.sh.consul" in on("sec-sh2", f"openssl x509 -in {tls}/agent.pem -noout -ext subjectAltName")
    assert '"master"' not in on("sec-sh2", "cat /etc/pyconsul/agent.d/config.json"), "no management token on clients"

    # HTTPS: only with a certificate of the cluster's CA (sec-sh2's client certificate here).
    client = SECRETS / "tls" / "sec-sh2"
    assert _https_leader((str(client / "sh-client-consul-0.pem"), str(client / "sh-client-consul-0-key.pem"))) == 200
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError, OSError)):
        _https_leader(None)

    # The agent token works under default deny: every node registered itself (anti-entropy), in both DCs.
    def nodes(dc: str, token: str) -> set[str]:
        status, body = call(BJ, f"/v1/catalog/nodes?dc={dc}", token=token)
        assert status == 200, body
        return {n["Node"] for n in body}

    wait_for(lambda: nodes("bj", master) == {"sec-bj1", "sec-bj2", "sec-bj3"} or None, 60, "BJ's nodes registered")
    wait_for(lambda: nodes("sh", master) == {"sec-sh1", "sec-sh2"} or None, 60, "SH's nodes, the client too")
    # members -wan complete (with the management token; anonymous sees none of them).
    status, wan = call(BJ, "/v1/agent/members?wan=1", token=master)
    assert status == 200 and {m["Name"] for m in wan if m["Status"] == 1} == SERVERS_WAN, wan
    assert call(BJ, "/v1/agent/members?wan=1") == (200, [])

    # Anonymous: no writes, no reads.
    assert call(BJ, "/v1/kv/app/x", method="PUT", body=b"anon")[0] == 403
    assert call(SH, "/v1/kv/other/x", method="PUT", body=b"anon")[0] == 403
    assert nodes("bj", "") == set() and nodes("sh", "") == set()
    assert call(BJ, "/v1/catalog/services")[1] == {}

    # A token with key_prefix "app/" write, created in each datacenter (ACLs are per datacenter, the ACL
    # endpoints answer for their own) with the same secret: it writes app/ and not other/, locally and
    # forwarded to SH from BJ. The management token (acl.tokens.master) is valid in both.
    app = str(uuid.uuid4())
    for server in (BJ, SH):
        status, pol = call(server, "/v1/acl/policy", method="PUT", token=master,
                           body={"Name": "app-writer", "Rules": 'key_prefix "app/" { policy = "write" }'})
        assert status == 200, pol
        status, tok = call(server, "/v1/acl/token", method="PUT", token=master,
                           body={"SecretID": app, "Policies": [{"Name": "app-writer"}]})
        assert status == 200, tok
    # A follower resolves tokens from its own state: it knows the token once it has applied the write.
    wait_for(lambda: call(BJ, "/v1/acl/token/self", token=app)[0] == 200 or None, 10, "the token known to BJ")
    assert call(BJ, "/v1/kv/app/x", method="PUT", token=app, body=b"1") == (200, True)
    assert call(BJ, "/v1/kv/other/x", method="PUT", token=app, body=b"1")[0] == 403
    assert call(BJ, "/v1/kv/app/y?dc=sh", method="PUT", token=app, body=b"2") == (200, True)
    assert call(BJ, "/v1/kv/other/y?dc=sh", method="PUT", token=app, body=b"2")[0] == 403
    status, got = call(BJ, "/v1/kv/app/y?dc=sh", token=app)
    assert status == 200 and got[0]["Key"] == "app/y"
    # Anonymous: a denied key is a 403 (Consul's KVS.Get), a listing is filtered down to nothing (404).
    assert call(BJ, "/v1/kv/app/x")[0] == 403 and call(BJ, "/v1/kv/app/y?dc=sh")[0] == 403
    assert call(BJ, "/v1/kv/?recurse")[0] == 404 and call(BJ, "/v1/kv/?keys")[0] == 404

    # Servers without a valid certificate (another CA's server certificate; a client certificate of the
    # cluster's CA) join the gossip pool with the gossip key but never receive the Raft log.
    other = tmp_path / "other-ca"
    other.mkdir()
    _cli(other, "tls", "ca", "create")
    _cli(other, "tls", "cert", "create", "-server", "-dc=bj", "-additional-ipaddress=10.77.14.12")
    mine = tmp_path / "client-cert"
    mine.mkdir()
    _cli(mine, "tls", "cert", "create", "-client", "-dc=bj", "-additional-ipaddress=10.77.14.13",
         f"-ca={SECRETS}/tls/consul-agent-ca.pem", f"-key={SECRETS}/tls/consul-agent-ca-key.pem")
    key = (SECRETS / "gossip.key").read_text().strip()
    rogues = {"rogue-ca": ("sec-bj2", "10.77.14.12", other / "consul-agent-ca.pem", other / "bj-server-consul-0"),
              "rogue-client": ("sec-bj3", "10.77.14.13", SECRETS / "tls" / "consul-agent-ca.pem",
                               mine / "bj-client-consul-0")}
    pids: dict[str, str] = {}
    try:
        for name, (host, ip, ca, cert) in rogues.items():
            conf = tmp_path / f"{name}.json"
            conf.write_text(json.dumps({
                "node_name": name, "datacenter": "bj", "server": True, "data_dir": str(tmp_path / f"{name}-data"),
                "bind_addr": ip, "client_addr": ip, "retry_join": [f"{BJ}:8301"], "retry_interval": "1s",
                "encrypt": key,
                "ports": {"http": 18500, "dns": -1, "server": 18300, "serf_lan": 18301, "serf_wan": 18302},
                "ca_file": str(ca), "cert_file": f"{cert}.pem", "key_file": f"{cert}-key.pem",
                "verify_incoming": True, "verify_outgoing": True, "verify_server_hostname": True}))
            pids[name] = on(host, f"setsid nohup /opt/pyconsul/venv/bin/pyconsul agent -config-file={conf} "
                                  f">{tmp_path / name}.log 2>&1 </dev/null & echo $!")

        def lan_alive() -> set[str]:
            return {m["Name"] for m in call(BJ, "/v1/agent/members", token=master)[1] if m["Status"] == 1}

        wait_for(lambda: set(rogues) <= lan_alive() or None, 60, "the rogue servers in the LAN pool")
        assert call(BJ, "/v1/kv/app/z", method="PUT", token=master, body=b"3") == (200, True)
        wait_for(lambda: call("10.77.14.13", "/v1/kv/app/z?stale", token=master)[0] == 200 or None, 30,
                 "a real follower has the write")
        for name, (_host, ip, _ca, _cert) in rogues.items():
            assert call(ip, "/v1/status/leader", port=18500) == (200, ""), f"{name} knows a leader"
            assert call(ip, "/v1/status/peers", port=18500) == (200, []), f"{name} has Raft peers"
            assert call(ip, "/v1/kv/app/z?stale", port=18500)[0] != 200, f"{name} has the log"
        status, raft = call(BJ, "/v1/operator/raft/configuration", token=master)
        assert status == 200
        leaders = [s["Node"] for s in raft["Servers"] if s["Leader"]]
        assert len(leaders) == 1 and leaders[0] in {"sec-bj1", "sec-bj2", "sec-bj3"}, raft
        # members -wan still complete
        status, wan = call(BJ, "/v1/agent/members?wan=1", token=master)
        assert {m["Name"] for m in wan if m["Status"] == 1} >= SERVERS_WAN, wan
    finally:
        for name, pid in pids.items():
            if pid.isdigit():
                on(rogues[name][0], f"kill {pid} || true")
    # Gone for good (the next test restarts servers: dead voters would cost BJ its quorum).
    for name, (_host, ip, _ca, _cert) in rogues.items():
        call(BJ, f"/v1/operator/raft/peer?address={ip}:18300", method="DELETE", token=master)
        call(BJ, f"/v1/agent/force-leave/{name}", method="PUT", token=master)

    def raft_nodes() -> set[str]:
        return {s["Node"] for s in call(BJ, "/v1/operator/raft/configuration", token=master)[1]["Servers"]}

    wait_for(lambda: raft_nodes() == {"sec-bj1", "sec-bj2", "sec-bj3"} or None, 30, "BJ's Raft without rogues")


@pytest.mark.xfail(strict=False, reason="known bug (issue 14 note): after the master-token rotation the old master "
                   "token, once deleted, still answers 200 on /v1/acl/token/self; a leader that still holds the old "
                   "acl.tokens.master (ACL tokens are not re-read on reload) recreates it within 1 s")
def test_rotation_with_the_role(lab: None, sources: dict[str, str]) -> None:
    """docs/security.md "Rotation with the role", on the cluster of the test above: the gossip key through the
    keyring then `-e pyconsul_encrypt`, a host's certificate and the agent token by deleting them on the
    controller, the management token created first and then put into acl.json; the next run with the new key
    in the file changes nothing; the old management token is deleted by hand."""
    old = json.loads((SECRETS / "acl.json").read_text())
    serial = on("sec-bj1", "openssl x509 -in /etc/pyconsul/tls/agent.pem -noout -serial")
    def cli(server: str, *args: str) -> str:
        env = {**os.environ, "CONSUL_HTTP_ADDR": f"{server}:8500", "CONSUL_HTTP_TOKEN": old["master"]}
        proc = subprocess.run([str(BIN / "pyconsul"), *args], env=env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"
        return proc.stdout.strip()

    # The keyring, once per datacenter (through one of its servers), as documented.
    new_key = cli(BJ, "keygen")
    old_key = (SECRETS / "gossip.key").read_text().strip()
    for op in (f"-install={new_key}", f"-use={new_key}", f"-remove={old_key}"):
        for server in (BJ, SH):
            cli(server, "keyring", op)
    # The new management token is created with the old one in each datacenter first (restarted servers
    # authenticate the role's checks with it before their leader is restarted), then put into acl.json.
    master = str(uuid.uuid4())
    for server in (BJ, SH):
        status, tok = call(server, "/v1/acl/token", method="PUT", token=old["master"],
                           body={"SecretID": master, "Description": "Master Token",
                                 "Policies": [{"ID": "00000000-0000-0000-0000-000000000001"}]})
        assert status == 200, tok
    # A host's certificate and the agent token: deleted on the controller.
    shutil.rmtree(SECRETS / "tls" / "sec-bj1")
    (SECRETS / "acl.json").write_text(json.dumps({"master": master, "agent_accessor": old["agent_accessor"],
                                                  "agent_master": old["agent_master"]}))
    run = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e",
               json.dumps({**sources, "pyconsul_encrypt": new_key}))
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    (SECRETS / "gossip.key").write_text(new_key + "\n")
    again = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", json.dumps(sources))
    assert again.returncode == 0, again.stdout[-8000:] + again.stderr[-2000:]
    for host, line in recap(again.stdout).items():
        assert "changed=0" in line and "failed=0" in line, f"{host}: {line}"

    new = json.loads((SECRETS / "acl.json").read_text())
    assert new["master"] == master and new["agent_secret"] != old["agent_secret"]
    assert new["agent_accessor"] == old["agent_accessor"] and new["agent_master"] == old["agent_master"]
    # The certificate is new, from the same CA, and the cluster runs with it (site.yml verified it).
    assert on("sec-bj1", "openssl x509 -in /etc/pyconsul/tls/agent.pem -noout -serial") != serial
    assert on("sec-bj1", "openssl verify -CAfile /etc/pyconsul/tls/ca.pem /etc/pyconsul/tls/agent.pem").endswith("OK")
    # Only the new gossip key, in every pool.
    status, rings = call(BJ, "/v1/operator/keyring", token=new["master"])
    assert status == 200 and rings and all(set(r["Keys"]) == {new_key} for r in rings), rings
    for server in (BJ, SH):
        # The new agent token (same AccessorID) replaced the old one in each datacenter.
        status, tok = call(server, f"/v1/acl/token/{old['agent_accessor']}", token=new["master"])
        assert status == 200 and tok["SecretID"] == new["agent_secret"], tok
        assert call(server, "/v1/acl/token/self", token=old["agent_secret"])[0] == 403
        # The old management token stays valid until deleted (as documented), then it is gone.
        assert call(server, "/v1/acl/token/self", token=old["master"])[0] == 200
        status, tokens = call(server, "/v1/acl/tokens", token=new["master"])
        stale = [t["AccessorID"] for t in tokens if t["SecretID"] == old["master"]]
        assert len(stale) == 1, tokens
        assert call(server, f"/v1/acl/token/{stale[0]}", method="DELETE", token=new["master"]) == (200, True)
        assert call(server, "/v1/acl/token/self", token=old["master"])[0] == 403
