"""The coordinates table: each node's Vivaldi network coordinate (Consul's "coordinates" memdb table).

Written by CoordinateBatchUpdate (Raft command type 16), which agents' periodic coordinate syncs produce.
Consul's rules: an update for a node that is not in the catalog is skipped (coordinates belong to catalog
nodes and go away with them: `drop_node` on node deregistration); an update that would not change the
stored row changes nothing. An update whose vector is not DIMENSIONALITY long or whose numbers are beyond
MAX_COMPONENT is skipped too (the HTTP and sync paths refuse those before they reach Raft; this keeps a
forged entry out of the table on every replica alike). Index name: "coordinates".

Reads for the HTTP layer and for ?near= sorting (helper `node_coordinate` + agent.gossip.coordinate
`distance`): no I/O, deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from pyconsul.agent.gossip import coordinate as vivaldi
from pyconsul.agent.state.commands import Coord, CoordinateBatchUpdate
from pyconsul.agent.state.results import StateFailure
from pyconsul.agent.state.tables import CoordinateEntry, Tables, nk

__all__ = ["DIMENSIONALITY", "MAX_COORDINATE_BATCH", "apply_batch", "coord_json", "distance", "drop_node",
           "list_json", "node_coordinate", "sort_by_distance", "valid_coord"]

T = TypeVar("T")

DIMENSIONALITY = 8  # serf's default; every agent uses it
MAX_COMPONENT = 1.0e6  # seconds (agent/gossip/coordinate.py MAX_COMPONENT)
# Updates per Raft entry. Consul's leader sends batches of at most 128 (CoordinateUpdateBatchSize); one agent's
# sync is one update. Bounded so a forged entry cannot make every replica loop over millions.
MAX_COORDINATE_BATCH = 1024
INDEX = "coordinates"


def valid_coord(c: Coord) -> bool:
    return len(c.vec) == DIMENSIONALITY and all(
        math.isfinite(x) and abs(x) <= MAX_COMPONENT for x in (*c.vec, c.error, c.adjustment, c.height))


def apply_batch(t: Tables, idx: int, cmd: CoordinateBatchUpdate) -> bool:
    if len(cmd.updates) > MAX_COORDINATE_BATCH:
        raise StateFailure(f"coordinate batch of {len(cmd.updates)} updates (limit {MAX_COORDINATE_BATCH})")
    changed = False
    for u in cmd.updates:
        if nk(u.node) not in t.nodes or not valid_coord(u.coord):
            continue
        key = (nk(u.node), u.segment)
        new = CoordinateEntry(t.nodes[nk(u.node)].node, u.segment, u.coord)
        if t.coordinates.get(key) == new:
            continue
        t.put("coordinates", key, new)
        changed = True
    if changed:
        t.bump(INDEX, idx)
    return True


def drop_node(t: Tables, idx: int, node: str) -> None:
    """The node left the catalog: its coordinates go too (Consul's deleteNodeTxn)."""
    key = nk(node)
    if key in t.nodes:
        return
    gone = [k for k in t.coordinates if k[0] == key]
    for k in gone:
        t.delete("coordinates", k)
    if gone:
        t.bump(INDEX, idx)


def coord_json(c: Coord) -> dict[str, Any]:
    return {"Vec": list(c.vec), "Error": c.error, "Adjustment": c.adjustment, "Height": c.height}


def list_json(t: Tables, node: str | None = None, segment: str | None = None) -> list[dict[str, Any]]:
    """/v1/coordinate/nodes (node None) and /v1/coordinate/node/<node>: [{Node, Segment, Coord}] sorted by
    node then segment."""
    if node is not None:
        keys = sorted(k for k in t.coordinates if k[0] == nk(node))
    else:
        keys = sorted(t.coordinates)
    out = []
    for k in keys:
        e = t.coordinates[k]
        if segment is not None and e.segment != segment:
            continue
        out.append({"Node": e.node, "Segment": e.segment, "Coord": coord_json(e.coord)})
    return out


def node_coordinate(t: Tables, node: str, segment: str = "") -> Coord | None:
    """The node's coordinate (None if it has none): what ?near= sorting looks up."""
    e = t.coordinates.get((nk(node), segment))
    return e.coord if e is not None else None


def distance(a: Coord, b: Coord) -> float:
    """Estimated RTT in seconds between two stored coordinates (Vivaldi, agent/gossip/coordinate.py);
    math.inf when they cannot be compared."""
    return vivaldi.distance(vivaldi.Coordinate(a.vec, a.error, a.adjustment, a.height),
                            vivaldi.Coordinate(b.vec, b.error, b.adjustment, b.height))


def sort_by_distance(t: Tables, items: list[T], node_of: Callable[[T], str], near: str) -> list[T]:
    """?near=<node> (Consul's sortNodesByDistanceFrom): `items` ordered by the estimated RTT from node `near`
    to each item's node (`node_of`), closest first; items whose node has no coordinate go last in their
    original order (stable sort). Unchanged when `near` is "" or has no coordinate itself. The caller resolves
    "_agent" to the agent's node name."""
    if not near:
        return items
    src = node_coordinate(t, near)
    if src is None:
        return items
    cache: dict[str, float] = {}

    def key(item: T) -> float:
        node = nk(node_of(item))
        if node not in cache:
            c = node_coordinate(t, node)
            cache[node] = distance(src, c) if c is not None else math.inf
        return cache[node]

    return sorted(items, key=key)
