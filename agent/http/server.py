"""The Consul HTTP API (`/v1/...`) on aiohttp: app factory, error mapping, shared helpers.

Errors follow Consul: plain-text bodies, 400 for bad requests, 404 for unknown paths,
405 for wrong methods, 500 for server-side failures. No traceback ever reaches a client.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from aiohttp import web

from agent.gossip.serf import Member

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


class BadRequest(Exception):
    """Raised by handlers for a client error; becomes a 400 with the message."""


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(data)
    return web.Response(text=body, status=status, content_type="application/json", headers=headers)


def flag(request: web.Request, name: str) -> bool:
    """Consul query flags: present (`?wan`), `=1`, or `=true` mean on."""
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("0", "false")


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except web.HTTPException:
        raise
    except BadRequest as exc:
        return web.Response(status=400, text=f"{exc}\n")
    except Exception as exc:
        log.exception("request %s %s failed", request.method, request.path)
        return web.Response(status=500, text=f"{exc}\n")


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


def make_app(api: AgentAPI) -> web.Application:
    from agent.http import agent_routes

    app = web.Application(middlewares=[errors], client_max_size=1024 * 1024)
    agent_routes.register(app, api)  # unknown paths: 404, known path with another method: 405
    return app
