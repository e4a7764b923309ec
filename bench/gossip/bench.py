"""Gossip benchmark: N pyconsul agents vs N HashiCorp serf agents, real processes on loopback.

    .venv/bin/python bench/gossip/bench.py --nodes 10 --trials 10 [--json out.json]

For each side, one after the other: (1) join convergence: the seed starts, then N-1 agents start with
-join=<seed> (staggered a little); time from the last process start until every agent lists all N
members alive. (2) failure detection, `--trials` times: SIGKILL a non-seed agent picked by a seeded RNG
(the same victims on both sides), time until every remaining agent reports it failed; restart it with
the same name, address and data dir (and -join) and wait until all N agents list all N alive again.
(3) RSS (VmRSS) of every agent after convergence. Member lists are polled by one thread per agent every
`--interval` s; a time is the moment a poll's answer first showed the condition. Prints a table with the
ratios ours/serf and the goals of issue 2 (detection <= 1.0x serf, RSS <= 2x serf).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from cluster import PYCONSUL, SERF_CLI, SERF_RPC, Cluster, Flavour, Poll, Statuses, machine
from provenance import header  # bench/provenance.py (cluster puts bench/ on sys.path)


class BenchError(RuntimeError):
    pass


def percentile(xs: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (with 10 samples p99 is the maximum)."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def _since(polls: Sequence[Poll], t0: float) -> list[float | None]:
    return [None if p.satisfied is None else p.satisfied - t0 for p in polls]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_side(flavour: Flavour, net: str, args: argparse.Namespace, victims: Sequence[int],
             workdir: Path) -> dict[str, Any]:
    n = args.nodes
    c = Cluster(flavour, net, n, workdir, args.interval)
    res: dict[str, Any] = {"side": flavour.label, "net": net, "errors": [], "trials": []}
    names = c.names

    def all_alive(st: Statuses) -> bool:
        return all(st.get(x) == "alive" for x in names)

    try:
        busy = c.busy_ports()
        if busy:
            raise BenchError(f"{flavour.label}: ports already in use: {', '.join(busy)}")
        log(f"[{flavour.label}] starting seed {names[0]} on {c.agents[0].ip}")
        c.start(0, join=False)
        [seed] = c.watch([0], lambda st: st.get(names[0]) == "alive", args.timeout)
        if seed.satisfied is None:
            raise BenchError(f"{flavour.label}: seed {names[0]} never answered; see {c.agents[0].log_path}")
        starts = []
        for i in range(1, n):
            starts.append(c.start(i, join=True))
            if i < n - 1 and args.stagger > 0:
                time.sleep(args.stagger)  # pacing of the starts on a small machine, not synchronisation
        t_last = starts[-1]
        polls = c.watch(range(n), all_alive, args.timeout)
        if any(p.satisfied is None for p in polls):
            late = [a.name for a, p in zip(c.agents, polls, strict=True) if p.satisfied is None]
            raise BenchError(f"{flavour.label}: no convergence within {args.timeout}s at {late}; dead: {c.dead()}")
        res["convergence_s"] = max(p.satisfied for p in polls if p.satisfied is not None) - t_last
        res["api_up_s"] = max(p.first_answer for p in polls[1:] if p.first_answer is not None) - t_last
        res["rss_mib"] = c.rss()
        log(f"[{flavour.label}] converged in {res['convergence_s']:.2f}s; "
            f"RSS mean {sum(res['rss_mib']) / n:.1f} MiB")
        for k, v in enumerate(victims):
            run_trial(c, k, v, args, res, all_alive)
            if res["errors"]:
                break
        res["rss_end_mib"] = c.rss()
    except BenchError as exc:
        res["errors"].append(str(exc))
        log(f"[{flavour.label}] ERROR: {exc}")
    finally:
        res["poll_latency_ms"] = c.poll_latency_ms()
        c.close()
    res["logs"] = scan_logs([a.log_path for a in c.agents])
    detect = [t["detect_s"] for t in res["trials"] if t["detect_s"] is not None]
    res["detect"] = {"n": len(detect), "p50": percentile(detect, 50), "p99": percentile(detect, 99),
                     "min": min(detect, default=None), "max": max(detect, default=None)}
    first = [t["first_observer_s"] for t in res["trials"] if t["first_observer_s"] is not None]
    rejoin = [t["rejoin_s"] for t in res["trials"] if t["rejoin_s"] is not None]
    res["first_observer_p50"] = percentile(first, 50)
    # per trial, last observer minus first: the dissemination time, quantised by the poll interval
    spread = [t["detect_s"] - t["first_observer_s"] for t in res["trials"]
              if t["detect_s"] is not None and t["first_observer_s"] is not None]
    res["spread_p50"] = percentile(spread, 50)
    res["rejoin_p50"] = percentile(rejoin, 50)
    res["rejoin_max"] = max(rejoin, default=None)
    return res


def run_trial(c: Cluster, k: int, v: int, args: argparse.Namespace, res: dict[str, Any],
              all_alive: Callable[[Statuses], bool]) -> None:
    victim = c.agents[v].name
    dead = c.dead()
    if dead:
        raise BenchError(f"{c.flavour.label}: agents exited on their own before trial {k + 1}: {dead}")
    others = [i for i in range(c.n) if i != v]
    t_kill = c.kill9(v)
    seen = _since(c.watch(others, lambda st: st.get(victim) == "failed", args.timeout), t_kill)
    got = [x for x in seen if x is not None]
    trial: dict[str, Any] = {
        "victim": victim,
        "detect_s": max(got) if len(got) == len(others) else None,
        "first_observer_s": min(got, default=None),
        "per_agent_s": seen,
    }
    t_start = c.start(v, join=True)
    back = _since(c.watch(range(c.n), all_alive, args.timeout), t_start)
    trial["rejoin_s"] = None if None in back else max(x for x in back if x is not None)
    res["trials"].append(trial)

    def fmt(x: float | None) -> str:
        return "TIMEOUT" if x is None else f"{x:.2f}s"

    log(f"[{c.flavour.label}] trial {k + 1}: kill {victim}: first saw failed {fmt(trial['first_observer_s'])}, "
        f"all {fmt(trial['detect_s'])}; restarted, all alive again {fmt(trial['rejoin_s'])}")
    if trial["detect_s"] is None:
        missing = [c.agents[i].name for i, x in zip(others, seen, strict=True) if x is None]
        res["errors"].append(f"trial {k + 1}: {victim} not reported failed by {missing} within {args.timeout}s")
    if trial["rejoin_s"] is None:
        raise BenchError(f"{c.flavour.label}: trial {k + 1}: {victim} did not rejoin everywhere "
                         f"within {args.timeout}s; dead: {c.dead()}")


_LEVEL = re.compile(r"\[(ERROR|ERR|WARN|WARNING)\]|Traceback|Exception")


def scan_logs(paths: Sequence[Path]) -> dict[str, Any]:
    """Count error/warning lines in the agents' logs; the most common ones, digits and addresses masked."""
    counts: Counter[str] = Counter()
    levels: Counter[str] = Counter()
    for p in paths:
        if not p.exists():
            continue
        for line in p.read_text(errors="replace").splitlines():
            m = _LEVEL.search(line)
            if not m:
                continue
            levels["error" if m.group(0).startswith(("[ERR", "Trace", "Exc")) else "warn"] += 1
            counts[re.sub(r"\d+", "#", line[m.start():]).strip()[:160]] += 1
    return {"errors": levels["error"], "warnings": levels["warn"], "top": counts.most_common(6)}


