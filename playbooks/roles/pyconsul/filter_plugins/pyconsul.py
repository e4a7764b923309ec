"""The pyconsul role's derived values, as pure functions (Ansible loads them as filters from this directory).

The cluster is what the inventory says: every host of the cluster group (`pyconsul_cluster_group`) is an
agent; its datacenter, role (server or client), address and node name come from its host variables. From that
list (`pyconsul_members`) the role derives each agent's joins, `bootstrap_expect`, the WAN member names, and
the inventory problems that stop a play before any host is touched. The restart order and the verify views
are read from the facts each host registered in the run.

Only other hosts' *inventory* variables reach `hostvars` (role defaults do not), so the fall-backs below repeat
the role's defaults: datacenter ``dc1``, server ``true``, address ``ansible_host`` (else the host name), node
name the host name. No Ansible import: tests/unit/test_role_filters.py calls these with plain dicts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Member = dict[str, Any]  # {name, dc, server, addr, node, expect (None: the derived default)}

_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})
_IP_RE = re.compile(r"^(([0-9]{1,3}\.){3}[0-9]{1,3}|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)$")


def to_bool(value: Any) -> bool:
    """Ansible's `bool` filter: yes/on/1/true/t (any case), 1 and True are true; anything else is false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    return str(value).strip().lower() in _TRUE


def _get(hv: Mapping[str, Any], key: str, default: Any) -> Any:
    """hv[key], or `default` when it is unset or null (YAML `key:` with no value)."""
    value = hv.get(key)
    return default if value is None else value


def members(hosts: Iterable[str], hostvars: Mapping[str, Mapping[str, Any]]) -> list[Member]:
    """Every agent of the cluster, in inventory order: [{name, dc, server, addr, node, expect}].

    `hosts` is the cluster group (groups[pyconsul_cluster_group]); `hostvars` Ansible's hostvars.
    `expect` is the host's own pyconsul_bootstrap_expect, None when the inventory does not set it.
    """
    out: list[Member] = []
    for name in hosts:
        hv = hostvars[name]
        expect = hv.get("pyconsul_bootstrap_expect")
        out.append({
            "name": name,
            "dc": str(_get(hv, "pyconsul_datacenter", "dc1")).lower(),
            "server": to_bool(_get(hv, "pyconsul_server", True)),
            "addr": str(_get(hv, "pyconsul_bind_addr", _get(hv, "ansible_host", name))),
            "node": str(_get(hv, "pyconsul_node_name", name)),
            "expect": None if expect is None or expect == "" else int(expect),
        })
    return out


def servers(ms: Sequence[Member], dc: str | None = None) -> list[Member]:
    """The servers, all of them or those of datacenter `dc`."""
    return [m for m in ms if m["server"] and (dc is None or m["dc"] == str(dc).lower())]


def datacenters(ms: Sequence[Member]) -> list[str]:
    return sorted({m["dc"] for m in ms})


def retry_join(ms: Sequence[Member], dc: str, name: str) -> list[str]:
    """LAN joins (-retry-join): the addresses of the datacenter's servers other than `name` itself
    (joining oneself "succeeds" and would end the retry loop before any peer was reached)."""
    return [m["addr"] for m in servers(ms, dc) if m["name"] != name]


def retry_join_wan(ms: Sequence[Member], dc: str, server: Any) -> list[str]:
    """WAN joins (-retry-join-wan) of a server: the servers of every other datacenter. Clients: none."""
    if not to_bool(server):
        return []
    return [m["addr"] for m in servers(ms) if m["dc"] != str(dc).lower()]


def bootstrap_expect(ms: Sequence[Member], dc: str, server: Any) -> int:
    """-bootstrap-expect: a server waits for every server of its datacenter; a client has none (0)."""
    return len(servers(ms, dc)) if to_bool(server) else 0


def wan_names(ms: Sequence[Member]) -> list[str]:
    """The WAN member names of every server (Consul names them node.dc)."""
    return [f"{m['node']}.{m['dc']}" for m in servers(ms)]


def _group_by(ms: Sequence[Member], key: str) -> dict[str, list[Member]]:
    out: dict[str, list[Member]] = {}
    for m in ms:
        out.setdefault(m[key], []).append(m)
    return out


def inventory_problems(ms: Sequence[Member], play_hosts: Iterable[str], cluster_group: str) -> list[str]:
    """Why the inventory cannot form a cluster: one message per problem, naming hosts and values ([] = fine).

    A play host outside the cluster group, a datacenter without servers, two agents with one address or node
    name, an address that is not an IP, a bootstrap_expect that cannot be met or that is at most half of the
    datacenter's servers (two groups could each bootstrap a cluster).
    """
    out: list[str] = []
    names = {m["name"] for m in ms}
    for h in play_hosts:
        if h not in names:
            out.append(f"{h} is not in the inventory group {cluster_group} (pyconsul_cluster_group): put every"
                       " agent of the cluster under that group")
    with_servers = {m["dc"] for m in servers(ms)}
    for dc in datacenters(ms):
        if dc not in with_servers:
            hosts = ", ".join(m["name"] for m in ms if m["dc"] == dc)
            out.append(f"datacenter {dc} has no server (its hosts {hosts} all set pyconsul_server: false):"
                       " give every datacenter 1, 3 or 5 servers")
    for addr, group in sorted(_group_by(ms, "addr").items()):
        if len(group) > 1:
            out.append(" and ".join(m["name"] for m in group) + f" share the address {addr}: every agent needs"
                       " its own bind address (ansible_host or pyconsul_bind_addr)")
    for node, group in sorted(_group_by(ms, "node").items()):
        if len(group) > 1:
            out.append(" and ".join(m["name"] for m in group) + f" share the node name {node}"
                       " (pyconsul_node_name)")
    for m in ms:
        if not _IP_RE.match(m["addr"]):
            out.append(f"{m['name']}: address {m['addr']} is not an IP address; set ansible_host (or"
                       " pyconsul_bind_addr) to the host's IP")
    for m in servers(ms):
        peers = servers(ms, m["dc"])
        n = len(peers)
        want = n if m.get("expect") is None else int(m["expect"])
        if want > n:
            out.append(f"{m['name']}: bootstrap_expect={want} cannot be met: datacenter {m['dc']} has {n}"
                       f" server(s) ({', '.join(p['name'] for p in peers)})")
        elif want * 2 <= n:
            out.append(f"{m['name']}: bootstrap_expect={want} is at most half of the {n} servers of datacenter"
                       f" {m['dc']} and could bootstrap two separate clusters")
    return out


