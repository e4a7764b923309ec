"""Catalog tables (nodes, services, checks): register and deregister with Consul 1.7's cascades.

Contracts:
- Register is all-or-nothing (the store rolls back on StateFailure). A node, service or check whose
  content is unchanged is not rewritten: its ModifyIndex and the table index stay (anti-entropy
  re-registers everything every minute; unchanged data must not wake blocking queries).
- Node IDs are unique: re-registering an ID under a new name renames the node (the old name is
  deregistered with everything on it); a name held by a node with a different non-empty ID is refused.
- Deregistering a node removes its services, checks and sessions; a service removes its checks; a
  check removal, or a check registered as critical, invalidates the sessions that list it.
- A check's ServiceName and ServiceTags are copied from its service when the check is written (Consul
  1.7's ensureCheckTxn); a write of the service alone leaves its checks as they are (ensureServiceTxn does
  not touch checks). Agents re-send a changed service with all its checks, which refreshes them.
- Per-service indexes ("service.<name>") move when an instance of that service, one of its checks,
  a node-level check of its node, or its node changes; when the last instance goes, the per-service
  index is dropped and "service_last_extinction" moves (see service_index).
Reads and JSON shapes are in catalog_reads.py.
"""

from __future__ import annotations

import dataclasses

from pyconsul.agent.state import sessions
from pyconsul.agent.state.commands import CheckDef, Deregister, Register, ServiceDef
from pyconsul.agent.state.results import StateFailure
from pyconsul.agent.state.tables import (
    SERVICE_EXTINCTION,
    HealthCheck,
    Node,
    ServiceNode,
    Tables,
    nk,
    service_index_name,
)


def register(t: Tables, idx: int, cmd: Register) -> None:
    if not cmd.node:
        raise StateFailure("Must provide node")
    if not cmd.address and not cmd.skip_node_update:
        raise StateFailure("Must provide address if SkipNodeUpdate is not set")
    if not cmd.skip_node_update or nk(cmd.node) not in t.nodes:  # SkipNodeUpdate still creates a missing node
        _ensure_node(t, idx, cmd)
    if cmd.service is not None:
        _ensure_service(t, idx, cmd.node, cmd.service)
    for check in cmd.checks:
        _ensure_check(t, idx, cmd.node, check, cmd.now)


def deregister(t: Tables, idx: int, cmd: Deregister) -> None:
    if not cmd.node:
        raise StateFailure("Must provide node")
    if cmd.service_id:
        delete_service(t, idx, cmd.node, cmd.service_id, cmd.now)
    elif cmd.check_id:
        delete_check(t, idx, cmd.node, cmd.check_id, cmd.now)
    else:
        delete_node(t, idx, cmd.node, cmd.now)


# ---------------------------------------------------------------- ensure


def _ensure_node(t: Tables, idx: int, cmd: Register) -> None:
    key = nk(cmd.node)
    by_name = t.nodes.get(key)
    if cmd.id:
        if by_name is not None and by_name.id and nk(by_name.id) != nk(cmd.id):
            raise StateFailure(f"Node name {cmd.node} is reserved by node {by_name.id} with name {by_name.node}")
        for other_key in t.nodes_by_id.get(nk(cmd.id)):
            if other_key != key:  # same ID, new name: a rename
                delete_node(t, idx, t.nodes[other_key].node, cmd.now)
        by_name = t.nodes.get(key)
    node = Node(node=cmd.node, id=cmd.id, address=cmd.address, datacenter=cmd.datacenter,
                tagged_addresses=dict(cmd.tagged_addresses), meta=dict(cmd.node_meta),
                create_index=by_name.create_index if by_name else idx, modify_index=idx)
    if by_name is not None and _same(by_name, node):
        return
    t.put("nodes", key, node)
    t.bump("nodes", idx)
    _bump_node_services(t, idx, cmd.node)


def _ensure_service(t: Tables, idx: int, node_name: str, svc: ServiceDef) -> None:
    if not svc.service:
        raise StateFailure("Must provide service name with ID")
    service_id = svc.id or svc.service
    node = t.nodes.get(nk(node_name))
    if node is None:
        raise StateFailure("Missing node registration")
    key = (nk(node_name), nk(service_id))
    old = t.services.get(key)
    new = ServiceNode(node=node.node, service_id=service_id, service_name=svc.service, tags=tuple(svc.tags),
                      address=svc.address, meta=dict(svc.meta), port=svc.port,
                      create_index=old.create_index if old else idx, modify_index=idx,
                      tagged_addresses=dict(svc.tagged_addresses), weights_passing=svc.weights_passing,
                      weights_warning=svc.weights_warning, enable_tag_override=svc.enable_tag_override)
    if old is not None and _same(old, new):
        return
    t.put("services", key, new)
    t.bump("services", idx)
    t.bump(service_index_name(new.service_name), idx)
    if old is not None and nk(old.service_name) != nk(new.service_name):
        _after_service_removed(t, idx, old.service_name)


