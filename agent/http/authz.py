"""ACL enforcement on the HTTP API: the request's token, its Authorizer, and the rules of the endpoints the
agent answers itself.

- request_token(request): the token a request carries, as Consul 1.7's parseToken: `?token=` first, then the
  `X-Consul-Token` header, then `Authorization: Bearer <token>`; with none, the agent's acl.tokens.default
  (Consul's UserToken), else "" (the anonymous token). At most acl_enforce.MAX_TOKEN bytes (else 403 "ACL not found",
  as an unknown token).
- The `errors` middleware (agent/http/server.py) sets acl_enforce.REQUEST_TOKEN for every request, so the
  server that answers a read or applies a write -- here, or over server RPC -- enforces that token
  (agent/server/acl_enforce.py: KV, catalog, health, sessions, prepared queries, coordinates, snapshot,
  operator raft, forwarded events). Only when ACLs are enabled does it `await enforce(request, handler)`:
  with them off a request costs one header lookup and a context-variable set, no extra await.
- enforce(): the Authorizer of the token, ROUTE rules for what the agent answers itself (agent endpoints,
  keyring, monitor, join/leave/force-leave, local services and checks, events; snapshot and operator raft
  are pre-checked here too, so a denied restore is refused before it travels), then the handler, then the
  response filtered where Consul filters (members by node read, local services and checks by service or
  node read, events by event read).
- /v1/agent/self is always redacted (redact(): tokens and the gossip key read "hidden"), ACLs on or off.
- configure(app, resolver, node_name, local): wires an app to the agent's TokenResolver (None: ACLs off).
- authorizer_for(request): the Authorizer of a request (ALLOW_ALL when ACLs are off), for route code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from pyconsul.agent.acl.authz import ALLOW_ALL, Authorizer
from pyconsul.agent.errors import PermissionDenied
from pyconsul.agent.httpd import web
from pyconsul.agent.server.acl_enforce import MAX_TOKEN, REQUEST_TOKEN

__all__ = [
    "REQUEST_AUTHZ",
    "REQUEST_TOKEN",
    "Resolver",
    "acl_enabled",
    "authorizer_for",
    "begin",
    "configure",
    "enforce",
    "filter_response",
    "redact",
    "request_token",
    "require",
    "route_allowed",
]


class Resolver(Protocol):
    """agent/acl's TokenResolver, as enforcement sees it."""

    async def resolve(self, secret: str | None) -> Authorizer: ...
    def enabled(self) -> bool: ...
    def default_token(self) -> str: ...


class LocalView(Protocol):
    """What the rules need of the agent's own services and checks (agent.local.manager.LocalAgent)."""

    def services(self) -> Any: ...
    def checks(self) -> Any: ...


@dataclass(slots=True)
class _AppACL:
    resolver: Resolver | None
    node: str
    local: LocalView | None


_ATTR = "_pyconsul_acl"  # the app's _AppACL (an attribute: read on every request, cheaper than a mapping)


def _conf(app: web.Application) -> _AppACL | None:
    conf: _AppACL | None = getattr(app, _ATTR, None)
    return conf

# the Authorizer of the HTTP request being served (set by enforce(); unset with ACLs off)
REQUEST_AUTHZ: ContextVar[Authorizer | None] = ContextVar("pyconsul_request_authz", default=None)


def configure(app: web.Application, resolver: Resolver | None, node_name: str,
              local: LocalView | None = None) -> None:
    setattr(app, _ATTR, _AppACL(resolver, node_name, local))


def acl_enabled(app: web.Application) -> bool:
    """Cheap: whether this app enforces ACLs (a configured resolver that is enabled)."""
    conf = _conf(app)
    return conf is not None and conf.resolver is not None and conf.resolver.enabled()


def begin(request: web.Request) -> tuple[str, bool]:
    """For the `errors` middleware, on every request: (the request's token, whether ACLs are enforced here)."""
    conf = _conf(request.app)
    on = conf is not None and conf.resolver is not None and conf.resolver.enabled()
    return _token(request, conf if on else None), on


def request_token(request: web.Request) -> str:
    """The request's token (see the module docstring); "" for none."""
    conf = _conf(request.app)
    on = conf is not None and conf.resolver is not None and conf.resolver.enabled()
    return _token(request, conf if on else None)


