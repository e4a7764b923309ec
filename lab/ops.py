"""The lab's verbs: up, down, status. They compose lab.network, lab.sshd and lab.hostfs.

`up` is idempotent: every step checks the current state and changes only what differs, so a second `up`
starts nothing and rewrites nothing (same sshd PIDs). `down` removes, for each host of the inventory:
the ControlMaster sockets (and their ssh processes), every process in the host's namespace (SIGTERM, then
SIGKILL after a deadline), the namespace, the veth, the /etc/netns entry and the host's private data.
When no lab host remains it also removes the bridge, the root-namespace nft tables named ``pcl*`` (the
chaos framework's tables follow that prefix), freezer cgroups ``pcl*``, leftover ``cm-*`` sockets and the
empty directories `up` created on the machine.

Chaos contract: a freezer cgroup for host H is ``/sys/fs/cgroup/freezer/pcl-H``; `down` thaws it before
killing (a frozen process cannot die) and removes it afterwards.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from collections.abc import Sequence
from pathlib import Path

from pyconsul.lab import hostfs, network, nspawn, sshd
from pyconsul.lab.plan import NETNS_PREFIX, SSH_DIR, HostSpec, check_conflicts
from pyconsul.lab.render import table
from pyconsul.lab.system import LabFailure, netns_pids, run, terminate

FREEZER = Path("/sys/fs/cgroup/freezer")


def running_hosts() -> dict[str, ipaddress.IPv4Address | None]:
    """Lab hosts whose namespace exists: name → recorded address (None if no record)."""
    out: dict[str, ipaddress.IPv4Address | None] = {}
    for ns in network.lab_netns():
        name = ns[len(NETNS_PREFIX):]
        record = hostfs.read_record(name)
        out[name] = record.address if record else None
    return out


def up(specs: Sequence[HostSpec], timeout: float = 30.0) -> int:
    """Bring every host up (see module doc); print a table; 0 if every host answers ssh, else 1."""
    with hostfs.locked():
        check_conflicts(specs, running_hosts())
        changed = {s.name: False for s in specs}
        sshd.ensure_client_files(specs)
        hostfs.ensure_machine_dirs()
        network.ensure_bridge()
        for spec in specs:
            changed[spec.name] |= hostfs.ensure_host_files(spec, specs)
            changed[spec.name] |= network.ensure_host_network(spec)
            if spec.init == "systemd":
                changed[spec.name] |= nspawn.ensure_container(spec, specs, sshd.host_key(spec))
            else:
                changed[spec.name] |= sshd.ensure_sshd(spec)
        silent = sshd.wait_ssh(specs, timeout)
    rows = [[s.name, str(s.address), s.netns, s.veth, str(_pid(s) or "-"),
             "no ssh" if s.name in silent else ("started" if changed[s.name] else "unchanged")] for s in specs]
    print(table(["HOST", "ADDRESS", "NETNS", "VETH", "PID", "STATE"], rows))
    if silent:
        logs = ", ".join(str(sshd.log_file(s)) for s in specs if s.name in silent)
        print(f"pyconsul-lab: no ssh answer from {', '.join(silent)} within {timeout:.0f} s; see {logs}")
        return 1
    return 0


def status(specs: Sequence[HostSpec]) -> int:
    """Print each host's namespace, sshd and address; 0 if all are up, else 1."""
    rows: list[list[str]] = []
    ok = True
    names = set(network.lab_netns())
    for spec in specs:
        has_ns = spec.netns in names
        pid = _pid(spec) if has_ns else None
        addr = network.host_address(spec) if has_ns else None
        up_ = has_ns and pid is not None and addr == str(spec.address)
        ok &= up_
        rows.append([spec.name, str(spec.address), "yes" if has_ns else "no", str(pid or "-"), addr or "-",
                     "up" if up_ else "down"])
    print(table(["HOST", "ADDRESS", "NETNS", "PID", "ETH0", "STATE"], rows))
    return 0 if ok else 1


def _pid(spec: HostSpec) -> int | None:
    """The host's main process: its sshd, or its systemd-nspawn (lab_init: systemd)."""
    return nspawn.nspawn_pid(spec) if spec.init == "systemd" else sshd.sshd_pid(spec)


