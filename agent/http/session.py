"""`/v1/session/*`: create, destroy, renew, info, list, node (Consul 1.7 shapes)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from agent.errors import BadRequest, NotFound
from agent.flags import parse_duration
from agent.http.api import Backend, canonical_keys, json_response, read_meta_headers, read_query
from agent.httpd import web
from agent.state import commands as c
from agent.state.sessions import session_json
from agent.state.tables import Session

SESSION_FIELDS = ("LockDelay", "Behavior", "TTL")
MIN_TTL, MAX_TTL = 10.0, 86400.0  # Consul's session TTL bounds


def _duration(value: Any, field: str, *, ns_numbers: bool) -> float:
    """Consul accepts "15s" strings, and for LockDelay also plain numbers of nanoseconds
    (numbers below 1,000,000 are taken as seconds, as Consul does)."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            raise BadRequest(f"Request decode failed: {field}: invalid duration {value!r}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        if ns_numbers and value >= 1_000_000:
            return float(value) / 1e9
        return float(value)
    raise BadRequest(f"Request decode failed: {field} must be a duration")


def _create_cmd(raw: bytes, default_node: str) -> c.SessionCreate:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("Request decode failed: expected a JSON object")
    lowered = {k.lower(): v for k, v in body.items() if isinstance(k, str)}
    b = canonical_keys(body)
    for f in SESSION_FIELDS:
        if f not in b and f.lower() in lowered:
            b[f] = lowered[f.lower()]
    node = b.get("Node") or default_node
    name = b.get("Name") or ""
    behavior = b.get("Behavior") or "release"
    checks = b.get("Checks")
    if not isinstance(node, str) or not isinstance(name, str):
        raise BadRequest("Request decode failed: Node and Name must be strings")
    if behavior not in ("release", "delete"):
        raise BadRequest(f"Invalid Behavior setting '{behavior}'")
    if checks is None:
        checks = ["serfHealth"]
    if not isinstance(checks, list) or not all(isinstance(x, str) for x in checks):
        raise BadRequest("Request decode failed: Checks must be a list of strings")
    ttl = _duration(b["TTL"], "TTL", ns_numbers=False) if b.get("TTL") else 0.0
    if ttl and not MIN_TTL <= ttl <= MAX_TTL:
        raise BadRequest(f"Invalid Session TTL '{b['TTL']}', must be between [10s=24h0m0s]")
    delay = _duration(b["LockDelay"], "LockDelay", ns_numbers=True) if "LockDelay" in b else 15.0
    return c.SessionCreate(str(uuid.uuid4()), node, name, ttl, delay, behavior, tuple(checks), now=time.time())


def register(app: web.Application, backend: Backend, node_name: str) -> None:
    async def create(request: web.Request) -> web.Response:
        cmd = _create_cmd(await request.read(), node_name)
        return json_response({"ID": await backend.write(c.encode(cmd))})

    async def destroy(request: web.Request) -> web.Response:
        cmd = c.SessionDestroy(request.match_info["id"], now=time.time())
        await backend.write(c.encode(cmd))
        return json_response(True)

    async def renew(request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        result = await backend.write(c.encode(c.SessionRenew(sid, now=time.time())))
        if isinstance(result, Session):
            return json_response([session_json(result)])
        raise NotFound(f"Session id '{sid}' not found")

    def reader(name: str, arg: str | None) -> Any:
        async def handler(request: web.Request) -> web.Response:
            args = {arg: request.match_info[arg]} if arg else {}
            value, meta = await read_query(request, backend, name, args)
            return json_response(value, 200, read_meta_headers(meta))

        return handler

    r = app.router
    r.add_put("/v1/session/create", create)
    r.add_put("/v1/session/destroy/{id}", destroy)
    r.add_put("/v1/session/renew/{id}", renew)
    r.add_get("/v1/session/info/{id}", reader("session.info", "id"))
    r.add_get("/v1/session/list", reader("session.list", None))
    r.add_get("/v1/session/node/{node}", reader("session.node", "node"))
