"""Every shipped experiment, shortened, on real lab hosts deployed by site.yml (tests/chaos/cluster: BJ
cx1-3 servers + cx5 client, SH cx4): a healthy cluster passes each one (valid, healed: exit 0) and
the agents with the TEST_STALE_READS test switch fail the same kind of experiment with a linearizability violation
(exit 1) whose offending operations the report shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INV = "tests/chaos/cluster"
HEALTHY = ["leader-kill", "leader-isolation", "majorities-ring", "dc-split", "latency-200ms", "pause-leader",
           "rolling-kill", "lock-leader-isolation"]

pytestmark = pytest.mark.slow


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def deployed() -> Iterator[None]:
    assert os.geteuid() == 0, "the lab needs root"
    _run(str(BIN / "pyconsul-lab"), "down", "-i", INV, timeout=120)
    up = _run(str(BIN / "pyconsul-lab"), "up", "-i", INV, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        site = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, timeout=900)
        assert site.returncode == 0, site.stdout[-5000:] + site.stderr[-2000:]
        yield
    finally:
        _run(str(BIN / "pyconsul-chaos"), "heal", "-i", INV, timeout=300)
        down = _run(str(BIN / "pyconsul-lab"), "down", "-i", INV, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr


def _experiment(name: str, out: Path, duration: int) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    proc = _run(str(BIN / "pyconsul-chaos"), "run", name, "-i", INV, "--out", str(out), "--duration",
                str(duration), "--quiet", timeout=900)
    verdict = json.loads((out / "verdict.json").read_text()) if (out / "verdict.json").exists() else {}
    return proc, verdict


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_cluster_passes(deployed: None, name: str, tmp_path: Path) -> None:
    proc, verdict = _experiment(name, tmp_path / name, 20)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-4000:]}\n{json.dumps(verdict)[:4000]}"
    assert verdict["valid"] is True and verdict["healed"] is True
    for f in ("history.jsonl", "verdict.json", "index.html", "timeline.png"):
        assert (tmp_path / name / f).stat().st_size > 0, f
    counts = verdict["counts"]
    assert isinstance(counts, dict) and counts.get("ok", 0) > 50, counts
    steps = verdict["nemesis"]
    assert isinstance(steps, list) and steps and not any(s.get("error") for s in steps), steps
    if name.startswith("lock-"):  # the mutex was really exercised: owners took turns
        lines = (tmp_path / name / "history.jsonl").read_text().splitlines()
        done = [json.loads(x) for x in lines]
        took = {op["process"] for op in done if op["type"] == "ok" and op["f"] == "acquire"}
        released = sum(op["type"] == "ok" and op["f"] == "release" for op in done)
        assert len(took) >= 3 and released >= 10, (took, released)
        assert verdict["checks"]["results"]["lock"]["ops"] >= 20  # type: ignore[index]


def test_stale_read_agents_fail_with_a_linearizability_violation(deployed: None, tmp_path: Path) -> None:
    proc, verdict = _experiment("stale-reads", tmp_path / "stale", 15)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert verdict["valid"] is False
    page = (tmp_path / "stale" / "index.html").read_text()
    assert "Not linearizable: key" in page and "but the register holds" in page
