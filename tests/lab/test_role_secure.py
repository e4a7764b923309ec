"""The role with TLS and ACLs on the lab, through molecule scenario `secure` (molecule/secure: the hosts of
tests/lab/secure_inventory, the guide's BJ/SH topology with pyconsul_tls_enabled, pyconsul_acl_enabled and
default deny). One deployment serves both tests: the module fixture runs `molecule create` and `converge`
(site.yml); the first test runs `molecule idempotence` (changed=0 on every host) and `molecule verify` (the
testinfra suite tests/lab/testinfra_secure: file modes, HTTPS, anonymous requests refused, a key_prefix "app/"
token, servers without a valid certificate kept out of Raft, members -wan); the second runs the rotation
procedures of docs/security.md on the same cluster. `molecule destroy` (and `pyconsul-lab down`) afterwards,
whatever happens."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INV = "tests/lab/secure_inventory"
SECRETS = ROOT / ".secrets" / "secure_inventory"
HOSTS = ["sec-bj1", "sec-bj2", "sec-bj3", "sec-sh1", "sec-sh2"]
BJ, SH = "10.77.14.11", "10.77.14.14"

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    env.update(extra)
    return env


def _run(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=timeout,
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


def _dns_a(addr: str, name: str) -> set[str]:
    """A answers of the agent's DNS interface at addr:8600 for `name`."""
    msg = dns.query.udp(dns.message.make_query(name, "A"), addr, port=8600, timeout=5)
    return {rr.address for s in msg.answer if s.rdtype == dns.rdatatype.A for rr in s}


