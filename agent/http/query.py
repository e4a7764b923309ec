"""`/v1/query`: prepared queries (Consul 1.7).

- POST /v1/query: create -> {"ID": "<uuid>"}; GET /v1/query: list (blocking on index "prepared-queries").
- GET /v1/query/<id>: [query] (404 "Query not found"); PUT /v1/query/<id>: replace (body: the whole query;
  200, empty body); DELETE /v1/query/<id> (200, empty body). PUT/DELETE of an unknown ID: 404 with Consul's
  "Cannot modify non-existent prepared query: '<id>'" (Consul answers 500).
- GET /v1/query/<id or name>/execute[?near=][&limit=]: {Service, Nodes, DNS, Datacenter, Failovers, Index,
  LastContact, KnownLeader, ConsistencyLevel}, with failover across datacenters (server/prepared_query.py).
  `?connect=true` is a 400 (no Connect yet).
- GET /v1/query/<id or name>/explain: {"Query": the query as it would run (a template rendered)}.
All take ?dc= (forwarded over server RPC), ?stale/?consistent; reads and writes go to the leader.

Body parsing and validation (Consul's parseQuery/parseService/parseDNS, messages prefixed "Invalid prepared
query: "), all answered 400 (Consul answers the RPC errors with 500): a query needs a Name, a Session or a
Template ("Must be bound to a session"); Service.Service is required; Failover.NearestN >= 0; NodeMeta follows
Consul's metadata rules (64 pairs, key [A-Za-z0-9_-]{1,128}, value <= 512 characters); DNS.TTL is a Go duration
>= 0; Token "<hidden>" is refused. What needs the state (unique names, sessions, templates) is checked when the
write applies (state/prepared_queries.py) and is a 400 with its message too. Field names match case-insensitively
(not inside NodeMeta/ServiceMeta). Bounds: MAX_QUERY_BODY bytes, MAX_LIST entries in each list, MAX_STRING
characters per string.
"""

from __future__ import annotations

import re
from typing import Any

from pyconsul.agent.errors import BadRequest, CommandRejected, NotFound
from pyconsul.agent.flags import parse_duration
from pyconsul.agent.http.api import (
    Backend,
    consistency,
    decode_json,
    go_bool,
    json_response,
    read_meta_headers,
    run_read,
)
from pyconsul.agent.httpd import web
from pyconsul.agent.ids import uuid4
from pyconsul.agent.server import prepared_query
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.query_defs import PreparedQueryDef, QueryFailover, QueryTemplate, ServiceQuery

__all__ = ["MAX_LIST", "MAX_QUERY_BODY", "MAX_STRING", "parse_query", "register"]

MAX_QUERY_BODY = 64 * 1024  # bytes of a create/update body (README "Limits")
MAX_LIST = 64  # Tags, Failover.Datacenters, IgnoreCheckIDs entries
MAX_STRING = 1024  # characters of any string field
META_MAX_PAIRS, META_KEY_MAX, META_VALUE_MAX = 64, 128, 512  # Consul's metadata limits
REDACTED = "<hidden>"
_META_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INT = re.compile(r"[+-]?[0-9]{1,20}")
DECODE = "Request decode failed"
INVALID = "Invalid prepared query"


