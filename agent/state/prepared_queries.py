"""The prepared-queries table (Consul's "prepared-queries" memdb table): apply, resolve, execute.

Written by PreparedQueryApply (Raft command type 17). Rules the state machine checks, as Consul's
preparedQuerySetTxn does (the HTTP layer checks the rest before proposing: http/query.py):
- "create" needs an ID not in use; "update" and "delete" of an unknown ID change nothing (result False);
  an update keeps CreateIndex; ModifyIndex is the entry's index.
- Names are unique case-insensitively ("name '<n>' aliases an existing query name"); a name that is the ID of
  another query is refused ("name '<n>' aliases an existing query ID"); at most one template has an empty name.
- A Session must exist ("invalid session \"<id>\""); destroying the session deletes its queries (drop_session).
- A template must compile (state/query_template.py: "failed compiling template: ...").
- At most MAX_QUERIES queries.
Index name: "prepared-queries" (bumped by every change, as Consul's).

Reads: `get`, `list_all`, `resolve` (ID, then exact name, then the longest template name prefix, rendered) and
`execute` (one datacenter, no failover: the caller fails over, server/prepared_query.py). Pure: no I/O; the
shuffle takes the caller's random.Random.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Mapping
from typing import Any

from pyconsul.agent.state import catalog_reads, coordinates
from pyconsul.agent.state.commands import PreparedQueryApply
from pyconsul.agent.state.query_defs import PreparedQueryDef
from pyconsul.agent.state.query_template import TemplateError, compile_template, is_template, render
from pyconsul.agent.state.results import StateFailure
from pyconsul.agent.state.tables import Tables

__all__ = ["INDEX", "MAX_QUERIES", "NEAR_SWAP_DEPTH", "QueryError", "apply", "drop_session", "execute", "get",
           "is_uuid", "list_all", "query_json", "resolve"]

INDEX = "prepared-queries"
MAX_QUERIES = 10_000  # prepared queries in a datacenter (README "Limits"); Consul has no limit
NEAR_SWAP_DEPTH = 10  # Consul moves the Near node to the front only if it is among the first 10 after sorting
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class QueryError(ValueError):
    """A lookup that cannot be answered (a template asked for by ID, a template that does not render)."""


def is_uuid(s: str) -> bool:
    return len(s) == 36 and _UUID.fullmatch(s) is not None


# ---------------------------------------------------------------- writes


def apply(t: Tables, idx: int, cmd: PreparedQueryApply) -> bool:
    q = cmd.query
    qid = q.id.lower()
    existing = t.prepared_queries.get(qid)
    if cmd.op == "delete":
        if existing is None:
            return False
        t.delete("prepared_queries", qid)
        t.bump(INDEX, idx)
        return True
    if cmd.op not in ("create", "update"):
        raise StateFailure(f"Unknown prepared query operation: {cmd.op}")
    if not is_uuid(qid):
        raise StateFailure("Missing query ID" if not qid else f"Bad query ID {q.id!r}")
    if cmd.op == "create" and existing is not None:
        raise StateFailure(f"ID {q.id} is already in use by another prepared query")
    if cmd.op == "update" and existing is None:
        return False
    if existing is None and len(t.prepared_queries) >= MAX_QUERIES:
        raise StateFailure(f"Too many prepared queries (at most {MAX_QUERIES})")
    if q.name:
        if any(other != qid for other in t.queries_by_name.get(q.name.lower())):
            raise StateFailure(f"name '{q.name}' aliases an existing query name")
    elif is_template(q) and any(is_template(o) and not o.name and o.id != qid for o in t.prepared_queries.values()):
        raise StateFailure("a query template with an empty name already exists")
    if is_uuid(q.name) and q.name.lower() in t.prepared_queries:
        raise StateFailure(f"name '{q.name}' aliases an existing query ID")
    if q.session and q.session not in t.sessions:
        raise StateFailure(f'invalid session "{q.session}"')
    if is_template(q):
        try:
            compile_template(q)
        except TemplateError as exc:
            raise StateFailure(f"failed compiling template: {exc}") from None
    record = dataclasses.replace(q, id=qid, create_index=existing.create_index if existing else idx,
                                 modify_index=idx)
    t.put("prepared_queries", qid, record)
    t.bump(INDEX, idx)
    return True


def drop_session(t: Tables, idx: int, session_id: str) -> None:
    """The session is gone: so are the queries bound to it (Consul's deleteSessionTxn)."""
    gone = t.queries_by_session.get(session_id)
    for qid in gone:
        t.delete("prepared_queries", qid)
    if gone:
        t.bump(INDEX, idx)


# ---------------------------------------------------------------- reads


def get(t: Tables, query_id: str) -> PreparedQueryDef | None:
    return t.prepared_queries.get(query_id.lower())


def list_all(t: Tables) -> list[PreparedQueryDef]:
    """Every query, by ID (Consul's order)."""
    return [t.prepared_queries[k] for k in sorted(t.prepared_queries)]


def resolve(t: Tables, id_or_name: str, segment: str = "") -> PreparedQueryDef | None:
    """The query an execute or explain of `id_or_name` runs (Consul's PreparedQueryResolve): by ID (a
    template cannot be run by ID: QueryError), else by exact name (case-insensitive), else the template whose
    name is the longest prefix of it (case-insensitive), rendered for `id_or_name`. None when nothing matches."""
    if not id_or_name:
        raise QueryError("Missing query ID")
    if is_uuid(id_or_name):
        q = t.prepared_queries.get(id_or_name.lower())
        if q is not None:
            if is_template(q):
                raise QueryError("prepared query templates can only be resolved up by name, not by ID")
            return q
    lowered = id_or_name.lower()
    for qid in t.queries_by_name.get(lowered):
        return _prep(t.prepared_queries[qid], id_or_name, segment)
    best: PreparedQueryDef | None = None
    for q in t.prepared_queries.values():
        if is_template(q) and lowered.startswith(q.name.lower()) and (best is None or len(q.name) > len(best.name)):
            best = q
    return _prep(best, id_or_name, segment) if best is not None else None


def _prep(q: PreparedQueryDef, name: str, segment: str) -> PreparedQueryDef:
    if not is_template(q):
        return q
    try:
        return render(compile_template(q), name, segment)
    except TemplateError as exc:
        raise QueryError(str(exc)) from None


# ---------------------------------------------------------------- execution


def _healthy(item: Mapping[str, Any], only_passing: bool, ignore: frozenset[str]) -> bool:
    """Consul's FilterIgnore: no critical check (and, with OnlyPassing, no check that is not passing) among
    the instance's and its node's checks (serfHealth included), ignoring the IgnoreCheckIDs."""
    for c in item["Checks"]:
        if c["CheckID"] in ignore:
            continue
        if c["Status"] == "critical" or (only_passing and c["Status"] != "passing"):
            return False
    return True


def _tags_ok(item: Mapping[str, Any], must: list[str], banned: list[str]) -> bool:
    mine = {x.lower() for x in item["Service"]["Tags"] or ()}
    return all(x in mine for x in must) and not any(x in mine for x in banned)


def execute(t: Tables, q: PreparedQueryDef, datacenter: str, rng: random.Random, *, near: str = "",
            limit: int = 0, sort: bool = True) -> dict[str, Any]:
    """Run `q` against this datacenter's catalog (Consul's PreparedQuery.execute then the local part of
    Execute): healthy instances of Service.Service, node-meta, service-meta and tag filters ("!tag" excludes),
    shuffled; with `sort` (the local datacenter), ordered by estimated RTT from node `near` (the caller resolves
    "_agent" and ?near=) with that node itself moved first; at most `limit` (0 = all). Result: Consul's
    PreparedQueryExecuteResponse {Service, Nodes, DNS, Datacenter, Failovers}."""
    svc = q.service
    rows = catalog_reads.health_service_nodes(t, svc.service)
    ignore = frozenset(svc.ignore_check_ids)
    rows = [r for r in rows if _healthy(r, svc.only_passing, ignore)]
    if svc.node_meta:
        rows = [r for r in rows if catalog_reads.meta_matches(r["Node"]["Meta"] or {}, svc.node_meta)]
    if svc.service_meta:
        rows = [r for r in rows if catalog_reads.meta_matches(r["Service"]["Meta"] or {}, svc.service_meta)]
    if svc.tags:
        lowered = [x.lower() for x in svc.tags]
        must = [x for x in lowered if not x.startswith("!")]
        banned = [x[1:] for x in lowered if x.startswith("!")]
        rows = [r for r in rows if _tags_ok(r, must, banned)]
    rng.shuffle(rows)
    if sort and near and near != "_ip":
        rows = coordinates.sort_by_distance(t, rows, lambda r: r["Node"]["Node"], near)
        for i, r in enumerate(rows[:NEAR_SWAP_DEPTH]):
            if r["Node"]["Node"] == near:
                rows[0], rows[i] = rows[i], rows[0]
                break
    if limit > 0:
        rows = rows[:limit]
    return {"Service": svc.service, "Nodes": rows, "DNS": {"TTL": q.dns_ttl}, "Datacenter": datacenter,
            "Failovers": 0}


# ---------------------------------------------------------------- JSON


def _list_or_null(xs: tuple[str, ...]) -> list[str] | None:
    return list(xs) if xs else None  # Go marshals a slice it never set as null


def query_json(q: PreparedQueryDef) -> dict[str, Any]:
    """Consul 1.7's PreparedQuery JSON."""
    s = q.service
    return {
        "ID": q.id,
        "Name": q.name,
        "Session": q.session,
        "Token": q.token,
        "Template": {"Type": q.template.type, "Regexp": q.template.regexp,
                     "RemoveEmptyTags": q.template.remove_empty_tags},
        "Service": {
            "Service": s.service,
            "Failover": {"NearestN": s.failover.nearest_n, "Datacenters": _list_or_null(s.failover.datacenters)},
            "OnlyPassing": s.only_passing,
            "IgnoreCheckIDs": _list_or_null(s.ignore_check_ids),
            "Near": s.near,
            "Tags": _list_or_null(s.tags),
            "NodeMeta": dict(s.node_meta) or None,
            "ServiceMeta": dict(s.service_meta) or None,
            "Connect": s.connect,
        },
        "DNS": {"TTL": q.dns_ttl},
        "CreateIndex": q.create_index,
        "ModifyIndex": q.modify_index,
    }
