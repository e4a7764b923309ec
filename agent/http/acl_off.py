"""`/v1/acl/*` and `/v1/agent/token/*` while ACLs are off (`acl.enabled = false`, the default): 401 "ACL support
disabled" on Consul 1.7's paths and methods (http/acl.py's docstring says why). Apart from http/acl.py, which
serves the ACL system and with its state code weighs ~0.2 MiB, so that a client agent without ACLs does not load
it (http/server.py; tests/unit/test_lean_agent.py)."""

from __future__ import annotations

from pyconsul.agent.httpd import web

__all__ = ["DISABLED", "ENDPOINTS", "disabled", "register"]

DISABLED = "ACL support disabled"

# Consul 1.7's ACL endpoints: path (a trailing "/" is a prefix) -> methods.
ENDPOINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/v1/acl/bootstrap", ("PUT",)),
    ("/v1/acl/create", ("PUT",)),
    ("/v1/acl/update", ("PUT",)),
    ("/v1/acl/destroy/", ("PUT",)),
    ("/v1/acl/info/", ("GET",)),
    ("/v1/acl/clone/", ("PUT",)),
    ("/v1/acl/list", ("GET",)),
    ("/v1/acl/login", ("POST",)),
    ("/v1/acl/logout", ("POST",)),
    ("/v1/acl/replication", ("GET",)),
    ("/v1/acl/policies", ("GET",)),
    ("/v1/acl/policy", ("PUT",)),
    ("/v1/acl/policy/", ("GET", "PUT", "DELETE")),
    ("/v1/acl/roles", ("GET",)),
    ("/v1/acl/role", ("PUT",)),
    ("/v1/acl/role/", ("GET", "PUT", "DELETE")),
    ("/v1/acl/binding-rules", ("GET",)),
    ("/v1/acl/binding-rule", ("PUT",)),
    ("/v1/acl/binding-rule/", ("GET", "PUT", "DELETE")),
    ("/v1/acl/auth-methods", ("GET",)),
    ("/v1/acl/auth-method", ("PUT",)),
    ("/v1/acl/auth-method/", ("GET", "PUT", "DELETE")),
    ("/v1/acl/rules/translate", ("POST",)),
    ("/v1/acl/rules/translate/", ("GET",)),
    ("/v1/acl/tokens", ("GET",)),
    ("/v1/acl/token", ("PUT",)),
    ("/v1/acl/token/", ("GET", "PUT", "DELETE")),
    ("/v1/agent/token/", ("PUT",)),
)


async def disabled(request: web.Request) -> web.Response:
    return web.Response(status=401, text=DISABLED)


def register(app: web.Application) -> None:
    r = app.router
    for path, methods in ENDPOINTS:
        # "/v1/acl/policy/" covers "/v1/acl/policy/<id>" and "/v1/acl/policy/name/<n>" (any depth).
        route = path + "{rest:.*}" if path.endswith("/") else path
        for method in methods:
            r.add_route(method, route, disabled)
