"""``pyconsul-lab up|down|status|ssh HOST -i INVENTORY`` — local hosts for Ansible (see lab.ops).

Exit codes: 0 success; 1 the lab is not (fully) up / something could not be done; 2 bad input (inventory,
usage) or not root — then nothing was created.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pyconsul.lab import ops, sshd
from pyconsul.lab.inventory import host_specs
from pyconsul.lab.plan import PlanError
from pyconsul.lab.system import LabFailure


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyconsul-lab", description="Hosts for Ansible on this machine: one network "
                                "namespace, sshd and private /opt, /etc/pyconsul, /var/lib/pyconsul per host.")
    sub = p.add_subparsers(dest="verb", required=True)
    inv_help = "Ansible inventory (file or directory) whose hosts the lab creates at their ansible_host"
    s = sub.add_parser("up", help="create the inventory's hosts (idempotent) and wait until ssh answers")
    s.add_argument("-i", "--inventory", required=True, help=inv_help)
    s.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for ssh (default 30)")
    s = sub.add_parser("down", help="remove the inventory's hosts and everything they started")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("-i", "--inventory", help=inv_help)
    g.add_argument("--all", action="store_true", help="remove every lab host, whatever its inventory")
    s = sub.add_parser("status", help="show the inventory's hosts; exit 1 unless all are up")
    s.add_argument("-i", "--inventory", required=True, help=inv_help)
    s = sub.add_parser("ssh", help="ssh to HOST with the inventory's ssh settings; CMD after the options")
    s.add_argument("host")
    s.add_argument("-i", "--inventory", required=True, help=inv_help)
    s.add_argument("cmd", nargs="*", help="command to run after HOST and -i (default: a login shell)")
    return p


def split_ssh_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``ssh`` verb arguments into (options and HOST, CMD).

    The command starts at the first word after HOST that is not ``-i/--inventory`` (or after ``--``), so
    ``ssh lab-a -i inv ls -l`` runs ``ls -l``; argparse alone would read ``-l`` as an option of ours.
    """
    head: list[str] = []
    host_seen = False
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return head, list(argv[i + 1:])
        if word in ("-i", "--inventory"):
            head += list(argv[i:i + 2])
            i += 2
            continue
        if word.startswith("--inventory=") or (word.startswith("-i") and len(word) > 2) or word in ("-h", "--help"):
            head.append(word)
        elif host_seen:
            return head, list(argv[i:])
        else:
            head.append(word)
            host_seen = True
        i += 1
    return head, []


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    cmd: list[str] = []
    if words[:1] == ["ssh"]:
        head, cmd = split_ssh_args(words[1:])
        words = ["ssh", *head]
    args = _parser().parse_args(words)
    try:
        ops.require_root()
        if args.verb == "down" and args.all:
            return ops.down(None)
        specs = host_specs(args.inventory)
        if args.verb == "up":
            return ops.up(specs, args.timeout)
        if args.verb == "down":
            return ops.down(specs)
        if args.verb == "status":
            return ops.status(specs)
        by_name = {s.name: s for s in specs}
        if args.host not in by_name:
            raise PlanError(f"host {args.host} is not in inventory {args.inventory} ({', '.join(by_name)})")
        argv_ssh = sshd.ssh_argv(by_name[args.host], cmd)
        sys.stdout.flush()
        os.execvp(argv_ssh[0], argv_ssh)
    except (PlanError, PermissionError) as e:
        print(f"pyconsul-lab: {e}", file=sys.stderr)
        return 2
    except LabFailure as e:
        print(f"pyconsul-lab: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
