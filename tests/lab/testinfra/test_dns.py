"""The role's DNS forwarding (`pyconsul_dns_forwarding: dnsmasq`): on each host that has it, the host's own resolver
(glibc through /etc/resolv.conf -> dnsmasq on 127.0.0.1:53 -> the agent's DNS interface) finds services and nodes
with `getent hosts`, in its own and in the other datacenters, healthy instances only. Hosts without forwarding
are skipped (see conftest.py for how to run these)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.lab.testinfra.conftest import Agent
from tests.lab.testinfra.test_cluster import poll


def _forwarding(agents: list[Agent]) -> list[Agent]:
    return [a for a in agents if a.host.ansible.get_variables().get("pyconsul_dns_forwarding") == "dnsmasq"]


def _healthy(s: dict[str, Any]) -> bool:
    """A declared service whose checks are not declared critical (a service without checks is healthy)."""
    checks = [s.get("check")] if s.get("check") else list(s.get("checks") or [])
    return all(str(c.get("status", "")).lower() != "critical" for c in checks if isinstance(c, dict))


def getent(a: Agent, name: str) -> set[str]:
    """The addresses `getent hosts <name>` prints on the agent's host (empty when it finds nothing: exit 2)."""
    out = a.host.run(f"getent hosts {name}")
    assert out.rc in (0, 2), f"{a.name}: getent hosts {name}: rc {out.rc} {out.stderr}"
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_resolv_conf_points_at_dnsmasq(agents: list[Agent]) -> None:
    hosts = _forwarding(agents)
    if not hosts:
        pytest.skip("no selected host has pyconsul_dns_forwarding: dnsmasq")
    for a in hosts:
        lines = [ln.split() for ln in a.host.file("/etc/resolv.conf").content_string.splitlines()]
        assert [ln for ln in lines if ln and ln[0] == "nameserver"] == [["nameserver", "127.0.0.1"]], a.name
        assert a.host.socket("udp://127.0.0.1:53").is_listening, a.name


def test_getent_finds_services_and_nodes_in_every_datacenter(agents: list[Agent], everyone: list[Agent]) -> None:
    hosts = _forwarding(agents)
    if not hosts:
        pytest.skip("no selected host has pyconsul_dns_forwarding: dnsmasq")
    declared: dict[tuple[str, str], set[str]] = {}  # (dc, service) -> addresses of healthy instances
    for b in everyone:
        for s in b.services:
            name = str(s.get("name") or s.get("Name"))
            addrs = declared.setdefault((b.dc, name), set())
            if _healthy(s):
                addrs.add(b.addr)
    assert declared, "the inventory declares no pyconsul_services to look up"
    for a in hosts:
        for (dc, service), want in sorted(declared.items()):
            names = [f"{service}.service.{dc}.consul"] + ([f"{service}.service.consul"] if dc == a.dc else [])
            for name in names:
                def found(a: Agent = a, name: str = name, want: set[str] = want) -> None:
                    got = getent(a, name)
                    assert got == want, f"{a.name}: getent hosts {name} -> {sorted(got)}, want {sorted(want)}"

                poll(found, timeout=60, interval=1.0)
        for b in everyone:
            if b.dc == a.dc:
                assert getent(a, f"{b.name}.node.consul") == {b.addr}, f"{a.name}: {b.name}.node.consul"
            assert getent(a, f"{b.name}.node.{b.dc}.consul") == {b.addr}, f"{a.name}: {b.name}.node.{b.dc}.consul"
