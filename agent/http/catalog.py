"""`/v1/catalog/*` (register, deregister and the reads), `/v1/status/*`, `/v1/operator/raft/*`, backed by the
replicated store. The health reads are in health.py; the query parameters of both in api.py (read_args)."""

from __future__ import annotations

import time
from typing import Any

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.flags import parse_duration
from pyconsul.agent.http.api import (
    Backend,
    decode_json,
    json_response,
    read_args,
    read_meta_headers,
    read_query,
    run_read,
)
from pyconsul.agent.httpd import web
from pyconsul.agent.server.common import REQUEST_DC
from pyconsul.agent.state import commands as c

# ---------------------------------------------------------------- register body
#
# Field names match case-insensitively at every level (Go's encoding/json does), except inside maps of
# user data (Meta, NodeMeta, TaggedAddresses keys, Definition.Header). A field of the wrong type is a 400
# "Request decode failed: ..."; Consul's own checks (node, address, service name, check ID) follow.

MAX_REGISTER_CHECKS = 64  # checks in one register request (README "Limits")
MAX_DURATION = 10 * 365 * 86400.0  # a check Definition duration of ten years or more is refused


def _lower(d: dict[str, Any]) -> dict[str, Any]:
    """The object's fields by lowercased name (the first spelling wins when a client sends two)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(k, str):
            out.setdefault(k.lower(), v)
    return out


def _str(d: dict[str, Any], key: str, where: str) -> str:
    v = d.get(key.lower(), "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadRequest(f"Request decode failed: {where}{key} must be a string")
    return v


def _bool(d: dict[str, Any], key: str, where: str) -> bool:
    v = d.get(key.lower(), False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise BadRequest(f"Request decode failed: {where}{key} must be a boolean")
    return v


def _int(d: dict[str, Any], key: str, where: str, default: int = 0) -> int:
    v = d.get(key.lower(), default)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or not -(1 << 63) <= v < (1 << 63):
        raise BadRequest(f"Request decode failed: {where}{key} must be an integer")
    return v


def _obj(d: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    v = d.get(key.lower())
    if v is None:
        return None
    if not isinstance(v, dict):
        raise BadRequest(f"Request decode failed: {where}{key} must be an object")
    return v


def _str_map(d: dict[str, Any], key: str, where: str = "") -> dict[str, str]:
    v = d.get(key.lower()) or {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise BadRequest(f"Request decode failed: {where}{key} must be a map of strings")
    return dict(v)


def _duration(d: dict[str, Any], key: str, where: str) -> float:
    """A Go duration: a string ("10s", "1m30s") or a number of nanoseconds, as Consul's decoder takes it."""
    v = d.get(key.lower())
    if v is None or v == "":
        return 0.0
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise BadRequest(f"Request decode failed: {where}{key} must be a duration")
    if isinstance(v, str):
        try:
            seconds = parse_duration(v)
        except ValueError as exc:
            raise BadRequest(f"Request decode failed: {where}{key}: {exc}") from None
    else:
        seconds = v / 1e9
    if not 0 <= seconds < MAX_DURATION:
        raise BadRequest(f"Request decode failed: {where}{key} out of range")
    return seconds


def _tagged_addresses(d: dict[str, Any]) -> dict[str, c.ServiceAddress]:
    raw = _obj(d, "TaggedAddresses", "Service.") or {}
    out: dict[str, c.ServiceAddress] = {}
    for tag, addr in raw.items():
        where = f"Service.TaggedAddresses[{tag}]."
        if not isinstance(tag, str) or not isinstance(addr, dict):
            raise BadRequest("Request decode failed: Service.TaggedAddresses must map names to "
                             '{"Address": ..., "Port": ...} objects')
        a = _lower(addr)
        port = _int(a, "Port", where)
        if not 0 <= port <= 65535:
            raise BadRequest(f"Request decode failed: {where}Port must be a port number")
        out[tag] = c.ServiceAddress(_str(a, "Address", where), port)
    return out


