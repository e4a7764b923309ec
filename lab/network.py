"""Network plumbing with `ip` (iproute2): the bridge, one namespace and veth pair per host.

Every `ensure_*` function changes nothing when the wanted state is already there, and says whether it
changed something. Only names from lab.plan (``pcl-*``) and addresses in 10.77.0.0/16 are touched.
"""

from __future__ import annotations

import json
from typing import Any

from pyconsul.lab.plan import BRIDGE, BRIDGE_ADDR, HOST_IFNAME, LAB_NET, NETNS_PREFIX, HostSpec
from pyconsul.lab.system import LabFailure, run, wait_until


def _links(netns: str | None = None, dev: str | None = None) -> list[dict[str, Any]]:
    argv = ["ip", "-j"] + (["-n", netns] if netns else []) + ["addr", "show"] + (["dev", dev] if dev else [])
    proc = run(argv, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    data = json.loads(proc.stdout)
    return data if isinstance(data, list) else []


def link_exists(dev: str, netns: str | None = None) -> bool:
    return bool(_links(netns, dev))


def ipv4_addresses(dev: str, netns: str | None = None) -> list[str]:
    """``address/prefix`` strings of `dev`'s IPv4 addresses."""
    out: list[str] = []
    for link in _links(netns, dev):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                out.append(f"{info['local']}/{info['prefixlen']}")
    return out


def lab_netns() -> list[str]:
    """Names of every lab network namespace (``pcl-*``) on the machine."""
    proc = run(["ip", "-j", "netns", "list"], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return sorted(str(n["name"]) for n in json.loads(proc.stdout) if str(n.get("name", "")).startswith(NETNS_PREFIX))


def ensure_bridge() -> bool:
    """The bridge exists, is up and holds 10.77.0.1/16 (the root namespace's leg into the lab)."""
    changed = False
    want = f"{BRIDGE_ADDR}/{LAB_NET.prefixlen}"
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        changed = True
    if want not in ipv4_addresses(BRIDGE):
        run(["ip", "addr", "add", want, "dev", BRIDGE])
        changed = True
    if not _is_up(BRIDGE):
        run(["ip", "link", "set", BRIDGE, "up"])
        changed = True
    return changed


def _is_up(dev: str, netns: str | None = None) -> bool:
    links = _links(netns, dev)
    return bool(links) and "UP" in links[0].get("flags", [])


def _mac(dev: str, netns: str | None = None) -> str | None:
    links = _links(netns, dev)
    return str(links[0].get("address")) if links else None


def _master(dev: str) -> str | None:
    proc = run(["ip", "-j", "link", "show", "dev", dev], check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return str(data[0]["master"]) if data and "master" in data[0] else None


def ensure_host_network(spec: HostSpec) -> bool:
    """The host's namespace, veth pair (root end on the bridge, `eth0` inside) and address are in place.

    A root veth whose peer is not this namespace's eth0 (left over from an interrupted run) is recreated.
    """
    changed = False
    ns = spec.netns
    if not _netns_exists(ns):
        run(["ip", "netns", "add", ns])
        changed = True
    if not (link_exists(spec.veth) and link_exists(HOST_IFNAME, ns)):
        if link_exists(spec.veth):
            run(["ip", "link", "del", spec.veth])
        if link_exists(HOST_IFNAME, ns):
            run(["ip", "-n", ns, "link", "del", HOST_IFNAME])
        run(["ip", "link", "add", spec.veth, "type", "veth", "peer", "name", HOST_IFNAME, "address", spec.mac,
             "netns", ns])
        changed = True
        # An entry left from an earlier host at this address (before deterministic MACs) would stall traffic.
        run(["ip", "neigh", "flush", "to", str(spec.address), "dev", BRIDGE], check=False)
    if _mac(HOST_IFNAME, ns) != spec.mac:
        run(["ip", "-n", ns, "link", "set", HOST_IFNAME, "address", spec.mac])
        changed = True
    if _master(spec.veth) != BRIDGE:
        run(["ip", "link", "set", spec.veth, "master", BRIDGE])
        changed = True
    if not _is_up(spec.veth):
        run(["ip", "link", "set", spec.veth, "up"])
        changed = True
    want = f"{spec.address}/{LAB_NET.prefixlen}"
    have = ipv4_addresses(HOST_IFNAME, ns)
    if have != [want]:
        run(["ip", "-n", ns, "addr", "flush", "dev", HOST_IFNAME])
        run(["ip", "-n", ns, "addr", "add", want, "dev", HOST_IFNAME])
        changed = True
    for dev in ("lo", HOST_IFNAME):
        if not _is_up(dev, ns):
            run(["ip", "-n", ns, "link", "set", dev, "up"])
            changed = True
    return changed


def _netns_exists(ns: str) -> bool:
    return ns in lab_netns()


def host_address(spec: HostSpec) -> str | None:
    """The address configured on the host's eth0, if its namespace and interface exist."""
    if not _netns_exists(spec.netns):
        return None
    have = ipv4_addresses(HOST_IFNAME, spec.netns)
    return have[0].split("/")[0] if have else None


def delete_host_network(netns: str, veth: str | None, address: str | None = None) -> None:
    """Delete the namespace and the root end of the veth (which also deletes the peer), and forget the
    root namespace's neighbour entry for the host's address. Idempotent."""
    if _netns_exists(netns):
        run(["ip", "netns", "del", netns])
    if veth:
        # The kernel destroys a deleted namespace's interfaces asynchronously, so the veth may vanish between
        # our look and our delete: delete without checking, then wait until it is really gone.
        if link_exists(veth):
            run(["ip", "link", "del", veth], check=False)
        if not wait_until(lambda: not link_exists(veth), 5.0):
            raise LabFailure(f"veth {veth} is still present")
    if address and link_exists(BRIDGE):
        run(["ip", "neigh", "flush", "to", address, "dev", BRIDGE], check=False)


def delete_bridge() -> None:
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE])


def lab_veths() -> list[str]:
    """Root-namespace interfaces named ``pcl-*`` other than the bridge (the lab's veth ends)."""
    proc = run(["ip", "-j", "link", "show"], check=False)
    if proc.returncode != 0:
        raise LabFailure("`ip link show` failed")
    return sorted(str(link["ifname"]) for link in json.loads(proc.stdout)
                  if str(link.get("ifname", "")).startswith(NETNS_PREFIX) and link.get("ifname") != BRIDGE)