def _f(x: float | None, unit: str = "", nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}{unit}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def report(ours: dict[str, Any], serf: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    def mean(xs: Sequence[float] | None) -> float | None:
        return sum(xs) / len(xs) if xs else None

    rows: list[tuple[str, float | None, float | None, str]] = [
        ("join convergence (s, from last start)", ours.get("convergence_s"), serf.get("convergence_s"), "s"),
        ("  of which: last API up (s)", ours.get("api_up_s"), serf.get("api_up_s"), "s"),
        ("failure detection p50 (s, all agents)", ours["detect"]["p50"], serf["detect"]["p50"], "s"),
        ("failure detection p99 (s, all agents)", ours["detect"]["p99"], serf["detect"]["p99"], "s"),
        ("failure detection min (s)", ours["detect"]["min"], serf["detect"]["min"], "s"),
        ("failure detection max (s)", ours["detect"]["max"], serf["detect"]["max"], "s"),
        ("first agent to report failed p50 (s)", ours["first_observer_p50"], serf["first_observer_p50"], "s"),
        ("first -> all agents p50 (s, per trial)", ours["spread_p50"], serf["spread_p50"], "s"),
        ("restart -> alive everywhere p50 (s)", ours["rejoin_p50"], serf["rejoin_p50"], "s"),
        ("restart -> alive everywhere max (s)", ours["rejoin_max"], serf["rejoin_max"], "s"),
        ("RSS per agent mean (MiB)", mean(ours.get("rss_mib")), mean(serf.get("rss_mib")), "MiB"),
        ("RSS per agent max (MiB)", max(ours.get("rss_mib") or [0]) or None,
         max(serf.get("rss_mib") or [0]) or None, "MiB"),
        ("RSS mean after the trials (MiB)", mean(ours.get("rss_end_mib")), mean(serf.get("rss_end_mib")), "MiB"),
    ]
    w = max(len(r[0]) for r in rows) + 2
    print(f"\nGossip benchmark, {meta['nodes']} agents per side, {meta['trials']} kill -9 trials "
          f"(victims {', '.join(meta['victim_names'])}; seed {meta['seed']})")
    print(f"{meta['date']}; {meta['cpus']} CPUs ({meta['cpu']}); Linux {meta['kernel']}; Python {meta['python']}; "
          f"{meta['pyconsul']} @ {meta['git']}; serf {meta['serf']}")
    print(f"Resolution: member lists polled every {meta['interval'] * 1000:.0f} ms per agent in parallel; mean "
          f"poll latency ours {ours['poll_latency_ms']:.1f} ms, serf {serf['poll_latency_ms']:.1f} ms "
          f"({meta['serf_poll']}). Percentiles are nearest-rank"
          + (f" (with {meta['trials']} trials p99 = max)" if meta["trials"] < 100 else "") + ". Differences "
          "below one poll interval (first -> all) cannot be resolved: they mean 'seen in the same poll round'.\n")
    print(f"{'metric':<{w}}{'pyconsul':>10}{'serf':>10}{'ours/serf':>11}")
    for label, a, b, _unit in rows:
        r = _ratio(a, b)
        print(f"{label:<{w}}{_f(a):>10}{_f(b):>10}{_f(r, 'x'):>11}")
    rss_o, rss_s = mean(ours.get("rss_mib")), mean(serf.get("rss_mib"))
    ratios = {
        "detect_p50": _ratio(ours["detect"]["p50"], serf["detect"]["p50"]),
        "detect_p99": _ratio(ours["detect"]["p99"], serf["detect"]["p99"]),
        "convergence": _ratio(ours.get("convergence_s"), serf.get("convergence_s")),
        "rss_mean": _ratio(rss_o, rss_s),
    }
    goals = {"detect_p50": 1.0, "detect_p99": 1.0, "rss_mean": 2.0}
    verdict: dict[str, bool | None] = {}
    for k, g in goals.items():
        r = ratios[k]
        verdict[k] = None if r is None else r <= g
    print("\nRatios ours/serf and the goals of issue 2:")
    for k in ("detect_p50", "detect_p99", "convergence", "rss_mean"):
        goal = f"goal <= {goals[k]:.1f}x  " + ("n/a" if verdict[k] is None else "PASS" if verdict[k] else "MISS") \
            if k in goals else "(no goal)"
        print(f"  {k:<12} {_f(ratios[k], 'x'):>8}   {goal}")
    for side in (ours, serf):
        lg = side["logs"]
        print(f"\n{side['side']} logs: {lg['errors']} error lines, {lg['warnings']} warning lines"
              + (f"; errors: {side['errors']}" if side["errors"] else ""))
        for text, cnt in lg["top"]:
            print(f"  {cnt:>5}  {text}")
    return {"ratios": ratios, "goals": goals, "pass": verdict}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10, help="agents per side (default 10)")
    ap.add_argument("--trials", type=int, default=10, help="kill -9 trials per side (default 10)")
    ap.add_argument("--seed", type=int, default=1, help="RNG seed for the victims (default 1)")
    ap.add_argument("--interval", type=float, default=0.05, help="poll cadence per agent, s (default 0.05)")
    ap.add_argument("--stagger", type=float, default=0.05, help="pause between agent starts, s (default 0.05)")
    ap.add_argument("--timeout", type=float, default=90.0, help="deadline of each wait, s (default 90)")
    ap.add_argument("--py-net", default="127.90.0", help="/24 prefix for pyconsul agents (default 127.90.0)")
    ap.add_argument("--serf-net", default="127.91.0", help="/24 prefix for serf agents (default 127.91.0)")
    ap.add_argument("--serf-cli", action="store_true", help="poll serf with `serf members` instead of RPC")
    ap.add_argument("--workdir", type=Path, help="data dirs and agent logs (default: a temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the agent logs")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    args = ap.parse_args(argv)
    if args.nodes < 2 or args.trials < 0:
        ap.error("need --nodes >= 2 and --trials >= 0")
    if not shutil.which("serf"):
        ap.error("the serf binary is not on PATH")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks that kill the agents

    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random(args.seed)
    victims = [rng.randrange(1, args.nodes) for _ in range(args.trials)]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gossip-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    meta = machine({"serf": ["serf", "version"]})
    print(header(meta["provenance"]), flush=True)  # revision, machine, exact command: before any figure
    meta |= {"nodes": args.nodes, "trials": args.trials, "seed": args.seed, "interval": args.interval,
                        "stagger": args.stagger, "victims": victims, "command": " ".join(sys.argv),
                        "serf_poll": "serf members CLI" if args.serf_cli else "serf RPC members",
                        "victim_names": [f"{v + 1:02d}" for v in victims]}
    log(f"workdir {workdir}; victims (agent index) {victims}")
    try:
        ours = run_side(PYCONSUL, args.py_net, args, victims, workdir)
        serf = run_side(SERF_CLI if args.serf_cli else SERF_RPC, args.serf_net, args, victims, workdir)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"agent logs kept in {workdir}")
    summary = report(ours, serf, meta)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "pyconsul": ours, "serf": serf} | summary, indent=2) + "\n")
        log(f"raw results written to {args.json}")
    return 1 if ours["errors"] or serf["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
