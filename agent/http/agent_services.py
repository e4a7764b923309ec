"""`/v1/agent/service*`, `/v1/agent/check*`, `/v1/agent/health/service/*`, `/v1/agent/maintenance`,
`/v1/agent/reload`: the local agent's own services and checks (Consul 1.7 shapes and status codes).

Errors: bad definitions are 400 with Consul's messages (agent.local.definitions, agent.checks.parse);
unknown service or check IDs are 404; a `?filter=` that does not parse is 400 with Consul's message, which
names the position ("1:5 (4): no match found, ..."). Consul 1.7 answers a bad filter with 500; issue 12
asks for 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pyconsul.agent.errors import BadRequest, NotFound
from pyconsul.agent.http.api import decode_json, json_response, parse_wait
from pyconsul.agent.httpd import web
from pyconsul.agent.local.definitions import normalize, quote, service_json
from pyconsul.agent.local.manager import LocalAgent
from pyconsul.agent.local.state import LocalCheck, aggregate_status

__all__ = ["HEALTH_CODES", "check_json", "register"]

# /v1/agent/health/service/*: the aggregated status -> HTTP status (Consul 1.7)
HEALTH_CODES = {"passing": 200, "warning": 429, "critical": 503, "maintenance": 503}
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _definition_json(c: LocalCheck) -> dict[str, Any]:
    from pyconsul.agent.flags import format_duration

    d = c.definition
    out: dict[str, Any] = {}
    if d.http:
        out.update(HTTP=d.http, TLSSkipVerify=d.tls_skip_verify, Method=d.method,
                   Header={k: list(v) for k, v in d.header.items()})
    if d.tcp:
        out["TCP"] = d.tcp
    for key, value in (("Interval", d.interval), ("Timeout", d.timeout),
                       ("DeregisterCriticalServiceAfter", d.deregister_critical_service_after)):
        if value:
            out[key] = format_duration(value)
    return out


def check_json(c: LocalCheck, node: str) -> dict[str, Any]:
    """structs.HealthCheck of this agent, as /v1/agent/checks shows it."""
    return {
        "Node": node, "CheckID": c.check_id, "Name": c.name, "Status": c.status, "Notes": c.notes,
        "Output": c.output, "ServiceID": c.service_id, "ServiceName": c.service_name,
        "ServiceTags": list(c.service_tags), "Type": c.type, "Definition": _definition_json(c),
        "CreateIndex": 0, "ModifyIndex": 0,
    }


def _filtered(request: web.Request, path: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` (a dict result) kept to the entries the request's ?filter= for `path` holds for (compiled once
    per expression, cached; BadRequest with the position). The filter package is loaded by the first ?filter=."""
    expression = request.query.get("filter", "")
    if not expression:
        return values
    from pyconsul.agent.filter.request import request_filter

    return request_filter(expression, path).apply_values(values)


def _enable(request: web.Request) -> bool:
    raw = request.query.get("enable")
    if raw is None or raw == "":
        raise BadRequest("Missing value for enable")
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise BadRequest(f"Invalid value for enable: {quote(raw)}")


def _id(request: web.Request, what: str) -> str:
    value = request.match_info["id"]
    if not value:
        raise BadRequest(f"Missing {what} ID")
    return value


async def _body(request: web.Request) -> Any:
    return decode_json(await request.read())