def _service(raw: Any) -> c.ServiceDef | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest("Request decode failed: Service must be an object")
    d = _lower(raw)
    name = _str(d, "Service", "Service.")
    if not name:
        raise BadRequest("Must provide service name with ID")
    tags = d.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadRequest("Request decode failed: Service.Tags must be a list of strings")
    port = _int(d, "Port", "Service.")
    if not 0 <= port <= 65535:
        raise BadRequest("Request decode failed: Service.Port must be a port number")
    passing, warning = 1, 1
    weights = _obj(d, "Weights", "Service.")
    if weights is not None:
        w = _lower(weights)
        passing, warning = _int(w, "Passing", "Service.Weights."), _int(w, "Warning", "Service.Weights.")
        if passing < 1 or warning < 0:  # Consul's ToServiceNode: invalid weights become the defaults
            passing, warning = 1, 1
    return c.ServiceDef(
        id=_str(d, "ID", "Service.") or name, service=name, tags=tuple(tags), address=_str(d, "Address", "Service."),
        meta=_str_map(d, "Meta", "Service."), port=port, tagged_addresses=_tagged_addresses(d),
        weights_passing=passing, weights_warning=warning,
        enable_tag_override=_bool(d, "EnableTagOverride", "Service."))


def _definition(d: dict[str, Any]) -> c.CheckDefinition:
    raw = _obj(d, "Definition", "Check.")
    if raw is None:
        return c.CheckDefinition()
    x = _lower(raw)
    where = "Check.Definition."
    header_raw = x.get("header") or {}
    if not isinstance(header_raw, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(i, str) for i in v)
            for k, v in header_raw.items()):
        raise BadRequest(f"Request decode failed: {where}Header must map names to lists of strings")
    return c.CheckDefinition(
        http=_str(x, "HTTP", where), tls_skip_verify=_bool(x, "TLSSkipVerify", where),
        header={k: tuple(v) for k, v in header_raw.items()}, method=_str(x, "Method", where),
        tcp=_str(x, "TCP", where), interval=_duration(x, "Interval", where), timeout=_duration(x, "Timeout", where),
        deregister_critical_service_after=_duration(x, "DeregisterCriticalServiceAfter", where))


def _check(raw: Any, node: str) -> c.CheckDef:
    if not isinstance(raw, dict):
        raise BadRequest("Request decode failed: Check must be an object")
    d = _lower(raw)
    status = _str(d, "Status", "Check.") or "critical"
    if status not in ("passing", "warning", "critical"):
        raise BadRequest(f"Invalid check status: {status!r}")
    cid = _str(d, "CheckID", "Check.") or _str(d, "Name", "Check.")
    if not cid:
        raise BadRequest("Missing check ID")
    return c.CheckDef(
        check_id=cid, name=_str(d, "Name", "Check.") or cid, status=status, node=_str(d, "Node", "Check.") or node,
        service_id=_str(d, "ServiceID", "Check."), notes=_str(d, "Notes", "Check."),
        output=_str(d, "Output", "Check."), type=_str(d, "Type", "Check."), definition=_definition(d))


async def _body(request: web.Request) -> dict[str, Any]:
    body = decode_json(await request.read())
    if not isinstance(body, dict):
        raise BadRequest("Request decode failed: expected a JSON object")
    return _lower(body)


def parse_register(b: dict[str, Any], datacenter: str, now: float) -> c.Register:
    """A register body (fields by lowercased name) -> the Register command. `datacenter` is the body's
    Datacenter or, when it has none, the local one (Consul stores the request's datacenter on the node)."""
    node = _str(b, "Node", "")
    if not node:
        raise BadRequest("Missing node name")
    skip = _bool(b, "SkipNodeUpdate", "")
    address = _str(b, "Address", "")
    if not address and not skip:
        raise BadRequest("Missing node address")
    many = b.get("checks") or []
    if not isinstance(many, list):
        raise BadRequest("Request decode failed: Checks must be a list")
    checks = [_check(x, node) for x in many]
    if b.get("check"):
        checks.insert(0, _check(b["check"], node))
    if len(checks) > MAX_REGISTER_CHECKS:
        raise BadRequest(f"Too many checks in one registration: {len(checks)} (at most {MAX_REGISTER_CHECKS})")
    return c.Register(node, address, _str(b, "ID", ""), datacenter, _str_map(b, "TaggedAddresses"),
                      _str_map(b, "NodeMeta"), _service(b.get("service")), tuple(checks), skip, now=now)


async def _write_to(backend: Backend, dc: str, cmd: c.Command) -> Any:
    """Write `cmd` in datacenter `dc` (ours: through our leader; another: forwarded to one of its servers,
    or NoPathToDatacenter). The body's Datacenter decides, not ?dc=, as in Consul's CatalogRegister."""
    token = REQUEST_DC.set(dc)
    try:
        return await backend.write(c.encode(cmd))
    finally:
        REQUEST_DC.reset(token)


