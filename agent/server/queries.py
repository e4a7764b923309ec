"""Named read queries against the state store: what a follower forwards to the leader.

Each query has a function (store, args) -> JSON-able value and an index function used for
X-Consul-Index and blocking queries. Names and argument maps travel over server RPC, so both
sides must agree on them: add, never rename.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.filter.request import request_filter
from pyconsul.agent.server import acl_reads, prepared_query_reads
from pyconsul.agent.state.catalog_reads import HEALTH_STATES, Keep
from pyconsul.agent.state.store import StateStore, kv_entry_json
from pyconsul.agent.state.tables import SERVICE_EXTINCTION, service_index_name


def _s(args: dict[str, Any], key: str, default: str = "") -> str:
    v = args.get(key, default)
    return v if isinstance(v, str) else default


def _kv_get(st: StateStore, a: dict[str, Any]) -> Any:
    e = st.kv_get(_s(a, "key"))
    return kv_entry_json(e) if e is not None else None


def _kv_list(st: StateStore, a: dict[str, Any]) -> Any:
    return [kv_entry_json(e) for e in st.kv_list(_s(a, "prefix"))]


def _kv_keys(st: StateStore, a: dict[str, Any]) -> Any:
    return st.kv_keys(_s(a, "prefix"), _s(a, "separator"))


def _session_info(st: StateStore, a: dict[str, Any]) -> Any:
    info = st.session_info(_s(a, "id"))
    return [info] if info is not None else []


# ---------------------------------------------------------------- catalog and health
#
# Arguments (all optional): "tags" (list of str; every one must match; the older "tag", one str, still
# works), "node_meta" ({key: value}), "filter" (a ?filter= expression, compiled here, on the server that
# answers, against the endpoint's schema: an unusable one is BadRequest), "near" (a node name: sort by
# estimated round-trip time from it), "passing" (bool), "state" (health state).


def _tags(a: dict[str, Any]) -> tuple[str, ...]:
    tags = a.get("tags")
    if isinstance(tags, list | tuple):
        return tuple(t for t in tags if isinstance(t, str))
    one = _s(a, "tag")
    return (one,) if one else ()


def _meta(a: dict[str, Any]) -> dict[str, str] | None:
    m = a.get("node_meta")
    if not isinstance(m, dict) or not m:
        return None
    return {k: v for k, v in m.items() if isinstance(k, str) and isinstance(v, str)}


def _keep(a: dict[str, Any], endpoint: str) -> Keep:
    expr = _s(a, "filter")
    return request_filter(expr, endpoint).evaluate if expr else None


def _near(st: StateStore, a: dict[str, Any], rows: list[Any], node_of: Callable[[Any], str]) -> list[Any]:
    """Rows sorted by estimated RTT from node a["near"] (Consul's sortNodesByDistanceFrom, on the network
    coordinates table: state/coordinates.py); unchanged without ?near or when that node has no coordinate."""
    near = _s(a, "near")
    return st.sort_near(rows, node_of, near) if near and len(rows) > 1 else rows


def _meta_index(st: StateStore, a: dict[str, Any], *tables: str) -> int:
    """Consul's index for a read of `tables`, with "nodes" added when node-meta selects."""
    return st.table_index(*tables, "nodes") if _meta(a) else st.table_index(*tables)


def _catalog_nodes(st: StateStore, a: dict[str, Any]) -> Any:
    rows = st.nodes(_meta(a), _keep(a, "/v1/catalog/nodes"))
    return _near(st, a, rows, lambda r: r["Node"])


def _catalog_service(st: StateStore, a: dict[str, Any]) -> Any:
    rows = st.service_nodes(_s(a, "name"), _tags(a), _meta(a), _keep(a, "/v1/catalog/service/"))
    return _near(st, a, rows, lambda r: r["Node"])


def _health_service(st: StateStore, a: dict[str, Any]) -> Any:
    rows = st.health_service_nodes(_s(a, "name"), _tags(a), bool(a.get("passing")), _meta(a),
                                   _keep(a, "/v1/health/service/"))
    return _near(st, a, rows, lambda r: r["Node"]["Node"])


