"""`GET /v1/agent/monitor?loglevel=<level>[&logjson]`: the agent's log lines as they are written (Consul 1.7).

The response is streamed (plain-text lines, or hclog-style JSON lines with `?logjson`) until the client
disconnects. Levels: trace, debug, info (default), warn, err; an unknown one is 400 `Unknown log level:
<level>`. A reader that falls behind loses lines (bounded queue; see agent/logfeed.py), told in the
stream. Beyond logfeed.MAX_SUBSCRIBERS streams at once: 503.
"""

from __future__ import annotations

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.http.api import flag
from pyconsul.agent.httpd import web
from pyconsul.agent.logfeed import LogFeed, TooManySubscribers, parse_level


def register(app: web.Application, feed: LogFeed) -> None:
    async def monitor(request: web.Request) -> web.Response:
        try:
            level = parse_level(request.query.get("loglevel") or "info")
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        try:
            sub = feed.subscribe(level, as_json=flag(request, "logjson"))
        except TooManySubscribers as exc:
            return web.Response(status=503, text=f"{exc}\n")
        return web.StreamResponse(sub.lines(), content_type="text/plain; charset=utf-8")

    app.router.add_get("/v1/agent/monitor", monitor)
