"""README names every HTTP route the agent's app registers and every CLI verb `pyconsul --help` lists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pyconsul.agent.cli import COMMANDS
from pyconsul.agent.http import coordinate, event, query
from pyconsul.agent.http.server import make_app
from pyconsul.agent.httpd import web

README = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()


class _Nothing:
    """Whatever the route modules are given at registration: they only keep it for their handlers."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} used while registering routes")


class _Resolver(_Nothing):
    data_dir = None

    def enabled(self) -> bool:
        return True


def _routes(acl: bool) -> set[tuple[str, str]]:
    """(method, path) of every route an agent's app serves (ACLs off or on): make_app's and agent.py's."""
    resolver = _Resolver() if acl else None
    app = make_app(_Nothing(), _Nothing(), "dc1", "me", local=_Nothing(),  # type: ignore[arg-type]
                   acl_resolver=resolver)  # type: ignore[arg-type]
    event.register(app, _Nothing(), _Nothing(), "dc1")  # type: ignore[arg-type]
    coordinate.register(app, _Nothing(), _Nothing())  # type: ignore[arg-type]
    query.register(app, _Nothing(), _Nothing(), "dc1", "me")  # type: ignore[arg-type]
    router: web.Router = app.router
    out = {(m, p) for p, table in router._exact.items() for m in table}  # the router lists no routes publicly
    out |= {(m, p) for p, _, table in router._patterns for m in table}
    return {(m, p) for m, p in out if m != "HEAD"}  # GET serves HEAD


def _section(title: str) -> str:
    return README.split(f"\n### {title}", 1)[1].split("\n### ", 1)[0]


def _undocumented(routes: set[tuple[str, str]], text: str) -> list[str]:
    """Routes whose group (`/v1/<group>`), method and every literal segment below the group the text does
    not name (README groups routes as `GET /v1/catalog/nodes|services|service/<s>`)."""
    missing = []
    for method, path in sorted(routes):
        literal = [s for s in re.sub(r"\{[^}]*\}", "", path).split("/") if s]
        family = "/" + "/".join(literal[:2])
        if path == "/":
            documented = "`GET /`" in text
        else:
            documented = family in text and all(re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", text)
                                                for s in literal[2:])
        if not documented or method not in text:
            missing.append(f"{method} {path}")
    return missing


def test_readme_http_api_names_every_route() -> None:
    routes = _routes(acl=False) | _routes(acl=True)
    assert len(routes) > 90
    missing = _undocumented(routes, _section("HTTP API") + _section("ACLs"))
    assert not missing, f"routes README's HTTP API and ACLs sections do not name: {missing}"
    # the check itself: a route nobody documented is reported
    assert _undocumented({("GET", "/v1/agent/nowhere/{x}")}, _section("HTTP API")) == ["GET /v1/agent/nowhere/{x}"]


def test_readme_names_every_cli_verb() -> None:
    missing = [verb for verb in COMMANDS
               if not re.search(rf"(`{re.escape(verb)}[` ]|pyconsul {re.escape(verb)}\b)", README)]
    assert not missing, f"CLI verbs README does not name: {missing}"