def register(app: web.Application, local: LocalAgent, node_name: str,
             reload: Callable[[], Awaitable[None]] | None = None, datacenter: str = "dc1") -> None:
    def service_out(sid: str) -> dict[str, Any]:
        svc = local.service(sid)
        assert svc is not None
        # Datacenter: not in Consul 1.7's AgentService, added in later versions; clients' suites expect it
        return {**service_json(svc), "Datacenter": datacenter}

    async def services(request: web.Request) -> web.Response:
        return json_response(_filtered(request, "/v1/agent/services",
                                       {sid: service_out(sid) for sid in local.services()}))

    def hashed(sid: str) -> dict[str, Any]:
        if local.service(sid) is None:
            raise NotFound(f"unknown service ID: {sid}")
        out = service_out(sid)
        out["ContentHash"] = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:16]
        return out

    async def service(request: web.Request) -> web.Response:
        """Consul 1.7's hash-based blocking: with ?hash= equal to the current ContentHash, wait (up to ?wait,
        default 5 min) until the service changes or is removed."""
        sid = _id(request, "service")
        out = hashed(sid)
        want = request.query.get("hash")
        if want and want == out["ContentHash"]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + parse_wait(request.query.get("wait"))
            while out["ContentHash"] == want and (remaining := deadline - loop.time()) > 0:
                waiter = local.changed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await waiter.wait()
                out = hashed(sid)
        return json_response(out, headers={"X-Consul-ContentHash": str(out["ContentHash"])})

    async def service_register(request: web.Request) -> web.Response:
        await local.register_service(await _body(request),
                                     replace_existing_checks="replace-existing-checks" in request.query)
        return web.Response(text="")

    async def service_deregister(request: web.Request) -> web.Response:
        await local.deregister_service(_id(request, "service"))
        return web.Response(text="")

    async def service_maintenance(request: web.Request) -> web.Response:
        sid = _id(request, "service")
        enable = _enable(request)
        await local.service_maintenance(sid, enable, request.query.get("reason", ""))
        return web.Response(text="")

    async def node_maintenance(request: web.Request) -> web.Response:
        enable = _enable(request)
        await local.node_maintenance(enable, request.query.get("reason", ""))
        return web.Response(text="")

    def health_info(sid: str) -> tuple[str, dict[str, Any]]:
        checks = local.service_checks(sid)
        status = aggregate_status(checks)
        return status, {"AggregatedStatus": status, "Service": service_out(sid),
                        "Checks": [check_json(c, node_name) for c in checks]}

    async def health_by_id(request: web.Request) -> web.Response:
        sid = _id(request, "service")
        text = request.query.get("format") == "text"
        if local.service(sid) is None:
            return web.Response(status=404, text=f"ServiceId {sid} not found")
        status, info = health_info(sid)
        if text:
            return web.Response(status=HEALTH_CODES[status], text=status)
        return json_response(info, HEALTH_CODES[status])

    async def health_by_name(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not name:
            raise BadRequest("Missing service Name")
        text = request.query.get("format") == "text"
        ids = [sid for sid, s in local.services().items() if s.name == name]
        if not ids:
            return web.Response(status=404, text=f"ServiceName {name} Not Found")
        infos = [health_info(sid) for sid in ids]
        worst = aggregate_status([LocalCheck("", "", status=s) for s, _ in infos])
        if text:
            return web.Response(status=HEALTH_CODES[worst], text=worst)
        return json_response([i for _, i in infos], HEALTH_CODES[worst])

    async def checks(request: web.Request) -> web.Response:
        return json_response(_filtered(request, "/v1/agent/checks",
                                       {cid: check_json(c, node_name) for cid, c in local.checks().items()}))

    async def check_register(request: web.Request) -> web.Response:
        await local.register_check(await _body(request))
        return web.Response(text="")

    async def check_deregister(request: web.Request) -> web.Response:
        await local.deregister_check(_id(request, "check"))
        return web.Response(text="")

    def ttl(status: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            await local.ttl_update(_id(request, "check"), status, request.query.get("note", ""))
            return web.Response(text="")

        return handler

    async def check_update(request: web.Request) -> web.Response:
        cid = _id(request, "check")
        body = await _body(request)
        if not isinstance(body, dict):
            raise BadRequest("Request decode failed: expected a JSON object with Status and Output")
        b = normalize(body)
        status, output = b.get("status", ""), b.get("output", "")
        if not isinstance(status, str) or not isinstance(output, str):
            raise BadRequest("Request decode failed: Status and Output must be strings")
        await local.ttl_update(cid, status, output)
        return web.Response(text="")

    async def reload_(request: web.Request) -> web.Response:
        if reload is None:
            raise BadRequest("reload is not available on this agent")
        await reload()
        return web.Response(text="")

    r = app.router
    r.add_get("/v1/agent/services", services)
    r.add_get("/v1/agent/service/{id:.*}", service)
    r.add_put("/v1/agent/service/register", service_register)
    r.add_put("/v1/agent/service/deregister/{id:.*}", service_deregister)
    r.add_put("/v1/agent/service/maintenance/{id:.*}", service_maintenance)
    r.add_put("/v1/agent/maintenance", node_maintenance)
    r.add_get("/v1/agent/health/service/id/{id:.*}", health_by_id)
    r.add_get("/v1/agent/health/service/name/{name:.*}", health_by_name)
    r.add_get("/v1/agent/checks", checks)
    r.add_put("/v1/agent/check/register", check_register)
    r.add_put("/v1/agent/check/deregister/{id:.*}", check_deregister)
    r.add_put("/v1/agent/check/pass/{id:.*}", ttl("passing"))
    r.add_put("/v1/agent/check/warn/{id:.*}", ttl("warning"))
    r.add_put("/v1/agent/check/fail/{id:.*}", ttl("critical"))
    r.add_put("/v1/agent/check/update/{id:.*}", check_update)
    r.add_put("/v1/agent/reload", reload_)
