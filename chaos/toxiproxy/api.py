"""The Toxiproxy 2.x HTTP API (Shopify/toxiproxy `api.go`), served by agent.httpd.h1.

    POST   /reset                              204: every proxy enabled, every toxic removed
    GET    /proxies                            {name: proxy}
    POST   /proxies                            201 proxy | 400 bad body, missing field | 409 exists
    POST   /populate                           201 {"proxies": [...]}: create or replace a list
    GET    /proxies/{proxy}                    proxy | 404
    POST|PATCH  /proxies/{proxy}               change listen, upstream, enabled
    DELETE /proxies/{proxy}                    204
    GET    /proxies/{proxy}/toxics             [toxic]
    POST   /proxies/{proxy}/toxics             toxic | 400 invalid type or stream | 409 exists
    GET    /proxies/{proxy}/toxics/{toxic}     toxic | 404
    POST|PATCH  /proxies/{proxy}/toxics/{toxic}   change attributes, toxicity
    DELETE /proxies/{proxy}/toxics/{toxic}     204
    GET    /version                            {"version": ...}

Errors are `{"error": message, "status": code}`. Requests whose User-Agent starts with "Mozilla/"
are refused with 403, as Toxiproxy does, so a web page cannot drive the proxy from a browser.
"""

from __future__ import annotations

import json
from typing import Any

from pyconsul.agent import __version__
from pyconsul.agent.httpd import web
from pyconsul.chaos.toxiproxy.proxy import ProxyCollection
from pyconsul.chaos.toxiproxy.toxics import ApiError, parse_populate, parse_proxy, parse_proxy_update

VERSION = f"2.x-pyconsul-{__version__}"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=(json.dumps(data) + "\n").encode(), content_type="application/json")


def _error(err: ApiError) -> web.Response:
    return _json(err.to_json(), err.status)


def make_app(proxies: ProxyCollection) -> web.Application:
    async def guard(request: web.Request, handler: web.Handler) -> web.Response:
        if request.headers.get("User-Agent", "").startswith("Mozilla/"):
            return web.Response(status=403, text="User agent not allowed\n")
        try:
            async with proxies.lock:
                return await handler(request)
        except ApiError as err:
            return _error(err)
        except web.HTTPException as exc:
            return exc.response()

    app = web.Application(middlewares=[guard])
    r = app.router

    async def reset(_req: web.Request) -> web.Response:
        await proxies.reset()
        return web.Response(status=204)

    async def index(_req: web.Request) -> web.Response:
        return _json({name: p.to_json() for name, p in proxies.proxies.items()})

    async def create(req: web.Request) -> web.Response:
        proxy = await proxies.add(parse_proxy(await req.read()))
        return _json(proxy.to_json(), 201)

    async def populate(req: web.Request) -> web.Response:
        specs = parse_populate(await req.read())
        made = []
        try:
            for spec in specs:
                made.append(await proxies.add_or_replace(spec))
        except ApiError as err:
            return _json({**err.to_json(), "proxies": [p.to_json() for p in made]}, err.status)
        return _json({"proxies": [p.to_json() for p in made]}, 201)

    async def show(req: web.Request) -> web.Response:
        return _json(proxies.get(req.match_info["proxy"]).to_json())

    async def update(req: web.Request) -> web.Response:
        proxy = proxies.get(req.match_info["proxy"])
        await proxy.update(parse_proxy_update(proxy.spec(), await req.read()))
        return _json(proxy.to_json())

    async def delete(req: web.Request) -> web.Response:
        await proxies.remove(req.match_info["proxy"])
        return web.Response(status=204)

    async def toxic_index(req: web.Request) -> web.Response:
        return _json([t.to_json() for t in proxies.get(req.match_info["proxy"]).toxics()])

    async def toxic_create(req: web.Request) -> web.Response:
        toxic = proxies.get(req.match_info["proxy"]).add_toxic(await req.read())
        return _json(toxic.to_json())

    async def toxic_show(req: web.Request) -> web.Response:
        toxic = proxies.get(req.match_info["proxy"]).find(req.match_info["toxic"])
        if toxic is None:
            raise ApiError("toxic not found", 404)
        return _json(toxic.to_json())

    async def toxic_update(req: web.Request) -> web.Response:
        proxy = proxies.get(req.match_info["proxy"])
        return _json(proxy.update_toxic(req.match_info["toxic"], await req.read()).to_json())

    async def toxic_delete(req: web.Request) -> web.Response:
        proxies.get(req.match_info["proxy"]).remove_toxic(req.match_info["toxic"])
        return web.Response(status=204)

    async def version(_req: web.Request) -> web.Response:
        return web.Response(body=json.dumps({"version": VERSION}).encode() + b"\n",
                            content_type="application/json;charset=utf-8")

    r.add_post("/reset", reset)
    r.add_get("/proxies", index)
    r.add_post("/proxies", create)
    r.add_post("/populate", populate)
    r.add_get("/proxies/{proxy}", show)
    r.add_post("/proxies/{proxy}", update)
    r.add_route("PATCH", "/proxies/{proxy}", update)
    r.add_delete("/proxies/{proxy}", delete)
    r.add_get("/proxies/{proxy}/toxics", toxic_index)
    r.add_post("/proxies/{proxy}/toxics", toxic_create)
    r.add_get("/proxies/{proxy}/toxics/{toxic}", toxic_show)
    r.add_post("/proxies/{proxy}/toxics/{toxic}", toxic_update)
    r.add_route("PATCH", "/proxies/{proxy}/toxics/{toxic}", toxic_update)
    r.add_delete("/proxies/{proxy}/toxics/{toxic}", toxic_delete)
    r.add_get("/version", version)
    return app
