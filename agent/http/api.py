"""The Consul API's helpers, shared by the route modules: what the HTTP layer needs from the agent
(AgentAPI) and from the servers (Backend), Consul's JSON and query-parameter conventions, blocking-query
parameters and the X-Consul-* headers. It imports no route module and no app: the route modules depend
on it, `agent.http.server` (the app) depends on them.
"""

from __future__ import annotations

import json
import random
from typing import Any, Protocol

from agent.errors import BadRequest
from agent.gossip.serf import Member
from agent.httpd import web

__all__ = [
    "CONSUL_FIELDS", "DEFAULT_WAIT", "MAX_WAIT", "AgentAPI", "Backend", "ReadMetaLike", "canonical_keys",
    "consistency", "flag", "json_response", "member_json", "parse_uint", "parse_wait", "read_meta_headers",
    "read_query",
]


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