def recap(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^(sec-\w+)\s+:\s+(.*)$", stdout, re.M))


class Molecule:
    """`molecule <step> -s secure` with its own ephemeral directory (the sources snapshot of create is in
    <ephemeral>/src); each step's stdout and stderr in one stream."""

    def __init__(self, ephemeral: Path) -> None:
        self.ephemeral = ephemeral
        self.env = _env(MOLECULE_EPHEMERAL_DIRECTORY=str(ephemeral))
        self.env.pop("ANSIBLE_CONFIG")  # molecule writes its own

    def __call__(self, step: str, timeout: float = 900) -> str:
        proc = subprocess.run([str(BIN / "molecule"), step, "-s", "secure"], cwd=ROOT, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"molecule {step}:\n{proc.stdout[-16000:]}"
        return proc.stdout

    @property
    def sources(self) -> dict[str, str]:
        """The frozen sources of create: edits in the work tree during the test must not look like an upgrade."""
        return {"pyconsul_source_dir": str(self.ephemeral / "src")}


@pytest.fixture(scope="module")
def molecule(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Molecule]:
    """A deployed secure cluster: molecule create + converge (site.yml); destroyed afterwards whatever happens."""
    assert os.geteuid() == 0, "the lab needs root"
    _run(str(BIN / "pyconsul-lab"), "down", "-i", INV)
    shutil.rmtree(SECRETS, ignore_errors=True)  # a new lab: a new CA and new tokens
    mol = Molecule(tmp_path_factory.mktemp("molecule-secure"))
    try:
        mol("create", timeout=600)
        mol("converge")
        yield mol
    finally:
        # The agents' logs (their directory is private to each host and goes with `down`), kept for a failure
        # in the git-ignored reports/ (pytest's own temporary directories are pruned by later runs).
        logs = ROOT / "reports" / "secure-lab"
        logs.mkdir(parents=True, exist_ok=True)
        for host in HOSTS:
            got = _run(str(BIN / "pyconsul-lab"), "ssh", host, "-i", INV, "--",
                       "tail -n 400 /var/log/pyconsul/agent.log", timeout=60)
            (logs / f"{host}.log").write_text(got.stdout + got.stderr)
        destroy = subprocess.run([str(BIN / "molecule"), "destroy", "-s", "secure"], cwd=ROOT, env=mol.env,
                                 capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        down = _run(str(BIN / "pyconsul-lab"), "down", "-i", INV)  # also when molecule could not
        assert destroy.returncode == 0, destroy.stdout[-4000:] + destroy.stderr[-4000:]
        assert down.returncode == 0, down.stdout + down.stderr


def _step(out: str, step: str) -> str:
    """What molecule's `step` printed between its markers."""
    start = out.index(f"[secure > {step}] Executing")
    return out[start:out.index(f"[secure > {step}] Executed", start)]


def test_secure_cluster(molecule: Molecule) -> None:
    """Idempotence (a second site.yml run changes nothing on any host), then the testinfra suite."""
    out = molecule("idempotence")
    counts = recap(_step(out, "idempotence"))
    assert sorted(counts) == sorted(HOSTS), out[-8000:]
    for host, line in counts.items():
        assert "changed=0" in line and "failed=0" in line, f"{host}: {line}"
    out = molecule("verify", timeout=600)
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 6 and not re.search(r"\d+ (failed|error)", out), out[-8000:]


def test_rotation_with_the_role(molecule: Molecule) -> None:
    """docs/security.md "Rotation with the role", on the cluster of the test above: the gossip key through the
    keyring then `-e pyconsul_encrypt`, a host's certificate and the agent token by deleting them on the
    controller, the management token created first and then put into acl.json; the next run with the new key
    in the file changes nothing; the old management token is deleted by hand. The same runs turn
    pyconsul_acl_dns_token on (no extra deployment): DNS then answers under default deny."""
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
    # The same runs turn pyconsul_acl_dns_token on (docs/security.md): DNS answers under default deny.
    dns_on = {**molecule.sources, "pyconsul_acl_dns_token": True}
    run = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e",
               json.dumps({**dns_on, "pyconsul_encrypt": new_key}))
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    (SECRETS / "gossip.key").write_text(new_key + "\n")
    again = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", json.dumps(dns_on))
    assert again.returncode == 0, again.stdout[-8000:] + again.stderr[-2000:]
    for host, line in recap(again.stdout).items():
        assert "changed=0" in line and "failed=0" in line, f"{host}: {line}"

    new = json.loads((SECRETS / "acl.json").read_text())
    assert new["master"] == master and new["agent_secret"] != old["agent_secret"]
    assert new["agent_accessor"] == old["agent_accessor"] and new["agent_master"] == old["agent_master"]
    # The DNS token: every agent's acl.tokens.default; DNS answers nodes and services, and so does anonymous
    # HTTP (the documented price), which still writes nothing.
    config = json.loads(on("sec-sh2", "cat /etc/pyconsul/agent.d/config.json"))
    assert new["dns_secret"] and config["acl"]["tokens"]["default"] == new["dns_secret"]
    wait_for(lambda: _dns_a(BJ, "sec-bj2.node.bj.consul") == {"10.77.14.12"} or None, 30, "DNS answers (BJ)")
    assert _dns_a(SH, "consul.service.consul") == {SH}
    assert _dns_a(SH, "sec-sh2.node.consul") == {"10.77.14.15"}
    status, nodes = call(BJ, "/v1/catalog/nodes")
    assert status == 200 and {n["Node"] for n in nodes} == {"sec-bj1", "sec-bj2", "sec-bj3"}, nodes
    assert call(BJ, "/v1/kv/app/x", method="PUT", body=b"anon")[0] == 403
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
    # BJ's address may be a follower: it resolves tokens from its own state, so it refuses the deleted token
    # once it has applied the delete (as Consul's servers). Then the token stays deleted: no leader recreates
    # it (its leader loop runs every second; acl.tokens.master is only looked for when leadership is
    # established or the state restored).
    def refused() -> bool:
        return all(call(s, "/v1/acl/token/self", token=old["master"])[0] == 403 for s in (BJ, SH))

    wait_for(lambda: refused() or None, 10, "the deleted management token refused in both datacenters")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # an observation window (> the leader loop's 1 s), not a synchronisation
        assert refused(), "the deleted management token came back"
