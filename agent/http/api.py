"""The Consul API's helpers, shared by the route modules: what the HTTP layer needs from the agent
(AgentAPI) and from the servers (Backend), Consul's JSON and query-parameter conventions, blocking-query
parameters and the X-Consul-* headers. It imports no route module and no app: the route modules depend
on it, `agent.http.server` (the app) depends on them.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Protocol

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.gossip.serf import Member
from pyconsul.agent.httpd import web

__all__ = [
    "CONSUL_FIELDS", "DEFAULT_MAX_BODY", "DEFAULT_WAIT", "MAX_JSON_DEPTH", "MAX_NODE_META", "MAX_TAGS", "MAX_WAIT",
    "U64", "AgentAPI", "Backend", "ReadMetaLike", "body_too_large", "canonical_keys", "consistency", "decode_json",
    "flag", "go_bool", "json_response", "member_json", "parse_uint", "parse_wait", "read_args", "read_meta_headers",
    "read_query", "run_read", "shown_key",
]

U64 = 1 << 64  # Consul's indexes, flags and CAS values are uint64
DEFAULT_MAX_BODY = 1024 * 1024  # request bodies of routes without their own limit (README "Limits")
MAX_JSON_DEPTH = 64  # nesting of JSON request bodies (Consul's are at most ~5 deep)


class AgentAPI(Protocol):
    """What the HTTP layer needs from the agent (implemented by agent.facade.AgentFacade)."""

    def members(self, wan: bool) -> list[Member]: ...
    async def join(self, addr: str, wan: bool) -> tuple[int, list[str]]: ...
    async def leave(self) -> None: ...
    def force_leave(self, node: str, prune: bool, wan: bool) -> bool: ...
    def self_info(self) -> dict[str, Any]: ...
    async def keyring(self, op: str, key: str | None) -> list[dict[str, Any]]: ...
    def datacenters(self) -> list[str]: ...
    async def list_datacenters(self) -> list[str]: ...


class ReadMetaLike(Protocol):
    index: int
    known_leader: bool
    last_contact_ms: int


class Backend(Protocol):
    """Where KV/catalog requests go: the local Consul server, or (on clients) a server over RPC."""

    async def write(self, data: bytes) -> Any: ...
    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]: ...
    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any: ...


CONSUL_FIELDS = (
    "Node", "Address", "ID", "Datacenter", "TaggedAddresses", "NodeMeta", "Service", "Tags", "Port", "Meta",
    "Check", "Checks", "CheckID", "Name", "Status", "ServiceID", "Notes", "Output", "SkipNodeUpdate",
    "KV", "Verb", "Key", "Value", "Flags", "Index", "Session",
)
_CANONICAL = {f.lower(): f for f in CONSUL_FIELDS}


def canonical_keys(obj: Any) -> Any:
    """Go's encoding/json matches struct fields case-insensitively, so clients send `"node"` as
    often as `"Node"` (py-consul does). Rename known Consul fields to their canonical spelling,
    recursively; user data inside maps such as Meta keeps its keys."""
    if isinstance(obj, list):
        return [canonical_keys(x) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict[Any, Any] = {}
    for k, v in obj.items():
        name = _CANONICAL.get(k.lower(), k) if isinstance(k, str) else k
        out[name] = v if name in ("Meta", "NodeMeta", "TaggedAddresses") else canonical_keys(v)
    return out


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(data)
    return web.Response(text=body, status=status, content_type="application/json", headers=headers)


DEFAULT_WAIT = 300.0  # Consul: blocking queries wait 5 minutes by default ...
MAX_WAIT = 600.0  # ... and at most 10


def parse_uint(q: Any, name: str, default: int) -> int:
    """A uint64 query parameter, as Go's strconv.ParseUint(s, 10, 64): ASCII digits only (no sign,
    spaces or underscores) and below 2**64; anything else is a 400 "Invalid <name>"."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or int(raw) >= U64:
        raise BadRequest(f"Invalid {name}: {raw!r} is not an unsigned 64-bit integer")
    return int(raw)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")  # NaN, Infinity: not JSON (Go refuses them too)


