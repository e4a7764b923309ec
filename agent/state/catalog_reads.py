"""Catalog and health reads in Consul 1.7 JSON shapes, and the X-Consul-Index each read should carry.

Ordering is deterministic: nodes by lowercased name; service instances by (node, service ID); checks by
(node, check ID). Empty tag lists and maps are emitted as [] and {} (Consul may emit null for a field
that was never set; clients accept both). Tag filters match case-insensitively, as Consul's do.
"""

from __future__ import annotations

from typing import Any

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


def agent_service_json(s: ServiceNode) -> dict[str, Any]:
    """A NodeService, as in /v1/catalog/node/<node> "Services" and /v1/health/service "Service"."""
    return {
        "ID": s.service_id,
        "Service": s.service_name,
        "Tags": list(s.tags),
        "Address": s.address,
        "Meta": dict(s.meta),
        "Port": s.port,
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
        "Proxy": {"MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    }


def catalog_service_json(s: ServiceNode, n: Node) -> dict[str, Any]:
    """A CatalogService, as in /v1/catalog/service/<name>. Create/ModifyIndex are the service's."""
    return {
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
        "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceMeta": dict(s.meta),
        "ServicePort": s.port,
        "ServiceEnableTagOverride": False,
        "ServiceProxy": {"MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    }


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
        "Type": "",
        "Definition": {},
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


# ---------------------------------------------------------------- reads (index to use in the docstring)


def nodes(t: Tables) -> list[dict[str, Any]]:
    """/v1/catalog/nodes. Index: table_index("nodes")."""
    return [node_json(t.nodes[k]) for k in sorted(t.nodes)]


def services(t: Tables) -> dict[str, list[str]]:
    """/v1/catalog/services: service name -> sorted distinct tags. Index: table_index("services")."""
    out: dict[str, set[str]] = {}
    for s in t.services.values():
        out.setdefault(s.service_name, set()).update(s.tags)
    return {name: sorted(out[name]) for name in sorted(out)}


def _instances(t: Tables, name: str, tag: str | None) -> list[ServiceNode]:
    found = [t.services[k] for k in t.services_by_name.get(nk(name))]
    if tag is not None:
        found = [s for s in found if any(nk(x) == nk(tag) for x in s.tags)]
    return found


def service_nodes(t: Tables, name: str, tag: str | None = None) -> list[dict[str, Any]]:
    """/v1/catalog/service/<name>[?tag=]. Index: service_index(name)."""
    return [catalog_service_json(s, t.nodes[nk(s.node)]) for s in _instances(t, name, tag)]


def node_services(t: Tables, node: str) -> dict[str, Any] | None:
    """/v1/catalog/node/<node>; None if the node is unknown. Index: table_index("nodes", "services")."""
    n = t.nodes.get(nk(node))
    if n is None:
        return None
    svcs = [t.services[k] for k in t.services_by_node.get(nk(node))]
    return {"Node": node_json(n), "Services": {s.service_id: agent_service_json(s) for s in svcs}}


def health_checks(t: Tables, *, node: str | None = None, service: str | None = None,
                  state: str | None = None) -> list[dict[str, Any]]:
    """/v1/health/node/<node>, /v1/health/checks/<service>, /v1/health/state/<state> (any, passing,
    warning, critical); filters combine. Index: table_index("checks")."""
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
        out.append(check_json(c))
    return out


def health_service_nodes(t: Tables, name: str, tag: str | None = None,
                         passing_only: bool = False) -> list[dict[str, Any]]:
    """/v1/health/service/<name>[?tag=][&passing]: {Node, Service, Checks} per instance; Checks are the
    node-level checks plus the instance's own. passing_only drops instances with any non-passing check.
    Index: service_index(name, checks=True)."""
    out = []
    for s in _instances(t, name, tag):
        node_key = nk(s.node)
        checks = [t.checks[k] for k in t.checks_by_node.get(node_key)]
        checks = [c for c in checks if not c.service_id or nk(c.service_id) == nk(s.service_id)]
        if passing_only and any(c.status != "passing" for c in checks):
            continue
        out.append({"Node": node_json(t.nodes[node_key]), "Service": agent_service_json(s),
                    "Checks": [check_json(c) for c in checks]})
    return out


def service_index(t: Tables, name: str, checks: bool = False) -> int:
    """X-Consul-Index for per-service reads: the service's own index; for a service with no instances
    the last extinction index; else the max of the catalog tables (checks too for health reads)."""
    if not t.services_by_name.get(nk(name)) and SERVICE_EXTINCTION in t.index:
        return t.index[SERVICE_EXTINCTION]
    own = t.index.get(service_index_name(name), 0)
    if own:
        return own
    return t.max_index("nodes", "services", "checks") if checks else t.max_index("nodes", "services")
