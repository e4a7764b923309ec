"""Named read queries against the state store: what a follower forwards to the leader.

Each query has a function (store, args) -> JSON-able value and an index function used for
X-Consul-Index and blocking queries. Names and argument maps travel over server RPC, so both
sides must agree on them: add, never rename.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.state.store import StateStore, kv_entry_json


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


QUERIES: dict[str, tuple[Callable[[StateStore, dict[str, Any]], Any], Callable[[StateStore, dict[str, Any]], int]]] = {
    "kv.get": (_kv_get, lambda st, a: st.kv_index(_s(a, "key"), recurse=False)),
    "kv.list": (_kv_list, lambda st, a: st.kv_index(_s(a, "prefix"))),
    "kv.keys": (_kv_keys, lambda st, a: st.kv_index(_s(a, "prefix"))),
    "catalog.nodes": (lambda st, a: st.nodes(), lambda st, a: st.table_index("nodes")),
    "catalog.services": (lambda st, a: st.services(), lambda st, a: st.table_index("services")),
    "catalog.service": (
        lambda st, a: st.service_nodes(_s(a, "name"), _s(a, "tag") or None),
        lambda st, a: st.service_index(_s(a, "name")),
    ),
    "catalog.node": (lambda st, a: st.node_services(_s(a, "node")), lambda st, a: st.table_index("nodes", "services")),
    "health.service": (
        lambda st, a: st.health_service_nodes(_s(a, "name"), _s(a, "tag") or None, bool(a.get("passing"))),
        lambda st, a: st.service_index(_s(a, "name"), checks=True),
    ),
    "health.node": (lambda st, a: st.health_checks(node=_s(a, "node")), lambda st, a: st.table_index("checks")),
    "session.info": (_session_info, lambda st, a: st.table_index("sessions")),
    "session.list": (lambda st, a: st.session_list(), lambda st, a: st.table_index("sessions")),
    "session.node": (lambda st, a: st.node_sessions(_s(a, "node")), lambda st, a: st.table_index("sessions")),
    # GET /v1/snapshot: the whole state; "state" is a capture that the serving server serialises to bytes off
    # the event loop (server.read), and it adds its Raft term as "term".
    "snapshot": (lambda st, a: {"state": st.snapshot_view(), "index": st.max_index()}, lambda st, a: st.max_index()),
}

__all__ = ["QUERIES", "index_of", "run"]


def run(store: StateStore, name: str, args: dict[str, Any]) -> Any:
    if name not in QUERIES:
        raise BadRequest(f"unknown query {name!r}")
    return QUERIES[name][0](store, args)


def index_of(store: StateStore, name: str, args: dict[str, Any]) -> int:
    """The query's X-Consul-Index, clamped to at least 1 as Consul does."""
    if name not in QUERIES:
        raise BadRequest(f"unknown query {name!r}")
    return max(1, QUERIES[name][1](store, args))
