"""`pyconsul catalog ...` and `pyconsul operator raft ...`: Consul 1.7's read-mostly cluster verbs.

Tables are rendered like Consul's (ryanuber/columnize: two-space gutters, last column unpadded);
"nothing matched" notes go to stderr with exit code 0, as Consul does.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent import cli
from agent.cli import ApiError, CLIError, columnize
from agent.flags import FlagSet, ParseResult

_TABWRITER_PADDING = 6  # Consul renders `catalog services -tags` with text/tabwriter, padding 6


def _base(res: ParseResult) -> str:
    return cli.parse_http_addr(res.str("http-addr"))


def _no_args(res: ParseResult) -> None:
    if res.positional:
        raise CLIError(f"Too many arguments (expected 0, got {len(res.positional)})")


def _node_meta(fs: FlagSet) -> None:
    fs.string_list("node-meta", "Metadata to filter nodes with the given `key=value` pairs. This flag may be "
                   "specified multiple times to filter on multiple sources of metadata.")


def _node_meta_query(res: ParseResult) -> list[tuple[str, str]]:
    """`-node-meta k=v` flags as `node-meta=k:v` parameters (later values win for a repeated key, as in Go)."""
    meta: dict[str, str] = {}
    for item in res.list("node-meta"):
        if "=" not in item:
            raise CLIError(f'invalid value "{item}" for flag -node-meta: Missing "=" value in argument: {item}')
        key, value = item.split("=", 1)
        meta[key] = value
    return [("node-meta", f"{k}:{v}") for k, v in sorted(meta.items())]


def _kv_list(m: object) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(m.items())) if isinstance(m, dict) else ""


def nodes_table(nodes: Sequence[Mapping[str, Any]], *, detailed: bool = False) -> list[str]:
    """Render catalog nodes like `consul catalog nodes`; IDs are cut at their first '-' unless detailed."""
    if detailed:
        rows = [["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]]
        rows += [[str(n.get("Node", "")), str(n.get("ID", "")), str(n.get("Address", "")),
                  str(n.get("Datacenter", "")), _kv_list(n.get("TaggedAddresses")), _kv_list(n.get("Meta"))]
                 for n in nodes]
        return columnize(rows)
    rows = [["Node", "ID", "Address", "DC"]]
    for n in nodes:
        node_id = str(n.get("ID", ""))
        cut = node_id.find("-")
        rows.append([str(n.get("Node", "")), node_id[:cut] if cut > 0 else node_id, str(n.get("Address", "")),
                     str(n.get("Datacenter", ""))])
    return columnize(rows)


def services_lines(services: Mapping[str, Sequence[str]], *, tags: bool = False) -> list[str]:
    """Render a name -> tags map like `consul catalog services` (sorted names; -tags adds sorted tags)."""
    names = sorted(services)
    if not tags:
        return names
    width = max(len(n) for n in names) + _TABWRITER_PADDING
    text = "\n".join(f"{n.ljust(width)}{','.join(sorted(services[n] or []))}" for n in names)
    return text.strip().split("\n")


def raft_peers_table(config: Mapping[str, Any]) -> list[str]:
    """Render `/v1/operator/raft/configuration` like `consul operator raft list-peers`."""
    rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
    for s in config.get("Servers") or []:
        rows.append([str(s.get("Node", "")), str(s.get("ID", "")), str(s.get("Address", "")),
                     "leader" if s.get("Leader") else "follower", "true" if s.get("Voter") else "false",
                     str(s.get("ProtocolVersion") or "<=1")])
    return columnize(rows)


def cmd_datacenters(args: Sequence[str]) -> int:
    fs = FlagSet("catalog datacenters")
    cli._http_flags(fs)
    res = cli._parse(fs, args, "catalog datacenters [options]",
                     "Retrieves the list of all known datacenters, sorted by proximity to the local one.")
    _no_args(res)
    try:
        dcs = cli.api_request("GET", _base(res), "/v1/catalog/datacenters")
    except ApiError as exc:
        raise CLIError(f"Error listing datacenters: {exc}") from None
    if not isinstance(dcs, list) or not dcs:
        raise CLIError("No datacenters found")
    cli._out([str(dc) for dc in dcs])
    return 0


def cmd_nodes(args: Sequence[str]) -> int:
    fs = FlagSet("catalog nodes")
    cli._http_flags(fs)
    cli._server_flags(fs)
    fs.bool("detailed", False, "Output detailed information about the nodes including their addresses and metadata.")
    fs.string("near", "", "Node name to sort the node list in ascending order based on estimated round-trip time "
              'from that node. Passing "_agent" will use this agent\'s node for sorting.')
    _node_meta(fs)
    fs.string("service", "", "Service `id or name` to filter nodes. Only nodes which are providing the given "
              "service will be returned.")
    res = cli._parse(fs, args, "catalog nodes [options]",
                     "Retrieves the list of nodes registered in a given datacenter.")
    _no_args(res)
    query = [*cli.server_query(res).items(), *_node_meta_query(res)]
    if res.str("near"):
        query.append(("near", res.str("near")))
    service = res.str("service")
    path = "/v1/catalog/service/" + urllib.parse.quote(service, safe="") if service else "/v1/catalog/nodes"
    try:
        found = cli.api_request("GET", _base(res), path, query=query)
    except ApiError as exc:
        prefix = "Error listing nodes for service" if service else "Error listing nodes"
        raise CLIError(f"{prefix}: {exc}") from None
    nodes = [n for n in found or [] if isinstance(n, dict)] if isinstance(found, list | None) else []
    if service:  # catalog service entries carry the node's metadata as NodeMeta
        nodes = [{**n, "Meta": n.get("NodeMeta")} for n in nodes]
    if not nodes:
        print("No nodes match the given query - try expanding your search.", file=sys.stderr)
        return 0
    cli._out(nodes_table(nodes, detailed=res.bool("detailed")))
    return 0


def cmd_services(args: Sequence[str]) -> int:
    fs = FlagSet("catalog services")
    cli._http_flags(fs)
    cli._server_flags(fs)
    fs.string("node", "", "Node `id or name` for which to list services.")
    _node_meta(fs)
    fs.bool("tags", False, "Display each service's tags as a comma-separated list beside each service entry.")
    res = cli._parse(fs, args, "catalog services [options]",
                     "Retrieves the list of services registered in a given datacenter.")
    _no_args(res)
    query = [*cli.server_query(res).items(), *_node_meta_query(res)]
    node = res.str("node")
    services: dict[str, list[str]] = {}
    try:
        if node:
            path = "/v1/catalog/node/" + urllib.parse.quote(node, safe="")
            found = cli.api_request("GET", _base(res), path, query=query)
            entries = found.get("Services") if isinstance(found, dict) else None
            for svc in (entries or {}).values():
                services.setdefault(str(svc.get("Service", "")), []).extend(svc.get("Tags") or [])
        else:
            found = cli.api_request("GET", _base(res), "/v1/catalog/services", query=query)
            if isinstance(found, dict):
                services = {str(k): list(v or []) for k, v in found.items()}
    except ApiError as exc:
        prefix = "Error listing services for node" if node else "Error listing services"
        raise CLIError(f"{prefix}: {exc}") from None
    if not services:
        print("No services match the given query - try expanding your search.", file=sys.stderr)
        return 0
    cli._out(services_lines(services, tags=res.bool("tags")))
    return 0


def cmd_list_peers(args: Sequence[str]) -> int:
    fs = FlagSet("operator raft list-peers")
    cli._http_flags(fs)
    cli._server_flags(fs)
    res = cli._parse(fs, args, "operator raft list-peers [options]", "Displays the current Raft peer configuration.")
    _no_args(res)
    try:
        config = cli.api_request("GET", _base(res), "/v1/operator/raft/configuration", query=cli.server_query(res))
    except ApiError as exc:
        raise CLIError(f"Error getting peers: Failed to retrieve raft configuration: {exc}") from None
    if not isinstance(config, dict):
        raise CLIError(f"Error getting peers: Failed to retrieve raft configuration: unexpected response {config!r}")
    cli._out(raft_peers_table(config))
    return 0


def cmd_remove_peer(args: Sequence[str]) -> int:
    fs = FlagSet("operator raft remove-peer")
    cli._http_flags(fs)
    cli._server_flags(fs)
    fs.string("address", "", "The address to remove from the Raft configuration.")
    fs.string("id", "", "The ID to remove from the Raft configuration.")
    res = cli._parse(fs, args, "operator raft remove-peer [options]",
                     "Removes the Consul server with the given -address or -id from the Raft configuration.")
    _no_args(res)
    address, peer_id = res.str("address"), res.str("id")
    if not address and not peer_id:
        raise CLIError("Error removing peer: an address or id is required for the peer to remove")
    if address and peer_id:
        raise CLIError("Error removing peer: cannot give both an address and id")
    query = cli.server_query(res, read=False)
    query.update({"address": address} if address else {"id": peer_id})
    try:
        cli.api_request("DELETE", _base(res), "/v1/operator/raft/peer", query=query)
    except ApiError as exc:
        raise CLIError(f"Error removing peer: {exc}") from None
    # Go's %q; json.dumps quotes the same way for printable text.
    which = f"address {address}" if address else f"id {peer_id}"
    kind, value = which.split(" ", 1)
    print(f"Removed peer with {kind} {json.dumps(value, ensure_ascii=False)}")
    return 0


Table = dict[str, tuple[Callable[[Sequence[str]], int], str]]

CATALOG_COMMANDS: Table = {
    "datacenters": (cmd_datacenters, "Lists all known datacenters"),
    "nodes": (cmd_nodes, "Lists all nodes in the given datacenter"),
    "services": (cmd_services, "Lists all registered services in a datacenter"),
}
RAFT_COMMANDS: Table = {
    "list-peers": (cmd_list_peers, "Display the current Raft peer configuration"),
    "remove-peer": (cmd_remove_peer, "Remove a Consul server from the Raft configuration"),
}


def cmd_catalog(args: Sequence[str]) -> int:
    return cli.run_group("catalog", CATALOG_COMMANDS, args,
                         "Interacts with the catalog: lists datacenters, nodes and services.")


def cmd_raft(args: Sequence[str]) -> int:
    return cli.run_group("operator raft", RAFT_COMMANDS, args,
                         "Inspects and manipulates the Raft configuration of the servers.")


OPERATOR_COMMANDS: Table = {"raft": (cmd_raft, "Provides cluster-level tools for Consul operators")}


def cmd_operator(args: Sequence[str]) -> int:
    return cli.run_group("operator", OPERATOR_COMMANDS, args,
                         "Provides cluster-level tools for Consul operators, such as interacting with the\n"
                         "  Raft subsystem.")
