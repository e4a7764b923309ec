"""`/v1/health/*`: node, service-check, state and service-instance health reads (Consul 1.7 shapes), all
answered by the servers' named reads (server/queries.py): forwarded to the leader, blocking with
`?index=&wait=`, across the WAN with `?dc=`. Query parameters: api.read_args."""

from __future__ import annotations

from typing import Any

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.http.api import Backend, read_args, run_read
from pyconsul.agent.http.catalog import connect_reader
from pyconsul.agent.httpd import web

HEALTH_STATES = ("any", "passing", "warning", "critical")


def register(app: web.Application, backend: Backend, node_name: str = "") -> None:
    def reader(name: str, arg: str, missing: str, **params: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            value = request.match_info[arg]
            if not value:
                raise BadRequest(missing)
            if name == "health.state" and value not in HEALTH_STATES:
                raise BadRequest(f"Invalid state: {value}")
            args = read_args(request, node_name, **params)
            args[arg] = value
            return await run_read(request, backend, name, args)

        return handler

    r = app.router
    r.add_get("/v1/health/node/{node:.*}", reader("health.node", "node", "Missing node name",
                                                  endpoint="/v1/health/node/"))
    r.add_get("/v1/health/checks/{name:.*}", reader(
        "health.checks", "name", "Missing service name", endpoint="/v1/health/checks/", node_meta=True, near=True))
    r.add_get("/v1/health/state/{state:.*}", reader(
        "health.state", "state", "Missing check state", endpoint="/v1/health/state/", node_meta=True, near=True))
    r.add_get("/v1/health/connect/{name:.*}", connect_reader(
        backend, node_name, "health.service", endpoint="/v1/health/service/", tags=True, node_meta=True,
        near=True, passing=True))
    r.add_get("/v1/health/service/{name:.*}", reader(
        "health.service", "name", "Missing service name", endpoint="/v1/health/service/", tags=True,
        node_meta=True, near=True, passing=True))
