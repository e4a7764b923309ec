"""`pyconsul agent` (run an agent until stopped) and `pyconsul validate` (check its configuration files).

Test-only switches are files in the data directory, read once when `agent` starts (no flag or JSON key
exists for them, so no configuration can turn them on by mistake); each logs a loud warning:

    TEST_STALE_READS   ?consistent reads are served from this server's local state, without the leader
                       or a quorum: NOT linearizable, on purpose. The chaos `stale-reads` experiment
                       creates it to check that the linearizability checker finds the violation.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import CLIError
from pyconsul.agent.config import AgentConfig, ConfigError, agent_flagset, build_config, validate_paths
from pyconsul.agent.flags import FlagSet

STALE_READS_SWITCH = "TEST_STALE_READS"


def read_test_switches(cfg: AgentConfig) -> list[str]:
    """Turn on the test-only switches whose files exist in the data directory; their warnings."""
    if not cfg.data_dir or not os.path.exists(os.path.join(cfg.data_dir, STALE_READS_SWITCH)):
        return []
    cfg.debug_stale_reads = True
    return [f"{STALE_READS_SWITCH} is set ({os.path.join(cfg.data_dir, STALE_READS_SWITCH)}): ?consistent reads "
            "are served locally and are NOT linearizable (a test switch for the chaos checkers; never in production)"]


def cmd_agent(args: Sequence[str]) -> int:
    res = common.parse(agent_flagset(), args, "agent [options]", "Starts a pyconsul agent and runs until stopped.")
    common.no_positional(res, "agent")
    cfg, warnings = build_config(res.explicit)
    for w in [*warnings, *read_test_switches(cfg)]:
        print(f"==> WARNING: {w}", file=sys.stderr)
    from pyconsul.agent.agent import run_agent  # lazy: the runtime is heavy and optional for other verbs

    if cfg.pid_file:
        write_pid_file(cfg.pid_file)
    try:
        return run_agent(cfg)
    finally:
        if cfg.pid_file:
            remove_pid_file(cfg.pid_file)


def write_pid_file(path: str) -> None:
    """Consul's -pid-file: this process's PID and a newline, written before the agent starts serving."""
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise CLIError(f"Could not write pid file {path}: {(exc.strerror or str(exc)).lower()}") from None


def remove_pid_file(path: str) -> None:
    """Remove the PID file on the way out, unless it now names another process (a second agent took it)."""
    try:
        with open(path, encoding="ascii") as f:
            if f.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except (OSError, UnicodeDecodeError):
        pass


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
