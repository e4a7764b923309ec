"""What the role's lab tests share (test_role_dns.py, test_role_services.py): the lab's, Ansible's and testinfra's
commands run from the repository root, a lab brought up for a test module and taken down afterwards whatever
happens, a frozen copy of the sources for site.yml, and the play recap. A test module takes the fixtures by
assignment, under its inventory:

    lab = deploy.lab_fixture(INV)
    sources = deploy.sources_fixture()
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """A command from the repository root, with this venv's tools first on PATH and the repository's ansible.cfg."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ssh(inv: str, host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`command` (one shell string) on a lab host; `check`: it must succeed."""
    proc = run(str(BIN / "pyconsul-lab"), "ssh", host, "-i", inv, "--", command, timeout=60)
    if check:
        assert proc.returncode == 0, f"{host}: {command}: {proc.stdout}{proc.stderr}"
    return proc


def site(inv: str, extra: dict[str, Any]) -> str:
    """ansible-playbook site.yml with `extra` as -e; it must succeed. Its output."""
    proc = run(str(BIN / "ansible-playbook"), "site.yml", "-i", inv, "-e", json.dumps(extra))
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    return proc.stdout


def testinfra(inv: str, path: str) -> str:
    """The testinfra checks in `path` against the inventory's pyconsul hosts; they must pass. Their output."""
    proc = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=ansible://pyconsul",
               f"--ansible-inventory={inv}", path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return proc.stdout


def recap(stdout: str, host: str) -> dict[str, str]:
    """The PLAY RECAP of a playbook's output: host -> its counts; `host` is a regex of the inventory's names."""
    return dict(re.findall(rf"^({host})\s+:\s+(.*)$", stdout, re.M))


def lab_fixture(inv: str, before_up: Callable[[], None] | None = None) -> Any:
    """A module-scoped fixture: the lab of `inv` down (leftovers), `before_up()`, up; down afterwards."""

    @pytest.fixture(scope="module")
    def lab() -> Iterator[None]:
        assert os.geteuid() == 0, "the lab needs root"
        run(str(BIN / "pyconsul-lab"), "down", "-i", inv)
        if before_up is not None:
            before_up()
        up = run(str(BIN / "pyconsul-lab"), "up", "-i", inv, timeout=600)
        try:
            assert up.returncode == 0, up.stdout + up.stderr
            yield
        finally:
            down = run(str(BIN / "pyconsul-lab"), "down", "-i", inv)
            assert down.returncode == 0, down.stdout + down.stderr

    return lab


def sources_fixture() -> Any:
    """A fixture: -e variables for a frozen copy of the sources (edits in the work tree during the test must not
    look like an upgrade)."""

    @pytest.fixture
    def sources(tmp_path: Path) -> dict[str, str]:
        src = tmp_path / "src"
        proc = run(sys.executable, str(ROOT / "playbooks/roles/pyconsul/files/build_wheelhouse.py"), "--source",
                   str(ROOT), "--snapshot", str(src), timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return {"pyconsul_source_dir": str(src)}

    return sources
