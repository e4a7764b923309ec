"""The server side of prepared queries: named reads (server/queries.py registers them) answered by the leader
(or any server with ?stale), forwarded and blocking like every read.

- "query.list" {} -> [query JSON]; "query.get" {"id"} -> [query JSON] (NotFound "Query not found");
- "query.explain" {"name", "datacenter"} -> {"Query": rendered query JSON};
- "query.execute" {"name", "datacenter", "agent_node", "near", "limit"} -> {"query": the resolved query
  (wire map, for the caller's failover), "result": PreparedQueryExecuteResponse JSON};
- "query.execute_remote" {"query" (wire map), "datacenter", "limit"} -> PreparedQueryExecuteResponse JSON
  (Consul's ExecuteRemote: no RTT sort, no further failover).
"datacenter" is the datacenter of the server that answers (the caller knows which it asked), stamped on the
result. An unknown ID or name is NotFound("Query not found") (Consul's ErrQueryNotFound), a template asked for
by ID or one that does not render BadRequest.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from pyconsul.agent.errors import BadRequest, NotFound
from pyconsul.agent.state import prepared_queries as pq
from pyconsul.agent.state.query_defs import PreparedQueryDef
from pyconsul.agent.state.store import StateStore
from pyconsul.agent.state.wire import DecodeError, from_wire, to_wire

__all__ = ["NOT_FOUND", "QUERIES", "WATCH"]

NOT_FOUND = "Query not found"
_RNG = random.Random()


def _s(a: dict[str, Any], key: str) -> str:
    v = a.get(key, "")
    return v if isinstance(v, str) else ""


def _limit(a: dict[str, Any]) -> int:
    v = a.get("limit", 0)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def _resolve(st: StateStore, a: dict[str, Any]) -> PreparedQueryDef:
    try:
        q = pq.resolve(st.tables, _s(a, "name"))
    except pq.QueryError as exc:
        raise BadRequest(str(exc)) from None
    if q is None:
        raise NotFound(NOT_FOUND)
    return q


def _get(st: StateStore, a: dict[str, Any]) -> Any:
    q = pq.get(st.tables, _s(a, "id"))
    if q is None:
        raise NotFound(NOT_FOUND)
    return [pq.query_json(q)]


def _execute(st: StateStore, a: dict[str, Any]) -> Any:
    q = _resolve(st, a)
    near = _s(a, "near") or q.service.near  # the request's ?near= first, as Consul's Source
    if near == "_agent":
        near = _s(a, "agent_node")
    result = pq.execute(st.tables, q, _s(a, "datacenter"), _RNG, near=near, limit=_limit(a))
    return {"query": to_wire(q), "result": result}


def _execute_remote(st: StateStore, a: dict[str, Any]) -> Any:
    try:
        q = from_wire(PreparedQueryDef, a.get("query"))
    except DecodeError as exc:
        raise BadRequest(f"bad query: {exc}") from None
    return pq.execute(st.tables, q, _s(a, "datacenter"), _RNG, limit=_limit(a), sort=False)


def _index(st: StateStore, a: dict[str, Any]) -> int:
    return st.table_index(pq.INDEX)


def _execute_index(st: StateStore, a: dict[str, Any]) -> int:
    q = a.get("query")
    service = q.get("service", {}).get("service", "") if isinstance(q, dict) else ""
    if not isinstance(service, str) or not service:
        found = pq.resolve(st.tables, _s(a, "name")) if _s(a, "name") else None
        service = found.service.service if found is not None else ""
    return max(st.table_index(pq.INDEX), st.service_index(service, checks=True) if service else 0)


def _safe_execute_index(st: StateStore, a: dict[str, Any]) -> int:
    try:
        return _execute_index(st, a)
    except pq.QueryError:
        return st.table_index(pq.INDEX)


Read = Callable[[StateStore, dict[str, Any]], Any]
QUERIES: dict[str, tuple[Read, Callable[[StateStore, dict[str, Any]], int]]] = {
    "query.list": (lambda st, a: [pq.query_json(q) for q in pq.list_all(st.tables)], _index),
    "query.get": (_get, _index),
    "query.explain": (lambda st, a: {"Query": pq.query_json(_resolve(st, a))}, _index),
    "query.execute": (_execute, _safe_execute_index),
    "query.execute_remote": (_execute_remote, _safe_execute_index),
}

_QI = frozenset({pq.INDEX})
WATCH: dict[str, Callable[[StateStore, dict[str, Any]], frozenset[str]]] = {
    "query.list": lambda st, a: _QI,
    "query.get": lambda st, a: _QI,
    "query.explain": lambda st, a: _QI,
}
