"""The `pyconsul` command line: Consul-style verbs that run an agent or talk to one over HTTP.

    common.py    errors, the HTTP client for the agent's API, flag parsing and help, tables
    agent.py     agent, validate
    members.py   members, join, leave, force-leave
    keyring.py   keygen, keyring
    info.py      info, version
    kv.py        kv put|get|delete|export|import
    catalog.py   catalog datacenters|nodes|services
    operator.py  operator raft list-peers|remove-peer
    snapshot.py  snapshot save|restore|inspect
    tls.py       tls ca create, tls cert create
    services.py  services register|deregister
    maint.py     maint, reload
    recipes.py   the lock and semaphore recipes (sessions + KV) behind lock.py (lock)
    watch.py     watch
    monitor.py   monitor
    event.py     event
    rtt.py       rtt

Contract: `main()` never lets an exception escape as a traceback. Exit codes: 0 success,
1 any error (bad flags, unreachable agent, invalid config), 2 when `members` matches nothing.
Every verb has its own Go-style FlagSet and answers `-h` with its help on stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pyconsul.agent.cli import (
    acl,
    agent,
    catalog,
    common,
    event,
    info,
    keyring,
    kv,
    lock,
    maint,
    members,
    monitor,
    operator,
    rtt,
    services,
    snapshot,
    tls,
    watch,
)
from pyconsul.agent.cli.common import CLIError, Exit
from pyconsul.agent.config import ConfigError

__all__ = ["COMMANDS", "main", "run", "usage"]

COMMANDS: dict[str, tuple[common.Command, str]] = {
    **acl.COMMANDS, **agent.COMMANDS, **members.COMMANDS, **keyring.COMMANDS, **info.COMMANDS,
    **maint.COMMANDS, **lock.COMMANDS, **watch.COMMANDS, **monitor.COMMANDS, **event.COMMANDS, **rtt.COMMANDS,
    "services": (services.cmd_services, "Interact with services"),
    "kv": (kv.cmd_kv, "Interact with the key-value store"),
    "catalog": (catalog.cmd_catalog, "Interact with the catalog"),
    "operator": (operator.cmd_operator, "Provides cluster-level tools for Consul operators"),
    "snapshot": (snapshot.cmd_snapshot, "Saves, restores and inspects snapshots of the servers' state"),
    "tls": (tls.cmd_tls, "Builtin helpers for creating CAs and certificates"),
}


def usage() -> str:
    width = max(len(n) for n in COMMANDS) + 4
    lines = ["Usage: pyconsul [--version] [--help] <command> [<args>]", "", "Available commands are:"]
    lines += [f"    {name.ljust(width)} {text}" for name, (_, text) in sorted(COMMANDS.items())]
    return "\n".join(lines) + "\n"


def run(argv: Sequence[str]) -> int:
    """Dispatch one command line (without the program name); may raise CLIError/ConfigError."""
    if not argv:
        sys.stderr.write(usage())
        return 1
    verb, rest = argv[0], list(argv[1:])
    if verb in ("-h", "-help", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if verb in ("-v", "-version", "--version"):
        common.out(info.version_lines())
        return 0
    entry = COMMANDS.get(verb)
    if entry is None:
        sys.stderr.write(f"Error: unknown command {verb!r}\n\n{usage()}")
        return 1
    return entry[0](rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code and never raises (except SystemExit)."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except Exit as exc:
        return exc.code
    except (CLIError, ConfigError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        print(f"Error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
