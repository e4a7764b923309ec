"""`pyconsul members`, `join`, `leave`, `force-leave`: the agent's view of the LAN/WAN pool and its changes."""

from __future__ import annotations

import re
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet

MEMBER_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


def _status_name(code: object) -> str:
    return MEMBER_STATUS.get(code, "unknown") if isinstance(code, int) else str(code)


def members_table(members: Sequence[Mapping[str, Any]], *, detailed: bool = False,
                  status: str | None = None) -> list[str]:
    """Render `/v1/agent/members` like `consul members`; [] when the status filter matches nothing.

    Rows are sorted by segment tag, then name (Consul's order). `status` is an unanchored regex
    over the status name. Raises re.error for a bad pattern.
    """
    pattern = re.compile(status) if status else None
    rows: list[list[str]] = []
    def order(m: Mapping[str, Any]) -> tuple[str, str]:
        return str((m.get("Tags") or {}).get("segment", "")), str(m.get("Name", ""))

    for m in sorted(members, key=order):
        tags: Mapping[str, str] = m.get("Tags") or {}
        state = _status_name(m.get("Status"))
        if pattern is not None and not pattern.search(state):
            continue
        addr = str(m.get("Addr", ""))
        address = f"[{addr}]:{m.get('Port', 0)}" if ":" in addr else f"{addr}:{m.get('Port', 0)}"
        if detailed:
            rows.append([str(m.get("Name", "")), address, state,
                         ",".join(sorted(f"{k}={v}" for k, v in tags.items()))])
            continue
        server = tags.get("role") == "consul"
        build = tags.get("build", "") or "< 0.3"
        rows.append([
            str(m.get("Name", "")), address, state, "server" if server else "client",
            build.split(":", 1)[0], tags.get("vsn", ""), tags.get("dc", ""),
            "<all>" if server else (tags.get("segment") or "<default>"),
        ])
    if not rows:
        return []
    header = (["Node", "Address", "Status", "Tags"] if detailed
              else ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Segment"])
    return common.columnize([header, *rows])


def cmd_members(args: Sequence[str]) -> int:
    fs = FlagSet("members")
    common.http_flags(fs)
    fs.bool("wan", False, "List the WAN pool (servers of all datacenters) instead of the LAN pool.")
    fs.bool("detailed", False, "Show every tag of each member.")
    fs.string("status", "", "Only show members whose status matches this regular expression.")
    fs.string("segment", "", "Only show members of this network segment (_all for all).")
    res = common.parse(fs, args, "members [options]", "Lists the members of the cluster as seen by an agent.")
    common.no_positional(res, "members")
    try:
        table_filter = re.compile(res.str("status")) if res.str("status") else None
    except re.error as exc:
        raise CLIError(f"Failed to compile status regexp: {exc}") from None
    query = {"wan": "1"} if res.bool("wan") else {}
    if res.str("segment"):
        query["segment"] = res.str("segment")
    try:
        members = common.api_request("GET", common.http_addr(res), "/v1/agent/members", query=query)
    except ApiError as exc:
        raise CLIError(f"Error retrieving members: {exc}") from None
    if not isinstance(members, list):
        raise CLIError(f"Error retrieving members: unexpected response {members!r}")
    lines = members_table(members, detailed=res.bool("detailed"),
                          status=table_filter.pattern if table_filter else None)
    if not lines:
        return 2
    common.out(lines)
    return 0


def cmd_join(args: Sequence[str]) -> int:
    fs = FlagSet("join")
    common.http_flags(fs)
    fs.bool("wan", False, "Join the WAN pool (servers only).")
    res = common.parse(fs, args, "join [options] address ...", "Tells a running agent to join the cluster through "
                 "one or more existing members.")
    if not res.positional:
        raise CLIError("At least one address to join must be specified.")
    base = common.http_addr(res)
    query = {"wan": "1"} if res.bool("wan") else None
    joined = 0
    for addr in res.positional:
        try:
            common.api_request("PUT", base, "/v1/agent/join/" + urllib.parse.quote(addr, safe=":[]"), query=query)
            joined += 1
        except ApiError as exc:
            print(f"Error joining address '{addr}': {exc}", file=sys.stderr)
    if joined == 0:
        raise CLIError("Failed to join any nodes.")
    print(f"Successfully joined cluster by contacting {joined} nodes.")
    return 0


def cmd_leave(args: Sequence[str]) -> int:
    fs = FlagSet("leave")
    common.http_flags(fs)
    res = common.parse(fs, args, "leave [options]", "Makes the agent leave the cluster gracefully and shut down.")
    common.no_positional(res, "leave")
    try:
        common.api_request("PUT", common.http_addr(res), "/v1/agent/leave")
    except ApiError as exc:
        raise CLIError(f"Error leaving: {exc}") from None
    print("Graceful leave complete")
    return 0


def cmd_force_leave(args: Sequence[str]) -> int:
    fs = FlagSet("force-leave")
    common.http_flags(fs)
    fs.bool("prune", False, "Remove the node from the member list entirely instead of marking it left.")
    fs.bool("wan", False, "Act on the WAN pool.")
    res = common.parse(fs, args, "force-leave [options] name", "Moves a failed member to the left state.")
    if len(res.positional) != 1:
        raise CLIError("A single node name must be specified to force leave.")
    query = {k: "1" for k in ("prune", "wan") if res.bool(k)}
    path = "/v1/agent/force-leave/" + urllib.parse.quote(res.positional[0], safe="")
    try:
        common.api_request("PUT", common.http_addr(res), path, query=query)
    except ApiError as exc:
        raise CLIError(f"Error force leaving: {exc}") from None
    return 0


COMMANDS: common.Table = {
    "force-leave": (cmd_force_leave, "Moves a failed member of the cluster to the left state"),
    "join": (cmd_join, "Makes the local agent join a cluster"),
    "leave": (cmd_leave, "Makes the local agent leave the cluster gracefully and exit"),
    "members": (cmd_members, "Lists the members of the cluster"),
}
