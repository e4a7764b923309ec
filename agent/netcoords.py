"""Network coordinates at the agent level: the periodic sync to the servers, the leader's batching, and
the WAN view per datacenter.

- `CoordinateSync.run` (a supervised agent task) is Consul's sendCoordinate: every
  `rate_scaled_interval(rate_target, interval_min, LAN members)` plus a random stagger of up to as much again,
  the agent sends its LAN coordinate to a server (status request "coordinate_update", Consul's
  Coordinate.Update RPC). A failed send is logged at debug level and retried at the next interval (no
  leader yet, a server restarting): coordinates are best effort, as in Consul.
- `CoordinateBatcher` is the server side: a follower forwards the update to its leader; the leader keeps the
  latest update per (node, segment) and every BATCH_PERIOD commits them as CoordinateBatchUpdate entries of
  at most BATCH_SIZE updates (Raft command 16; Consul's CoordinateUpdatePeriod 5 s, batch size 128). At most
  BATCH_SIZE x MAX_BATCHES distinct nodes wait at once; beyond that an update is refused (Consul's "rate
  limit exceeded") and the agent tries again at its next interval.
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

from pyconsul.agent.errors import BadRequest, NoLeader, Unavailable
from pyconsul.agent.gossip.coordinate import Coordinate, InvalidCoordinate, from_json
from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.state.commands import Coord, CoordinateBatchUpdate, CoordinateUpdate, encode

log = logging.getLogger("agent.coordinate")

__all__ = ["CoordinateBatcher", "CoordinateSync", "datacenter_maps", "parse_update", "rate_scaled_interval",
           "to_state", "update_args"]

BATCH_PERIOD = 5.0  # seconds between the leader's batch commits (Consul's CoordinateUpdatePeriod)
BATCH_SIZE = 128  # updates per Raft entry (Consul's CoordinateUpdateBatchSize)
MAX_BATCHES = 5  # entries per period (Consul's CoordinateUpdateMaxBatches)
MAX_NAME = 256  # characters of a node or segment name in an update


def rate_scaled_interval(rate: float, minimum: float, n: int) -> float:
    """Consul's lib.RateScaledInterval: n updates spread at `rate` per second, never more often than `minimum`."""
    return max(minimum, n / rate) if rate > 0 else minimum


def to_state(c: Coordinate) -> Coord:
    return Coord(tuple(c.vec), c.error, c.adjustment, c.height)


def update_args(node: str, coord: Coordinate, segment: str = "") -> dict[str, Any]:
    """The "coordinate_update" request's arguments (they cross server RPC)."""
    return {"node": node, "segment": segment, "coord": coord.to_json()}


def parse_update(args: Any) -> CoordinateUpdate:
    """A "coordinate_update" request, validated; BadRequest with the reason otherwise."""
    if not isinstance(args, dict):
        raise BadRequest("coordinate_update takes a map")
    node, segment = args.get("node"), args.get("segment", "")
    if not isinstance(node, str) or not node or len(node) > MAX_NAME:
        raise BadRequest(f"Node must be a non-empty string of at most {MAX_NAME} characters")
    if not isinstance(segment, str) or len(segment) > MAX_NAME:
        raise BadRequest(f"Segment must be a string of at most {MAX_NAME} characters")
    try:
        coord = from_json(args.get("coord"))
    except InvalidCoordinate as exc:
        raise BadRequest(f"invalid coordinate: {exc}") from None
    return CoordinateUpdate(node, to_state(coord), segment)


class StatusBackend(Protocol):
    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any: ...


class CoordinateSync:
    def __init__(self, node: str, coordinate: Callable[[], Coordinate], members: Callable[[], int],
                 backend: StatusBackend, interval_min: float, rate_target: int,
                 rng: random.Random | None = None) -> None:
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
        try:
            await self.backend.status("coordinate_update", update_args(self.node, self.coordinate()))
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


class BatchServer(Protocol):
    """What the batcher needs of ConsulServer."""

    @property
    def is_leader(self) -> bool: ...
    def leader_address(self) -> str: ...
    async def write(self, data: bytes) -> Any: ...


class CoordinateBatcher:
    def __init__(self, server: BatchServer, forward: Callable[[str, dict[str, Any]], Any],
                 period: float = BATCH_PERIOD) -> None:
        self.server = server
        self.forward = forward  # (leader address, args) -> awaitable answer of the leader's "coordinate_update"
        self.period = period
        self.pending: dict[tuple[str, str], CoordinateUpdate] = {}
        self._queued = asyncio.Event()  # set when the first update of a batch arrives (an idle server sleeps)
        self.committed = 0
        self.refused = 0

    async def update(self, args: dict[str, Any]) -> bool:
        """The "coordinate_update" status hook: validate; a follower forwards to the leader; the leader queues."""
        u = parse_update(args)
        if not self.server.is_leader:
            addr = self.server.leader_address()
            if not addr:
                raise NoLeader()
            return bool(await self.forward(addr, args))
        key = (u.node.lower(), u.segment)
        if key not in self.pending and len(self.pending) >= BATCH_SIZE * MAX_BATCHES:
            self.refused += 1
            raise Unavailable("Coordinate update rate limit exceeded, increase SyncCoordinateRateTarget")
        self.pending[key] = u
        self._queued.set()
        return True

    async def flush(self) -> None:
        """Commit what is pending, BATCH_SIZE updates per entry (a failed entry's updates are dropped: the
        agents send fresh ones at their next interval)."""
        updates, self.pending = list(self.pending.values()), {}
        for i in range(0, len(updates), BATCH_SIZE):
            chunk = tuple(updates[i:i + BATCH_SIZE])
            try:
                await self.server.write(encode(CoordinateBatchUpdate(chunk)))
                self.committed += len(chunk)
            except Exception as exc:
                log.debug("coordinate batch of %d updates failed: %s", len(chunk), exc)

    async def run(self) -> None:
        """Commit every `period` while updates come in; with none pending, sleep until one arrives."""
        while True:
            await self._queued.wait()
            await asyncio.sleep(self.period)
            self._queued.clear()
            await self.flush()


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