def decode_json(raw: bytes, what: str = "Request decode failed", empty: Any = None) -> Any:
    """A JSON request body, or BadRequest("<what>: <reason>"). Refuses NaN/Infinity, numbers that
    overflow a float, and nesting deeper than MAX_JSON_DEPTH (so no handler recurses without bound);
    lone UTF-16 surrogate escapes become U+FFFD, as Go decodes them. `empty` is the value of an empty body."""
    if not raw.strip():
        return empty
    try:
        obj = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # also UnicodeDecodeError and int() digit limits
        raise BadRequest(f"{what}: {exc}") from None
    stack: list[tuple[Any, int]] = [(obj, 1)] if isinstance(obj, dict | list) else []
    while stack:  # iterative: the depth check must not recurse itself
        o, depth = stack.pop()
        items = o.values() if isinstance(o, dict) else o
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        for x in items:
            if isinstance(x, dict | list):
                stack.append((x, depth + 1))
            elif isinstance(x, float) and x in (float("inf"), float("-inf")):
                raise BadRequest(f"{what}: number out of range")
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        raise BadRequest(f"{what}: number out of range")
    return _fix_surrogates(obj) if _SURROGATE_ESCAPE.search(raw) else obj


def _fix_surrogates(obj: Any) -> Any:
    """Lone surrogates (from JSON escapes; a valid pair is already one character) -> U+FFFD. Depth <= MAX_JSON_DEPTH."""
    if isinstance(obj, str):
        return _SURROGATES.sub("\ufffd", obj)
    if isinstance(obj, list):
        return [_fix_surrogates(x) for x in obj]
    if isinstance(obj, dict):
        return {_fix_surrogates(k): _fix_surrogates(v) for k, v in obj.items()}
    return obj


def body_too_large(request: web.Request, limit: int) -> web.Response:
    """Consul's 413 for a body above `limit` (its text, without the link to Consul's docs)."""
    n = request.content_length
    size = f"{n} bytes" if n is not None else f"more than {limit} bytes"  # chunked: stopped at the limit
    return web.Response(status=413, text=f"Request body({size}) too large, max size: {limit} bytes\n")


def shown_key(key: str) -> str:
    """A KV key as Consul's JSON shows it: bytes that are not UTF-8 become U+FFFD (the key itself keeps
    them; `?raw` and the key's own path still name it exactly)."""
    if key.isascii():
        return key
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_wait(raw: str | None) -> float:
    if not raw:
        return DEFAULT_WAIT
    from pyconsul.agent.flags import parse_duration

    try:
        w = parse_duration(raw)
    except ValueError:
        raise BadRequest(f"Invalid wait time: {raw!r}") from None
    return min(max(w, 0.0), MAX_WAIT)


def consistency(request: web.Request) -> str:
    if flag(request, "consistent") and flag(request, "stale"):
        raise BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
    if flag(request, "consistent"):
        return "consistent"
    return "stale" if flag(request, "stale") else "default"


async def read_query(request: web.Request, backend: Backend, name: str, args: dict[str, Any]) -> tuple[Any, Any]:
    """Run a named read with the request's consistency mode and blocking parameters."""
    index = parse_uint(request.query, "index", 0)
    wait = parse_wait(request.query.get("wait")) if index else 0.0
    if wait:
        wait += random.uniform(0, wait / 16)  # Consul adds up to wait/16 of jitter
    return await backend.read(name, args, consistency(request), index, wait)


def read_meta_headers(meta: Any) -> dict[str, str]:
    return {
        "X-Consul-Index": str(meta.index),
        "X-Consul-KnownLeader": "true" if meta.known_leader else "false",
        "X-Consul-LastContact": str(meta.last_contact_ms),
    }


