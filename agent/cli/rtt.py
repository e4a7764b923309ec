"""`pyconsul rtt`: the estimated round trip between two nodes from their network coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet
from pyconsul.agent.gossip.coordinate import Coordinate, InvalidCoordinate, distance, from_json


def _coord(raw: Any) -> Coordinate | None:
    try:
        return from_json(raw)
    except InvalidCoordinate:
        return None


def _get(base: str, path: str) -> Any:
    try:
        return common.api_request("GET", base, path)
    except ApiError as exc:
        raise CLIError(f"Error getting coordinates: {exc}") from None


def cmd_rtt(args: Sequence[str]) -> int:
    fs = FlagSet("rtt")
    common.http_flags(fs)
    fs.bool("wan", False, "Use WAN coordinates instead of LAN coordinates (nodes named <node>.<datacenter>).")
    res = common.parse(fs, args, "rtt [options] node1 [node2]",
                       "Estimates the network round trip time between two nodes using their network coordinates. "
                       "Without node2, the agent's own node is used.")
    nodes = list(res.positional)
    if not 1 <= len(nodes) <= 2:
        raise CLIError("One or two node names must be specified")
    base = common.http_addr(res)
    if len(nodes) < 2:
        cfg = (_get(base, "/v1/agent/self") or {}).get("Config", {})
        me = str(cfg.get("NodeName", ""))
        nodes.append(f"{me}.{cfg.get('Datacenter', '')}" if res.bool("wan") else me)
    c1: Coordinate | None = None
    c2: Coordinate | None = None
    if res.bool("wan"):
        source = "WAN"
        parts = [n.split(".") for n in nodes]
        if any(len(p) != 2 for p in parts):
            raise CLIError("Node names must be specified as <node name>.<datacenter> with -wan")
        for dc in _get(base, "/v1/coordinate/datacenters") or []:
            for entry in dc.get("Coordinates") or []:
                here = [entry.get("Node"), dc.get("Datacenter")]
                if here == parts[0]:
                    c1 = _coord(entry.get("Coord"))
                if here == parts[1]:
                    c2 = _coord(entry.get("Coord"))
        if c1 is None:
            raise CLIError(f"Could not find a coordinate for node {nodes[0]!r}")
        if c2 is None:
            raise CLIError(f"Could not find a coordinate for node {nodes[1]!r}")
    else:
        source = "LAN"
        for entry in _get(base, "/v1/coordinate/nodes") or []:
            if entry.get("Segment", "") != "":
                continue
            if entry.get("Node") == nodes[0]:
                c1 = _coord(entry.get("Coord"))
            if entry.get("Node") == nodes[1]:
                c2 = _coord(entry.get("Coord"))
        if c1 is None or c2 is None:
            raise CLIError(f"Could not find coordinates for both nodes ({nodes[0]!r}, {nodes[1]!r})")
    print(f"Estimated {nodes[0]} <-> {nodes[1]} rtt: {distance(c1, c2) * 1000.0:.3f} ms (using {source} coordinates)")
    return 0


COMMANDS: common.Table = {"rtt": (cmd_rtt, "Estimates network round trip time between nodes")}
