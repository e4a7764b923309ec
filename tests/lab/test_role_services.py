"""The role's declared services and checks on the guide's lab (inventories/bj_sh): site.yml deploys SH's
declared `agent-http`, which testinfra finds passing in SH's catalog (asked from BJ); a changed
`pyconsul_services` is applied by the reload handler while every agent keeps its process (no restart),
the new service is registered and passing; the same run again reports changed=0. The lab is taken down
afterwards whatever happens."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.harness import wait_for
from tests.lab import deploy

INV = "inventories/bj_sh"
HOSTS = [f"node{i}" for i in range(1, 6)]

pytestmark = pytest.mark.slow

lab = deploy.lab_fixture(INV)
sources = deploy.sources_fixture()


def on(host: str, command: str) -> str:
    return deploy.ssh(INV, host, command).stdout.strip()


def api(addr: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{addr}:8500{path}", timeout=5) as resp:
        return json.loads(resp.read())


def agent_pids() -> dict[str, str]:
    conf = "/etc/pyconsul/supervisord.conf"
    return {h: on(h, f"/opt/pyconsul/venv/bin/supervisorctl -c {conf} pid pyconsul") for h in HOSTS}


def test_declared_services_are_applied_by_reload(lab: None, sources: dict[str, str]) -> None:
    deploy.site(INV, sources)
    # testinfra: SH's declared agent-http passes in SH's catalog, asked from a BJ server over the WAN.
    deploy.testinfra(INV, "tests/lab/testinfra/test_services.py")

    before = agent_pids()
    extra = {**sources, "pyconsul_services": [
        {"name": "extra", "port": 9, "tags": ["lab"], "check": {"id": "extra-ttl", "ttl": "1h", "status": "passing"}}]}
    changed = deploy.site(INV, extra)
    assert "RUNNING HANDLER [pyconsul : Reload agents whose declared services or checks changed]" in changed
    assert "RUNNING HANDLER [pyconsul : Restart changed agents" not in changed
    assert agent_pids() == before, "a changed service list must not restart any agent"
    for host, counts in deploy.recap(changed, r"node\d").items():
        assert "failed=0" in counts and "changed=0" not in counts, f"{host}: {counts}"

    def extra_passing() -> bool:
        bj = {e["Node"]["Node"] for e in api("10.77.0.11", "/v1/health/service/extra?passing")}
        sh = {e["Node"]["Node"] for e in api("10.77.0.11", "/v1/health/service/extra?dc=sh&passing")}
        return bj == {"node1", "node2", "node3"} and sh == {"node4", "node5"}

    wait_for(extra_passing, 60, "the new service passing on every agent of both datacenters", interval=1.0)
    wait_for(lambda: api("10.77.0.11", "/v1/health/service/agent-http?dc=sh") == [], 60,
             "SH's agent-http gone: no longer declared there (the reload deregisters it)", interval=1.0)

    counts = deploy.recap(deploy.site(INV, extra), r"node\d")
    assert sorted(counts) == HOSTS
    for host, line in counts.items():
        assert "changed=0" in line and "failed=0" in line, f"{host}: {line}"
