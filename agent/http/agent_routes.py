"""`/v1/agent/*`, `/v1/operator/keyring`, `/v1/catalog/datacenters`, `/v1/status/*` (gossip part)."""

from __future__ import annotations

from typing import Any

from pyconsul.agent.errors import BadRequest, Internal
from pyconsul.agent.http.api import AgentAPI, canonical_keys, decode_json, flag, json_response, member_json
from pyconsul.agent.http.authz import redact
from pyconsul.agent.httpd import web


def register(app: web.Application, api: AgentAPI) -> None:
    async def self_(request: web.Request) -> web.Response:
        return json_response(redact(api.self_info()))  # tokens and the gossip key never shown

    async def members(request: web.Request) -> web.Response:
        wan = flag(request, "wan")
        return json_response([member_json(m) for m in api.members(wan)])

    async def join(request: web.Request) -> web.Response:
        addr = request.match_info["addr"]
        n, errors = await api.join(addr, flag(request, "wan"))
        if n == 0:
            raise Internal("; ".join(errors) or f"Failed to join {addr}")
        return web.Response(text="")

    async def leave(request: web.Request) -> web.Response:
        await api.leave()
        return web.Response(text="")

    async def force_leave(request: web.Request) -> web.Response:
        node = request.match_info["node"]
        ok = api.force_leave(node, flag(request, "prune"), flag(request, "wan"))
        if not ok:  # Consul 1.7's text; a 400, not its 500: the client named a node nobody knows
            raise BadRequest(f"agent: No node found with name '{node}'")
        return web.Response(text="")

    async def keyring_get(request: web.Request) -> web.Response:
        return json_response(await api.keyring("list-keys", None))

    def keyring_change(op: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            body = canonical_keys(decode_json(await request.read(), empty={}))
            if not isinstance(body, dict) or not isinstance(body.get("Key"), str) or not body["Key"]:
                raise BadRequest('Request decode failed: expected a JSON object with a "Key" string')
            try:
                results = await api.keyring(op, body["Key"])
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            failures = [f"{node}: {msg}" for r in results for node, msg in r["Messages"].items() if msg]
            if any(r["NumErr"] for r in results):
                n_err = sum(r["NumErr"] for r in results)
                n = sum(r["NumNodes"] for r in results)
                raise Internal(f"{n_err}/{n} nodes reported failure: {'; '.join(failures)}")
            return web.Response(text="")

        return handler

    async def datacenters(request: web.Request) -> web.Response:
        return json_response(await api.list_datacenters())

    async def index(request: web.Request) -> web.Response:
        # Consul's index handler without the UI: "Consul Agent". Clients' suites point HTTP checks at the
        # agent's root; Consul with -ui redirects to /ui/, which our HTTP checks would not follow.
        return web.Response(text="Consul Agent")

    r = app.router
    r.add_get("/", index)
    r.add_get("/v1/agent/self", self_)
    r.add_get("/v1/agent/members", members)
    r.add_put("/v1/agent/join/{addr}", join)
    r.add_put("/v1/agent/leave", leave)
    r.add_put("/v1/agent/force-leave/{node}", force_leave)
    r.add_get("/v1/operator/keyring", keyring_get)
    r.add_post("/v1/operator/keyring", keyring_change("install-key"))
    r.add_put("/v1/operator/keyring", keyring_change("use-key"))
    r.add_delete("/v1/operator/keyring", keyring_change("remove-key"))
    r.add_get("/v1/catalog/datacenters", datacenters)
