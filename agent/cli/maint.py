"""`pyconsul maint` and `pyconsul reload`: Consul 1.7's verbs for maintenance mode and config reloads.

`maint` with no flag lists what is in maintenance (the agent's `_node_maintenance` and
`_service_maintenance:<id>` checks); `-enable`/`-disable` switch the node or, with `-service`, one
service (`PUT /v1/agent/maintenance`, `PUT /v1/agent/service/maintenance/<id>`). `reload` is
`PUT /v1/agent/reload`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet

NODE_MAINT = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"


def maint_lines(node_name: str, checks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What `consul maint` prints with no flag: one block per maintenance check, in check-ID order."""
    lines: list[str] = []
    for cid in sorted(checks):
        check = checks[cid]
        if cid == NODE_MAINT:
            lines += ["Node:", f"  Name:   {node_name}", f"  Reason: {check.get('Notes', '')}", ""]
        elif cid.startswith(SERVICE_MAINT_PREFIX):
            lines += ["Service:", f"  ID:     {check.get('ServiceID', '')}",
                      f"  Reason: {check.get('Notes', '')}", ""]
    return lines


def cmd_maint(args: Sequence[str]) -> int:
    fs = FlagSet("maint")
    common.http_flags(fs)
    fs.bool("enable", False, "Enable maintenance mode.")
    fs.bool("disable", False, "Disable maintenance mode.")
    fs.string("reason", "", "Text describing the maintenance reason.")
    fs.string("service", "", "Control maintenance mode for a specific service ID.")
    res = common.parse(
        fs, args, "maint [options]",
        "Places a node or service into maintenance mode. During maintenance mode, the node or service\n"
        "  will be excluded from all queries through the DNS or API interfaces, effectively taking it out\n"
        "  of the pool of available nodes. This is done by registering an additional critical health check.\n\n"
        "  When enabling maintenance mode for a node or service, you may optionally specify a reason string.\n"
        "  This string will appear in the \"Notes\" field of the critical health check which is registered\n"
        "  against the node or service. If no reason is provided, a default value will be used.\n\n"
        "  Maintenance mode is persistent, and will be restored in the event of an agent restart. It is\n"
        "  therefore required to disable maintenance mode on a given node or service before it will be\n"
        "  placed back into the pool of available nodes.\n\n"
        "  If no arguments are given, the agent's maintenance status will be shown. This will return blank\n"
        "  if nothing is currently under maintenance.")
    common.no_positional(res, "maint")
    enable, disable, reason, service = res.bool("enable"), res.bool("disable"), res.str("reason"), res.str("service")
    if enable and disable:
        raise CLIError("Only one of -enable or -disable may be provided")
    if not enable and reason:
        raise CLIError("Reason may only be provided with -enable")
    if not enable and not disable and service:
        raise CLIError("Service requires either -enable or -disable")
    base = common.http_addr(res)
    try:
        me = common.api_request("GET", base, "/v1/agent/self")
    except ApiError as exc:
        raise CLIError(f"Error querying Consul agent: {exc}") from None
    node_name = str(((me or {}).get("Config") or {}).get("NodeName", "")) if isinstance(me, dict) else ""
    if not enable and not disable:
        try:
            checks = common.api_request("GET", base, "/v1/agent/checks")
        except ApiError as exc:
            raise CLIError(f"Error getting checks: {exc}") from None
        common.out(maint_lines(node_name, checks if isinstance(checks, dict) else {}))
        return 0
    query = {"enable": "true" if enable else "false"}
    if reason:
        query["reason"] = reason
    what, path = "node", "/v1/agent/maintenance"
    if service:
        what, path = "service", "/v1/agent/service/maintenance/" + urllib.parse.quote(service, safe="")
    try:
        common.api_request("PUT", base, path, query=query)
    except ApiError as exc:
        raise CLIError(f"Error {'enabling' if enable else 'disabling'} {what} maintenance: {exc}") from None
    if service:
        print(f"Service {'entered' if enable else 'left'} maintenance mode: {service}")
    else:
        print(f"Node {'entered' if enable else 'left'} maintenance mode")
    return 0


def cmd_reload(args: Sequence[str]) -> int:
    fs = FlagSet("reload")
    common.http_flags(fs)
    res = common.parse(
        fs, args, "reload [options]",
        "Causes the agent to reload configurations. This can be used instead of sending the SIGHUP\n"
        "  signal to the agent (PUT /v1/agent/reload).")
    common.no_positional(res, "reload")
    try:
        common.api_request("PUT", common.http_addr(res), "/v1/agent/reload")
    except ApiError as exc:
        raise CLIError(f"Error reloading: {exc}") from None
    print("Configuration reload triggered")
    return 0


COMMANDS: common.Table = {
    "maint": (cmd_maint, "Controls node or service maintenance mode"),
    "reload": (cmd_reload, "Triggers the agent to reload configuration files"),
}
