"""The local lab for real: `pyconsul-lab up/status/ssh/down` on tests/lab/inventory (lab-a, lab-b, lab-c).

Needs root, iproute2, unshare and openssh-server (scripts/bootstrap.sh); fails loudly without them. The
hosts have their own names and addresses, so inventories/bj_sh may be up at the same time. The module
fixture takes the lab down even when a test fails; the last test takes it down itself and checks that
nothing is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pyconsul.lab.inventory import host_specs
from pyconsul.lab.plan import PRIVATE_DIRS, STATE_DIR, HostSpec
from pyconsul.lab.sshd import control_path, ssh_argv, sshd_pid
from pyconsul.lab.system import alive, netns_pids, unix_socket_owners, wait_until

INVENTORY = str(Path(__file__).parent / "inventory")
LAB = [str(Path(sys.executable).parent / "pyconsul-lab")]
NAMES = ["lab-a", "lab-b", "lab-c"]


def cli(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*LAB, *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", "--regid=65534", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def ssh(spec: HostSpec, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(ssh_argv(spec, [command], probe=True), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f"{spec.name}: {command!r} failed: {proc.stderr}"
    return proc


@dataclass
class Lab:
    specs: dict[str, HostSpec]
    up_stdout: str
    pids: set[int] = field(default_factory=set)  # every lab process we saw: sshd, sessions, ControlMasters
    sockets: set[Path] = field(default_factory=set)

    def record(self) -> None:
        for spec in self.specs.values():
            self.pids.update(netns_pids(spec.netns))
            sock = control_path(spec)
            if sock is not None and sock.exists():
                self.sockets.add(sock)
                self.pids.update(unix_socket_owners(sock))


def _require_machine() -> None:
    assert os.geteuid() == 0, "the lab tests need root (network namespaces, veths, mounts)"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen", "setpriv", "/usr/sbin/sshd"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/bootstrap.sh"
    assert Path(LAB[0]).exists(), "pyconsul-lab is not installed: .venv/bin/pip install -e ."


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    _require_machine()
    proc = cli("up", "-i", INVENTORY)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        the_lab = Lab({s.name: s for s in host_specs(INVENTORY)}, proc.stdout)
        the_lab.record()
        yield the_lab
    finally:
        down = cli("down", "-i", INVENTORY)
        assert down.returncode == 0, down.stdout + down.stderr


def test_up_creates_every_host_and_status_is_ok(lab: Lab) -> None:
    assert sorted(lab.specs) == NAMES
    for name in NAMES:
        assert name in lab.up_stdout
        assert sshd_pid(lab.specs[name]) is not None
    proc = cli("status", "-i", INVENTORY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" up") == 3


def test_each_host_has_its_own_hostname(lab: Lab) -> None:
    for name, spec in lab.specs.items():
        assert ssh(spec, "hostname").stdout.strip() == name


def test_ssh_verb_runs_a_command_with_the_inventory_settings(lab: Lab) -> None:
    proc = cli("ssh", "lab-b", "-i", INVENTORY, "hostname", "-s")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "lab-b"


@pytest.mark.parametrize("directory", PRIVATE_DIRS)
def test_private_directories_are_private(lab: Lab, directory: str) -> None:
    marker = f"{directory}/lab-test-{uuid.uuid4().hex}"
    a, b, c = (lab.specs[n] for n in NAMES)
    ssh(a, f"echo a > {marker}")
    assert ssh(a, f"cat {marker}").stdout == "a\n"
    for other in (b, c):
        assert ssh(other, f"test -e {marker}", check=False).returncode == 1, f"{marker} visible on {other.name}"
    assert not Path(marker).exists(), f"{marker} visible in the root namespace"
    ssh(b, f"echo b > {marker}")
    assert ssh(a, f"cat {marker}").stdout == "a\n"


def test_hosts_reach_each_other_by_name_and_address(lab: Lab) -> None:
    probe = ("python3 -c 'import socket,sys; [socket.create_connection((h, 22), timeout=3).close() "
             "for h in sys.argv[1:]]; print(\"ok\")'")
    for spec in lab.specs.values():
        peers = [str(p.address) for p in lab.specs.values() if p is not spec] + [n for n in NAMES if n != spec.name]
        assert ssh(spec, f"{probe} {' '.join(peers)}").stdout.strip() == "ok"


def test_up_repairs_a_host_whose_sshd_died(lab: Lab) -> None:
    c = lab.specs["lab-c"]
    pid = sshd_pid(c)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: sshd_pid(c) is None, 10)
    status = cli("status", "-i", INVENTORY)
    assert status.returncode == 1
    assert "lab-c" in [line.split()[0] for line in status.stdout.splitlines() if line.endswith("down")]
    proc = cli("up", "-i", INVENTORY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sshd_pid(c) not in (None, pid)
    assert ssh(c, "hostname").stdout.strip() == "lab-c"
    lab.record()


def test_second_up_is_a_no_op(lab: Lab) -> None:
    # (known_hosts is shared with other inventories that may be brought up meanwhile: compare our files only)
    files = [f for s in lab.specs.values() for f in (s.state_dir / "sshd_config", s.state_dir / "host.json",
                                                      Path("/etc/netns") / s.netns / "hosts")]
    before = {n: sshd_pid(s) for n, s in lab.specs.items()}, {f: f.stat().st_mtime_ns for f in files}
    proc = cli("up", "-i", INVENTORY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("unchanged") == 3, proc.stdout
    assert ({n: sshd_pid(s) for n, s in lab.specs.items()}, {f: f.stat().st_mtime_ns for f in files}) == before


@pytest.mark.parametrize(
    ("hosts_yml", "message"),
    [
        (None, "does not exist"),
        ("all:\n  hosts:\n    lab-x: {}\n", "lab-x: no ansible_host"),
        ("all:\n  hosts:\n    lab-x: {ansible_host: 192.168.77.5}\n", "outside the lab network"),
        ("all:\n  hosts:\n    lab-x: {ansible_host: 10.77.9.99}\n    lab-y: {ansible_host: 10.77.9.99}\n",
         "share the address"),
        # lab-a is up at 10.77.9.11: another inventory may not move it, nor take its address
        ("all:\n  hosts:\n    lab-a: {ansible_host: 10.77.9.98}\n", "already up at 10.77.9.11"),
        ("all:\n  hosts:\n    lab-z: {ansible_host: 10.77.9.11}\n", "already used by lab host lab-a"),
    ],
)
def test_bad_inventory_exits_2_and_creates_nothing(lab: Lab, tmp_path: Path, hosts_yml: str | None,
                                                   message: str) -> None:
    inv = tmp_path / "hosts.yml"
    if hosts_yml is not None:
        vars_ = ("  vars:\n    ansible_ssh_private_key_file: /var/lib/pyconsul-lab/ssh/id_ed25519\n"
                 "    ansible_user: root\n")
        inv.write_text(hosts_yml + vars_)
    before = sorted(os.listdir("/run/netns"))
    proc = cli("up", "-i", str(inv))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(os.listdir("/run/netns")) == before


def test_not_root_is_a_clear_error(lab: Lab) -> None:
    proc = cli("status", "-i", INVENTORY, user="nobody")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "must run as root" in proc.stderr


def _mounts_of(names: list[str]) -> list[str]:
    """Mount lines of any process on the machine whose source is one of these hosts' state directories."""
    needles = [f"{STATE_DIR}/hosts/{n}/" for n in names]
    found: list[str] = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = Path(f"/proc/{pid}/mountinfo").read_text()
        except OSError:
            continue
        found += [line for line in text.splitlines() if any(n in line for n in needles)]
    return found


