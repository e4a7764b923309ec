"""The `pyconsul` command line: Consul-style verbs that run an agent or talk to one over HTTP.

    common.py    errors, the HTTP client for the agent's API, flag parsing and help, tables
    agent.py     agent, validate
    members.py   members, join, leave, force-leave
    keyring.py   keygen, keyring
    info.py      info, version
    kv.py        kv put|get|delete|export|import
    catalog.py   catalog datacenters|nodes|services
    operator.py  operator raft list-peers|remove-peer, operator autopilot get-config|set-config
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

import importlib
import sys
from collections.abc import Iterator, Mapping, Sequence

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import CLIError, Exit
from pyconsul.agent.config_error import ConfigError

__all__ = ["COMMANDS", "main", "run", "usage"]

# verb -> (the module that implements it, the name of its function). A verb's module is imported when the
# verb runs, not before: `pyconsul agent` then carries none of the other verbs' imports (the snapshot
# archive, the lock recipes, the ACL and TLS helpers), about 2 MiB of every agent's memory.
VERBS: dict[str, tuple[str, str]] = {
    "acl": ("acl", "cmd_acl"), "agent": ("agent", "cmd_agent"), "validate": ("agent", "cmd_validate"),
    "members": ("members", "cmd_members"), "join": ("members", "cmd_join"), "leave": ("members", "cmd_leave"),
    "force-leave": ("members", "cmd_force_leave"), "keygen": ("keyring", "cmd_keygen"),
    "keyring": ("keyring", "cmd_keyring"), "info": ("info", "cmd_info"), "version": ("info", "cmd_version"),
    "maint": ("maint", "cmd_maint"), "reload": ("maint", "cmd_reload"), "lock": ("lock", "cmd_lock"),
    "watch": ("watch", "cmd_watch"), "monitor": ("monitor", "cmd_monitor"), "event": ("event", "cmd_event"),
    "rtt": ("rtt", "cmd_rtt"), "services": ("services", "cmd_services"), "kv": ("kv", "cmd_kv"),
    "catalog": ("catalog", "cmd_catalog"), "operator": ("operator", "cmd_operator"),
    "snapshot": ("snapshot", "cmd_snapshot"), "tls": ("tls", "cmd_tls"),
}
# One-line help of the verbs whose module has no COMMANDS table of its own.
_HELP = {
    "services": "Interact with services",
    "kv": "Interact with the key-value store",
    "catalog": "Interact with the catalog",
    "operator": "Provides cluster-level tools for Consul operators",
    "snapshot": "Saves, restores and inspects snapshots of the servers' state",
    "tls": "Builtin helpers for creating CAs and certificates",
}


class _Commands(Mapping[str, tuple[common.Command, str]]):
    """verb -> (function, one-line help), importing a verb's module on first look-up (VERBS)."""

    def __getitem__(self, verb: str) -> tuple[common.Command, str]:
        module, func = VERBS[verb]
        mod = importlib.import_module(f"pyconsul.agent.cli.{module}")
        table = getattr(mod, "COMMANDS", {})
        return (getattr(mod, func), table[verb][1] if verb in table else _HELP[verb])

    def __iter__(self) -> Iterator[str]:
        return iter(VERBS)

    def __len__(self) -> int:
        return len(VERBS)


COMMANDS: Mapping[str, tuple[common.Command, str]] = _Commands()


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
        from pyconsul.agent.cli import info

        common.out(info.version_lines())
        return 0
    if verb not in VERBS:
        sys.stderr.write(f"Error: unknown command {verb!r}\n\n{usage()}")
        return 1
    return COMMANDS[verb][0](rest)


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
