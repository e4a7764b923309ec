"""The role's systemd unit, which no lab host runs (systemd is not PID 1 here), checked by systemd itself.

The unit is rendered by Ansible's own template module (ansible-playbook against localhost, connection
local) with the role's real defaults and vars (playbooks/roles/pyconsul/defaults, vars), into a temporary root
at the role's `pyconsul_systemd_unit` path. `systemd-analyze verify --root=ROOT` then loads it the way
systemd would: every key and value parsed, dependencies resolved, every Exec*= command an executable. The
root holds copies of the controller's systemd units (the targets the unit names and the default
dependencies), its `kill` (ExecReload), and a stub where the role installs the agent's console script
(ExecStart, `<pyconsul_venv_dir>/bin/pyconsul`). verify exits 0 after mere warnings ("Unknown key ...,
ignoring"), so any output at all fails the test; a unit with such a mistake shows that this works.

Needs ansible-playbook (the venv) and systemd-analyze (Debian's systemd package, scripts/bootstrap.sh),
not systemd as PID 1; fails loudly without them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "playbooks" / "roles" / "pyconsul"
BIN = Path(sys.executable).parent
HOST_UNITS = Path("/usr/lib/systemd/system")
EXEC_KEYS = ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost")

PLAYBOOK = """
- name: Render the role's systemd unit with its defaults
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Load the role's defaults and vars
      ansible.builtin.include_vars:
        file: "{{ item }}"
      loop: ["%(role)s/defaults/main.yml", "%(role)s/vars/main.yml"]
    - name: Make the unit's directory in the root
      ansible.builtin.file:
        path: "{{ (unit_root ~ pyconsul_systemd_unit) | dirname }}"
        state: directory
        mode: "0755"
    - name: Render the unit as the role does (tasks/configure.yml)
      ansible.builtin.template:
        src: "%(role)s/templates/pyconsul.service.j2"
        dest: "{{ unit_root ~ pyconsul_systemd_unit }}"
        mode: "0644"
    - name: Say where it went
      ansible.builtin.debug:
        msg: "UNIT={{ pyconsul_systemd_unit }} CLI={{ _pyconsul_cli }}"
"""


def _tools() -> tuple[str, str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install Debian's systemd package (scripts/bootstrap.sh)"
    playbook = BIN / "ansible-playbook"
    assert playbook.exists(), "ansible-playbook is not installed in the venv (the test extra has ansible-core)"
    assert HOST_UNITS.is_dir(), f"{HOST_UNITS} is missing: the systemd package provides the units verify loads"
    return analyze, str(playbook)


def _render(root: Path, work: Path, playbook: str, **extra: object) -> tuple[str, str]:
    """Render the unit into `root` (role variables `extra` as -e); (its path inside the root, the role's
    _pyconsul_cli)."""
    book = work / "render.yml"
    book.write_text(PLAYBOOK % {"role": ROLE})
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    extra_vars = json.dumps({"unit_root": str(root), **extra})
    proc = subprocess.run([playbook, "-i", "localhost,", str(book), "-e", extra_vars],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    said = re.search(r"UNIT=(/\S+) CLI=(/[^\s\"']+)", proc.stdout)
    assert said, proc.stdout[-4000:]
    return said[1], said[2]


def _commands(unit: str) -> list[str]:
    """The absolute program path of every Exec*= line (prefixes such as '-' or '@' stripped)."""
    out = []
    for line in unit.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in EXEC_KEYS and value.strip():
            out.append(shlex.split(value)[0].lstrip("-@:+!"))
    return out


def _root(tmp: Path) -> Path:
    """A root that systemd-analyze can load units from: the controller's units, /bin -> usr/bin (merged /usr)."""
    root = tmp / "root"
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree(HOST_UNITS, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "usr" / "bin").mkdir()
    (root / "bin").symlink_to("usr/bin")
    return root


def _provide(root: Path, program: str, cli: str) -> None:
    """Put `program` into the root: the agent's console script as a stub (the role installs it into the
    venv), anything else copied from the controller (it must exist on a host too)."""
    target = root / program.lstrip("/")
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if program == cli:
        target.write_text("#!/bin/sh\nexit 0\n")
        target.chmod(0o755)
    else:
        assert os.access(program, os.X_OK), f"the unit runs {program}, which this machine does not have"
        shutil.copy2(program, target)


def _verify(analyze: str, root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([analyze, "verify", "--man=no", f"--root={root}", unit], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[str, Path, str]:
    """(systemd-analyze, the root, the unit's path in it) with the unit rendered and its programs in place."""
    analyze, playbook = _tools()
    root = _root(tmp_path)
    unit, cli = _render(root, tmp_path, playbook)
    text = (root / unit.lstrip("/")).read_text()
    programs = _commands(text)
    assert programs and programs[0] == cli, f"ExecStart should run the role's {cli}: {programs}"
    for program in programs:
        _provide(root, program, cli)
    return analyze, root, unit


def test_the_role_s_unit_passes_systemd_analyze_verify(rendered: tuple[str, Path, str]) -> None:
    analyze, root, unit = rendered
    proc = _verify(analyze, root, unit)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, ""), proc.stdout + proc.stderr


def test_verify_reports_what_systemd_would_ignore(rendered: tuple[str, Path, str]) -> None:
    """The check is not vacuous: a unit with an unknown key and a bad value is reported (verify still exits 0)."""
    analyze, root, unit = rendered
    path = root / unit.lstrip("/")
    path.write_text(path.read_text().replace("RestartSec=2", "RestartSec=2\nRestartOften=yes\nRestart=sometimes"))
    proc = _verify(analyze, root, unit)
    out = proc.stdout + proc.stderr
    assert "Unknown key" in out and "RestartOften" in out, out
    assert "sometimes" in out, out


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", "[")):
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_agent_runs_as_its_own_user_in_a_hardened_unit(rendered: tuple[str, Path, str]) -> None:
    """Not root, no capabilities (every port is above 1024), read-only system but the data and log dirs, and
    systemd's own exposure score (`systemd-analyze security`, 0 best .. 10 worst) stays low."""
    analyze, root, unit = rendered
    conf = _settings((root / unit.lstrip("/")).read_text())
    assert conf["User"] == ["pyconsul"] and conf["Group"] == ["pyconsul"]
    assert conf["CapabilityBoundingSet"] == [""] and conf["AmbientCapabilities"] == [""]
    assert conf["ReadWritePaths"] == ["/var/lib/pyconsul /var/log/pyconsul"]
    for key, value in [("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                       ("ProtectHome", "yes"), ("PrivateDevices", "yes")]:
        assert conf[key] == [value], (key, conf.get(key))
    proc = subprocess.run([analyze, "security", "--offline=yes", f"--root={root}", "--no-pager",
                           Path(unit).name], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout + proc.stderr)
    assert score, proc.stdout + proc.stderr
    assert float(score[1]) <= 2.5, proc.stdout  # 9.6 ("UNSAFE") for the unit before it had its own user


def test_a_port_below_1024_gets_exactly_the_capability_to_bind_it(tmp_path: Path) -> None:
    _, playbook = _tools()
    root = _root(tmp_path)
    unit, _ = _render(root, tmp_path, playbook, pyconsul_dns_port=53)
    conf = _settings((root / unit.lstrip("/")).read_text())
    assert conf["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert conf["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
