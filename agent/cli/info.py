"""`pyconsul info` and `pyconsul version`: what an agent and this program report about themselves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyconsul.agent import __version__
from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet


def info_lines(stats: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for section in sorted(stats):
        out.append(f"{section}:")
        out += [f"\t{k} = {v}" for k, v in sorted(stats[section].items())]
    return out


def cmd_info(args: Sequence[str]) -> int:
    fs = FlagSet("info")
    common.http_flags(fs)
    res = common.parse(fs, args, "info [options]", "Prints the agent's runtime statistics for operators.")
    common.no_positional(res, "info")
    try:
        data = common.api_request("GET", common.http_addr(res), "/v1/agent/self")
    except ApiError as exc:
        raise CLIError(f"Error querying agent: {exc}") from None
    stats = data.get("Stats") if isinstance(data, dict) else None
    if not isinstance(stats, dict):
        raise CLIError("Error querying agent: response has no Stats")
    common.out(info_lines(stats))
    return 0


def version_lines() -> list[str]:
    return [f"Pyconsul v{__version__}",
            "Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 "
            "when speaking to compatible agents)"]


def cmd_version(args: Sequence[str]) -> int:
    res = common.parse(FlagSet("version"), args, "version", "Prints the pyconsul version.")
    common.no_positional(res, "version")
    common.out(version_lines())
    return 0


COMMANDS: common.Table = {
    "info": (cmd_info, "Shows runtime statistics of the local agent"),
    "version": (cmd_version, "Prints the pyconsul version"),
}
