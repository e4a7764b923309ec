"""The lab's plan: inventory (as `ansible-inventory --list` JSON) → validated host specs. Pure: no I/O.

Naming contract (deterministic; other tools — the chaos framework, tests — rely on it):

- bridge ``pcl-br0`` in the root network namespace, address ``10.77.0.1/16``;
- one network namespace per host: ``pcl-<host>`` (``/run/netns/pcl-<host>``);
- one veth pair per host: the root end ``pcl-<c>-<d>`` for a host at ``10.77.<c>.<d>`` (≤ 11 characters,
  unique because two hosts on one bridge cannot share an address), enslaved to the bridge; the other end is
  ``eth0`` inside the host's namespace, with ``<address>/16`` and the MAC ``02:70:63:6c:<c>:<d>``;
- the lab's state lives under ``/var/lib/pyconsul-lab`` (fixed: the inventories point at its ssh files).

A host runs one of two inits (host variable ``lab_init``): ``sshd`` (the default: sshd alone in private UTS and
mount namespaces, with private copies of PRIVATE_DIRS) or ``systemd`` (a systemd-nspawn container booting
systemd as PID 1 on an overlay of a Debian rootfs, in the host's network namespace: for the role's systemd
branch; see lab/nspawn.py).

Every lab host is at an address in 10.77.0.0/16; the bridge address, the network and broadcast addresses are
reserved. Host names become hostnames, directory names and namespace names, so they are restricted to
``[A-Za-z0-9_][A-Za-z0-9_.-]*`` and at most 63 characters.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_DIR = Path("/var/lib/pyconsul-lab")
SSH_DIR = STATE_DIR / "ssh"
CLIENT_KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
AUTHORIZED_KEYS = SSH_DIR / "authorized_keys"
HOSTS_DIR = STATE_DIR / "hosts"

LAB_NET = ipaddress.IPv4Network("10.77.0.0/16")
BRIDGE = "pcl-br0"
BRIDGE_ADDR = ipaddress.IPv4Address("10.77.0.1")
NETNS_PREFIX = "pcl-"
HOST_IFNAME = "eth0"

# The directories each host sees as its own (bind mounts inside the host's mount namespace). /tmp and /root
# stay shared with the machine.
PRIVATE_DIRS: tuple[str, ...] = ("/opt", "/etc/pyconsul", "/var/lib/pyconsul", "/var/log/pyconsul", "/run/pyconsul")

INITS = ("sshd", "systemd")

_HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")


class PlanError(Exception):
    """Bad input (inventory, host name, address, conflict). The message is one line, fit for the user."""


@dataclass(frozen=True)
class HostSpec:
    """One lab host as the inventory describes it.

    `ssh_options` are the inventory's ssh arguments (user, port, key, common and extra args) in the order the
    Ansible ssh plugin passes them, without the destination: ``ssh *ssh_options <address> [command]`` reaches
    the host exactly as Ansible does.
    """

    name: str
    address: ipaddress.IPv4Address
    port: int
    ssh_options: tuple[str, ...]
    init: str = "sshd"  # "sshd" | "systemd" (host variable lab_init)

    @property
    def netns(self) -> str:
        return netns_name(self.name)

    @property
    def veth(self) -> str:
        return veth_name(self.address)

    @property
    def mac(self) -> str:
        return mac_address(self.address)

    @property
    def state_dir(self) -> Path:
        return HOSTS_DIR / self.name


def netns_name(host: str) -> str:
    return NETNS_PREFIX + host


def veth_name(address: ipaddress.IPv4Address) -> str:
    """Root end of a host's veth pair: ``pcl-<c>-<d>`` for 10.77.<c>.<d>; at most 11 characters (limit 15)."""
    if address not in LAB_NET:
        raise PlanError(f"{address} is outside {LAB_NET}")
    c, d = address.packed[2], address.packed[3]
    return f"pcl-{c}-{d}"


def mac_address(address: ipaddress.IPv4Address) -> str:
    """The MAC of a host's eth0: ``02:70:63:6c:<c>:<d>`` (locally administered, "pcl" in ASCII).

    Deterministic on purpose: when a host is taken down and brought up again, neighbour (ARP) entries
    still cached for its address stay right; with a random MAC, connections stall until they expire.
    """
    if address not in LAB_NET:
        raise PlanError(f"{address} is outside {LAB_NET}")
    c, d = address.packed[2], address.packed[3]
    return f"02:70:63:6c:{c:02x}:{d:02x}"


def private_dir_source(host_dir: Path, target: str) -> Path:
    """Where a host's private copy of `target` (an absolute path like /etc/pyconsul) lives on the machine."""
    return host_dir / "fs" / target.lstrip("/")


def check_address(host: str, value: object) -> ipaddress.IPv4Address:
    if value is None or value == "":
        raise PlanError(f"host {host}: no ansible_host (the lab needs an IPv4 address in {LAB_NET})")
    try:
        address = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise PlanError(f"host {host}: ansible_host {value!r} is not an IPv4 address") from None
    if address not in LAB_NET:
        raise PlanError(f"host {host}: ansible_host {address} is outside the lab network {LAB_NET}")
    if address in (BRIDGE_ADDR, LAB_NET.network_address, LAB_NET.broadcast_address):
        raise PlanError(f"host {host}: ansible_host {address} is reserved (bridge, network or broadcast address)")
    return address


