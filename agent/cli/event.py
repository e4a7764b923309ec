"""`pyconsul event`: fire a user event through the agent's HTTP API (PUT /v1/event/fire/<name>)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet


def cmd_event(args: Sequence[str]) -> int:
    fs = FlagSet("event")
    common.http_flags(fs)
    fs.string("datacenter", "", "Datacenter to dispatch in. Defaults to that of the agent.")
    fs.string("name", "", "Name of the event.")
    fs.string("node", "", "Regular expression to filter on node names.")
    fs.string("service", "", "Regular expression to filter on service instances.")
    fs.string("tag", "", "Regular expression to filter on service tags. Must be used with -service.")
    res = common.parse(fs, args, "event [options] [payload]",
                       "Dispatches a custom user event across a datacenter. The payload (at most one argument) "
                       "is optional; the whole event must fit serf's 512-byte limit.")
    name = res.str("name")
    if not name:
        raise CLIError("Event name must be specified")
    if res.str("tag") and not res.str("service"):
        raise CLIError("Cannot provide tag filter without service filter.")
    if len(res.positional) > 1:
        raise CLIError("Too many command line arguments.")
    payload = res.positional[0].encode() if res.positional else b""
    query = {k: res.str(k) for k in ("node", "service", "tag") if res.str(k)}
    if res.str("datacenter"):
        query["dc"] = res.str("datacenter")
    base = common.http_addr(res)
    try:
        common.api_request("GET", base, "/v1/agent/self")  # Consul checks the agent first
    except ApiError as exc:
        raise CLIError(f"Error querying Consul agent: {exc}") from None
    try:
        ev = common.api_request("PUT", base, "/v1/event/fire/" + urllib.parse.quote(name, safe=""), query=query,
                                raw=payload)
    except ApiError as exc:
        raise CLIError(f"Error firing event: {exc}") from None
    if not isinstance(ev, dict):
        raise CLIError(f"Error firing event: unexpected response {ev!r}")
    print(f"Event ID: {ev.get('ID', '')}")
    return 0


COMMANDS: common.Table = {"event": (cmd_event, "Fire a new event")}
