"""The role's DNS forwarding on lab hosts (tests/lab/dns_inventory: datacenters east and west, one server each,
`pyconsul_dns_forwarding: dnsmasq`): site.yml deploys the agents and each host's dnsmasq on 127.0.0.1:53 and
points the host's /etc/resolv.conf (its network namespace's own file) at it; then `getent hosts
web.service.consul` on a host goes through glibc, dnsmasq and the agent's DNS interface and finds the local
instance, `web.service.west.consul` the other datacenter's, and a service whose only check is critical is not
found (testinfra: tests/lab/testinfra/test_dns.py). The same run again reports changed=0 on every host. The lab
is taken down afterwards whatever happens (its hosts' processes, dnsmasq included, are killed by `down`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INV = "tests/lab/dns_inventory"
HOSTS = ["dns-a", "dns-b"]

pytestmark = pytest.mark.slow


def _run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def on(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = _run(str(BIN / "pyconsul-lab"), "ssh", host, "-i", INV, "--", command, timeout=60)
    if check:
        assert proc.returncode == 0, f"{host}: {command}: {proc.stdout}{proc.stderr}"
    return proc


def recap(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^(dns-[ab])\s+:\s+(.*)$", stdout, re.M))


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    assert os.geteuid() == 0, "the lab needs root"
    _run(str(BIN / "pyconsul-lab"), "down", "-i", INV)
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


def test_getent_resolves_consul_names_through_the_roles_forwarding(lab: None, sources: dict[str, str]) -> None:
    # Before the role: the lab host's resolver has no server at all.
    assert on("dns-a", "getent hosts web.service.consul", check=False).returncode == 2

    site = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", json.dumps(sources))
    assert site.returncode == 0, site.stdout[-8000:] + site.stderr[-2000:]

    infra = _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=ansible://pyconsul",
                 f"--ansible-inventory={INV}", "tests/lab/testinfra/test_dns.py")
    assert infra.returncode == 0, infra.stdout[-6000:] + infra.stderr[-2000:]
    assert "2 passed" in infra.stdout, infra.stdout[-2000:]

    # The same, plainly: each host finds its own datacenter's web first, the other one's by name.
    assert on("dns-a", "getent hosts web.service.consul").stdout.split()[0] == "10.77.53.11"
    assert on("dns-a", "getent hosts web.service.west.consul").stdout.split()[0] == "10.77.53.12"
    assert on("dns-b", "getent hosts web.service.consul").stdout.split()[0] == "10.77.53.12"
    assert on("dns-b", "getent hosts dns-a.node.east.consul").stdout.split()[0] == "10.77.53.11"
    # Names outside consul. are not forwarded anywhere (no pyconsul_dns_recursors): not found, quickly.
    assert on("dns-a", "getent hosts example.org", check=False).returncode == 2

    again = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", json.dumps(sources))
    assert again.returncode == 0, again.stdout[-8000:] + again.stderr[-2000:]
    counts = recap(again.stdout)
    assert sorted(counts) == HOSTS, again.stdout[-3000:]
    for host, line in counts.items():
        assert "changed=0" in line and "failed=0" in line, f"{host}: {line}\n{again.stdout[-6000:]}"
