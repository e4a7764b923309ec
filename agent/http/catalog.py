"""`/v1/catalog/*`, `/v1/status/*`, `/v1/operator/raft/*` backed by the replicated store."""

from __future__ import annotations

import time
from typing import Any

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.http.api import Backend, canonical_keys, decode_json, json_response, read_meta_headers, read_query
from pyconsul.agent.httpd import web
from pyconsul.agent.state import commands as c


def _str(d: dict[str, Any], key: str, where: str) -> str:
    v = d.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadRequest(f"Request decode failed: {where}{key} must be a string")
    return v


def _str_map(d: dict[str, Any], key: str) -> dict[str, str]:
    v = d.get(key) or {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise BadRequest(f"Request decode failed: {key} must be a map of strings")
    return dict(v)


def _service(d: Any) -> c.ServiceDef | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise BadRequest("Request decode failed: Service must be an object")
    name = _str(d, "Service", "Service.")
    if not name:
        raise BadRequest("Must provide service name with ID")
    tags = d.get("Tags") or []
    port = d.get("Port", 0) or 0
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadRequest("Request decode failed: Service.Tags must be a list of strings")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise BadRequest("Request decode failed: Service.Port must be a port number")
    return c.ServiceDef(_str(d, "ID", "Service.") or name, name, tuple(tags), _str(d, "Address", "Service."),
                        _str_map(d, "Meta"), port)


def _check(d: Any, node: str) -> c.CheckDef:
    if not isinstance(d, dict):
        raise BadRequest("Request decode failed: Check must be an object")
    status = _str(d, "Status", "Check.") or "critical"
    if status not in ("passing", "warning", "critical"):
        raise BadRequest(f"Invalid check status: {status!r}")
    cid = _str(d, "CheckID", "Check.") or _str(d, "Name", "Check.")
    if not cid:
        raise BadRequest("Missing check ID")
    return c.CheckDef(cid, _str(d, "Name", "Check.") or cid, status, _str(d, "Node", "Check.") or node,
                      _str(d, "ServiceID", "Check."), _str(d, "Notes", "Check."), _str(d, "Output", "Check."))


async def _body(request: web.Request) -> dict[str, Any]:
    body = decode_json(await request.read())
    if not isinstance(body, dict):
        raise BadRequest("Request decode failed: expected a JSON object")
    out: dict[str, Any] = canonical_keys(body)
    return out


def register(app: web.Application, backend: Backend, datacenter: str) -> None:
    async def reg(request: web.Request) -> web.Response:
        b = await _body(request)
        node = _str(b, "Node", "")
        if not node:
            raise BadRequest("Missing node name")
        address = _str(b, "Address", "")
        if not address:
            raise BadRequest("Missing node address")
        checks = [_check(x, node) for x in (b.get("Checks") or [])]
        if b.get("Check"):
            checks.insert(0, _check(b["Check"], node))
        cmd = c.Register(node, address, _str(b, "ID", ""), _str(b, "Datacenter", "") or datacenter,
                         _str_map(b, "TaggedAddresses"), _str_map(b, "NodeMeta"), _service(b.get("Service")),
                         tuple(checks), bool(b.get("SkipNodeUpdate")), now=time.time())
        return json_response(bool(await backend.write(c.encode(cmd))))

    async def dereg(request: web.Request) -> web.Response:
        b = await _body(request)
        node = _str(b, "Node", "")
        if not node:
            raise BadRequest("Missing node name")
        cmd = c.Deregister(node, _str(b, "ServiceID", ""), _str(b, "CheckID", ""), now=time.time())
        return json_response(bool(await backend.write(c.encode(cmd))))

    def reader(name: str, arg: str | None = None, missing_404: bool = False) -> Any:
        async def handler(request: web.Request) -> web.Response:
            args: dict[str, Any] = {}
            if arg is not None:
                args[arg] = request.match_info[arg]
            if "tag" in request.query:
                args["tag"] = request.query["tag"]
            if "passing" in request.query:
                args["passing"] = True
            value, meta = await read_query(request, backend, name, args)
            if value is None and missing_404:
                return json_response(None, 200, read_meta_headers(meta))
            return json_response(value, 200, read_meta_headers(meta))

        return handler

    async def leader(request: web.Request) -> web.Response:
        return json_response(await backend.status("leader"))

    async def peers(request: web.Request) -> web.Response:
        return json_response(await backend.status("peers"))

    async def raft_conf(request: web.Request) -> web.Response:
        return json_response(await backend.status("raft_configuration"))

    async def raft_remove(request: web.Request) -> web.Response:
        q = request.query
        if not q.get("id") and not q.get("address"):
            raise BadRequest("Must specify either ?id with the server's ID or ?address with IP:port of peer to remove")
        await backend.status("remove_peer", {"id": q.get("id", ""), "address": q.get("address", "")})
        return web.Response(text="")

    r = app.router
    r.add_put("/v1/catalog/register", reg)
    r.add_put("/v1/catalog/deregister", dereg)
    r.add_get("/v1/catalog/nodes", reader("catalog.nodes"))
    r.add_get("/v1/catalog/services", reader("catalog.services"))
    r.add_get("/v1/catalog/service/{name}", reader("catalog.service", "name"))
    r.add_get("/v1/catalog/node/{node}", reader("catalog.node", "node", missing_404=True))
    r.add_get("/v1/health/service/{name}", reader("health.service", "name"))
    r.add_get("/v1/health/node/{node}", reader("health.node", "node"))
    r.add_get("/v1/status/leader", leader)
    r.add_get("/v1/status/peers", peers)
    r.add_get("/v1/operator/raft/configuration", raft_conf)
    r.add_delete("/v1/operator/raft/peer", raft_remove)
