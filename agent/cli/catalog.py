"""`pyconsul catalog datacenters|nodes|services`: Consul 1.7's catalog listing verbs.

Tables are rendered like Consul's (ryanuber/columnize: two-space gutters, last column unpadded);
"nothing matched" notes go to stderr with exit code 0, as Consul does.
"""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError, columnize
from pyconsul.agent.flags import FlagSet, ParseResult

_TABWRITER_PADDING = 6  # Consul renders `catalog services -tags` with text/tabwriter, padding 6


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


def cmd_datacenters(args: Sequence[str]) -> int:
    fs = FlagSet("catalog datacenters")
    common.http_flags(fs)
    res = common.parse(fs, args, "catalog datacenters [options]",
                       "Retrieves the list of all known datacenters, sorted by proximity to the local one.")
    common.no_args(res)
    try:
        dcs = common.api_request("GET", common.http_addr(res), "/v1/catalog/datacenters")
    except ApiError as exc:
        raise CLIError(f"Error listing datacenters: {exc}") from None
    if not isinstance(dcs, list) or not dcs:
        raise CLIError("No datacenters found")
    common.out([str(dc) for dc in dcs])
    return 0


def cmd_nodes(args: Sequence[str]) -> int:
    fs = FlagSet("catalog nodes")
    common.http_flags(fs)
    common.server_flags(fs)
    fs.bool("detailed", False, "Output detailed information about the nodes including their addresses and metadata.")
    fs.string("near", "", "Node name to sort the node list in ascending order based on estimated round-trip time "
              'from that node. Passing "_agent" will use this agent\'s node for sorting.')
    _node_meta(fs)
    fs.string("service", "", "Service `id or name` to filter nodes. Only nodes which are providing the given "
              "service will be returned.")
    res = common.parse(fs, args, "catalog nodes [options]",
                       "Retrieves the list of nodes registered in a given datacenter.")
    common.no_args(res)
    query = [*common.server_query(res).items(), *_node_meta_query(res)]
    if res.str("near"):
        query.append(("near", res.str("near")))
    service = res.str("service")
    path = "/v1/catalog/service/" + urllib.parse.quote(service, safe="") if service else "/v1/catalog/nodes"
    try:
        found = common.api_request("GET", common.http_addr(res), path, query=query)
    except ApiError as exc:
        prefix = "Error listing nodes for service" if service else "Error listing nodes"
        raise CLIError(f"{prefix}: {exc}") from None
    nodes = [n for n in found or [] if isinstance(n, dict)] if isinstance(found, list | None) else []
    if service:  # catalog service entries carry the node's metadata as NodeMeta
        nodes = [{**n, "Meta": n.get("NodeMeta")} for n in nodes]
    if not nodes:
        print("No nodes match the given query - try expanding your search.", file=sys.stderr)
        return 0
    common.out(nodes_table(nodes, detailed=res.bool("detailed")))
    return 0


def cmd_services(args: Sequence[str]) -> int:
    fs = FlagSet("catalog services")
    common.http_flags(fs)
    common.server_flags(fs)
    fs.string("node", "", "Node `id or name` for which to list services.")
    _node_meta(fs)
    fs.bool("tags", False, "Display each service's tags as a comma-separated list beside each service entry.")
    res = common.parse(fs, args, "catalog services [options]",
                       "Retrieves the list of services registered in a given datacenter.")
    common.no_args(res)
    query = [*common.server_query(res).items(), *_node_meta_query(res)]
    node = res.str("node")
    services: dict[str, list[str]] = {}
    try:
        if node:
            path = "/v1/catalog/node/" + urllib.parse.quote(node, safe="")
            found = common.api_request("GET", common.http_addr(res), path, query=query)
            entries = found.get("Services") if isinstance(found, dict) else None
            for svc in (entries or {}).values():
                services.setdefault(str(svc.get("Service", "")), []).extend(svc.get("Tags") or [])
        else:
            found = common.api_request("GET", common.http_addr(res), "/v1/catalog/services", query=query)
            if isinstance(found, dict):
                services = {str(k): list(v or []) for k, v in found.items()}
    except ApiError as exc:
        prefix = "Error listing services for node" if node else "Error listing services"
        raise CLIError(f"{prefix}: {exc}") from None
    if not services:
        print("No services match the given query - try expanding your search.", file=sys.stderr)
        return 0
    common.out(services_lines(services, tags=res.bool("tags")))
    return 0


CATALOG_COMMANDS: common.Table = {
    "datacenters": (cmd_datacenters, "Lists all known datacenters"),
    "nodes": (cmd_nodes, "Lists all nodes in the given datacenter"),
    "services": (cmd_services, "Lists all registered services in a datacenter"),
}


def cmd_catalog(args: Sequence[str]) -> int:
    return common.run_group("catalog", CATALOG_COMMANDS, args,
                            "Interacts with the catalog: lists datacenters, nodes and services.")
