"""Single-client PUT latency: two pyconsul revisions and etcd, interleaved in one run.

    .venv/bin/python bench/kv/put1.py [--before f109767] [--after HEAD] [--rounds 5] [--duration 5] [--clients 1]

bench.py measures one side after the other; on a shared (or busy) 2-core machine the load drifts between
the two halves and a ratio of 1-client rates mostly measures that drift. Here all three 3-server
clusters run at once -- `--before` and `--after` (each checked out with `git archive` into a temp dir,
so uncommitted work is never measured) on 127.95.1.x / 127.95.2.x, etcd on 127.95.3.x, configured as in
bench.py -- and the load phases alternate: every round runs `--duration` seconds of back-to-back PUTs
from one client (or `--clients`; one keep-alive connection each, to the leader; 64-byte values over
1,000 keys; bench.py's harness) against each cluster in turn, in a rotating order. Idle clusters cost
little (bench/idle).
Prints every round, then the median rate and p50/p99 of each side over the rounds and the ratios
after/etcd and after/before, with the machine, the revisions and the load average before and after.
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
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gossip"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import REPO, machine  # type: ignore[import-not-found,unused-ignore]  # bench/gossip

import bench as kv  # bench/kv/bench.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from provenance import launch_code  # the agent of the given tree (as bench/idle does)


@dataclass
class TreeSide(kv.PyconsulSide):
    tree: Path | None = None

    def argv(self, m: kv.Member) -> list[str]:
        argv = super().argv(m)
        assert self.tree is not None
        return [argv[0], "-c", launch_code(self.tree), *argv[3:]]


def git(*args: str) -> str:
    out: str = subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout
    return out.strip()


def checkout(rev: str, dest: Path) -> str:
    sha = git("rev-parse", "--short", rev)
    dest.mkdir(parents=True)
    paths = ["agent"]
    has_setup = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{sha}:setup.py"], capture_output=True)
    if has_setup.returncode == 0:
        paths.append("setup.py")  # the pyconsul.* namespace mapping (provenance.launch_code looks for it)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, *paths], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return sha


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def up(side: kv.Side) -> str:
    for i in range(side.n):
        side.start(i)
    if isinstance(side, kv.PyconsulSide):
        for i in range(1, side.n):
            side.join(i, side.members[0].ip)
    lead = side.wait_leader(range(side.n))
    side.wait_put(lead)
    ip = side.members[lead].ip
    c = side.conn(ip)
    try:
        for i in range(1000):
            kv.call(c, side.put(f"bench/k{i}"))
    finally:
        c.close()
    return ip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="f109767", help="revision measured as 'before' (default f109767)")
    ap.add_argument("--after", default="HEAD", help="revision measured as 'after' (default HEAD)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; each loads every side once (default 5)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load phase (default 5)")
    ap.add_argument("--clients", type=int, default=1, help="concurrent clients (default 1: latency-bound)")
    ap.add_argument("--timeout", type=float, default=60.0, help="deadline of each wait, s (default 60)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if not shutil.which("etcd"):
        ap.error("the etcd binary is not on PATH (apt-get install etcd-server)")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="kv-put1-"))
    sides: dict[str, kv.Side] = {}
    revs: dict[str, str] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    meta: dict[str, Any] = machine({"etcd": ["etcd", "--version"]})
    meta |= {"command": " ".join(sys.argv), "load_before": loadavg()}
    try:
        cfg = work / "fast.json"
        cfg.write_text(json.dumps({"performance": {"raft_multiplier": 1, "raft_profile": "consul"}}) + "\n")
        for k, (name, rev) in enumerate((("before", args.before), ("after", args.after)), start=1):
            revs[name] = checkout(rev, work / f"tree-{name}")
            sides[name] = TreeSide(name, f"127.95.{k}", 8500, (8300, 8301, 8500), work, args.timeout,
                                   config=cfg, tree=work / f"tree-{name}")
        sides["etcd"] = kv.EtcdSide("etcd", "127.95.3", 2379, (2379, 2380), work, args.timeout)
        for s in sides.values():
            if busy := s.busy_ports():
                raise kv.BenchError(f"{s.label}: ports already in use: {', '.join(busy)}")
        leaders = {name: up(s) for name, s in sides.items()}
        names = list(sides)
        for r in range(args.rounds):
            order = names[r % 3:] + names[:r % 3]
            for name in order:
                s = sides[name]

                def make(k: int, j: int, s: kv.Side = s) -> kv.Request:
                    return s.put(f"bench/k{(k * 7919 + j) % 1000}")

                res = kv.load(s, leaders[name], args.clients, args.duration, make, s.put_ok)
                results.setdefault(name, []).append(res)
                kv.log(f"round {r + 1} {name:<6} {res['rate']:7.0f}/s  p50 {res['p50_ms'] or 0:6.2f} ms  "
                       f"p99 {res['p99_ms'] or 0:6.2f} ms  errors {res['errors']}  load {loadavg()}")
    except (kv.BenchError, OSError, subprocess.SubprocessError) as exc:
        kv.log(f"ERROR: {exc}")
        return 1
    finally:
        for s in sides.values():
            s.close()
        shutil.rmtree(work, ignore_errors=True)
    meta["load_after"] = loadavg()

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] or 0.0 for x in results[name])

    print(f"\n{args.clients}-client PUT, {args.rounds} rounds x {args.duration:.0f} s per side, interleaved; "
          f"{meta['date']}; {meta['cpus']} CPUs ({meta['cpu']}); Python {meta['python']}; {meta['etcd']}")
    print(f"before = {args.before} ({revs['before']}), after = {args.after} ({revs['after']}); "
          f"load average {meta['load_before']} -> {meta['load_after']}")
    print(f"{'side':<8}{'ops/s':>9}{'p50 ms':>9}{'p99 ms':>9}   (medians over rounds)")
    for name in sides:
        print(f"{name:<8}{med(name, 'rate'):9.0f}{med(name, 'p50_ms'):9.2f}{med(name, 'p99_ms'):9.2f}")
    ratio_e = med("after", "rate") / med("etcd", "rate")
    ratio_b = med("after", "rate") / med("before", "rate")
    print(f"after/etcd {ratio_e:.2f}x   after/before {ratio_b:.2f}x"
          + ("   (goal of issue 10: after/etcd >= 1.0x)" if args.clients == 1 else ""))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "revisions": revs, "rounds": results,
                                         "after_vs_etcd": ratio_e, "after_vs_before": ratio_b}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