def _ensure_check(t: Tables, idx: int, default_node: str, c: CheckDef, now: float) -> None:
    node_name = c.node or default_node
    check_id = c.check_id or c.name
    if not check_id:
        raise StateFailure("Must provide a check ID or name")
    node = t.nodes.get(nk(node_name))
    if node is None:
        raise StateFailure("Missing node registration")
    svc: ServiceNode | None = None
    if c.service_id:
        svc = t.services.get((nk(node_name), nk(c.service_id)))
        if svc is None:
            raise StateFailure("Missing service registration")
    status = c.status or "critical"
    if status == "critical":
        sessions.invalidate_for_check(t, idx, node_name, check_id, now)
    key = (nk(node_name), nk(check_id))
    old = t.checks.get(key)
    new = HealthCheck(node=node.node, check_id=check_id, name=c.name, status=status, notes=c.notes,
                      output=c.output, service_id=svc.service_id if svc else "",
                      service_name=svc.service_name if svc else "", service_tags=svc.tags if svc else (),
                      create_index=old.create_index if old else idx, modify_index=idx,
                      type=c.type, definition=c.definition)
    if old is not None and _same(old, new):
        return
    t.put("checks", key, new)
    t.bump("checks", idx)
    if svc is not None:
        t.bump(service_index_name(svc.service_name), idx)
    else:
        _bump_node_services(t, idx, node_name)


def _same(old: Node | ServiceNode | HealthCheck, new: Node | ServiceNode | HealthCheck) -> bool:
    """Equal apart from the raft indexes."""
    return type(old) is type(new) and all(
        getattr(old, f.name) == getattr(new, f.name)
        for f in dataclasses.fields(old) if f.name not in ("create_index", "modify_index"))


# ---------------------------------------------------------------- delete


def delete_node(t: Tables, idx: int, node_name: str, now: float) -> None:
    key = nk(node_name)
    if key not in t.nodes:
        return
    for skey in t.services_by_node.get(key):
        svc = t.services[skey]
        t.bump(service_index_name(svc.service_name), idx)
        delete_service(t, idx, svc.node, svc.service_id, now)
    for ckey in t.checks_by_node.get(key):
        check = t.checks[ckey]
        delete_check(t, idx, check.node, check.check_id, now)
    t.delete("nodes", key)
    t.bump("nodes", idx)
    sessions.invalidate_for_node(t, idx, node_name, now)


def delete_service(t: Tables, idx: int, node_name: str, service_id: str, now: float) -> None:
    key = (nk(node_name), nk(service_id))
    svc = t.services.get(key)
    if svc is None:
        return
    for ckey in t.checks_by_node.get(key[0]):
        check = t.checks.get(ckey)
        if check is not None and nk(check.service_id) == key[1]:
            delete_check(t, idx, check.node, check.check_id, now)
    t.bump("checks", idx)
    t.delete("services", key)
    t.bump("services", idx)
    _after_service_removed(t, idx, svc.service_name)


def delete_check(t: Tables, idx: int, node_name: str, check_id: str, now: float) -> None:
    key = (nk(node_name), nk(check_id))
    check = t.checks.get(key)
    if check is None:
        return
    if check.service_id:
        svc = t.services.get((key[0], nk(check.service_id)))
        if svc is not None:
            t.bump(service_index_name(svc.service_name), idx)
    else:
        _bump_node_services(t, idx, node_name)
    t.delete("checks", key)
    t.bump("checks", idx)
    sessions.invalidate_for_check(t, idx, node_name, check_id, now)


def _bump_node_services(t: Tables, idx: int, node_name: str) -> None:
    """Node data and node-level checks appear in every health result of the node's services."""
    for skey in t.services_by_node.get(nk(node_name)):
        t.bump(service_index_name(t.services[skey].service_name), idx)


def _after_service_removed(t: Tables, idx: int, name: str) -> None:
    if t.services_by_name.get(nk(name)):
        t.bump(service_index_name(name), idx)
    else:
        t.delete("index", service_index_name(name))
        t.changed.add(service_index_name(name))
        t.bump(SERVICE_EXTINCTION, idx)