def check_host_name(host: str) -> None:
    if not _HOST_NAME.match(host) or host.endswith(".") or ".." in host:
        raise PlanError(f"host {host!r}: a lab host name must match [A-Za-z0-9_][A-Za-z0-9_.-]* (≤ 63 characters)")


def _first(hostvars: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if hostvars.get(key) not in (None, ""):
            return hostvars[key]
    return None


def ssh_options(host: str, hostvars: Mapping[str, Any]) -> tuple[tuple[str, ...], int]:
    """The ssh arguments Ansible's ssh connection plugin derives from these host variables, and the port.

    Contract: the user must be root and the private key must be the lab's key (the lab's sshd admits only
    root with that key), so an inventory that would not work is rejected here rather than at connect time.
    """
    user = str(_first(hostvars, "ansible_user", "ansible_ssh_user") or "root")
    if user != "root":
        raise PlanError(f"host {host}: ansible_user is {user!r}; lab hosts admit only root")
    port_value = _first(hostvars, "ansible_port", "ansible_ssh_port") or 22
    try:
        port = int(port_value)
    except (TypeError, ValueError):
        raise PlanError(f"host {host}: ansible_port {port_value!r} is not a number") from None
    if not 0 < port < 65536:
        raise PlanError(f"host {host}: ansible_port {port} is out of range")
    key = _first(hostvars, "ansible_ssh_private_key_file", "ansible_private_key_file")
    if key is None or Path(str(key)) != CLIENT_KEY:
        raise PlanError(f"host {host}: ansible_ssh_private_key_file must be the lab's key {CLIENT_KEY} (is {key!r})")
    options: list[str] = ["-o", f"Port={port}", "-o", f"User={user}", "-o", f"IdentityFile={key}",
                          "-o", "IdentitiesOnly=yes"]
    for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        value = hostvars.get(var)
        if value:
            try:
                options += shlex.split(str(value))
            except ValueError as e:
                raise PlanError(f"host {host}: {var} cannot be parsed: {e}") from None
    return tuple(options), port


def inventory_hosts(inventory: Mapping[str, Any]) -> list[str]:
    """Every host named in `ansible-inventory --list` output: group members and hostvars keys, sorted."""
    names: set[str] = set()
    for group, body in inventory.items():
        if group == "_meta" or not isinstance(body, Mapping):
            continue
        names.update(str(h) for h in body.get("hosts", []))
    meta = inventory.get("_meta", {})
    if isinstance(meta, Mapping):
        names.update(str(h) for h in meta.get("hostvars", {}))
    return sorted(names)


def plan_hosts(inventory: Mapping[str, Any], source: str = "inventory") -> list[HostSpec]:
    """Validated host specs for every host of the inventory, sorted by name.

    Hosts with ``ansible_connection: local`` are the controller, not lab hosts, and are left out.
    Raises PlanError for: no hosts, a bad host name, a missing/invalid/out-of-range/reserved address, two
    hosts with one address, a non-root user or a key other than the lab's.
    """
    meta = inventory.get("_meta", {})
    all_vars: Mapping[str, Any] = meta.get("hostvars", {}) if isinstance(meta, Mapping) else {}
    specs: list[HostSpec] = []
    by_address: dict[ipaddress.IPv4Address, str] = {}
    for name in inventory_hosts(inventory):
        hostvars: Mapping[str, Any] = all_vars.get(name) or {}
        if hostvars.get("ansible_connection") == "local":
            continue
        check_host_name(name)
        address = check_address(name, hostvars.get("ansible_host"))
        if address in by_address:
            raise PlanError(f"hosts {by_address[address]} and {name} share the address {address}")
        by_address[address] = name
        options, port = ssh_options(name, hostvars)
        init = str(hostvars.get("lab_init") or "sshd")
        if init not in INITS:
            raise PlanError(f"host {name}: lab_init must be one of {', '.join(INITS)}, got {init!r}")
        specs.append(HostSpec(name, address, port, options, init))
    if not specs:
        raise PlanError(f"{source}: no hosts")
    return specs


def check_conflicts(specs: Sequence[HostSpec], running: Mapping[str, ipaddress.IPv4Address | None]) -> None:
    """Reject specs that clash with lab hosts already up (`running`: host name → its address, None if unknown).

    A running host of the same name must have the same address (then `up` reuses it); no running host of
    another name may hold one of our addresses.
    """
    owners = {addr: name for name, addr in running.items() if addr is not None}
    for spec in specs:
        if spec.name in running:
            current = running[spec.name]
            if current is not None and current != spec.address:
                raise PlanError(f"host {spec.name} is already up at {current}, not {spec.address}; "
                                f"take it down first (pyconsul-lab down)")
        owner = owners.get(spec.address)
        if owner is not None and owner != spec.name:
            raise PlanError(f"host {spec.name}: address {spec.address} is already used by lab host {owner}")