def _token(request: web.Request, conf: _AppACL | None) -> str:
    tok = ""
    if "token=" in request.query_string:
        tok = request.query.get("token", "")
    if not tok:
        headers = request.headers
        if "X-Consul-Token" in headers:
            tok = headers["X-Consul-Token"]
        if not tok and "Authorization" in headers:
            auth = headers["Authorization"]
            if auth:
                parts = auth.split(" ")
                if len(parts) == 2 and parts[0].lower() == "bearer":
                    tok = parts[1].strip()
    if len(tok) > MAX_TOKEN:
        raise PermissionDenied("ACL not found")
    if not tok and conf is not None and conf.resolver is not None:
        tok = conf.resolver.default_token()  # Consul: the agent's acl.tokens.default, sent as such to servers
    return tok


async def authorizer_for(request: web.Request) -> Authorizer:
    """The Authorizer of the request's token; ALLOW_ALL when ACLs are off."""
    current = REQUEST_AUTHZ.get()
    if current is not None:
        return current
    conf = _conf(request.app)
    if conf is None or conf.resolver is None or not conf.resolver.enabled():
        return ALLOW_ALL
    token = REQUEST_TOKEN.get()
    return await conf.resolver.resolve(request_token(request) if token is None else token)


async def require(request: web.Request, allowed: Callable[[Authorizer], bool]) -> None:
    """PermissionDenied (403 "Permission denied") unless the request's token passes `allowed`."""
    if not allowed(await authorizer_for(request)):
        raise PermissionDenied()


# ---------------------------------------------------------------- the agent's own endpoints

@dataclass(slots=True)
class _Ctx:
    node: str
    local: LocalView | None
    body: bytes


Rule = Callable[[Authorizer, web.Request, _Ctx], bool]


