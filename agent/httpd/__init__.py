"""An HTTP/1.1 server and a tiny web framework on asyncio, shared by the Consul API and chaos.toxiproxy.

    web.py  Application (middlewares, client_max_size), Router (`{name}`, `{name:regex}`), Request,
            Response, the HTTPException family
    h1.py   the HTTP/1.1 wire: `serve(app, host, port)` on asyncio.Protocol, with its limits and timeouts

It knows nothing of Consul: `agent.http` (the `/v1/...` API) and `chaos.toxiproxy.api` are applications on it.
"""
