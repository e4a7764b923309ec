"""`pyconsul agent` (run an agent until stopped) and `pyconsul validate` (check its configuration files)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from agent.cli import common
from agent.cli.common import CLIError
from agent.config import ConfigError, agent_flagset, build_config, validate_paths
from agent.flags import FlagSet


def cmd_agent(args: Sequence[str]) -> int:
    res = common.parse(agent_flagset(), args, "agent [options]", "Starts a pyconsul agent and runs until stopped.")
    common.no_positional(res, "agent")
    cfg, warnings = build_config(res.explicit)
    for w in warnings:
        print(f"==> WARNING: {w}", file=sys.stderr)
    from agent.agent import run_agent  # lazy: the runtime is heavy and optional for other verbs

    return run_agent(cfg)


def cmd_validate(args: Sequence[str]) -> int:
    fs = FlagSet("validate")
    fs.bool("quiet", False, "Print nothing when the configuration is valid.")
    res = common.parse(fs, args, "validate [options] FILE_OR_DIRECTORY...",
                 "Checks agent configuration files the way `agent` would load them, without starting one.")
    if not res.positional:
        raise CLIError("Must specify at least one config file or directory")
    try:
        _, warnings = validate_paths(res.positional)
    except ConfigError as exc:
        raise CLIError(f"Config validation failed: {exc}") from None
    if not res.bool("quiet"):
        for w in warnings:
            print(f"==> WARNING: {w}", file=sys.stderr)
        print("Configuration is valid!")
    return 0


COMMANDS: common.Table = {
    "agent": (cmd_agent, "Runs a pyconsul agent"),
    "validate": (cmd_validate, "Checks configuration files"),
}
