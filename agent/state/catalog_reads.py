"""Catalog and health reads in Consul 1.7 JSON shapes, and the X-Consul-Index each read should carry.

Ordering is deterministic: nodes by lowercased name; service instances by (node, service ID); checks by
(node, check ID). Empty tag lists and maps are emitted as [] and {} (Consul may emit null for a field
that was never set; clients accept both). Fields Consul marks `omitempty` (a service's TaggedAddresses,
a check Definition's fields) are left out when empty, as Consul does.

Selection, applied in this order, each optional:
- `tags`: every tag given must be on the instance (Consul 1.7's `?tag=` repeated), case-insensitively;
- `node_meta`: every key:value pair must be in the node's Meta (Consul's `?node-meta=`, exact match;
  a node without the key does not match);
- `keep`: a predicate over the item's JSON (the compiled `?filter=`; the caller picks the schema), for
  /v1/catalog/services over each instance's CatalogService JSON, for /v1/catalog/node over each service.
Sorting by distance (`?near=`) is the caller's (server/queries.py), on the rows these return.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pyconsul.agent.flags import format_duration
from pyconsul.agent.state.commands import CheckDefinition, ServiceAddress
from pyconsul.agent.state.tables import (
    SERVICE_EXTINCTION,
    HealthCheck,
    Node,
    ServiceNode,
    Tables,
    nk,
    service_index_name,
)

HEALTH_STATES = frozenset({"any", "passing", "warning", "critical"})

Keep = Callable[[dict[str, Any]], bool] | None
Tags = str | Iterable[str] | None


# ---------------------------------------------------------------- JSON shapes


def node_json(n: Node) -> dict[str, Any]:
    return {
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": dict(n.tagged_addresses),
        "Meta": dict(n.meta),
        "CreateIndex": n.create_index,
        "ModifyIndex": n.modify_index,
    }


def service_addresses_json(tagged: Mapping[str, ServiceAddress]) -> dict[str, Any]:
    """A service's TaggedAddresses: {"lan": {"Address": ..., "Port": ...}, ...}."""
    return {k: {"Address": a.address, "Port": a.port} for k, a in sorted(tagged.items())}


