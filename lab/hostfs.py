"""Files the lab keeps on the machine: host records, private directories, mount points, /etc/netns entries.

Contracts:
- ``hosts/<host>/host.json`` exists exactly while the host is (meant to be) up; it records the address,
  veth and ssh options, so `down --all` and conflict checks work without the inventory.
- ``hosts/<host>/fs/<path>`` is the host's private copy of each PRIVATE_DIRS path; `down` deletes it, so a
  host comes back empty (like a fresh machine); host keys stay, so known_hosts stays valid.
- Mount points missing on the machine (e.g. /etc/pyconsul) and /run/sshd, /etc/netns are created by `up` and
  recorded in ``created.json``; the last `down` (no lab host left) removes those that are empty.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from pyconsul.lab.plan import HOSTS_DIR, NETNS_PREFIX, PRIVATE_DIRS, STATE_DIR, HostSpec, private_dir_source
from pyconsul.lab.render import RESOLV_CONF, etc_hosts
from pyconsul.lab.system import write_if_changed

CREATED = STATE_DIR / "created.json"
ETC_NETNS = Path("/etc/netns")


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise `up`/`down` across processes (several inventories may be brought up at once)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_DIR.chmod(0o755)
    with open(STATE_DIR / "lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("pyconsul-lab: waiting for another pyconsul-lab up/down to finish", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _created() -> list[str]:
    try:
        data = json.loads(CREATED.read_text())
    except (OSError, ValueError):
        return []
    return [str(p) for p in data] if isinstance(data, list) else []


def _mkdirs(path: Path) -> bool:
    """mkdir -p, recording every directory this created in created.json. Returns whether it created any."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not missing:
        return False
    for d in reversed(missing):
        d.mkdir(mode=0o755)
    write_if_changed(CREATED, json.dumps(sorted(set(_created()) | {str(d) for d in missing}), indent=1) + "\n")
    return True


def ensure_machine_dirs() -> bool:
    """Mount points for PRIVATE_DIRS, sshd's /run/sshd and /etc/netns exist on the machine."""
    changed = False
    for path in [*PRIVATE_DIRS, "/run/sshd", str(ETC_NETNS)]:
        changed |= _mkdirs(Path(path))
    return changed


def remove_created_dirs() -> None:
    """Remove the recorded directories that are empty, deepest first; forget them all."""
    for path in sorted(_created(), key=lambda p: p.count("/"), reverse=True):
        with contextlib.suppress(OSError):
            Path(path).rmdir()
    CREATED.unlink(missing_ok=True)


def ensure_host_files(spec: HostSpec, peers: Sequence[HostSpec]) -> bool:
    """The host's private directories, /etc/netns/<netns>/{hosts,resolv.conf} and host.json."""
    changed = False
    for target in PRIVATE_DIRS:
        source = private_dir_source(spec.state_dir, target)
        if not source.is_dir():
            source.mkdir(parents=True, mode=0o755)
            changed = True
    ns_dir = ETC_NETNS / spec.netns
    changed |= write_if_changed(ns_dir / "hosts", etc_hosts(spec, peers))
    changed |= write_if_changed(ns_dir / "resolv.conf", RESOLV_CONF)
    record = {"name": spec.name, "address": str(spec.address), "port": spec.port, "veth": spec.veth,
              "ssh_options": list(spec.ssh_options), "init": spec.init}
    changed |= write_if_changed(spec.state_dir / "host.json", json.dumps(record, indent=1) + "\n")
    return changed


def read_record(name: str) -> HostSpec | None:
    """The spec recorded by `up` for host `name`, or None if there is no (readable) record."""
    try:
        data = json.loads((HOSTS_DIR / name / "host.json").read_text())
        return HostSpec(str(data["name"]), ipaddress.IPv4Address(data["address"]), int(data["port"]),
                        tuple(str(o) for o in data["ssh_options"]), str(data.get("init", "sshd")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_host_files(name: str) -> None:
    """Forget a host that is down: private data, record, pid file, /etc/netns entry. Keeps host keys and log."""
    host_dir = HOSTS_DIR / name
    shutil.rmtree(host_dir / "fs", ignore_errors=True)
    for f in ("host.json", "sshd.pid"):
        (host_dir / f).unlink(missing_ok=True)
    shutil.rmtree(ETC_NETNS / (NETNS_PREFIX + name), ignore_errors=True)
