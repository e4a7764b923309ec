"""Network coordinates at the agent level: the periodic sync to the servers and the WAN view per datacenter.

- `CoordinateSync.run` (a supervised agent task) is Consul's sendCoordinate: every
  `rate_scaled_interval(rate_target, interval_min, LAN members)` plus a random stagger of up to as much again,
  the agent writes its LAN coordinate to the catalog (a one-update CoordinateBatchUpdate through its
  backend: the local server, or a server over RPC for client agents). Consul's servers instead collect
  updates and the leader commits them in batches every 5 s; here every agent's update is its own Raft
  entry (the rate scaling bounds them to about rate_target per second across the cluster).
  A failed write is logged at debug level and retried at the next interval (no leader yet, a server
  restarting): coordinates are best effort, as in Consul.
- `datacenter_maps` answers /v1/coordinate/datacenters on a server from its WAN pool: for each datacenter,
  its alive servers and the coordinate each last sent on a WAN ack ("node.dc" names with the suffix
  removed, as Consul's Coordinate.ListDatacenters does). Client agents ask a server (status "coordinate_datacenters").
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

from pyconsul.agent.gossip.coordinate import Coordinate
from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.state.commands import Coord, CoordinateBatchUpdate, CoordinateUpdate, encode

log = logging.getLogger("agent.coordinate")

__all__ = ["CoordinateSync", "datacenter_maps", "rate_scaled_interval", "to_state"]


def rate_scaled_interval(rate: float, minimum: float, n: int) -> float:
    """Consul's lib.RateScaledInterval: n updates spread at `rate` per second, never more often than `minimum`."""
    return max(minimum, n / rate) if rate > 0 else minimum


def to_state(c: Coordinate) -> Coord:
    return Coord(tuple(c.vec), c.error, c.adjustment, c.height)


class Writer(Protocol):
    async def write(self, data: bytes) -> Any: ...


class CoordinateSync:
    def __init__(self, node: str, coordinate: Callable[[], Coordinate], members: Callable[[], int],
                 backend: Writer, interval_min: float, rate_target: int, rng: random.Random | None = None) -> None:
        self.node = node
        self.coordinate = coordinate
        self.members = members
        self.backend = backend
        self.interval_min = interval_min
        self.rate_target = rate_target
        self.rng = rng or random.Random()
        self.sent = 0
        self.failed = 0

    def next_interval(self) -> float:
        intv = rate_scaled_interval(self.rate_target, self.interval_min, self.members())
        return intv + self.rng.uniform(0, intv)

    async def send_once(self) -> bool:
        cmd = CoordinateBatchUpdate((CoordinateUpdate(self.node, to_state(self.coordinate())),))
        try:
            await self.backend.write(encode(cmd))
        except Exception as exc:  # no leader yet, a server restarting: the next round tries again
            self.failed += 1
            log.debug("coordinate update for %s failed: %s", self.node, exc)
            return False
        self.sent += 1
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.next_interval())
            await self.send_once()


def datacenter_maps(wan_members: list[Member], cached: Callable[[str], Coordinate | None],
                    local_dc: str) -> list[dict[str, Any]]:
    """/v1/coordinate/datacenters: [{Datacenter, AreaID: "wan", Coordinates: [{Node, Segment, Coord}]}],
    datacenters sorted by name (the local one included even before any WAN ack), nodes by name."""
    by_dc: dict[str, list[dict[str, Any]]] = {local_dc: []}
    for m in wan_members:
        dc = m.tags.get("dc", "")
        if m.status != MemberStatus.ALIVE or m.tags.get("role") != "consul" or not dc:
            continue
        coords = by_dc.setdefault(dc, [])
        c = cached(m.name)
        if c is None:
            continue
        suffix = f".{dc}"
        node = m.name[: -len(suffix)] if m.name.endswith(suffix) else m.name
        coords.append({"Node": node, "Segment": "", "Coord": c.to_json()})
    return [{"Datacenter": dc, "AreaID": "wan", "Coordinates": sorted(by_dc[dc], key=lambda x: x["Node"])}
            for dc in sorted(by_dc)]
