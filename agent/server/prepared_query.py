"""Executing a prepared query with Consul's failover (PreparedQuery.Execute + queryFailover), for the HTTP API
(http/query.py) and for the DNS interface (`<query>.query.consul`, issue 13): `execute(...)` by ID or name ->
(PreparedQueryExecuteResponse JSON, read meta). Light: servers and client agents both run it over their Backend
(named reads of server/prepared_query_reads.py), so it never imports the state store.

Steps: "query.execute" in the target datacenter (the request's ?dc=, else ours), which resolves the query, keeps
the healthy instances, filters, shuffles, sorts by RTT from Near and applies the limit. Only when that yields no
instance does failover run: the target's other datacenters by WAN distance (datacenters_by_distance over the
/v1/coordinate/datacenters maps: for each datacenter the median estimated RTT between the target datacenter's
servers and its servers; no coordinate = infinitely far; ties by name), the first Service.Failover.NearestN of
them, then Service.Failover.Datacenters in order (unknown datacenters skipped, none tried twice). Each is asked
"query.execute_remote" with the whole query (forwarded over server RPC as any ?dc= read); the first with
instances answers. Failovers counts the datacenters tried; a datacenter that fails is logged and skipped.
Difference from Consul: the failover loop runs where the request entered (agent or server) instead of on the
target datacenter's server; the datacenters tried and the answer are the same.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from pyconsul.agent.errors import PyconsulError
from pyconsul.agent.gossip.coordinate import InvalidCoordinate, distance, from_json
from pyconsul.agent.server.common import REQUEST_DC

__all__ = ["DatacenterMaps", "datacenters_by_distance", "execute", "failover_targets"]

log = logging.getLogger("agent.prepared_query")

DatacenterMaps = Callable[[], Awaitable[list[dict[str, Any]]]]


class ReadBackend(Protocol):
    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]: ...


def _coords(entry: Mapping[str, Any]) -> list[Any]:
    out = []
    for c in entry.get("Coordinates") or ():
        try:
            out.append(from_json(c.get("Coord")))
        except (InvalidCoordinate, AttributeError):
            continue
    return out


def datacenters_by_distance(maps: Sequence[Mapping[str, Any]], source_dc: str) -> list[str]:
    """The datacenters of `maps` other than `source_dc`, nearest first (see the module docstring)."""
    by_dc = {str(m.get("Datacenter", "")): _coords(m) for m in maps if m.get("Datacenter")}
    sources = by_dc.get(source_dc, [])
    ranked = []
    for dc, coords in by_dc.items():
        if dc == source_dc:
            continue
        rtts = sorted(distance(s, c) for s in sources for c in coords)
        ranked.append((rtts[len(rtts) // 2] if rtts else math.inf, dc))
    return [dc for _, dc in sorted(ranked)]


def failover_targets(nearest_n: int, datacenters: Sequence[str], nearest: Sequence[str]) -> list[str]:
    """Consul's queryFailover order: the first nearest_n of `nearest`, then `datacenters` that are known
    (in `nearest`) and not already listed."""
    out = list(nearest[:nearest_n]) if nearest_n > 0 else []
    known = set(nearest)
    for dc in datacenters:
        if dc in known and dc not in out:
            out.append(dc)
    return out


async def execute(backend: ReadBackend, dc_maps: DatacenterMaps, local_dc: str, id_or_name: str, *,
                  agent_node: str, near: str = "", limit: int = 0, mode: str = "default") -> tuple[dict[str, Any], Any]:
    """Run prepared query `id_or_name` (NotFound "Query not found" when there is none) with failover."""
    target = REQUEST_DC.get() or local_dc
    args = {"name": id_or_name, "datacenter": target, "agent_node": agent_node, "near": near, "limit": limit}
    value, meta = await backend.read("query.execute", args, mode)
    result: dict[str, Any] = value["result"]
    query = value["query"]
    fo = query.get("service", {}).get("failover", {}) if isinstance(query, dict) else {}
    nearest_n = fo.get("nearest_n", 0) if isinstance(fo.get("nearest_n"), int) else 0
    wanted = [d for d in fo.get("datacenters") or () if isinstance(d, str)]
    if result["Nodes"] or (nearest_n <= 0 and not wanted):
        return result, meta
    targets = failover_targets(nearest_n, wanted, datacenters_by_distance(await dc_maps(), target))
    failovers = 0
    for dc in targets:
        failovers += 1
        token = REQUEST_DC.set(dc)
        try:
            remote, _ = await backend.read("query.execute_remote",
                                           {"query": query, "datacenter": dc, "limit": limit}, mode)
        except PyconsulError as exc:
            log.warning("Failed querying for service in datacenter: service=%s datacenter=%s error=%s",
                        result.get("Service", ""), dc, exc)
            continue
        finally:
            REQUEST_DC.reset(token)
        result = remote
        if result["Nodes"]:
            break
    result["Failovers"] = failovers
    return result, meta
