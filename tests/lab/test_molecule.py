"""The Ansible side end to end.

- Bad inventories (tests/lab/bad_inventories/*.yml) stop site.yml in its first tasks, before any
  host is touched, with an assert naming the problem. No lab needed.
- An unreachable host fails clearly (UNREACHABLE in the recap) and the others are deployed and
  form their cluster anyway. Needs the lab.
- `molecule test` (lab up, converge = site.yml, idempotence, check, testinfra verify, lab down) succeeds;
  idempotence and check (converge with --check) report changed=0 and failed=0 on every host.
  Needs the lab.

Every test that brings the lab up takes it down again, also when it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventories" / "bj_sh"
BAD = Path(__file__).resolve().parent / "bad_inventories"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env.pop("MOLECULE_EPHEMERAL_DIRECTORY", None)
    return env


def _run(args: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=timeout)


def _lab_missing() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    if not (BIN / "pyconsul-lab").exists() or not (ROOT / "lab" / "cli.py").exists():
        return "pyconsul-lab is not installed"
    if shutil.which("ip") is None or shutil.which("sshd", path="/usr/sbin:/usr/bin") is None:
        return "the lab needs iproute2 and openssh-server"
    return None


def _lab(verb: str) -> subprocess.CompletedProcess[str]:
    return _run([str(BIN / "pyconsul-lab"), verb, "-i", str(INVENTORY)], timeout=300)


@pytest.fixture
def lab() -> Iterator[None]:
    """Lab hosts for inventories/bj_sh, torn down afterwards whatever happens."""
    reason = _lab_missing()
    if reason:
        pytest.fail(f"cannot run: {reason}")
    _lab("down")
    up = _lab("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield
    finally:
        down = _lab("down")
        assert down.returncode == 0, down.stdout + down.stderr


# ------------------------------------------------------------------ bad input (no lab)

BAD_CASES = {
    "bootstrap_expect.yml": r"bootstrap_expect=5 cannot be met:\s+datacenter bj has 3 server\(s\)",
    "no_server.yml": r"datacenter sh has no server",
    "duplicate_address.yml": r"node2 and node3 share the address 10\.77\.0\.12",
}


VALIDATE_TASK = ("pyconsul : Validating arguments against arg spec 'main' - Deploy pyconsul agents (servers and"
                 " clients of one or more datacenters)")  # meta/argument_specs.yml
FIRST_TASKS = [VALIDATE_TASK, "pyconsul : Read the cluster from the inventory",
               "pyconsul : Check that the inventory describes a cluster that can form"]


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_inventory_fails_in_the_first_tasks(name: str) -> None:
    proc = _run([str(BIN / "ansible-playbook"), "site.yml", "-i", str(BAD / name)], timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert re.search(BAD_CASES[name], out), out
    # Only the inventory checks ran: no host was contacted, nothing was built.
    tasks = re.findall(r"^TASK \[(.*?)\]", proc.stdout, re.M)
    assert tasks == FIRST_TASKS, tasks
    assert "PLAY [Wait for a leader" not in proc.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"pyconsul_service_manager": "upstart"}, r"pyconsul_service_manager must be one of: auto, systemd"),
        ({"pyconsul_http_port": "eighty"}, r"pyconsul_http_port.*int"),
        ({"pyconsul_retry_join": "10.77.0.11"}, None),  # a string is a one-element list: accepted
    ],
)
def test_role_variables_are_checked_against_the_argument_spec(extra: dict[str, str], message: str | None) -> None:
    """meta/argument_specs.yml: a variable of the wrong type or value stops the play in its first task."""
    proc = _run([str(BIN / "ansible-playbook"), "site.yml", "-i", str(BAD / "no_server.yml"), "-e", json.dumps(extra)],
                timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    tasks = re.findall(r"^TASK \[(.*?)\]", proc.stdout, re.M)
    if message is None:  # passes validation, then fails on the inventory (no server in sh)
        assert tasks == FIRST_TASKS and "datacenter sh has no server" in out, out
    else:
        assert tasks == [VALIDATE_TASK], tasks
        assert re.search(message, out), out


def test_bad_inventories_are_all_covered() -> None:
    assert sorted(p.name for p in BAD.glob("*.yml") if p.name != "unreachable.yml") == sorted(BAD_CASES)


# ------------------------------------------------------------------ the lab


@pytest.mark.slow
def test_unreachable_host_fails_clearly_and_spares_the_others(lab: None) -> None:
    """inventories/bj_sh plus node6, an SH client at an address where no host answers."""
    proc = _run(
        [str(BIN / "ansible-playbook"), "site.yml", "-i", str(INVENTORY), "-i", str(BAD / "unreachable.yml")],
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    recap = dict(re.findall(r"^(node\d+)\s+:\s+(.*)$", proc.stdout, re.M))
    assert "unreachable=1" in recap["node6"], out[-4000:]
    for node in ("node1", "node2", "node3", "node4", "node5"):
        assert "failed=0" in recap[node] and "unreachable=0" in recap[node], out[-4000:]
    # The others were verified: the per-datacenter views were printed.
    for dc in ("bj", "sh"):
        assert f"== {dc}: pyconsul operator raft list-peers" in proc.stdout, out[-4000:]


def _step(out: str, step: str) -> str:
    """What molecule's `step` printed (its log lines and the playbook's output, interleaved in one stream)."""
    start = out.index(f"[default > {step}] Executing")
    return out[start:out.index(f"[default > {step}] Executed", start)]


@pytest.mark.slow
def test_molecule_test_passes() -> None:
    """molecule test: destroy, syntax, create (lab up), converge (site.yml), idempotence, check
    (converge with --check on the deployed cluster: nothing fails, nothing would change),
    verify (tests/lab/testinfra), destroy (lab down)."""
    reason = _lab_missing()
    if reason:
        pytest.fail(f"cannot run: {reason}")
    env = _env()
    env.pop("ANSIBLE_CONFIG")  # molecule writes its own
    try:
        # One stream, so that each step's playbook output sits between molecule's markers for it.
        proc = subprocess.run([str(BIN / "molecule"), "test"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=1800)
        out = proc.stdout
        assert proc.returncode == 0, out[-16000:]
        for step in ("idempotence", "check"):
            recap = re.findall(r"^(node\d+)\s+:\s+(.*)$", _step(out, step), re.M)
            assert sorted(h for h, _ in recap) == [f"node{i}" for i in range(1, 6)], _step(out, step)[-8000:]
            for host, counts in recap:
                assert "changed=0" in counts and "failed=0" in counts, f"{step}: {host}: {counts}"
    finally:
        _lab("down")
