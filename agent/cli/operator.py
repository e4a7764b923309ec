"""`pyconsul operator raft list-peers|remove-peer`: the servers' Raft configuration."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError, columnize
from pyconsul.agent.flags import FlagSet


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


OPERATOR_COMMANDS: common.Table = {"raft": (cmd_raft, "Provides cluster-level tools for Consul operators")}


def cmd_operator(args: Sequence[str]) -> int:
    return common.run_group("operator", OPERATOR_COMMANDS, args,
                            "Provides cluster-level tools for Consul operators, such as interacting with the\n"
                            "  Raft subsystem.")
