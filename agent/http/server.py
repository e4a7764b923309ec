"""The Consul HTTP API (`/v1/...`) on `agent.httpd.web`: the app factory and the error mapping.

The package: `api.py` (helpers shared by the route modules), the route modules (`agent_routes.py`,
`kv.py`, `catalog.py`, `health.py`, `session.py`, `snapshot.py`; each imports only `api.py`), and this
module, which imports them and builds the application. No cycle.

Errors follow Consul: plain-text bodies, 400 for bad requests, 404 for unknown paths,
405 for wrong methods, 500 for server-side failures. No traceback ever reaches a client.
Handlers and backends RAISE typed errors (agent/errors.py); the `errors` middleware is the one place
that turns them into status codes (ERROR_STATUS).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pyconsul.agent.errors import (
    BadRequest,
    CommandRejected,
    DatacenterUnavailable,
    NoPathToDatacenter,
    NotFound,
    PermissionDenied,
    PyconsulError,
)
from pyconsul.agent.http import acl_off, agent_routes, catalog, health, kv, session, snapshot
from pyconsul.agent.http import monitor as monitor_routes
from pyconsul.agent.http.agent_services import register as register_agent_services
from pyconsul.agent.http.api import DEFAULT_MAX_BODY, AgentAPI, Backend, member_json
from pyconsul.agent.http.authz import REQUEST_TOKEN, begin, enforce
from pyconsul.agent.httpd import web
from pyconsul.agent.logfeed import feed as log_feed

if TYPE_CHECKING:
    from pyconsul.agent.acl.resolver import TokenResolver
    from pyconsul.agent.local.manager import LocalAgent

__all__ = ["ERROR_STATUS", "error_status", "errors", "make_app", "member_json"]

log = logging.getLogger("agent.http")

MAX_BUFFERED = 128 * 1024 * 1024  # request-body bytes the agent holds at once; beyond: 503


# Consul's mapping (agent/http.go): typed client errors get their 4xx; server-side failures -- NoLeader
# ("No cluster leader"), DatacenterUnavailable, NotLeader, Unavailable, RequestTimeout, Internal and
# untyped exceptions -- are a 500 with the error's text. Unlike Consul 1.7, which answers them with a 500,
# a request naming what does not exist is the client's error: an unknown ?dc= (NoPathToDatacenter) and a
# state-machine refusal (CommandRejected: "invalid session", "Missing node registration", ...) are a 400
# with the same text (Consul's clients raise on both). First match wins (subclasses first).
ERROR_STATUS: tuple[tuple[type[PyconsulError], int], ...] = (
    (BadRequest, 400),
    (PermissionDenied, 403),
    (NotFound, 404),
    (DatacenterUnavailable, 500),
    (NoPathToDatacenter, 400),
    (CommandRejected, 400),
)


def error_status(exc: BaseException) -> int:
    """The HTTP status for an exception a handler raised."""
    for cls, status in ERROR_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


async def errors(request: web.Request, handler: Any) -> web.Response:
    from pyconsul.agent.server.common import REQUEST_DC

    token = REQUEST_DC.set(request.query.get("dc", "").strip().lower())
    acl_token = None
    try:
        # ACLs (http/authz.py): the request's token travels with its reads and writes (the answering server
        # enforces it); enforce() runs only when ACLs are on (no extra await otherwise)
        secret, acl_on = begin(request)
        acl_token = REQUEST_TOKEN.set(secret)
        if acl_on:
            return await enforce(request, handler)
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
        if acl_token is not None:
            REQUEST_TOKEN.reset(acl_token)


_GO_ON = web.Response(status=100)  # what head_check's stand-in handler answers: the head check passed


async def _go_on(request: web.Request) -> web.Response:
    return _GO_ON


async def head_check(request: web.Request) -> web.Response | None:
    """app.head_check (agent/httpd/h1.py): a spooled route's request (PUT /v1/snapshot) goes through the `errors`
    middleware -- its token, the ACL route rules of http/authz.py, Consul's error answers -- from its head alone,
    so a token without the rights gets 403 "Permission denied" before the agent reads or stores any of its body."""
    try:
        resp = await errors(request, _go_on)
    except web.HTTPException as exc:
        return exc.response()
    return None if resp is _GO_ON else resp


def make_app(api: AgentAPI, backend: Backend | None = None, datacenter: str = "dc1",
             node_name: str = "", local: LocalAgent | None = None,
             reload: Callable[[], Awaitable[None]] | None = None,
             acl_resolver: TokenResolver | None = None) -> web.Application:
    # Body limits (README "Limits"): routes with their own max_body (KV values, transactions, snapshot
    # restores) and DEFAULT_MAX_BODY for the rest; MAX_BUFFERED over all requests at once.
    app = web.Application(middlewares=[errors], client_max_size=DEFAULT_MAX_BODY, max_buffered=MAX_BUFFERED)
    app.head_check = head_check  # ACL rights of a spooled upload (PUT /v1/snapshot), before its body is read
    agent_routes.register(app, api)
    monitor_routes.register(app, log_feed())  # GET /v1/agent/monitor: the process's log, streamed
    if local is not None:
        register_agent_services(app, local, node_name, reload, datacenter)  # the agent's own services and checks
    # the ACL system (http/acl.py, loaded only then) with acl.enabled, else 401 "ACL support disabled" as Consul
    if acl_resolver is not None and acl_resolver.enabled() and backend is not None:
        from pyconsul.agent.http import acl

        acl.register(app, acl_resolver, backend, data_dir=acl_resolver.data_dir)
    else:
        acl_off.register(app)
    if backend is not None:
        kv.register(app, backend)
        catalog.register(app, backend, datacenter, node_name)
        health.register(app, backend, node_name)
        session.register(app, backend, node_name)
        snapshot.register(app, backend)  # unknown paths: 404, known path with another method: 405
    return app