def _lower(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(k, str):
            out.setdefault(k.lower(), v)
    return out


def _obj(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = d.get(key.lower())
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BadRequest(f"{DECODE}: {where}{key} must be an object")
    return _lower(v)


def _str(d: dict[str, Any], key: str, where: str) -> str:
    v = d.get(key.lower())
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadRequest(f"{DECODE}: {where}{key} must be a string")
    if len(v) > MAX_STRING:
        raise BadRequest(f"{DECODE}: {where}{key} is longer than {MAX_STRING} characters")
    return v


def _bool(d: dict[str, Any], key: str, where: str) -> bool:
    v = d.get(key.lower())
    if v is None:
        return False
    if not isinstance(v, bool):
        raise BadRequest(f"{DECODE}: {where}{key} must be a boolean")
    return v


def _strs(d: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    v = d.get(key.lower())
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise BadRequest(f"{DECODE}: {where}{key} must be a list of strings")
    if len(v) > MAX_LIST:
        raise BadRequest(f"{DECODE}: more than {MAX_LIST} {where}{key}")
    if any(len(x) > MAX_STRING for x in v):
        raise BadRequest(f"{DECODE}: {where}{key} has a string longer than {MAX_STRING} characters")
    return tuple(v)


def _map(d: dict[str, Any], key: str, where: str) -> dict[str, str]:
    v = d.get(key.lower())
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise BadRequest(f"{DECODE}: {where}{key} must be a map of strings")
    if len(v) > META_MAX_PAIRS:
        raise BadRequest(f"{INVALID}: Node metadata cannot contain more than {META_MAX_PAIRS} key/value pairs")
    return dict(v)


def _check_meta(meta: dict[str, str]) -> None:
    """Consul's ValidateNodeMetadata(meta, allowConsulPrefix=true)."""
    for key, value in meta.items():
        why = ""
        if not key:
            why = "Key cannot be blank"
        elif not _META_KEY.fullmatch(key):
            why = "Key contains invalid characters"
        elif len(key) > META_KEY_MAX:
            why = f"Key is too long (limit: {META_KEY_MAX} characters)"
        elif len(value) > META_VALUE_MAX:
            why = f"Value is too long (limit: {META_VALUE_MAX} characters)"
        if why:
            raise BadRequest(f"{INVALID}: Couldn't load metadata pair ('{key}', '{value[:64]}'): {why}")


def parse_query(body: Any, query_id: str) -> PreparedQueryDef:
    """A create/update body -> the query (ID `query_id`); BadRequest with Consul's message when invalid."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise BadRequest(f"{DECODE}: expected a JSON object")
    b = _lower(body)
    tpl = _obj(b, "Template", "")
    svc = _obj(b, "Service", "")
    fo = _obj(svc, "Failover", "Service.")
    dns = _obj(b, "DNS", "")
    nearest = fo.get("nearestn", 0)
    if nearest is None:
        nearest = 0
    if not isinstance(nearest, int) or isinstance(nearest, bool) or abs(nearest) >= 1 << 63:
        raise BadRequest(f"{DECODE}: Service.Failover.NearestN must be an integer")
    q = PreparedQueryDef(
        id=query_id,
        name=_str(b, "Name", ""),
        session=_str(b, "Session", ""),
        token=_str(b, "Token", ""),
        template=QueryTemplate(type=_str(tpl, "Type", "Template."), regexp=_str(tpl, "Regexp", "Template."),
                               remove_empty_tags=_bool(tpl, "RemoveEmptyTags", "Template.")),
        service=ServiceQuery(
            service=_str(svc, "Service", "Service."),
            failover=QueryFailover(nearest_n=max(nearest, 0),
                                   datacenters=_strs(fo, "Datacenters", "Service.Failover.")),
            only_passing=_bool(svc, "OnlyPassing", "Service."),
            ignore_check_ids=_strs(svc, "IgnoreCheckIDs", "Service."),
            near=_str(svc, "Near", "Service."),
            tags=_strs(svc, "Tags", "Service."),
            node_meta=_map(svc, "NodeMeta", "Service."),
            service_meta=_map(svc, "ServiceMeta", "Service."),
            connect=_bool(svc, "Connect", "Service."),
        ),
        dns_ttl=_str(dns, "TTL", "DNS."),
    )
    # Consul's parseQuery, parseService and parseDNS, in their order
    if not q.name and not q.template.type and not q.session:
        raise BadRequest(f"{INVALID}: Must be bound to a session")
    if q.token == REDACTED:
        raise BadRequest(f"{INVALID}: Bad Token '{REDACTED}', it looks like a query definition with a redacted "
                         "token was submitted")
    if not q.service.service:
        raise BadRequest(f"{INVALID}: Must provide a Service name to query")
    if nearest < 0:
        raise BadRequest(f"{INVALID}: Bad NearestN '{nearest}', must be >= 0")
    _check_meta(q.service.node_meta)
    if q.dns_ttl:
        try:
            ttl = parse_duration(q.dns_ttl)
        except ValueError as exc:
            raise BadRequest(f"{INVALID}: Bad DNS TTL '{q.dns_ttl}': {exc}") from None
        if ttl < 0:
            raise BadRequest(f"{INVALID}: DNS TTL '{q.dns_ttl}', must be >=0")
    if q.service.connect:
        raise BadRequest(f"{INVALID}: Service.Connect is not supported by this agent (no Connect)")
    return q


async def _write(backend: Backend, op: str, q: PreparedQueryDef) -> bool:
    try:
        return bool(await backend.write(c.encode(c.PreparedQueryApply(op, q))))
    except CommandRejected as exc:  # a state-machine failure is Internal (a 500), not a CommandRejected
        raise BadRequest(f"{INVALID}: {exc.message}") from None


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "")
    if not raw:
        return 0
    if not _INT.fullmatch(raw):  # Go's strconv.Atoi: an optional sign and ASCII digits, nothing else
        raise BadRequest(f'Bad limit: strconv.Atoi: parsing "{raw}": invalid syntax')
    n = int(raw)
    if abs(n) >= 1 << 63:
        raise BadRequest(f'Bad limit: strconv.Atoi: parsing "{raw}": value out of range')
    return max(n, 0)


def _meta_fields(meta: Any, mode: str) -> dict[str, Any]:
    """The QueryMeta fields Consul's execute/explain responses embed."""
    return {"Index": meta.index, "LastContact": meta.last_contact_ms * 1_000_000, "KnownLeader": meta.known_leader,
            "ConsistencyLevel": {"default": "leader"}.get(mode, mode)}


def register(app: web.Application, backend: Backend, datacenters: prepared_query.DatacenterMaps,
             datacenter: str, node_name: str) -> None:
    async def create(request: web.Request) -> web.Response:
        body = decode_json(await request.read())
        if isinstance(body, dict) and _lower(body).get("id"):
            raise BadRequest(f"{INVALID}: ID must be empty when creating a new prepared query")
        q = parse_query(body, uuid4())
        await _write(backend, "create", q)
        return json_response({"ID": q.id})

    async def listing(request: web.Request) -> web.Response:
        return await run_read(request, backend, "query.list", {})

    async def get(request: web.Request) -> web.Response:
        return await run_read(request, backend, "query.get", {"id": request.match_info["id"]})

    def _not_found(qid: str) -> NotFound:
        return NotFound(f"Cannot modify non-existent prepared query: '{qid}'")

    def _query_id(request: web.Request) -> str:
        """The ID of a PUT or DELETE; .../execute and .../explain only take GET (405, as Consul)."""
        qid = request.match_info["id"]
        if qid.endswith(("/execute", "/explain")):
            raise web.HTTPMethodNotAllowed(request.method, {"GET", "HEAD"})
        return qid

    async def update(request: web.Request) -> web.Response:
        qid = _query_id(request)
        q = parse_query(decode_json(await request.read()), qid)
        if not await _write(backend, "update", q):
            raise _not_found(qid)
        return web.Response(text="")

    async def delete(request: web.Request) -> web.Response:
        qid = _query_id(request)
        if not await _write(backend, "delete", PreparedQueryDef(id=qid)):
            raise _not_found(qid)
        return web.Response(text="")

    async def execute(request: web.Request) -> web.Response:
        raw = request.query.get("connect")
        if raw is not None and (raw == "" or go_bool(raw)):
            raise BadRequest("?connect is not supported by this agent (no Connect)")
        near = request.query.get("near", "")
        limit = _limit(request)
        mode = consistency(request)
        result, meta = await prepared_query.execute(
            backend, datacenters, datacenter, request.match_info["id"], agent_node=node_name, near=near,
            limit=limit, mode=mode)
        return json_response({**result, **_meta_fields(meta, mode)}, 200, read_meta_headers(meta))

    async def explain(request: web.Request) -> web.Response:
        _limit(request)
        mode = consistency(request)
        value, meta = await backend.read("query.explain", {"name": request.match_info["id"]}, mode)
        return json_response({**value, **_meta_fields(meta, mode)}, 200, read_meta_headers(meta))

    r = app.router
    r.add_post("/v1/query", create, max_body=MAX_QUERY_BODY)
    r.add_get("/v1/query", listing)
    r.add_get("/v1/query/{id:.+}/execute", execute)
    r.add_get("/v1/query/{id:.+}/explain", explain)
    r.add_get("/v1/query/{id:.+}", get)
    r.add_put("/v1/query/{id:.+}", update, max_body=MAX_QUERY_BODY)
    r.add_delete("/v1/query/{id:.+}", delete)