def _health_checks(st: StateStore, a: dict[str, Any]) -> Any:
    rows = st.health_checks(service=_s(a, "name"), node_meta=_meta(a), keep=_keep(a, "/v1/health/checks/"))
    return _near(st, a, rows, lambda r: r["Node"])


def _health_state(st: StateStore, a: dict[str, Any]) -> Any:
    state = _s(a, "state")
    if state not in HEALTH_STATES:
        raise BadRequest(f"Invalid state: {state}")
    rows = st.health_checks(state=state, node_meta=_meta(a), keep=_keep(a, "/v1/health/state/"))
    return _near(st, a, rows, lambda r: r["Node"])


QUERIES: dict[str, tuple[Callable[[StateStore, dict[str, Any]], Any], Callable[[StateStore, dict[str, Any]], int]]] = {
    "kv.get": (_kv_get, lambda st, a: st.kv_index(_s(a, "key"), recurse=False)),
    "kv.list": (_kv_list, lambda st, a: st.kv_index(_s(a, "prefix"))),
    "kv.keys": (_kv_keys, lambda st, a: st.kv_index(_s(a, "prefix"))),
    # catalog and health reads (Consul 1.7's index for each: see catalog_reads.py)
    "catalog.nodes": (_catalog_nodes, lambda st, a: st.table_index("nodes")),
    "catalog.services": (
        lambda st, a: st.services(_meta(a), _keep(a, "/v1/catalog/services")),
        lambda st, a: _meta_index(st, a, "services"),
    ),
    "catalog.service": (_catalog_service, lambda st, a: st.service_index(_s(a, "name"))),
    "catalog.node": (
        lambda st, a: st.node_services(_s(a, "node"), _keep(a, "/v1/catalog/node/")),
        lambda st, a: st.table_index("nodes", "services"),
    ),
    "catalog.node_services": (
        lambda st, a: st.node_service_list(_s(a, "node"), _keep(a, "/v1/catalog/node-services/")),
        lambda st, a: st.table_index("nodes", "services"),
    ),
    "health.service": (_health_service, lambda st, a: st.service_index(_s(a, "name"), checks=True)),
    "health.node": (
        lambda st, a: st.health_checks(node=_s(a, "node"), keep=_keep(a, "/v1/health/node/")),
        lambda st, a: st.table_index("checks"),
    ),
    "health.checks": (_health_checks, lambda st, a: st.service_index(_s(a, "name"), checks=True)),
    "health.state": (_health_state, lambda st, a: _meta_index(st, a, "checks")),
    "session.info": (_session_info, lambda st, a: st.table_index("sessions")),
    "session.list": (lambda st, a: st.session_list(), lambda st, a: st.table_index("sessions")),
    "session.node": (lambda st, a: st.node_sessions(_s(a, "node")), lambda st, a: st.table_index("sessions")),
    # GET /v1/snapshot: the whole state; "state" is a capture that the serving server serialises to bytes off
    # the event loop (server.read), and it adds its Raft term as "term".
    "snapshot": (lambda st, a: {"state": st.snapshot_view(), "index": st.max_index()}, lambda st, a: st.max_index()),
}



def _segment(a: dict[str, Any]) -> str | None:
    seg = a.get("segment")
    return seg if isinstance(seg, str) else None


# Network coordinates (agent/state/coordinates.py), index "coordinates" (F's; registered here so every server
# knows them).
QUERIES["coordinate.nodes"] = (lambda st, a: st.coordinates(segment=_segment(a)),
                               lambda st, a: st.table_index("coordinates"))
QUERIES["coordinate.node"] = (lambda st, a: st.coordinates(node=_s(a, "node"), segment=_segment(a)),
                              lambda st, a: st.table_index("coordinates"))

MAX_INDEX_NAMES = 4096  # names per "health.service_indexes" read (the DNS views' MAX_WATCHED_NAMES)