def register(app: web.Application, backend: Backend, datacenter: str, node_name: str = "") -> None:
    async def reg(request: web.Request) -> web.Response:
        b = await _body(request)
        dc = _str(b, "Datacenter", "").strip().lower() or datacenter
        cmd = parse_register(b, dc, time.time())
        return json_response(bool(await _write_to(backend, dc, cmd)))

    async def dereg(request: web.Request) -> web.Response:
        b = await _body(request)
        node = _str(b, "Node", "")
        if not node:
            raise BadRequest("Missing node name")
        dc = _str(b, "Datacenter", "").strip().lower() or datacenter
        cmd = c.Deregister(node, _str(b, "ServiceID", ""), _str(b, "CheckID", ""), now=time.time())
        return json_response(bool(await _write_to(backend, dc, cmd)))

    def reader(name: str, arg: str | None = None, missing: str = "", **params: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            args = read_args(request, node_name, **params)
            if arg is not None:
                args[arg] = request.match_info[arg]
                if not args[arg]:
                    raise BadRequest(missing)
            return await run_read(request, backend, name, args)

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

    async def autopilot_conf(request: web.Request) -> web.Response:
        return json_response(await backend.status("autopilot_configuration"))

    async def autopilot_set(request: web.Request) -> web.Response:
        """The leader's autopilot settings (server/autopilot.py config_from_json has the bounds); ?cas=."""
        cas: int | None = None
        if "cas" in request.query:
            raw = request.query["cas"]
            if not raw.isascii() or not raw.isdigit() or len(raw) > 20 or int(raw) >= 2**64:
                raise BadRequest(f"Error parsing cas value: {raw!r} is not an unsigned 64-bit integer")
            cas = int(raw)
        body = decode_json(await request.read())
        from pyconsul.agent.server.autopilot import AutopilotConfig, config_from_json  # here: clients rarely need it

        try:  # the bounds, on whichever agent took the request (an out-of-range integer cannot even be forwarded)
            config_from_json(body, AutopilotConfig())
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return json_response(bool(await backend.status("autopilot_set_configuration", {"config": body, "cas": cas})))

    async def autopilot_health(request: web.Request) -> web.Response:
        """429 unless every server is healthy, as Consul."""
        reply = await backend.status("autopilot_health")
        return json_response(reply, 200 if reply.get("Healthy") else 429)

    r = app.router
    r.add_put("/v1/catalog/register", reg)
    r.add_put("/v1/catalog/deregister", dereg)
    r.add_get("/v1/catalog/nodes", reader("catalog.nodes", endpoint="/v1/catalog/nodes", node_meta=True, near=True))
    r.add_get("/v1/catalog/services", reader("catalog.services", endpoint="/v1/catalog/services", node_meta=True))
    r.add_get("/v1/catalog/service/{name:.*}", reader(
        "catalog.service", "name", "Missing service name", endpoint="/v1/catalog/service/", tags=True,
        node_meta=True, near=True))
    r.add_get("/v1/catalog/connect/{name:.*}", connect_reader(
        backend, node_name, "catalog.service", endpoint="/v1/catalog/service/", tags=True, node_meta=True,
        near=True))
    r.add_get("/v1/catalog/node/{node:.*}", reader("catalog.node", "node", "Missing node name",
                                                   endpoint="/v1/catalog/node/"))
    r.add_get("/v1/catalog/node-services/{node:.*}", reader(
        "catalog.node_services", "node", "Missing node name", endpoint="/v1/catalog/node-services/"))
    r.add_get("/v1/status/leader", leader)
    r.add_get("/v1/status/peers", peers)
    r.add_get("/v1/operator/raft/configuration", raft_conf)
    r.add_delete("/v1/operator/raft/peer", raft_remove)
    r.add_get("/v1/operator/autopilot/configuration", autopilot_conf)
    r.add_put("/v1/operator/autopilot/configuration", autopilot_set)
    r.add_get("/v1/operator/autopilot/health", autopilot_health)


def connect_reader(backend: Backend, node_name: str, name: str, **params: Any) -> Any:
    """`/v1/{catalog,health}/connect/<service>`: no Connect proxies exist here (Connect is not built), so the
    answer is Consul 1.7's `[]` for a service without proxies, carrying the index (and blocking) of the
    service's named read `name`."""
    async def handler(request: web.Request) -> web.Response:
        args = read_args(request, node_name, **params)
        args["name"] = request.match_info["name"]
        if not args["name"]:
            raise BadRequest("Missing service name")
        _, meta = await read_query(request, backend, name, args)
        return json_response([], 200, read_meta_headers(meta))

    return handler
