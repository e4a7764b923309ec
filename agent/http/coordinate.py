"""`/v1/coordinate/*`: network coordinates (Consul 1.7 shapes).

- GET /v1/coordinate/datacenters: the WAN coordinates of every datacenter's servers (from the WAN pool of a
  server; a client agent asks a server). Not a blocking query.
- GET /v1/coordinate/nodes[?segment=]: every node's LAN coordinate from the catalog; blocking (index
  "coordinates"), consistency modes and ?dc= as any catalog read.
- GET /v1/coordinate/node/<node>: that node's coordinates; 404 when it has none.
- PUT /v1/coordinate/update: {"Node", "Segment", "Coord": {"Vec", "Error", "Adjustment", "Height"}} written to
  the servers (200, empty body), which commit it with the next batch (within BATCH_PERIOD, as Consul). A
  coordinate that is not 8 finite numbers within bounds is a 400 (Consul answers 500 "invalid
  coordinate"/"rejected bad coordinate"); an unknown node is ignored, as in Consul.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.http.api import Backend, decode_json, json_response, read_meta_headers, read_query
from pyconsul.agent.httpd import web
from pyconsul.agent.netcoords import parse_update

MAX_UPDATE_BODY = 4096  # bytes of a /v1/coordinate/update body (a coordinate is ~250 bytes of JSON)

DatacenterMaps = Callable[[], Awaitable[list[dict[str, Any]]]]


def register(app: web.Application, backend: Backend, datacenters: DatacenterMaps) -> None:
    def _segment(request: web.Request) -> dict[str, Any]:
        seg = request.query.get("segment")
        return {"segment": seg} if seg is not None else {}

    async def dcs(request: web.Request) -> web.Response:
        return json_response(await datacenters())

    async def nodes(request: web.Request) -> web.Response:
        value, meta = await read_query(request, backend, "coordinate.nodes", _segment(request))
        return json_response(value, 200, read_meta_headers(meta))

    async def node(request: web.Request) -> web.Response:
        name = request.match_info["node"]
        value, meta = await read_query(request, backend, "coordinate.node", {"node": name, **_segment(request)})
        headers = read_meta_headers(meta)
        if not value:
            return web.Response(status=404, headers=headers)
        return json_response(value, 200, headers)

    async def update(request: web.Request) -> web.Response:
        body = decode_json(await request.read(), empty={})
        if not isinstance(body, dict):
            raise BadRequest("Request decode failed: expected a JSON object")
        body = {str(k).lower(): v for k, v in body.items()}  # Go matches field names case-insensitively
        args = {"node": body.get("node", ""), "segment": body.get("segment", "") or "", "coord": body.get("coord")}
        parse_update(args)  # a bad update is a 400 here, before any server sees it
        await backend.status("coordinate_update", args)
        return web.Response(text="")

    r = app.router
    r.add_get("/v1/coordinate/datacenters", dcs)
    r.add_get("/v1/coordinate/nodes", nodes)
    r.add_get("/v1/coordinate/node/{node}", node)
    r.add_put("/v1/coordinate/update", update, max_body=MAX_UPDATE_BODY)
