"""The README's first command, `bash scripts/deploy.sh`, end to end: lab hosts for inventories/bj_sh,
site.yml over SSH, then members and the leader of each datacenter; `deploy.sh down` removes it all."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _sh(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "scripts/deploy.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, "CI": "true"})


def test_readme_first_command_deploys_the_guide_topology() -> None:
    assert os.geteuid() == 0, "the lab needs root"
    _sh("down", timeout=120)
    try:
        proc = _sh(timeout=900)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-6000:]
        members = out.split("==> pyconsul members\n", 1)[1].split("\n\n", 1)[0]
        assert {line.split()[0] for line in members.splitlines()[1:]} == {"node1", "node2", "node3"}
        wan = out.split("==> pyconsul members -wan\n", 1)[1].split("\n\n", 1)[0]
        assert {line.split()[0] for line in wan.splitlines()[1:]} == {"node1.bj", "node2.bj", "node3.bj",
                                                                        "node4.sh"}
        leaders = dict(re.findall(r"==> leader of (\w+): (\S+)", out))
        assert set(leaders) == {"bj", "sh"}
        assert leaders["bj"] in {"10.77.0.11:8300", "10.77.0.12:8300", "10.77.0.13:8300"}
        assert leaders["sh"] == "10.77.0.14:8300"
        assert re.search(r"node\d\s+\S+\s+10\.77\.0\.1[123]:8300\s+leader", out)
    finally:
        down = _sh("down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert not [n for n in netns if n.startswith("pcl-node")], netns
