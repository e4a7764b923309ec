"""`pyconsul-chaos`: run experiments, heal, check a history, serve the Toxiproxy API.

    pyconsul-chaos list
    pyconsul-chaos run EXPERIMENT -i INVENTORY [--out DIR] [--seed N] [--duration S] [--no-verify]
    pyconsul-chaos heal -i INVENTORY
    pyconsul-chaos check HISTORY.jsonl [--workload register|set]
    pyconsul-chaos toxiproxy [--listen HOST:PORT] [--config FILE] [--seed N]

Exit codes of `run`: 0 valid and healed, 1 a checker found a violation, 2 undecided (e.g. the checker's
time budget ran out), 3 the cluster did not heal, 4 bad input (file, inventory) or a failed set-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from pyconsul.chaos.experiment import ExperimentError, load
    from pyconsul.chaos.runner import Runner

    try:
        exp = load(args.experiment)
    except ExperimentError as exc:
        print(f"pyconsul-chaos: {exc}", file=sys.stderr)
        return 4
    if args.duration:
        exp = dataclasses.replace(exp, duration=args.duration,
                                  nemesis=tuple(s for s in exp.nemesis if s.at <= args.duration))
    out = Path(args.out) if args.out else Path("reports") / f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        runner = Runner(exp, args.inventory, out, seed=args.seed, progress=not args.quiet, verify=not args.no_verify)
        outcome = runner.run()
    except KeyboardInterrupt:
        print("pyconsul-chaos: interrupted; faults healed", file=sys.stderr)
        return 130
    except Exception as exc:  # set-up failures: one line, no traceback
        print(f"pyconsul-chaos: {exp.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 4
    print(json.dumps({"experiment": exp.name, "valid": outcome.valid, "healed": outcome.healed,
                      "report": str(out / "index.html")}))
    return outcome.exit_code


def _check(args: argparse.Namespace) -> int:
    from pyconsul.chaos import checker, history
    from pyconsul.chaos.runner import CHECKERS

    try:
        loaded = history.load(args.history)
    except (OSError, history.HistoryError) as exc:
        print(f"pyconsul-chaos: {args.history}: {exc}", file=sys.stderr)
        return 4
    names = ("linearizable", "stats") if args.workload == "register" else ("set", "stats")
    result = checker.compose({n: CHECKERS[n] for n in names})(loaded.ops)
    print(json.dumps(result.to_dict(), indent=1, default=str))
    return 0 if result.valid is True else 1 if result.valid is False else 2


def _heal(args: argparse.Namespace) -> int:
    from pyconsul.chaos.nemesis import heal_command

    return heal_command(args.inventory)


def _toxiproxy(args: argparse.Namespace) -> int:
    from pyconsul.chaos.toxiproxy.__main__ import main as toxiproxy_main

    argv = ["--listen", args.listen, "--log-level", args.log_level]
    if args.config:
        argv += ["--config", args.config]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    return toxiproxy_main(argv)


def _list(_args: argparse.Namespace) -> int:
    from pyconsul.chaos.experiment import available, load

    for name in available():
        print(f"{name:20s} {load(name).description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # ansible-playbook, ansible-inventory and pytest live next to this interpreter (the venv), which
    # need not be on PATH when pyconsul-chaos is run as .venv/bin/pyconsul-chaos
    here = os.path.dirname(sys.executable)
    if here not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")
    ap = argparse.ArgumentParser(prog="pyconsul-chaos", description="Chaos experiments against a pyconsul cluster.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run an experiment (a name from chaos/experiments or a YAML file)")
    p.add_argument("experiment")
    p.add_argument("-i", "--inventory", required=True, help="the Ansible inventory of the cluster")
    p.add_argument("--out", help="report directory (default ./reports/<name>-<time>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, help="shorten the load (nemesis steps after it are dropped)")
    p.add_argument("--no-verify", action="store_true", help="skip the testinfra check that the cluster healed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=_run)
    p = sub.add_parser("heal", help="undo every fault on the inventory's hosts (after a crash of a runner)")
    p.add_argument("-i", "--inventory", required=True)
    p.set_defaults(fn=_heal)
    p = sub.add_parser("check", help="check a history.jsonl")
    p.add_argument("history")
    p.add_argument("--workload", choices=("register", "set"), default="register")
    p.set_defaults(fn=_check)
    p = sub.add_parser("toxiproxy", help="serve the Toxiproxy 2.x HTTP API (TCP proxies with toxics)")
    p.add_argument("--listen", default="127.0.0.1:8474", help="API address HOST:PORT (default %(default)s)")
    p.add_argument("--config", help="JSON list of proxies to create at start (Toxiproxy's -config)")
    p.add_argument("--seed", type=int, help="random seed (toxicity rolls, jitter, slicer cuts)")
    p.add_argument("--log-level", default="WARNING", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(fn=_toxiproxy)
    p = sub.add_parser("list", help="list the experiments in chaos/experiments")
    p.set_defaults(fn=_list)
    args = ap.parse_args(argv)
    rc: int = args.fn(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
