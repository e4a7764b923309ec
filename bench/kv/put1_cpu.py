"""CPU time and context switches per single-client PUT, per server process (leader and followers).

    .venv/bin/python bench/kv/put1_cpu.py [--rev HEAD | --worktree] [--etcd] [--rounds 3] [--duration 5]

Wall-clock rates of one latency-bound client mostly measure the machine's load when it is shared; the CPU
each server spends per write does not. This starts a 3-server cluster of one pyconsul revision (`--rev`,
checked out with `git archive` as put1.py does; `--worktree`: the files as they are, for development) on
127.96.1.x, configured as in put1.py, optionally etcd (`--etcd`, 127.96.3.x), and for every round runs
`--duration` s of back-to-back PUTs from one client to the leader (bench.py's harness), reading each
server's utime+stime (/proc/PID/stat) and voluntary + involuntary context switches (/proc/PID/status)
before and after. Prints per round and the medians: ops/s, p50, CPU ms per PUT of the leader and of the
followers (summed), context switches per PUT (each is a sleep and a wake-up: a loop iteration that
waited, or a thread hand-off), and the harness's own CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gossip"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import REPO  # type: ignore[import-not-found,unused-ignore]  # bench/gossip
from put1 import TreeSide, checkout, up  # bench/kv/put1.py

import bench as kv  # bench/kv/bench.py

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> tuple[float, int]:
    """(CPU seconds of the whole process, context switches) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    ctx = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
            ctx += int(line.split()[1])
    return cpu, ctx


def threads_ctx(pid: int) -> int:
    """Context switches of every thread (the process's status counts only its main thread)."""
    total = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (t / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def measure(side: kv.Side, leader_ip: str, duration: float) -> dict[str, Any]:
    pids = {m.ip: m.proc.pid for m in side.members if m.proc is not None}
    before = {ip: (proc_sample(pid)[0], threads_ctx(pid)) for ip, pid in pids.items()}

    def make(k: int, j: int) -> kv.Request:
        return side.put(f"bench/k{(k * 7919 + j) % 1000}")

    res = kv.load(side, leader_ip, 1, duration, make, side.put_ok)
    after = {ip: (proc_sample(pid)[0], threads_ctx(pid)) for ip, pid in pids.items()}
    n = max(res["ok"], 1)
    lead_cpu = (after[leader_ip][0] - before[leader_ip][0]) / n * 1000
    lead_ctx = (after[leader_ip][1] - before[leader_ip][1]) / n
    fol = [ip for ip in pids if ip != leader_ip]
    fol_cpu = sum(after[ip][0] - before[ip][0] for ip in fol) / n * 1000
    fol_ctx = sum(after[ip][1] - before[ip][1] for ip in fol) / n
    return {"rate": res["rate"], "p50_ms": res["p50_ms"] or 0.0, "errors": res["errors"],
            "leader_cpu_ms": lead_cpu, "followers_cpu_ms": fol_cpu, "leader_ctx": lead_ctx,
            "followers_ctx": fol_ctx, "harness_cpu": res["harness_cpu"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--rev", default="HEAD", help="revision to measure (git archive; default HEAD)")
    g.add_argument("--worktree", action="store_true", help="run the files as they are (uncommitted work)")
    ap.add_argument("--etcd", action="store_true", help="also measure etcd (127.96.3.x)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="kv-put1cpu-"))
    sides: dict[str, kv.Side] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        cfg = work / "fast.json"
        cfg.write_text(json.dumps({"performance": {"raft_multiplier": 1, "raft_profile": "consul"}}) + "\n")
        if args.worktree:
            tree, label = REPO, "worktree"
        else:
            tree, label = work / "tree", checkout(args.rev, work / "tree")
        sides[label] = TreeSide(label, "127.96.1", 8500, (8300, 8301, 8500), work, args.timeout,
                                config=cfg, tree=tree)
        if args.etcd:
            sides["etcd"] = kv.EtcdSide("etcd", "127.96.3", 2379, (2379, 2380), work, args.timeout)
        for s in sides.values():
            if busy := s.busy_ports():
                raise kv.BenchError(f"{s.label}: ports already in use: {', '.join(busy)}")
        leaders = {name: up(s) for name, s in sides.items()}
        for r in range(args.rounds):
            for name, s in sides.items():
                res = measure(s, leaders[name], args.duration)
                results.setdefault(name, []).append(res)
                kv.log(f"round {r + 1} {name:<9} {res['rate']:6.0f}/s p50 {res['p50_ms']:5.2f} ms  CPU/PUT "
                       f"leader {res['leader_cpu_ms']:.3f} ms followers {res['followers_cpu_ms']:.3f} ms  ctxsw/PUT "
                       f"leader {res['leader_ctx']:.1f} followers {res['followers_ctx']:.1f}  errors {res['errors']}")
    except (kv.BenchError, OSError, subprocess.SubprocessError) as exc:
        kv.log(f"ERROR: {exc}")
        return 1
    finally:
        for s in sides.values():
            s.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'side':<10}{'ops/s':>7}{'p50 ms':>8}{'lead CPU ms':>12}{'fol CPU ms':>11}{'lead ctxsw':>11}"
          f"{'fol ctxsw':>10}   (medians over {args.rounds} rounds, per PUT)")
    for name, rs in results.items():
        def med(key: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(statistics.median(float(x[key]) for x in rs))
        print(f"{name:<10}{med('rate'):7.0f}{med('p50_ms'):8.2f}{med('leader_cpu_ms'):12.3f}"
              f"{med('followers_cpu_ms'):11.3f}{med('leader_ctx'):11.1f}{med('followers_ctx'):10.1f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