def test_down_leaves_nothing_behind(lab: Lab) -> None:
    # Processes started over ssh must die too, including one that ignores SIGTERM and one in its own session.
    b = lab.specs["lab-b"]
    ssh(b, "setsid sleep 600 </dev/null >/dev/null 2>&1 &")
    ssh(b, "nohup python3 -c 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'"
           " </dev/null >/dev/null 2>&1 &")
    assert wait_until(lambda: len(netns_pids(b.netns)) >= 3, 10)
    lab.record()
    assert lab.sockets, "ssh did not leave ControlMaster sockets (the inventory asks for ControlPersist)"
    assert _mounts_of(NAMES), "expected the hosts' private mounts while they are up"

    # Root-namespace nft tables named pcl* belong to the lab (the chaos framework's partitions use them).
    table = f"pcl_labtest_{os.getpid()}"
    subprocess.run(["nft", "add", "table", "bridge", table], check=True)

    proc = cli("down", "-i", INVENTORY)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    netns = set(os.listdir("/run/netns"))
    assert not {s.netns for s in lab.specs.values()} & netns
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    for spec in lab.specs.values():
        assert f" {spec.veth}@" not in links and f" {spec.veth}:" not in links
        assert not (Path("/etc/netns") / spec.netns).exists()
        assert not (STATE_DIR / "hosts" / spec.name / "fs").exists()
    assert not [p for p in lab.pids if alive(p)], "lab processes survived down"
    assert not [s for s in lab.sockets if s.exists()], "ControlMaster sockets survived down"
    assert _mounts_of(NAMES) == []
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    if not any(n.startswith("pcl-") for n in netns):  # no other inventory up: the shared pieces are gone too
        assert " pcl-br0:" not in links
        assert not list((STATE_DIR / "ssh").glob("cm-*"))
        assert table not in tables
    else:  # another inventory is still up: its tables may be in use; the last `down` removes them
        subprocess.run(["nft", "delete", "table", "bridge", table], check=False)

    status = cli("status", "-i", INVENTORY)
    assert status.returncode == 1
    assert status.stdout.count(" down") == 3