def agent_service_json(s: ServiceNode) -> dict[str, Any]:
    """A NodeService, as in /v1/catalog/node/<node> "Services" and /v1/health/service "Service"."""
    out: dict[str, Any] = {
        "ID": s.service_id,
        "Service": s.service_name,
        "Tags": list(s.tags),
        "Address": s.address,
    }
    if s.tagged_addresses:  # omitempty in Consul
        out["TaggedAddresses"] = service_addresses_json(s.tagged_addresses)
    out.update({
        "Meta": dict(s.meta),
        "Port": s.port,
        "Weights": {"Passing": s.weights_passing, "Warning": s.weights_warning},
        "EnableTagOverride": s.enable_tag_override,
        "Proxy": {"MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
    return out


def catalog_service_json(s: ServiceNode, n: Node) -> dict[str, Any]:
    """A CatalogService, as in /v1/catalog/service/<name>. Create/ModifyIndex are the service's."""
    out: dict[str, Any] = {
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": dict(n.tagged_addresses),
        "NodeMeta": dict(n.meta),
        "ServiceKind": "",
        "ServiceID": s.service_id,
        "ServiceName": s.service_name,
        "ServiceTags": list(s.tags),
        "ServiceAddress": s.address,
    }
    if s.tagged_addresses:  # omitempty in Consul
        out["ServiceTaggedAddresses"] = service_addresses_json(s.tagged_addresses)
    out.update({
        "ServiceWeights": {"Passing": s.weights_passing, "Warning": s.weights_warning},
        "ServiceMeta": dict(s.meta),
        "ServicePort": s.port,
        "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": {"MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
    return out


def definition_json(d: CheckDefinition) -> dict[str, Any]:
    """Consul's HealthCheckDefinition JSON: every field omitempty, durations as Go duration strings."""
    out: dict[str, Any] = {}
    for key, seconds in (("Interval", d.interval), ("Timeout", d.timeout),
                         ("DeregisterCriticalServiceAfter", d.deregister_critical_service_after)):
        if seconds:
            out[key] = format_duration(seconds)
    if d.http:
        out["HTTP"] = d.http
    if d.tls_skip_verify:
        out["TLSSkipVerify"] = True
    if d.header:
        out["Header"] = {k: list(v) for k, v in sorted(d.header.items())}
    if d.method:
        out["Method"] = d.method
    if d.tcp:
        out["TCP"] = d.tcp
    return out


def check_json(c: HealthCheck) -> dict[str, Any]:
    return {
        "Node": c.node,
        "CheckID": c.check_id,
        "Name": c.name,
        "Status": c.status,
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": c.service_name,
        "ServiceTags": list(c.service_tags),
        "Type": c.type,
        "Definition": definition_json(c.definition),
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


# ---------------------------------------------------------------- selection helpers


def _tag_list(tags: Tags) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        return (tags,)
    return tuple(tags)


def has_tags(s: ServiceNode, tags: Iterable[str]) -> bool:
    """Every tag in `tags` is on the instance (case-insensitive)."""
    mine = {nk(t) for t in s.tags}
    return all(nk(t) in mine for t in tags)


def meta_matches(meta: Mapping[str, str], node_meta: Mapping[str, str] | None) -> bool:
    """Consul's SatisfiesMetaFilters: each filter key present with exactly that value."""
    if not node_meta:
        return True
    return all(k in meta and meta[k] == v for k, v in node_meta.items())


def _node_ok(t: Tables, node_name: str, node_meta: Mapping[str, str] | None) -> bool:
    if not node_meta:
        return True
    n = t.nodes.get(nk(node_name))
    return n is not None and meta_matches(n.meta, node_meta)


def _instances(t: Tables, name: str, tags: Tags, node_meta: Mapping[str, str] | None = None) -> list[ServiceNode]:
    found = [t.services[k] for k in t.services_by_name.get(nk(name))]
    wanted = _tag_list(tags)
    if wanted:
        found = [s for s in found if has_tags(s, wanted)]
    if node_meta:
        found = [s for s in found if _node_ok(t, s.node, node_meta)]
    return found


# ---------------------------------------------------------------- reads (index to use in the docstring)


def nodes(t: Tables, node_meta: Mapping[str, str] | None = None, keep: Keep = None) -> list[dict[str, Any]]:
    """/v1/catalog/nodes. Index: table_index("nodes")."""
    out = [node_json(t.nodes[k]) for k in sorted(t.nodes) if meta_matches(t.nodes[k].meta, node_meta)]
    return [x for x in out if keep(x)] if keep is not None else out


def services(t: Tables, node_meta: Mapping[str, str] | None = None, keep: Keep = None) -> dict[str, list[str]]:
    """/v1/catalog/services: service name -> sorted distinct tags of the instances selected (node-meta,
    then `keep` over each instance's CatalogService JSON). Index: table_index("services"), or
    table_index("nodes", "services") with node_meta."""
    out: dict[str, set[str]] = {}
    for s in t.services.values():
        if node_meta or keep is not None:
            n = t.nodes.get(nk(s.node))
            if n is None or not meta_matches(n.meta, node_meta):
                continue
            if keep is not None and not keep(catalog_service_json(s, n)):
                continue
        out.setdefault(s.service_name, set()).update(s.tags)
    return {name: sorted(out[name]) for name in sorted(out)}


def service_nodes(t: Tables, name: str, tag: Tags = None, node_meta: Mapping[str, str] | None = None,
                  keep: Keep = None) -> list[dict[str, Any]]:
    """/v1/catalog/service/<name>[?tag=...][&node-meta=...]. Index: service_index(name)."""
    out = [catalog_service_json(s, t.nodes[nk(s.node)]) for s in _instances(t, name, tag, node_meta)]
    return [x for x in out if keep(x)] if keep is not None else out


def node_services(t: Tables, node: str, keep: Keep = None) -> dict[str, Any] | None:
    """/v1/catalog/node/<node>: {"Node", "Services": {id: NodeService}}; None if the node is unknown.
    Index: table_index("nodes", "services")."""
    n = t.nodes.get(nk(node))
    if n is None:
        return None
    svcs = (agent_service_json(t.services[k]) for k in t.services_by_node.get(nk(node)))
    return {"Node": node_json(n),
            "Services": {s["ID"]: s for s in svcs if keep is None or keep(s)}}


def node_service_list(t: Tables, node: str, keep: Keep = None) -> dict[str, Any]:
    """/v1/catalog/node-services/<node> (Consul 1.7): {"Node", "Services": [NodeService, ...]};
    {"Node": null, "Services": null} if the node is unknown. Index: table_index("nodes", "services")."""
    n = t.nodes.get(nk(node))
    if n is None:
        return {"Node": None, "Services": None}
    svcs = [agent_service_json(t.services[k]) for k in t.services_by_node.get(nk(node))]
    return {"Node": node_json(n), "Services": [s for s in svcs if keep is None or keep(s)]}


def health_checks(t: Tables, *, node: str | None = None, service: str | None = None,
                  state: str | None = None, node_meta: Mapping[str, str] | None = None,
                  keep: Keep = None) -> list[dict[str, Any]]:
    """/v1/health/node/<node>, /v1/health/checks/<service>, /v1/health/state/<state> (any, passing,
    warning, critical); selections combine. Index: table_index("checks") (see checks_index)."""
    if node is not None:
        keys = t.checks_by_node.get(nk(node))
    else:
        keys = sorted(t.checks)
    out = []
    for k in keys:
        c = t.checks[k]
        if service is not None and nk(c.service_name) != nk(service):
            continue
        if state is not None and state != "any" and c.status != state:
            continue
        if node_meta and not _node_ok(t, c.node, node_meta):
            continue
        item = check_json(c)
        if keep is None or keep(item):
            out.append(item)
    return out


def health_service_nodes(t: Tables, name: str, tag: Tags = None, passing_only: bool = False,
                         node_meta: Mapping[str, str] | None = None, keep: Keep = None) -> list[dict[str, Any]]:
    """/v1/health/service/<name>[?tag=...][&passing][&node-meta=...]: {Node, Service, Checks} per instance;
    Checks are the node-level checks plus the instance's own. passing_only drops instances with any
    non-passing check. Index: service_index(name, checks=True)."""
    out = []
    for s in _instances(t, name, tag, node_meta):
        node_key = nk(s.node)
        checks = [t.checks[k] for k in t.checks_by_node.get(node_key)]
        checks = [c for c in checks if not c.service_id or nk(c.service_id) == nk(s.service_id)]
        if passing_only and any(c.status != "passing" for c in checks):
            continue
        item = {"Node": node_json(t.nodes[node_key]), "Service": agent_service_json(s),
                "Checks": [check_json(c) for c in checks]}
        if keep is None or keep(item):
            out.append(item)
    return out


# ---------------------------------------------------------------- indexes


def service_index(t: Tables, name: str, checks: bool = False) -> int:
    """X-Consul-Index for per-service reads: the service's own index; for a service with no instances
    the last extinction index; else the max of the catalog tables (checks too for health reads)."""
    if not t.services_by_name.get(nk(name)) and SERVICE_EXTINCTION in t.index:
        return t.index[SERVICE_EXTINCTION]
    own = t.index.get(service_index_name(name), 0)
    if own:
        return own
    return t.max_index("nodes", "services", "checks") if checks else t.max_index("nodes", "services")
