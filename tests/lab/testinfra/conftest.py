"""testinfra checks of a deployed pyconsul cluster, for any inventory:

    pytest --hosts=ansible://pyconsul --ansible-inventory=inventories/bj_sh tests/lab/testinfra

(Molecule's verifier runs the same files.) Without --hosts they are not collected (tests/conftest.py): they would
otherwise run against this machine.

What the tests know about the cluster comes from the inventory, as the role derives it: each
host's datacenter (`pyconsul_datacenter`), role (`pyconsul_server`, default true), address
(`pyconsul_bind_addr`, else `ansible_host`) and, per datacenter, `bootstrap_expect` (the number of
servers unless `pyconsul_bootstrap_expect` is set).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

HERE = Path(__file__).resolve().parent
CLUSTER_GROUP = "pyconsul"  # the role's pyconsul_cluster_group

# An HTTP request made on the host itself with the host's Python (no curl needed); prints
# "<status>\n<body>".
_HTTP = """
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], method=sys.argv[2], data=sys.argv[3].encode() if sys.argv[3] else None)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"""


@dataclass
class Agent:
    """One agent of the cluster as the inventory describes it, with its testinfra host."""

    name: str
    host: Any  # testinfra.host.Host; None for an agent outside the --hosts selection
    dc: str
    server: bool
    addr: str
    http_port: int
    venv: str
    expect: int = 0
    services: list[dict[str, Any]] = field(default_factory=list)  # pyconsul_services declared for it

    @property
    def wan_name(self) -> str:
        return f"{self.name}.{self.dc}"

    def http(self, method: str, path: str, body: str = "") -> tuple[int, str]:
        url = f"http://{self.addr}:{self.http_port}{path}"
        cmd = " ".join(shlex.quote(a) for a in ("python3", "-c", _HTTP, url, method, body))
        out = self.host.check_output(cmd)
        status, _, text = out.partition("\n")
        return int(status), text

    def get(self, path: str) -> Any:
        status, text = self.http("GET", path)
        assert status == 200, f"{self.name}: GET {path} -> {status} {text}"
        return json.loads(text) if text.strip() else None


def _agent(name: str, host: Any, v: dict[str, Any]) -> Agent:
    return Agent(
        name=str(v.get("pyconsul_node_name", name)),
        host=host,
        dc=str(v.get("pyconsul_datacenter", "dc1")).lower(),
        server=str(v.get("pyconsul_server", True)).lower() in ("true", "yes", "1"),
        addr=str(v.get("pyconsul_bind_addr", v.get("ansible_host", name))),
        http_port=int(v.get("pyconsul_http_port", 8500)),
        venv=str(v.get("pyconsul_venv_dir", "/opt/pyconsul/venv")),
        expect=int(v.get("pyconsul_bootstrap_expect", 0) or 0),
        services=[s for s in v.get("pyconsul_services") or [] if isinstance(s, dict)],
    )


def _agents(config: pytest.Config) -> tuple[list[Agent], list[Agent]]:
    """(the agents selected by --hosts, every agent of the cluster in the inventory).

    Expectations (bootstrap_expect, the LAN and WAN members) come from the whole cluster, so
    `--hosts=ansible://bj` checks BJ's hosts against the full picture."""
    hosts = testinfra.get_hosts(
        config.option.hosts.split(","),
        connection=config.option.connection,
        ansible_inventory=config.option.ansible_inventory,
        ssh_config=config.option.ssh_config,
        ssh_identity_file=config.option.ssh_identity_file,
        force_ansible=config.option.force_ansible,
    )
    selected = {}
    for h in hosts:
        v = h.ansible.get_variables()
        selected[v["inventory_hostname"]] = _agent(v["inventory_hostname"], h, v)
    runner = AnsibleRunner.get_runner(config.option.ansible_inventory)
    names = runner.get_hosts(CLUSTER_GROUP) or runner.get_hosts("all")
    everyone = [selected.get(n) or _agent(n, None, runner.get_variables(n)) for n in names]
    for a in everyone:
        if a.server and not a.expect:
            a.expect = sum(1 for b in everyone if b.server and b.dc == a.dc)
    return (sorted((a for a in everyone if a.host is not None), key=lambda a: a.name),
            sorted(everyone, key=lambda a: a.name))


@pytest.fixture(scope="session")
def _cluster(request: pytest.FixtureRequest) -> tuple[list[Agent], list[Agent]]:
    return _agents(request.config)


@pytest.fixture(scope="session")
def agents(_cluster: tuple[list[Agent], list[Agent]]) -> list[Agent]:
    """The agents selected by --hosts (each with its testinfra host)."""
    return _cluster[0]


@pytest.fixture(scope="session")
def everyone(_cluster: tuple[list[Agent], list[Agent]]) -> list[Agent]:
    """Every agent of the cluster in the inventory (group pyconsul, else all); those not
    selected by --hosts have host None."""
    return _cluster[1]


@pytest.fixture
def agent(host: Any, agents: list[Agent]) -> Agent:
    """The agent on the testinfra `host` under test."""
    name = host.ansible.get_variables()["inventory_hostname"]
    found = [a for a in agents if a.host.ansible.get_variables()["inventory_hostname"] == name]
    assert found, f"{name} is not among --hosts"
    return found[0]


@pytest.fixture(scope="session")
def datacenters(agents: list[Agent]) -> dict[str, list[Agent]]:
    """The selected agents by datacenter."""
    out: dict[str, list[Agent]] = {}
    for a in agents:
        out.setdefault(a.dc, []).append(a)
    return out


@pytest.fixture(scope="session")
def inventory(request: pytest.FixtureRequest) -> Iterator[str]:
    inv = request.config.option.ansible_inventory
    if not inv:
        pytest.skip("needs --ansible-inventory to run playbooks")
    yield str(inv)
