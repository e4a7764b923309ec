"""ssh on both sides: the lab's client key, per-host sshd (keys, config, start, liveness) and ControlMasters.

Files (all under lab.plan.STATE_DIR):
- ``ssh/id_ed25519{,.pub}`` — the client key Ansible uses; made once, never rotated;
- ``ssh/authorized_keys`` — that public key; every host's sshd reads it;
- ``ssh/known_hosts`` — one line per lab host address with that host's key, rewritten by `up` so a host
  name keeps working even if an address moved between inventories;
- ``ssh/cm-*`` — ControlMaster sockets (the inventory's ControlPath); `down` closes them;
- ``hosts/<host>/ssh_host_ed25519_key{,.pub}`` — the host key, stable per host name across down/up;
- ``hosts/<host>/{sshd_config,sshd.pid,sshd.log}``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyconsul.lab.plan import AUTHORIZED_KEYS, CLIENT_KEY, KNOWN_HOSTS, SSH_DIR, HostSpec
from pyconsul.lab.render import host_script, known_hosts_name, rewrite_known_hosts, sshd_config
from pyconsul.lab.system import (
    LabFailure,
    alive,
    comm,
    netns_inode,
    run,
    terminate,
    unix_socket_owners,
    wait_until,
    write_if_changed,
)

# Options put before the inventory's own: ssh takes the first value of an option, and these only make the
# lab's probes non-interactive and quick to fail.
PROBE_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=3")


def host_key(spec: HostSpec) -> Path:
    return spec.state_dir / "ssh_host_ed25519_key"


def pid_file(spec: HostSpec) -> Path:
    return spec.state_dir / "sshd.pid"


def log_file(spec: HostSpec) -> Path:
    return spec.state_dir / "sshd.log"


def _keygen(path: Path, comment: str) -> bool:
    if path.exists() and path.with_suffix(".pub").exists():
        return False
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return True


def ensure_client_files(specs: Sequence[HostSpec]) -> bool:
    """Client key, authorized_keys, host keys of `specs` and their known_hosts lines. Writes only on change."""
    SSH_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(SSH_DIR, 0o700)
    changed = _keygen(CLIENT_KEY, "pyconsul-lab")
    changed |= write_if_changed(AUTHORIZED_KEYS, CLIENT_KEY.with_suffix(".pub").read_text(), 0o600)
    entries: dict[str, str] = {}
    for spec in specs:
        changed |= _keygen(host_key(spec), f"pyconsul-lab host {spec.name}")
        key_type, key_b64 = host_key(spec).with_suffix(".pub").read_text().split()[:2]
        entries[known_hosts_name(str(spec.address), spec.port)] = f"{key_type} {key_b64}"
    try:
        current = KNOWN_HOSTS.read_text()
    except FileNotFoundError:
        current = ""
    changed |= write_if_changed(KNOWN_HOSTS, rewrite_known_hosts(current, entries), 0o600)
    return changed


def sshd_pid(spec: HostSpec) -> int | None:
    """PID of the host's sshd listener if it is alive, is sshd, and lives in the host's namespace."""
    try:
        pid = int(pid_file(spec).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    ident = netns_inode(spec.netns)
    if ident is None or not alive(pid) or comm(pid) != "sshd":
        return None
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return pid if (st.st_dev, st.st_ino) == ident else None


def ensure_sshd(spec: HostSpec) -> bool:
    """The host's sshd runs (in its namespaces, with current config). Starts it if not; returns whether it did.

    A running sshd whose config changed is left running: sshd reads its config at start, and restarting it
    would drop the host's mount namespace and everything in it. `down` + `up` applies a new config.
    """
    cfg = spec.state_dir / "sshd_config"
    write_if_changed(cfg, sshd_config(spec, host_key(spec), pid_file(spec)), 0o600)
    if sshd_pid(spec) is not None:
        return False
    pid_file(spec).unlink(missing_ok=True)
    run(["ip", "netns", "exec", spec.netns, "unshare", "--mount", "--uts", "--propagation", "private",
         "sh", "-c", host_script(spec, cfg, log_file(spec))])
    if not wait_until(lambda: sshd_pid(spec) is not None, 10.0):
        raise LabFailure(f"host {spec.name}: sshd did not start; see {log_file(spec)}")
    return True


def ssh_argv(spec: HostSpec, command: Sequence[str] = (), probe: bool = False) -> list[str]:
    """``ssh`` reaching the host with the inventory's arguments (as Ansible does), then `command`."""
    return ["ssh", *(PROBE_OPTIONS if probe else ()), *spec.ssh_options, str(spec.address), *command]


def _answers(spec: HostSpec) -> bool:
    # stdout/stderr go to DEVNULL: a ControlPersist master forked by this ssh must not hold our pipes open.
    try:
        rc = subprocess.run(ssh_argv(spec, ["true"], probe=True), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10).returncode
    except subprocess.TimeoutExpired:
        return False
    return rc == 0


def wait_ssh(specs: Sequence[HostSpec], timeout: float = 30.0) -> list[str]:
    """Poll every host with ``ssh ... true`` (in parallel) until it answers; return the names that never did."""
    def one(spec: HostSpec) -> str | None:
        return None if wait_until(lambda: _answers(spec), timeout, interval=0.2) else spec.name

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(specs)))) as pool:
        return [name for name in pool.map(one, specs) if name is not None]


def control_path(spec: HostSpec) -> Path | None:
    """The ControlMaster socket path ssh would use for this host (``ssh -G`` expands %C etc.), if any."""
    proc = run(["ssh", "-G", *spec.ssh_options, str(spec.address)], check=False)
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "controlpath" and value and value != "none":
            return Path(value)
    return None


def close_master(sock: Path) -> None:
    """Close the ControlMaster listening on `sock`: ``ssh -O exit``, then kill its owner by PID, then unlink.

    The owner is found through the socket itself (/proc/net/unix inode → /proc/*/fd), so only the process
    that really serves this socket is signalled.
    """
    if not sock.exists():
        return
    owners = unix_socket_owners(sock)
    if owners:
        run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "pyconsul-lab-master"], check=False, timeout=5)
        terminate(lambda: [p for p in owners if alive(p)], grace=2.0, hard=2.0)
    deadline = time.monotonic() + 1.0
    while sock.exists() and unix_socket_owners(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    sock.unlink(missing_ok=True)