def _agent_read(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    return a.agent_read(c.node)


def _agent_write(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    return a.agent_write(c.node)


def _node_write(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    return a.node_write(c.node)


def _local_service_name(c: _Ctx, service_id: str) -> str | None:
    svc = c.local.services().get(service_id) if c.local is not None else None
    return str(getattr(svc, "name", service_id)) if svc is not None else None


def _service_write_id(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    name = _local_service_name(c, r.match_info.get("id", ""))
    return True if name is None else a.service_write(name)  # unknown: the handler answers 404


def _service_read_id(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    name = _local_service_name(c, r.match_info.get("id", ""))
    return True if name is None else a.service_read(name)


def _check_write_id(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    # Consul's vetCheckUpdate: the check's service write, node write for a node check
    chk = c.local.checks().get(r.match_info.get("id", "")) if c.local is not None else None
    if chk is None:
        return True  # unknown: the handler answers 404
    svc = str(getattr(chk, "service_name", "") or "")
    return a.service_write(svc) if svc else a.node_write(c.node)


def _body(c: _Ctx) -> dict[str, Any]:
    raw = c.body
    try:
        obj = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}  # the handler answers 400
    return {str(k).lower(): v for k, v in obj.items()} if isinstance(obj, dict) else {}


def _service_register(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    b = _body(c)
    name = b.get("name") or b.get("service")
    return a.service_write(name) if isinstance(name, str) else True  # no name: the handler answers 400


def _check_register(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    b = _body(c)
    sid = b.get("serviceid") or b.get("service_id")
    if isinstance(sid, str) and sid:
        name = _local_service_name(c, sid)
        return a.service_write(name if name is not None else sid)
    return a.node_write(c.node)


def _service_read_name(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    return a.service_read(r.match_info.get("name", ""))


def _event_write(a: Authorizer, r: web.Request, c: _Ctx) -> bool:
    return a.event_write(r.match_info.get("name", ""))


_ROUTES: tuple[tuple[str, re.Pattern[str], Rule], ...] = tuple(
    (m, re.compile(p), rule) for m, p, rule in (
        ("GET", r"/v1/agent/self$", _agent_read),
        ("GET", r"/v1/agent/monitor$", _agent_read),
        ("GET", r"/v1/agent/metrics$", _agent_read),
        ("PUT", r"/v1/agent/join/", _agent_write),
        ("PUT", r"/v1/agent/leave$", _agent_write),
        ("PUT", r"/v1/agent/reload$", _agent_write),
        ("PUT", r"/v1/agent/force-leave/", lambda a, r, c: a.operator_write()),
        ("GET", r"/v1/operator/keyring$", lambda a, r, c: a.keyring_read()),
        ("*", r"/v1/operator/keyring$", lambda a, r, c: a.keyring_write()),
        ("GET", r"/v1/operator/", lambda a, r, c: a.operator_read()),
        ("*", r"/v1/operator/", lambda a, r, c: a.operator_write()),
        ("*", r"/v1/snapshot$", lambda a, r, c: a.snapshot()),
        ("PUT", r"/v1/agent/maintenance$", _node_write),
        ("PUT", r"/v1/agent/service/register$", _service_register),
        ("PUT", r"/v1/agent/service/(deregister|maintenance)/", _service_write_id),
        ("GET", r"/v1/agent/service/", _service_read_id),
        ("GET", r"/v1/agent/health/service/id/", _service_read_id),
        ("GET", r"/v1/agent/health/service/name/", _service_read_name),
        ("PUT", r"/v1/agent/check/register$", _check_register),
        ("PUT", r"/v1/agent/check/(deregister|pass|warn|fail|update)/", _check_write_id),
        ("PUT", r"/v1/event/fire/", _event_write),
    )
)


def route_allowed(authz: Authorizer, request: web.Request, body: bytes = b"") -> bool:
    """Whether the first ROUTES rule matching the request (if any) allows it; `body`: the request's."""
    conf = _conf(request.app) or _AppACL(None, "", None)
    method = "GET" if request.method == "HEAD" else request.method
    for m, pattern, rule in _ROUTES:
        if (m == method or m == "*") and pattern.match(request.path):
            return rule(authz, request, _Ctx(conf.node, conf.local, body))
    return True


def _check_visible(a: Authorizer, c: dict[str, Any]) -> bool:
    svc = c.get("ServiceName")
    return a.service_read(str(svc)) if svc else a.node_read(str(c.get("Node", "")))


_KEEP: dict[str, Callable[[Authorizer, dict[str, Any]], bool]] = {
    "/v1/agent/members": lambda a, m: a.node_read(str(m.get("Name", ""))),
    "/v1/agent/services": lambda a, s: a.service_read(str(s.get("Service", ""))),
    "/v1/agent/checks": _check_visible,
    "/v1/event/list": lambda a, e: a.event_read(str(e.get("Name", ""))),
}


def filter_response(authz: Authorizer, request: web.Request, resp: web.Response) -> web.Response:
    """The response with what the token may not see left out (members, local services and checks, events)."""
    path = request.path
    if resp.status != 200 or request.method not in ("GET", "HEAD") or not resp.body:
        return resp
    keep = _KEEP.get(path)
    if keep is None:
        return resp
    data = json.loads(resp.body)
    if isinstance(data, list):
        data = [x for x in data if isinstance(x, dict) and keep(authz, x)]
    elif isinstance(data, dict):
        data = {k: v for k, v in data.items() if isinstance(v, dict) and keep(authz, v)}
    resp.body = json.dumps(data).encode()
    return resp


# Answered by Consul without resolving the request's token (no ACL check: Status.Leader, Status.Peers): an
# unknown token -- e.g. an acl.tokens.default whose token is not created yet -- must not turn them into 403s.
_TOKEN_FREE = frozenset({"/v1/status/leader", "/v1/status/peers"})


async def enforce(request: web.Request, handler: Callable[[web.Request], Awaitable[web.Response]]) -> web.Response:
    """Run `handler` under the request token's Authorizer (ACLs on; see the module docstring)."""
    if request.path in _TOKEN_FREE and request.method in ("GET", "HEAD"):
        return await handler(request)
    authz = await authorizer_for(request)
    body = b""
    if request.method == "PUT" and request.path.startswith("/v1/agent/"):
        try:
            body = await request.read()  # already received: the handler reads the same bytes
        except web.HTTPRequestEntityTooLarge:
            body = b""
    if not route_allowed(authz, request, body):
        raise PermissionDenied()
    reset = REQUEST_AUTHZ.set(authz)
    try:
        resp = await handler(request)
    finally:
        REQUEST_AUTHZ.reset(reset)
    return filter_response(authz, request, resp)


_SECRET = re.compile(r"(Token|Tokens|SecretID|EncryptKey|Encrypt|PrivateKey|Password)$")


def redact(obj: Any) -> Any:
    """`obj` with the values of secret-named keys (tokens, the gossip key) replaced by "hidden" when set."""
    if isinstance(obj, dict):
        return {k: ("hidden" if v and isinstance(k, str) and _SECRET.search(k) else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(x) for x in obj]
    return obj
