"""The role's systemd branch on a real systemd host: a lab host with `lab_init: systemd` boots systemd as
PID 1 in a systemd-nspawn container (lab/nspawn.py); site.yml deploys a server there (systemd unit) and a
client on an sshd-only host (supervisord), reruns with changed=0, restarts through rolling_restart.yml,
and systemd brings a kill -9'd agent back. `down` leaves no container, mount or namespace."""

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
INV = "tests/lab/systemd"

pytestmark = pytest.mark.slow


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def on(host: str, command: str) -> str:
    proc = _run(str(BIN / "pyconsul-lab"), "ssh", host, "-i", INV, "--", command, timeout=60)  # ssh: one string
    assert proc.returncode == 0, f"{host}: {command}: {proc.stdout}{proc.stderr}"
    return proc.stdout.strip()


def api(path: str) -> Any:
    with urllib.request.urlopen(f"http://10.77.7.11:8500{path}", timeout=5) as resp:
        return json.loads(resp.read())


def recap(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^(sd\d)\s+:\s+(.*)$", stdout, re.M))


def nspawn_mounts() -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if "/hosts/sd1/nspawn" in line]


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    assert os.geteuid() == 0, "the lab needs root"
    _run(str(BIN / "pyconsul-lab"), "down", "-i", INV)
    up = _run(str(BIN / "pyconsul-lab"), "up", "-i", INV, timeout=1200)  # the first one debootstraps
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield
    finally:
        down = _run(str(BIN / "pyconsul-lab"), "down", "-i", INV)
        assert down.returncode == 0, down.stdout + down.stderr
        assert nspawn_mounts() == [], "down must unmount the container's overlay"
        assert not Path("/run/netns/pcl-sd1").exists()


@pytest.fixture
def sources(tmp_path: Path) -> str:
    """-e for a frozen copy of the sources (as molecule's create.yml makes): an edit in the work tree during
    the test must not look like a change of the second run."""
    src = tmp_path / "src"
    proc = _run(sys.executable, str(ROOT / "playbooks/roles/pyconsul/files/build_wheelhouse.py"), "--source",
                str(ROOT), "--snapshot", str(src), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.dumps({"pyconsul_source_dir": str(src)})


def test_systemd_host_deploys_restarts_and_recovers(lab: None, sources: str) -> None:
    assert on("sd1", "cat /proc/1/comm") == "systemd"
    assert on("sd2", "cat /proc/1/comm") != "systemd"
    assert on("sd1", "hostname") == "sd1"

    site = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", sources)
    assert site.returncode == 0, site.stdout[-6000:] + site.stderr[-2000:]
    assert on("sd1", "systemctl is-active pyconsul") == "active"
    assert on("sd1", "systemctl is-enabled pyconsul") == "enabled"
    pid = int(on("sd1", "systemctl show -p MainPID --value pyconsul"))
    assert "agent" in on("sd1", f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    assert on("sd2", "/opt/pyconsul/venv/bin/supervisorctl -c /etc/pyconsul/supervisord.conf status pyconsul"
              " | awk '{print $2}'") == "RUNNING"
    members = api("/v1/agent/members")
    assert sorted((m["Name"], m["Status"]) for m in members) == [("sd1", 1), ("sd2", 1)]

    # The agent runs as its own user, not root; its files are its own, config.json is private.
    assert on("sd1", f"stat -c %U /proc/{pid}") == "pyconsul"
    assert on("sd1", "stat -c '%U %a' /etc/pyconsul/agent.d/config.json /var/lib/pyconsul").splitlines() == [
        "pyconsul 640", "pyconsul 700"]
    assert on("sd1", "find /var/lib/pyconsul ! -user pyconsul") == ""
    assert on("sd1", "systemctl show -p NoNewPrivileges --value pyconsul") == "yes"
    assert on("sd2", "stat -c %U /proc/$(cat /run/pyconsul/supervisord.pid)") == "pyconsul"

    again = _run(str(BIN / "ansible-playbook"), "site.yml", "-i", INV, "-e", sources)
    assert again.returncode == 0, again.stdout[-4000:]
    assert all("changed=0" in r and "failed=0" in r for r in recap(again.stdout).values()), recap(again.stdout)
    assert int(on("sd1", "systemctl show -p MainPID --value pyconsul")) == pid, "a no-op run restarts nothing"

    rolled = _run(str(BIN / "ansible-playbook"), "playbooks/rolling_restart.yml", "-i", INV, "-e", sources)
    assert rolled.returncode == 0, rolled.stdout[-6000:] + rolled.stderr[-2000:]
    restarted = int(on("sd1", "systemctl show -p MainPID --value pyconsul"))
    assert restarted not in (0, pid), "rolling_restart.yml restarts the server through systemd"

    on("sd1", f"kill -9 {restarted}")  # Restart=on-failure: systemd brings it back

    def back() -> bool:
        now = int(on("sd1", "systemctl show -p MainPID --value pyconsul"))
        return now not in (0, restarted) and on("sd1", "systemctl is-active pyconsul") == "active"

    wait_for(back, 30, "systemd to restart the killed agent")
    wait_for(lambda: api("/v1/status/leader"), 30, "a leader after the restart")
