"""`pyconsul operator raft list-peers|remove-peer`: the servers' Raft configuration; `pyconsul operator autopilot
get-config|set-config`: autopilot's settings (GET|PUT /v1/operator/autopilot/configuration)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError, columnize
from pyconsul.agent.flags import FlagSet, format_duration, parse_duration


def raft_peers_table(config: Mapping[str, Any]) -> list[str]:
    """Render `/v1/operator/raft/configuration` like `consul operator raft list-peers`."""
    rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
    for s in config.get("Servers") or []:
        rows.append([str(s.get("Node", "")), str(s.get("ID", "")), str(s.get("Address", "")),
                     "leader" if s.get("Leader") else "follower", "true" if s.get("Voter") else "false",
                     str(s.get("ProtocolVersion") or "<=1")])
    return columnize(rows)


def cmd_list_peers(args: Sequence[str]) -> int:
    fs = FlagSet("operator raft list-peers")
    common.http_flags(fs)
    common.server_flags(fs)
    res = common.parse(fs, args, "operator raft list-peers [options]", "Displays the current Raft peer configuration.")
    common.no_args(res)
    try:
        config = common.api_request("GET", common.http_addr(res), "/v1/operator/raft/configuration",
                                    query=common.server_query(res))
    except ApiError as exc:
        raise CLIError(f"Error getting peers: Failed to retrieve raft configuration: {exc}") from None
    if not isinstance(config, dict):
        raise CLIError(f"Error getting peers: Failed to retrieve raft configuration: unexpected response {config!r}")
    common.out(raft_peers_table(config))
    return 0


def cmd_remove_peer(args: Sequence[str]) -> int:
    fs = FlagSet("operator raft remove-peer")
    common.http_flags(fs)
    common.server_flags(fs)
    fs.string("address", "", "The address to remove from the Raft configuration.")
    fs.string("id", "", "The ID to remove from the Raft configuration.")
    res = common.parse(fs, args, "operator raft remove-peer [options]",
                       "Removes the Consul server with the given -address or -id from the Raft configuration.")
    common.no_args(res)
    address, peer_id = res.str("address"), res.str("id")
    if not address and not peer_id:
        raise CLIError("Error removing peer: an address or id is required for the peer to remove")
    if address and peer_id:
        raise CLIError("Error removing peer: cannot give both an address and id")
    query = common.server_query(res, read=False)
    query.update({"address": address} if address else {"id": peer_id})
    try:
        common.api_request("DELETE", common.http_addr(res), "/v1/operator/raft/peer", query=query)
    except ApiError as exc:
        raise CLIError(f"Error removing peer: {exc}") from None
    # Go's %q; json.dumps quotes the same way for printable text.
    which = f"address {address}" if address else f"id {peer_id}"
    kind, value = which.split(" ", 1)
    print(f"Removed peer with {kind} {json.dumps(value, ensure_ascii=False)}")
    return 0


RAFT_COMMANDS: common.Table = {
    "list-peers": (cmd_list_peers, "Display the current Raft peer configuration"),
    "remove-peer": (cmd_remove_peer, "Remove a Consul server from the Raft configuration"),
}


def cmd_raft(args: Sequence[str]) -> int:
    return common.run_group("operator raft", RAFT_COMMANDS, args,
                            "Inspects and manipulates the Raft configuration of the servers.")


def _duration_text(value: object) -> str:
    """A duration of the API's JSON (a Go duration string, or nanoseconds) as Go's Duration.String()."""
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value) / 1e9  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return format_duration(seconds)


def autopilot_config_lines(conf: Mapping[str, Any]) -> list[str]:
    """Render GET /v1/operator/autopilot/configuration like `consul operator autopilot get-config` (1.7)."""
    def go_bool(v: object) -> str:
        return "true" if v else "false"

    return [f"CleanupDeadServers = {go_bool(conf.get('CleanupDeadServers'))}",
            f"LastContactThreshold = {_duration_text(conf.get('LastContactThreshold', 0))}",
            f"MaxTrailingLogs = {conf.get('MaxTrailingLogs', 0)}",
            f"MinQuorum = {conf.get('MinQuorum', 0)}",
            f"ServerStabilizationTime = {_duration_text(conf.get('ServerStabilizationTime', 0))}",
            f"RedundancyZoneTag = {json.dumps(str(conf.get('RedundancyZoneTag') or ''), ensure_ascii=False)}",
            f"DisableUpgradeMigration = {go_bool(conf.get('DisableUpgradeMigration'))}",
            f"UpgradeVersionTag = {json.dumps(str(conf.get('UpgradeVersionTag') or ''), ensure_ascii=False)}"]


def _get_autopilot(res: Any, query: dict[str, str]) -> dict[str, Any]:
    try:
        conf = common.api_request("GET", common.http_addr(res), "/v1/operator/autopilot/configuration", query=query)
    except ApiError as exc:
        raise CLIError(f"Error querying Autopilot configuration: {exc}") from None
    if not isinstance(conf, dict):
        raise CLIError(f"Error querying Autopilot configuration: unexpected response {conf!r}")
    return conf


def cmd_autopilot_get(args: Sequence[str]) -> int:
    fs = FlagSet("operator autopilot get-config")
    common.http_flags(fs)
    common.server_flags(fs)
    res = common.parse(fs, args, "operator autopilot get-config [options]",
                       "Displays the current Autopilot configuration.")
    common.no_args(res)
    common.out(autopilot_config_lines(_get_autopilot(res, common.server_query(res))))
    return 0


def cmd_autopilot_set(args: Sequence[str]) -> int:
    """Consul's set-config: read the settings, change those given by a flag, write them back with ?cas= the
    ModifyIndex read (a change in between fails, exit 1)."""
    fs = FlagSet("operator autopilot set-config")
    common.http_flags(fs)
    common.server_flags(fs)
    fs.bool("cleanup-dead-servers", False, "Controls whether Consul will automatically remove dead servers when "
            "new ones are successfully added. Must be one of `true|false`.")
    fs.int("max-trailing-logs", 0, "Controls the maximum number of log entries that a server can trail the leader "
           "by before being considered unhealthy.")
    fs.duration("last-contact-threshold", 0.0, "Controls the maximum amount of time a server can go without "
                "contact from the leader before being considered unhealthy. Must be a duration value such as "
                "`200ms`.")
    fs.duration("server-stabilization-time", 0.0, "Controls the minimum amount of time a server must be stable "
                "in the 'healthy' state before being added to the cluster. Must be a duration value such as `10s`.")
    res = common.parse(fs, args, "operator autopilot set-config [options]",
                       "Modifies the current Autopilot configuration.")
    common.no_args(res)
    given = res.explicit
    trailing = given.get("max-trailing-logs")
    if isinstance(trailing, int) and trailing < 0:
        raise CLIError(f'Failed to parse args: invalid value "{trailing}" for flag -max-trailing-logs: '
                       "not an unsigned integer")
    conf = _get_autopilot(res, common.server_query(res, read=False))
    if "cleanup-dead-servers" in given:
        conf["CleanupDeadServers"] = res.bool("cleanup-dead-servers")
    if trailing is not None:
        conf["MaxTrailingLogs"] = trailing
    for flag, key in (("last-contact-threshold", "LastContactThreshold"),
                      ("server-stabilization-time", "ServerStabilizationTime")):
        if flag in given:
            conf[key] = format_duration(res.float(flag))
    query = common.server_query(res, read=False)
    query["cas"] = str(conf.get("ModifyIndex", 0))
    body = {k: v for k, v in conf.items() if k not in ("CreateIndex", "ModifyIndex")}
    try:
        ok = common.api_request("PUT", common.http_addr(res), "/v1/operator/autopilot/configuration",
                                query=query, body=body)
    except ApiError as exc:
        raise CLIError(f"Error setting Autopilot configuration: {exc}") from None
    if ok is True:
        print("Configuration updated!")
        return 0
    print("Configuration could not be atomically updated, please try again")
    return 1


AUTOPILOT_COMMANDS: common.Table = {
    "get-config": (cmd_autopilot_get, "Display the current Autopilot configuration"),
    "set-config": (cmd_autopilot_set, "Modify the current Autopilot configuration"),
}


def cmd_autopilot(args: Sequence[str]) -> int:
    return common.run_group("operator autopilot", AUTOPILOT_COMMANDS, args,
                            "Views or modifies the current Autopilot configuration (Consul's Autopilot\n"
                            "  subsystem).")


OPERATOR_COMMANDS: common.Table = {
    "autopilot": (cmd_autopilot, "Provides tools for modifying Autopilot configuration"),
    "raft": (cmd_raft, "Provides cluster-level tools for Consul operators"),
}


def cmd_operator(args: Sequence[str]) -> int:
    return common.run_group("operator", OPERATOR_COMMANDS, args,
                            "Provides cluster-level tools for Consul operators, such as interacting with the\n"
                            "  Raft subsystem and Autopilot.")
