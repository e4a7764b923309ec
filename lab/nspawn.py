"""Lab hosts with systemd as PID 1 (``lab_init: systemd``): a systemd-nspawn container per host.

The role runs the agent under systemd when systemd is PID 1; an sshd-only lab host has no init, so this is
how the lab gives that branch a real host. Each such host is:

- a Debian bookworm root file system built once with debootstrap (ROOTFS; Debian's mirror, the same one
  apt uses here) and shared read-only by every container as an overlayfs lower layer, with a private upper
  layer per host under its state directory (so every host has its own /etc, /opt, /var/lib/pyconsul ...);
- booted with ``systemd-nspawn -b`` in the host's network namespace (made by lab.network exactly as for an
  sshd host: same veth, address and MAC), without machined (``--register=no --keep-unit``: the machine
  itself need not run systemd);
- reached over its own sshd (Debian's ssh.service) listening on the host's address, with the host key and
  authorized key of the lab (written into the upper layer before boot).

Contracts: `start` writes the nspawn PID to ``nspawn.pid``; `stop` asks the container to power off
(SIGTERM to nspawn makes it send SIGRTMIN+3 to the container's systemd), then kills by PID after a deadline,
then unmounts the overlay; `remove` deletes the upper layer only once the overlay is unmounted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pyconsul.lab.plan import AUTHORIZED_KEYS, HostSpec
from pyconsul.lab.render import RESOLV_CONF, etc_hosts
from pyconsul.lab.system import LabFailure, alive, comm, run, terminate, wait_until, write_if_changed

ROOTFS = Path("/var/cache/pyconsul-lab/rootfs-bookworm")
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "openssh-server", "iproute2")
MARKER = ".pyconsul-lab-rootfs"  # holds the package list the rootfs was built with


def _dir(spec: HostSpec, part: str) -> Path:
    return spec.state_dir / "nspawn" / part


def root(spec: HostSpec) -> Path:
    """The host's merged root file system (the overlay's mount point)."""
    return _dir(spec, "root")


def pid_file(spec: HostSpec) -> Path:
    return spec.state_dir / "nspawn.pid"


def log_file(spec: HostSpec) -> Path:
    return spec.state_dir / "nspawn.log"


def ensure_rootfs() -> bool:
    """Build ROOTFS with debootstrap unless it exists with the current package list; return whether it did."""
    want = " ".join(PACKAGES) + "\n"
    marker = ROOTFS / MARKER
    if marker.is_file() and marker.read_text() == want:
        return False
    for tool in ("debootstrap", "systemd-nspawn"):
        if shutil.which(tool) is None:
            raise LabFailure(f"lab_init: systemd needs {tool} (Debian packages debootstrap, systemd-container)")
    tmp = ROOTFS.with_name(ROOTFS.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    proc = run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "bookworm", str(tmp),
                MIRROR], check=False, timeout=900)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise LabFailure(f"debootstrap of {ROOTFS} failed: {' | '.join(tail)}")
    # Host keys made by the package would be shared by every container: each host gets its own instead.
    for key in (tmp / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (tmp / MARKER).write_text(want)
    shutil.rmtree(ROOTFS, ignore_errors=True)
    tmp.rename(ROOTFS)
    return True


def _mounted(path: Path) -> bool:
    return os.path.ismount(path)


def _ensure_overlay(spec: HostSpec) -> None:
    merged, upper, work = root(spec), _dir(spec, "upper"), _dir(spec, "work")
    if _mounted(merged):
        return
    for d in (merged, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={ROOTFS},upperdir={upper},workdir={work}",
         str(merged)])


def _write_files(spec: HostSpec, peers: Sequence[HostSpec], host_key: Path) -> None:
    r = root(spec)
    write_if_changed(r / "etc" / "hostname", spec.name + "\n")
    write_if_changed(r / "etc" / "hosts", etc_hosts(spec, peers))
    resolv = r / "etc" / "resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    write_if_changed(resolv, RESOLV_CONF)
    (r / "root" / ".ssh").mkdir(parents=True, exist_ok=True, mode=0o700)
    write_if_changed(r / "root" / ".ssh" / "authorized_keys", AUTHORIZED_KEYS.read_text(), 0o600)
    write_if_changed(r / "etc" / "ssh" / "pcl_lab_host_key", host_key.read_text(), 0o600)
    write_if_changed(r / "etc" / "ssh" / "sshd_config.d" / "pyconsul-lab.conf", "\n".join([
        "# Written by pyconsul-lab (lab_init: systemd).",
        f"ListenAddress {spec.address}",
        f"Port {spec.port}",
        "HostKey /etc/ssh/pcl_lab_host_key",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UseDNS no",
        "MaxSessions 64",
        "MaxStartups 64:30:128",
        "",
    ]))


def nspawn_pid(spec: HostSpec) -> int | None:
    """PID of the host's systemd-nspawn if it is alive and is systemd-nspawn."""
    try:
        pid = int(pid_file(spec).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) and comm(pid) == "systemd-nspawn" else None


def ensure_container(spec: HostSpec, peers: Sequence[HostSpec], host_key: Path) -> bool:
    """The host's container runs; boots it if not. Returns whether it started it."""
    if nspawn_pid(spec) is not None:
        return False
    ensure_rootfs()
    _ensure_overlay(spec)
    _write_files(spec, peers, host_key)
    with open(log_file(spec), "ab") as log:
        proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--boot", f"--directory={root(spec)}", f"--machine={spec.name}",
             f"--hostname={spec.name}", "--register=no", "--keep-unit", "--console=read-only",
             f"--network-namespace-path=/run/netns/{spec.netns}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    write_if_changed(pid_file(spec), f"{proc.pid}\n")
    if not wait_until(lambda: proc.poll() is None and comm(proc.pid) == "systemd-nspawn", 5.0):
        raise LabFailure(f"host {spec.name}: systemd-nspawn exited at once; see {log_file(spec)}")
    return True


def stop(spec: HostSpec, timeout: float = 20.0) -> list[str]:
    """Power the container off (then kill it), unmount its overlay; return problems (empty on success)."""
    problems: list[str] = []
    pid = nspawn_pid(spec)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # nspawn turns this into an orderly poweroff of the container
        if not wait_until(lambda: not alive(pid), timeout, interval=0.1):
            left = terminate(lambda: [pid] if alive(pid) else [], grace=0.0, hard=5.0)
            if left:
                problems.append(f"{spec.name}: systemd-nspawn {pid} did not exit")
    pid_file(spec).unlink(missing_ok=True)
    merged = root(spec)
    if _mounted(merged):
        if run(["umount", str(merged)], check=False).returncode != 0:
            run(["umount", "-l", str(merged)], check=False)
        if _mounted(merged):
            problems.append(f"{spec.name}: {merged} is still mounted")
    return problems


def remove(spec: HostSpec) -> None:
    """Delete the host's layers (its private files); only once nothing is mounted there."""
    if not _mounted(root(spec)):
        shutil.rmtree(spec.state_dir / "nspawn", ignore_errors=True)