def _thaw(name: str) -> None:
    state = FREEZER / name / "freezer.state"
    if state.exists():
        with contextlib.suppress(OSError):
            state.write_text("THAWED\n")


def _remove_cgroup(name: str) -> None:
    with contextlib.suppress(OSError):
        (FREEZER / name).rmdir()


def _take_down(specs: Sequence[HostSpec]) -> list[str]:
    """Remove these hosts; return problems (processes that would not die), empty on success."""
    for spec in specs:
        sock = sshd.control_path(spec)
        if sock is not None:
            sshd.close_master(sock)
    for spec in specs:
        _thaw(spec.netns)
    problems: list[str] = []
    for spec in specs:  # containers first: an orderly poweroff, then their overlays are unmounted
        problems += nspawn.stop(spec)
    netns = [s.netns for s in specs]
    left = terminate(lambda: sorted(p for ns in netns for p in netns_pids(ns)), grace=3.0)
    problems += [f"processes {left} did not exit"] if left else []
    for spec in specs:
        try:
            network.delete_host_network(spec.netns, spec.veth, str(spec.address) if spec.veth else None)
        except LabFailure as e:
            problems.append(f"{spec.name}: {e}")
        _remove_cgroup(spec.netns)
        nspawn.remove(spec)
        hostfs.remove_host_files(spec.name)
    return problems


def _nft_lab_tables() -> list[tuple[str, str]]:
    proc = run(["nft", "-j", "list", "tables"], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    tables = []
    for item in json.loads(proc.stdout).get("nftables", []):
        t = item.get("table")
        if isinstance(t, dict) and str(t.get("name", "")).startswith("pcl"):
            tables.append((str(t["family"]), str(t["name"])))
    return tables


def _final_cleanup() -> None:
    """Nothing of the lab is left running: remove the shared pieces."""
    for family, name in _nft_lab_tables():
        run(["nft", "delete", "table", family, name], check=False)
    for veth in network.lab_veths():
        run(["ip", "link", "del", veth], check=False)
    network.delete_bridge()
    for sock in sorted(SSH_DIR.glob("cm-*")):
        sshd.close_master(sock)
    if FREEZER.is_dir():
        for cg in FREEZER.glob("pcl*"):
            _thaw(cg.name)
            _remove_cgroup(cg.name)
    hostfs.remove_created_dirs()


def down(specs: Sequence[HostSpec] | None) -> int:
    """Take down the inventory's hosts (`specs`), or every lab host (None); 0 on success, 1 on leftovers.

    A host of the same name that is up at a different address belongs to another inventory: left alone.
    """
    with hostfs.locked():
        running = running_hosts()
        if specs is None:
            targets = [hostfs.read_record(n) or _bare(n) for n in running]
        else:
            targets = []
            for spec in specs:
                current = running.get(spec.name)
                if current is not None and current != spec.address:
                    print(f"pyconsul-lab: {spec.name} is up at {current} (another inventory); left alone")
                    continue
                targets.append(spec)
        problems = _take_down(targets)
        if not network.lab_netns():
            _final_cleanup()
        elif specs is None:
            problems.append(f"namespaces remain: {', '.join(network.lab_netns())}")
    for problem in problems:
        print(f"pyconsul-lab: {problem}")
    was_up = [s.name for s in targets if s.name in running]
    print(f"pyconsul-lab: down: {', '.join(was_up) if was_up else 'nothing was up'}")
    return 1 if problems else 0


def _bare(name: str) -> HostSpec:
    """A spec for a namespace without a record: no veth name known (its veth dies with the namespace)."""
    return _NoVethSpec(name, ipaddress.IPv4Address("0.0.0.0"), 22, ())


class _NoVethSpec(HostSpec):
    @property
    def veth(self) -> str:
        return ""


def require_root() -> None:
    if os.geteuid() != 0:
        raise PermissionError("pyconsul-lab must run as root (it creates network namespaces, veths and mounts)")


__all__ = ["LabFailure", "down", "require_root", "status", "up"]
