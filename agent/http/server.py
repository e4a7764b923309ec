"""The Consul HTTP API (`/v1/...`) on `agent.httpd.web`: app factory, error mapping, shared helpers.

Errors follow Consul: plain-text bodies, 400 for bad requests, 404 for unknown paths,
405 for wrong methods, 500 for server-side failures. No traceback ever reaches a client.
Handlers and backends RAISE typed errors (agent/errors.py); the `errors` middleware is the one place
that turns them into status codes (ERROR_STATUS).
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any, Protocol

from agent.errors import BadRequest, NotFound, PermissionDenied, PyconsulError
from agent.gossip.serf import Member
from agent.httpd import web

log = logging.getLogger("agent.http")


class AgentAPI(Protocol):
    """What the HTTP layer needs from the agent (implemented by agent.agent.Agent)."""

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
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(f"Invalid {name} value: {raw!r} is not an unsigned integer") from None
    if v < 0:
        raise BadRequest(f"Invalid {name} value: {raw!r} is not an unsigned integer")
    return v


def parse_wait(raw: str | None) -> float:
    if not raw:
        return DEFAULT_WAIT
    from agent.flags import parse_duration

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


# Consul's mapping (agent/http.go): typed client errors get their 4xx; everything else -- NoLeader
# ("No cluster leader"), NoPathToDatacenter, NotLeader, Unavailable, RequestTimeout, CommandRejected,
# Internal and untyped exceptions -- is a 500 with the error's text. First match wins (subclasses first).
ERROR_STATUS: tuple[tuple[type[PyconsulError], int], ...] = (
    (BadRequest, 400),
    (PermissionDenied, 403),
    (NotFound, 404),
)


def error_status(exc: BaseException) -> int:
    """The HTTP status for an exception a handler raised."""
    for cls, status in ERROR_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


async def errors(request: web.Request, handler: Any) -> web.Response:
    from agent.server.common import REQUEST_DC

    token = REQUEST_DC.set(request.query.get("dc", "").strip().lower())
    try:
        resp: web.Response = await handler(request)
        return resp
    except web.HTTPException:
        raise
    except Exception as exc:
        status = error_status(exc)
        if status >= 500:
            if isinstance(exc, PyconsulError):  # an expected failure: no traceback
                log.warning("request %s %s failed: %s", request.method, request.path, exc)
            else:
                log.exception("request %s %s failed", request.method, request.path)
        return web.Response(status=status, text=f"{str(exc) or type(exc).__name__}\n")
    finally:
        REQUEST_DC.reset(token)


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


def make_app(api: AgentAPI, backend: Backend | None = None, datacenter: str = "dc1",
             node_name: str = "") -> web.Application:
    from agent.http import agent_routes, catalog, kv, session, snapshot

    # Bodies up to 64 MiB (snapshot restores); KV values and transactions keep their own limits.
    app = web.Application(middlewares=[errors], client_max_size=snapshot.MAX_ARCHIVE)
    agent_routes.register(app, api)
    if backend is not None:
        kv.register(app, backend)
        catalog.register(app, backend, datacenter)
        session.register(app, backend, node_name)
        snapshot.register(app, backend)  # unknown paths: 404, known path with another method: 405
    return app
