"""`/v1/session/*`: create, destroy, renew, info, list, node (Consul 1.7 shapes)."""

from __future__ import annotations

import math
import time
from typing import Any

from pyconsul.agent.errors import BadRequest, NotFound
from pyconsul.agent.flags import parse_duration
from pyconsul.agent.http.api import Backend, canonical_keys, decode_json, json_response, read_meta_headers, read_query
from pyconsul.agent.httpd import web
from pyconsul.agent.ids import uuid4
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.tables import Session

SESSION_FIELDS = ("LockDelay", "Behavior", "TTL")
MIN_TTL, MAX_TTL = 10.0, 86400.0  # Consul's session TTL bounds
LOCK_DELAY_MIN_THRESHOLD = 1000  # Consul's lockDelayMinThreshold, in nanoseconds
MAX_DURATION_NS = (1 << 63) - 1  # Go's time.Duration


def _duration(value: Any, field: str, number_unit: float) -> float:
    """A duration field in seconds: a Go duration string ("15s"), or a number of `number_unit` seconds.
    Refuses negative, non-finite and out-of-range values (400)."""
    if isinstance(value, str):
        try:
            secs = parse_duration(value)
        except ValueError as exc:
            raise BadRequest(f"Request decode failed: {field}: {exc}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        secs = value * number_unit
    else:
        raise BadRequest(f"Request decode failed: {field} must be a duration")
    if not math.isfinite(secs) or secs > MAX_DURATION_NS / 1e9:
        raise BadRequest(f"Request decode failed: {field}: duration out of range")
    if secs < 0:
        raise BadRequest(f"Request decode failed: {field} must not be negative")
    return float(secs)


def lock_delay(value: Any) -> float:
    """Consul's LockDelay rule (lockDelayMinThreshold): a number is nanoseconds, a string a Go duration,
    and a result below 1000 ns is taken as that many SECONDS (clients send 15 meaning 15 s): 15 -> 15 s,
    "15ns" -> 15 s, 5000 -> 5 us, "15s" -> 15 s. Go truncates a fractional number of nanoseconds."""
    secs = _duration(value, "LockDelay", 1e-9)
    ns = round(secs * 1e9) if isinstance(value, str) else int(value)  # Go: time.Duration(v) truncates
    if ns < LOCK_DELAY_MIN_THRESHOLD:
        return float(ns)
    return ns / 1e9


def _create_cmd(raw: bytes, default_node: str) -> c.SessionCreate:
    body = decode_json(raw, empty={})
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
    if not isinstance(node, str) or not isinstance(name, str) or not isinstance(behavior, str):
        raise BadRequest("Request decode failed: Node, Name and Behavior must be strings")
    if behavior not in ("release", "delete"):
        raise BadRequest(f"Invalid Behavior setting '{behavior}'")
    # Consul: without a Checks field the session gets serfHealth; with one (even null or []) exactly those.
    checks = b.get("Checks", ["serfHealth"])
    if checks is None:
        checks = []
    if not isinstance(checks, list) or not all(isinstance(x, str) for x in checks):
        raise BadRequest("Request decode failed: Checks must be a list of check IDs (strings)")
    ttl = _duration(b["TTL"], "TTL", 1.0) if b.get("TTL") else 0.0  # (a number: seconds; Consul wants a string)
    if ttl and not MIN_TTL <= ttl <= MAX_TTL:
        raise BadRequest(f"Invalid Session TTL '{b['TTL']}', must be between [10s=24h0m0s]")
    delay = lock_delay(b["LockDelay"]) if b.get("LockDelay") is not None else 15.0
    return c.SessionCreate(uuid4(), node, name, ttl, delay, behavior, tuple(checks), now=time.time())


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
            from pyconsul.agent.state.sessions import session_json  # the state's readers: servers, or here once

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