def _service_indexes(st: StateStore, a: dict[str, Any]) -> dict[str, int]:
    """{name: the X-Consul-Index a health.service read of that name answers now} for a["names"] (a list of
    at most MAX_INDEX_NAMES strings): the DNS views' one batched check of which cached services changed."""
    names = a.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequest("names must be a list of service names")
    if len(names) > MAX_INDEX_NAMES:
        raise BadRequest(f"at most {MAX_INDEX_NAMES} names per read")
    return {n: max(1, st.service_index(n, checks=True)) for n in names}


# Per-service indexes for DNS change detection (agent/dns/views.py); the read's own index is the catalog's.
QUERIES["health.service_indexes"] = (_service_indexes, lambda st, a: st.max_index())

# Prepared queries (agent/state/prepared_queries.py; the failover across datacenters is the caller's:
# server/prepared_query.py). Index "prepared-queries"; an execute's index also moves with its service.
QUERIES.update(prepared_query_reads.QUERIES)
QUERIES.update(acl_reads.QUERIES)  # ACLs (agent/server/acl_reads.py; index "acl-tokens", "acl-policies")

# ---------------------------------------------------------------- what a blocked query waits for


def _service_watch(st: StateStore, name: str, checks: bool) -> frozenset[str]:
    """service_index's inputs: while the service has instances, its own index alone (the last instance's
    removal moves that name too); without, the extinction index and the catalog tables it falls back to."""
    own = service_index_name(name)
    if st.table_index(own):
        return frozenset({own})
    return frozenset({own, SERVICE_EXTINCTION, "nodes", "services", *(("checks",) if checks else ())})


_KV = frozenset({"kvs", "tombstones"})
_WATCH: dict[str, Callable[[StateStore, dict[str, Any]], frozenset[str]]] = {
    "kv.get": lambda st, a: _KV,
    "kv.list": lambda st, a: _KV,
    "kv.keys": lambda st, a: _KV,
    "catalog.nodes": lambda st, a: frozenset({"nodes"}),
    "catalog.services": lambda st, a: frozenset({"services", "nodes"} if _meta(a) else {"services"}),
    "catalog.service": lambda st, a: _service_watch(st, _s(a, "name"), False),
    "catalog.node": lambda st, a: frozenset({"nodes", "services"}),
    "catalog.node_services": lambda st, a: frozenset({"nodes", "services"}),
    "health.service": lambda st, a: _service_watch(st, _s(a, "name"), True),
    "health.node": lambda st, a: frozenset({"checks"}),
    "health.checks": lambda st, a: _service_watch(st, _s(a, "name"), True),
    "health.state": lambda st, a: frozenset({"checks", "nodes"} if _meta(a) else {"checks"}),
    "session.info": lambda st, a: frozenset({"sessions"}),
    "session.list": lambda st, a: frozenset({"sessions"}),
    "session.node": lambda st, a: frozenset({"sessions"}),
    "coordinate.nodes": lambda st, a: frozenset({"coordinates"}),
    "coordinate.node": lambda st, a: frozenset({"coordinates"}),
}
_WATCH.update(prepared_query_reads.WATCH)
_WATCH.update(acl_reads.WATCH)


def watch_names(store: StateStore, name: str, args: dict[str, Any]) -> frozenset[str] | None:
    """The index names (StateStore.last_changed's vocabulary) whose change can move this query's index
    right now, or None when any change may (queries without a declared set). A blocked query sleeps
    through applies that change none of them: a KV write does not wake a watcher of a service, a write
    to service "db" not one of "web". Re-evaluate after each wake-up: the set can depend on the state
    (a service with no index of its own falls back to the catalog tables)."""
    fn = _WATCH.get(name)
    return fn(store, args) if fn is not None else None


__all__ = ["QUERIES", "index_of", "run", "watch_names"]


def run(store: StateStore, name: str, args: dict[str, Any]) -> Any:
    if name not in QUERIES:
        raise BadRequest(f"unknown query {name!r}")
    return QUERIES[name][0](store, args)


def index_of(store: StateStore, name: str, args: dict[str, Any]) -> int:
    """The query's X-Consul-Index, clamped to at least 1 as Consul does."""
    if name not in QUERIES:
        raise BadRequest(f"unknown query {name!r}")
    return max(1, QUERIES[name][1](store, args))
