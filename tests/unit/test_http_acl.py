"""With no ACL system (issue 14), Consul 1.7's ACL endpoints answer 401 "ACL support disabled" (agent/http/acl.py)."""

from __future__ import annotations

import asyncio

import pytest

from pyconsul.agent.http import acl
from pyconsul.agent.http.server import errors
from pyconsul.agent.httpd import web


def _app() -> web.Application:
    app = web.Application(middlewares=[errors])
    acl.register(app)
    return app


def _call(app: web.Application, method: str, path: str) -> web.Response:
    handler, _ = app.router.resolve(method, path)
    req = web.Request(app, method, path, (1, 1), web.Headers([]), "127.0.0.1")
    return asyncio.run(handler(req))  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/v1/acl/bootstrap"), ("PUT", "/v1/acl/create"), ("PUT", "/v1/acl/destroy/abc"),
    ("GET", "/v1/acl/info/abc"), ("GET", "/v1/acl/list"), ("GET", "/v1/acl/replication"),
    ("GET", "/v1/acl/policies"), ("PUT", "/v1/acl/policy"), ("DELETE", "/v1/acl/policy/abc"),
    ("GET", "/v1/acl/policy/name/global-management"), ("GET", "/v1/acl/tokens"), ("GET", "/v1/acl/token/self"),
    ("PUT", "/v1/acl/token/abc"), ("GET", "/v1/acl/roles"), ("GET", "/v1/acl/role/name/r"),
    ("POST", "/v1/acl/login"), ("POST", "/v1/acl/rules/translate"), ("GET", "/v1/acl/auth-methods"),
    ("PUT", "/v1/agent/token/default"), ("HEAD", "/v1/acl/list"),
])
def test_acl_endpoints_answer_401_acl_support_disabled(method: str, path: str) -> None:
    resp = _call(_app(), method, path)
    assert resp.status == 401
    assert resp.body == b"ACL support disabled"


def test_unknown_acl_path_is_404_and_wrong_method_405() -> None:
    app = _app()
    with pytest.raises(web.HTTPNotFound):
        app.router.resolve("GET", "/v1/acl/nonsense")
    with pytest.raises(web.HTTPMethodNotAllowed):
        app.router.resolve("DELETE", "/v1/acl/list")
    with pytest.raises(web.HTTPMethodNotAllowed):
        app.router.resolve("GET", "/v1/acl/bootstrap")


def test_full_app_serves_acl_routes() -> None:
    from pyconsul.agent.http.server import make_app

    app = make_app(api=None)  # type: ignore[arg-type]  # the ACL routes never touch the agent API
    assert _call(app, "GET", "/v1/acl/tokens").status == 401
