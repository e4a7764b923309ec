"""The role's DNS forwarding on lab hosts (tests/lab/dns_inventory: datacenters east and west, one server each,
`pyconsul_dns_forwarding: dnsmasq`): site.yml deploys the agents and each host's dnsmasq on 127.0.0.1:53 and
points the host's /etc/resolv.conf (its network namespace's own file) at it; then `getent hosts
web.service.consul` on a host goes through glibc, dnsmasq and the agent's DNS interface and finds the local
instance, `web.service.west.consul` the other datacenter's, and a service whose only check is critical is not
found (testinfra: tests/lab/testinfra/test_dns.py). The same run again reports changed=0 on every host. The lab
is taken down afterwards whatever happens (its hosts' processes, dnsmasq included, are killed by `down`)."""

from __future__ import annotations

import subprocess

import pytest

from tests.lab import deploy

INV = "tests/lab/dns_inventory"
HOSTS = ["dns-a", "dns-b"]

pytestmark = pytest.mark.slow

lab = deploy.lab_fixture(INV)
sources = deploy.sources_fixture()


def on(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return deploy.ssh(INV, host, command, check)


def test_getent_resolves_consul_names_through_the_roles_forwarding(lab: None, sources: dict[str, str]) -> None:
    # Before the role: the lab host's resolver has no server at all.
    assert on("dns-a", "getent hosts web.service.consul", check=False).returncode == 2

    deploy.site(INV, sources)
    infra = deploy.testinfra(INV, "tests/lab/testinfra/test_dns.py")
    assert "2 passed" in infra, infra[-2000:]

    # The same, plainly: each host finds its own datacenter's web first, the other one's by name.
    assert on("dns-a", "getent hosts web.service.consul").stdout.split()[0] == "10.77.53.11"
    assert on("dns-a", "getent hosts web.service.west.consul").stdout.split()[0] == "10.77.53.12"
    assert on("dns-b", "getent hosts web.service.consul").stdout.split()[0] == "10.77.53.12"
    assert on("dns-b", "getent hosts dns-a.node.east.consul").stdout.split()[0] == "10.77.53.11"
    # Names outside consul. are not forwarded anywhere (no pyconsul_dns_recursors): not found, quickly.
    assert on("dns-a", "getent hosts example.org", check=False).returncode == 2

    again = deploy.site(INV, sources)
    counts = deploy.recap(again, "dns-[ab]")
    assert sorted(counts) == HOSTS, again[-3000:]
    for host, line in counts.items():
        assert "changed=0" in line and "failed=0" in line, f"{host}: {line}\n{again[-6000:]}"