def _stdout_json(hv: Mapping[str, Any], fact: str) -> dict[str, Any] | None:
    """The JSON a host's registered command printed (`fact`.stdout), None if it did not run."""
    result = hv.get(fact)
    if not isinstance(result, Mapping) or "stdout" not in result:
        return None
    parsed = json.loads(result["stdout"])
    if not isinstance(parsed, dict):
        raise ValueError(f"{fact}.stdout is not a JSON object: {result['stdout'][:200]!r}")
    return parsed


def deployed_keys(hosts: Iterable[str], hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """{host: the gossip key its deployed config.json holds ("" = none)}, from each host's probe."""
    out: dict[str, str] = {}
    for h in hosts:
        state = _stdout_json(hostvars[h], "_pyconsul_probe")
        if state is not None:
            out[h] = str(state.get("encrypt") or "")
    return out


def restart_order(hosts: Iterable[str], hostvars: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The hosts to restart (those with the fact _pyconsul_restart), safest first: clients, then servers that do
    not lead, then leaders. A server leads when the leader its agent reported (_pyconsul_leader_seen.json) is
    its own RPC address (_pyconsul_self.rpc_addr)."""
    clients: list[str] = []
    followers: list[str] = []
    leaders: list[str] = []
    for h in hosts:
        hv = hostvars[h]
        if not to_bool(hv.get("_pyconsul_restart", False)):
            continue
        me = hv["_pyconsul_self"]
        seen = hv.get("_pyconsul_leader_seen")
        leader = seen.get("json", "") if isinstance(seen, Mapping) else ""
        if not to_bool(me["server"]):
            clients.append(h)
        elif leader == me["rpc_addr"]:
            leaders.append(h)
        else:
            followers.append(h)
    return clients + followers + leaders


def leader_views(hosts: Iterable[str], hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """{host: the leader its agent reported in verify.yml (_pyconsul_verify)}, for the hosts that checked."""
    out: dict[str, str] = {}
    for h in hosts:
        view = _stdout_json(hostvars[h], "_pyconsul_verify")
        if view is not None:
            out[h] = str(view.get("leader") or "")
    return out


def leaders_by_dc(views: Mapping[str, str], ms: Sequence[Member]) -> dict[str, int]:
    """{dc: how many distinct leaders the agents of that datacenter reported} (1 = they agree; 0 = none
    reported)."""
    return {dc: len({views[m["name"]] for m in ms if m["dc"] == dc and m["name"] in views})
            for dc in datacenters(ms)}


def file_current(found: Mapping[str, Any], path: str, content: str, mode: str, owner: str, group: str) -> bool:
    """Whether the host already has `path` as a template task would write it: the probe's report of the file
    (`found`: {path: {sha1, mode, owner, group}} from files/probe.py; a missing path is a missing file) has the
    SHA-1 of `content` (the rendering, as UTF-8), this `mode` ("0640") and these owner and group names. Then the
    template module would report ok, and tasks/configure.yml skips it. Any doubt (no report, another value, an
    owner left out in --check) is False: the task runs and decides as it always did."""
    seen = found.get(path) if isinstance(found, Mapping) else None
    if not isinstance(seen, Mapping):
        return False
    want = {"sha1": hashlib.sha1(content.encode("utf-8")).hexdigest(),  # Ansible's checksum
            "mode": str(mode), "owner": str(owner), "group": str(group)}
    return all(seen.get(k) == v for k, v in want.items())


FILTERS: dict[str, Callable[..., Any]] = {
    "pyconsul_members": members,
    "pyconsul_servers": servers,
    "pyconsul_datacenters": datacenters,
    "pyconsul_retry_join": retry_join,
    "pyconsul_retry_join_wan": retry_join_wan,
    "pyconsul_bootstrap_expect": bootstrap_expect,
    "pyconsul_wan_names": wan_names,
    "pyconsul_inventory_problems": inventory_problems,
    "pyconsul_deployed_keys": deployed_keys,
    "pyconsul_restart_order": restart_order,
    "pyconsul_leader_views": leader_views,
    "pyconsul_leaders_by_dc": leaders_by_dc,
    "pyconsul_file_current": file_current,
}


class FilterModule:
    """Ansible's entry point for filter plugins."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return dict(FILTERS)