def flag(request: web.Request, name: str) -> bool:
    """Consul query flags: present (`?wan`), `=1`, or `=true` mean on."""
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("0", "false")


def member_json(m: Member) -> dict[str, Any]:
    v = tuple(m.vsn) + (0,) * (6 - len(m.vsn))
    return {
        "Name": m.name,
        "Addr": m.addr,
        "Port": m.port,
        "Tags": m.tags,
        "Status": int(m.status),
        "ProtocolMin": v[0],
        "ProtocolMax": v[1],
        "ProtocolCur": v[2],
        "DelegateMin": v[3],
        "DelegateMax": v[4],
        "DelegateCur": v[5],
    }


# ---------------------------------------------------------------- catalog and health read parameters
#
# The query parameters of the catalog and health reads (Consul 1.7), used by catalog.py and health.py:
# - `?tag=` (repeated; every tag must be on the instance, case-insensitively);
# - `?node-meta=key:value` (repeated; Consul's ParseMetaPair: split at the first ":", no ":" = empty value);
# - `?filter=` (the go-bexpr language; compiled here against the endpoint's schema so a bad one is an
#   immediate 400, before any blocking wait, and again by the server that answers, which applies it);
# - `?near=` (a node name, `_agent` = this agent's node: sort by round-trip time from it);
# - `?passing` (Go's strconv.ParseBool; bare `?passing` = true; else 400 "Invalid value for ?passing").
# Bounds: at most MAX_TAGS tags and MAX_NODE_META node-meta pairs (400 beyond); the request line's own
# limit bounds their length, filter.MAX_EXPRESSION_LENGTH the filter's.

MAX_TAGS = 64
MAX_NODE_META = 64
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def go_bool(raw: str) -> bool | None:
    """Go's strconv.ParseBool, None when it would fail."""
    return True if raw in _TRUE else False if raw in _FALSE else None


def read_args(request: web.Request, node_name: str, *, endpoint: str | None = None, tags: bool = False,
              node_meta: bool = False, near: bool = False, passing: bool = False) -> dict[str, Any]:
    """The named-read arguments for the parameters this endpoint takes (see the module docstring)."""
    q = request.query
    args: dict[str, Any] = {}
    if tags and "tag" in q:
        wanted = q.getall("tag")
        if len(wanted) > MAX_TAGS:
            raise BadRequest(f"Too many ?tag parameters: {len(wanted)} (at most {MAX_TAGS})")
        args["tags"] = wanted
    if node_meta and "node-meta" in q:
        pairs = q.getall("node-meta")
        if len(pairs) > MAX_NODE_META:
            raise BadRequest(f"Too many ?node-meta parameters: {len(pairs)} (at most {MAX_NODE_META})")
        meta: dict[str, str] = {}
        for raw in pairs:
            key, _, value = raw.partition(":")
            meta[key] = value
        args["node_meta"] = meta
    if endpoint is not None and q.get("filter"):
        from pyconsul.agent.filter.request import request_filter  # loaded by the first ?filter=

        request_filter(q["filter"], endpoint)  # BadRequest now, before any blocking wait
        args["filter"] = q["filter"]
    if near and q.get("near"):
        args["near"] = node_name if q["near"] == "_agent" else q["near"]
    if passing and "passing" in q:
        raw = q["passing"]
        on = True if raw == "" else go_bool(raw)
        if on is None:
            raise BadRequest("Invalid value for ?passing")
        if on:
            args["passing"] = True
    return args


async def run_read(request: web.Request, backend: Backend, name: str, args: dict[str, Any]) -> web.Response:
    """Run named read `name` (consistency mode, ?index/?wait blocking, ?dc forwarding) and answer with its
    JSON and the X-Consul-* headers."""
    value, meta = await read_query(request, backend, name, args)
    return json_response(value, 200, read_meta_headers(meta))
