"""The role's declared services and checks on the guide's lab (inventories/bj_sh): site.yml deploys SH's
declared `agent-http`, which testinfra finds passing in SH's catalog (asked from BJ); a changed
`pyconsul_services` is applied by the reload handler while every agent keeps its process (no restart),
the new service is registered and passing; the same run again reports changed=0. The lab is taken down
afterwards whatever happens."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INV = "inventories/bj_sh"
HOSTS = [f"node{i}" for i in range(1, 6)]

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


def api(addr: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{addr}:8500{path}", timeout=5) as resp:
        return json.loads(resp.read())


def recap(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^(node\d)\s+:\s+(.*)$", stdout, re.M))


def agent_pids() -> dict[str, str]:
    conf = "/etc/pyconsul/supervisord.conf"
    return {h: on(h, f"/opt/pyconsul/venv/bin/supervisorctl -c {conf} pid pyconsul") for h in HOSTS}


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


def test_declared_services_are_applied_by_reload(lab: None, sources: dict[str, str]) -> None:
    site = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", json.dumps(sources))
    assert site.returncode == 0, site.stdout[-8000:] + site.stderr[-2000:]

    # testinfra: SH's declared agent-http passes in SH's catalog, asked from a BJ server over the WAN.
    infra = _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=ansible://pyconsul",
                 f"--ansible-inventory={INV}", "tests/lab/testinfra/test_services.py")
    assert infra.returncode == 0, infra.stdout[-6000:] + infra.stderr[-2000:]

    before = agent_pids()
    extra = {**sources, "pyconsul_services": [
        {"name": "extra", "port": 9, "tags": ["lab"], "check": {"id": "extra-ttl", "ttl": "1h", "status": "passing"}}]}
    changed = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", json.dumps(extra))
    assert changed.returncode == 0, changed.stdout[-8000:] + changed.stderr[-2000:]
    assert "RUNNING HANDLER [pyconsul : Reload agents whose declared services or checks changed]" in changed.stdout
    assert "RUNNING HANDLER [pyconsul : Restart changed agents" not in changed.stdout
    assert agent_pids() == before, "a changed service list must not restart any agent"
    for host, counts in recap(changed.stdout).items():
        assert "failed=0" in counts and "changed=0" not in counts, f"{host}: {counts}"

    def extra_passing() -> bool:
        bj = {e["Node"]["Node"] for e in api("10.77.0.11", "/v1/health/service/extra?passing")}
        sh = {e["Node"]["Node"] for e in api("10.77.0.11", "/v1/health/service/extra?dc=sh&passing")}
        return bj == {"node1", "node2", "node3"} and sh == {"node4", "node5"}

    wait_for(extra_passing, 60, "the new service passing on every agent of both datacenters", interval=1.0)
    wait_for(lambda: api("10.77.0.11", "/v1/health/service/agent-http?dc=sh") == [], 60,
             "SH's agent-http gone: no longer declared there (the reload deregisters it)", interval=1.0)

    again = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", json.dumps(extra))
    assert again.returncode == 0, again.stdout[-8000:] + again.stderr[-2000:]
    counts = recap(again.stdout)
    assert sorted(counts) == HOSTS
    for host, line in counts.items():
        assert "changed=0" in line and "failed=0" in line, f"{host}: {line}"
