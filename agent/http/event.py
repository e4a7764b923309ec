"""`/v1/event/fire/<name>` and `/v1/event/list` (Consul 1.7; agent/events.py has the wire format and filters).

- PUT /v1/event/fire/<name>[?node=&service=&tag=&dc=]: the body is the payload. Answers the event JSON
  (ID, Name, Payload base64, NodeFilter, ServiceFilter, TagFilter, Version, LTime = 0: the Lamport time is
  assigned by serf on delivery). Bad filters: 400 with Consul's messages. An event serf would refuse (the
  encoded serf message above 512 bytes) or a body above MAX_EVENT_BODY: 413 (Consul answers 500 with serf's
  message; we keep the message). Local datacenter: fired straight into this agent's LAN pool (Consul routes
  it through a server, Internal.EventFire, to check ACLs; without ACLs the gossip is the same). Another
  datacenter (?dc=): forwarded over server RPC to a server there, which fires it into its LAN pool.
- GET /v1/event/list[?name=]: the events this agent received (the last 256), oldest first, with
  X-Consul-Index derived from the last event's ID (Consul's uuidToUint64; 1 when there is none). With
  ?index= equal to the current index the request blocks until a new event arrives or ?wait passes.
"""

from __future__ import annotations

import asyncio

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.events import AgentEvents, EventBuffer, new_event, serf_name
from pyconsul.agent.events import encode as encode_event
from pyconsul.agent.http.api import Backend, body_too_large, json_response, parse_uint, parse_wait
from pyconsul.agent.httpd import web

MAX_EVENT_BODY = 512  # serf refuses any user event message above 512 bytes, so no payload can be larger


def register(app: web.Application, events: AgentEvents, backend: Backend | None, datacenter: str) -> None:
    async def fire(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not name:
            raise BadRequest("Missing name")
        if request.content_length is not None and request.content_length > MAX_EVENT_BODY:
            return body_too_large(request, MAX_EVENT_BODY)
        try:
            payload = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return body_too_large(request, MAX_EVENT_BODY)
        q = request.query
        ev = new_event(name, payload, q.get("node", ""), q.get("service", ""), q.get("tag", ""))
        dc = q.get("dc", "").strip().lower()
        if dc and dc != datacenter.lower():
            if backend is None:
                raise BadRequest("this agent cannot forward to other datacenters")
            await backend.status("event_fire", {"name": serf_name(ev.name), "payload": encode_event(ev)})
        else:
            try:
                events.fire(ev)
            except ValueError as exc:
                return web.Response(status=413, text=f"{exc}\n")
        return json_response(ev.to_json())

    async def list_(request: web.Request) -> web.Response:
        q = request.query
        name = q.get("name", "")
        want = parse_uint(q, "index", 0)
        wait = parse_wait(q.get("wait")) if want else 0.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            found = events.buffer.select(name)
            index = EventBuffer.index(found)
            remaining = deadline - loop.time()
            if not want or index != want or remaining <= 0:
                break
            await events.buffer.wait(remaining)
        return json_response([e.to_json() for e in found], 200, {"X-Consul-Index": str(index)})

    r = app.router
    r.add_put("/v1/event/fire/{name:.*}", fire, max_body=MAX_EVENT_BODY)
    r.add_get("/v1/event/list", list_)
