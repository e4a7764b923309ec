"""Catalog register/deregister throughput on a 3-server cluster, side by side with our own KV PUT rate in the
same run (issue 12, item 10: register >= 0.5x our KV PUT rate).

    .venv/bin/python bench/discovery/register.py [--rev HEAD] [--clients 1,16,64] [--rounds 5] [--duration 5]
                                                 [--no-check]

No peer exists for the catalog (etcd has none), so the comparison is with our own KV, as the issue asks. The
revision is checked out with `git worktree add --detach` into a temporary directory (uncommitted work is never
measured); three servers (`python -m pyconsul.agent agent -server -bootstrap-expect=3`, `{"performance":
{"raft_multiplier": 1, "raft_profile": "consul"}}` as bench/kv/put1.py) run on 127.98.3.1-3 and are joined.
The client harness is bench/kv/bench.py's (Python threads in this process, one keep-alive `http.client`
connection per client, requests back to back, all to the leader):

- kv: `PUT /v1/kv/bench/k<i>` with a 64-byte value over 1,000 keys (answer `true`).
- catalog: each client alternates `PUT /v1/catalog/register` (node `bench-n<client>`, address, service
  `web` with ID `web-<client>-<i>` over 16 IDs per client, port, tags, and one service check, passing, unless
  `--no-check`) and `PUT /v1/catalog/deregister` of that service ID (answer `true`): one Raft entry each.

Every round runs one `--duration`-second phase of each kind for every `--clients` count, kinds in a rotating
order, so machine load drifting during the run hits both alike. Prints every phase (rate, p50/p99, errors,
CPU per committed operation of the leader and of all three servers (utime + stime from /proc), the harness's
CPU and the load average), then per client count the median rates over the rounds, the ratio catalog/kv
(goal >= 0.5), and the ratio of the leader's CPU per operation, kv/catalog: what the rate ratio tends to
when the leader is CPU-bound, whatever else loads the machine. `--nice -10` runs the bench and the servers
ahead of other processes (niceness and scheduler autogroup, as bench/discovery/watchers.py). Every process
is killed by PID at the end (also on Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NET = "127.98.3"
CLK_TCK = os.sysconf("SC_CLK_TCK")
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "gossip"))
sys.path.insert(0, str(REPO / "bench" / "kv"))
from provenance import header, launch_code  # noqa: E402 -- runs the revision's agent from its own tree

import bench as kv  # noqa: E402 -- bench/kv/bench.py: sides, harness


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all threads (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def autogroup_nice(pid: int | str, nice: int) -> str:
    """As bench/discovery/watchers.py: the niceness of `pid`'s scheduler autogroup (its session)."""
    try:
        f = Path(f"/proc/{pid}/autogroup")
        f.write_text(str(nice))
        return f.read_text().strip()
    except OSError as exc:
        return f"unchanged ({exc.strerror})"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class TreeSide(kv.PyconsulSide):
    """bench/kv's pyconsul side, running the agent of a checked-out tree."""

    tree: Path | None = None

    def argv(self, m: kv.Member) -> list[str]:
        argv = super().argv(m)
        assert self.tree is not None
        return [argv[0], "-c", launch_code(self.tree), *argv[3:]]


def catalog_request(k: int, j: int, with_check: bool) -> kv.Request:
    sid = f"web-{k}-{(j // 2) % 16}"
    node = f"bench-n{k}"
    if j % 2:
        return ("PUT", "/v1/catalog/deregister", json.dumps({"Node": node, "ServiceID": sid}).encode())
    body: dict[str, Any] = {"Node": node, "Address": f"10.1.{k // 250}.{k % 250 + 1}",
                            "Service": {"ID": sid, "Service": "web", "Port": 8000 + j % 1000, "Tags": ["bench", "v1"]}}
    if with_check:
        body["Check"] = {"CheckID": f"service:{sid}", "Name": "web alive", "ServiceID": sid, "Status": "passing"}
    return ("PUT", "/v1/catalog/register", json.dumps(body).encode())


def kv_request(k: int, j: int) -> kv.Request:
    return ("PUT", f"/v1/kv/bench/k{(k * 7919 + j) % 1000}", kv.VALUE)


def maker(kind: str, with_check: bool) -> Callable[[int, int], kv.Request]:
    if kind == "kv":
        return kv_request
    return lambda k, j: catalog_request(k, j, with_check)


def true_ok(status: int, body: bytes) -> bool:
    return status == 200 and body.strip() == b"true"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default="HEAD", help="revision measured (default HEAD)")
    ap.add_argument("--clients", default="1,16,64", help="comma-separated client counts (default 1,16,64)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per phase (default 5)")
    ap.add_argument("--no-check", action="store_true", help="register services without a check")
    ap.add_argument("--timeout", type=float, default=60.0, help="deadline of each wait, s (default 60)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the bench (its client threads) and the servers at this niceness, and their "
                         "scheduler autogroups too (e.g. -10 as root; default 0: unchanged)")
    args = ap.parse_args(argv)
    ag = ""
    if args.nice:
        with contextlib.suppress(OSError):
            os.setsid()  # a session (so an autogroup) of our own, when we are not a process group leader
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # the servers inherit it
        ag = f"; niceness {args.nice}, bench autogroup {autogroup_nice('self', args.nice)}"
    counts = [int(x) for x in args.clients.split(",") if x.strip()]

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    print(header())
    rev = git("rev-parse", args.rev)
    work = Path(tempfile.mkdtemp(prefix="bench-register-"))
    tree = work / "tree"
    git("worktree", "add", "--detach", str(tree), rev)
    print(f"# measured: {rev} (detached worktree){ag}; load {loadavg()}", flush=True)
    side: TreeSide | None = None
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    rc = 0
    try:
        cfg = work / "fast.json"
        cfg.write_text(json.dumps({"performance": {"raft_multiplier": 1, "raft_profile": "consul"}}) + "\n")
        side = TreeSide("pyconsul", NET, 8500, (8300, 8301, 8500), work, args.timeout, config=cfg, tree=tree)
        if busy := side.busy_ports():
            raise kv.BenchError(f"ports already in use: {', '.join(busy)}")
        for i in range(side.n):
            side.start(i)
            proc = side.members[i].proc
            if args.nice and proc is not None:
                print(f"# {side.members[i].name} autogroup {autogroup_nice(proc.pid, args.nice)}")
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
        kinds = ["kv", "catalog"]
        for r in range(args.rounds):
            for n in counts:
                for kind in kinds[r % 2:] + kinds[:r % 2]:
                    pids = [m.proc.pid for m in side.members if m.proc is not None]
                    lpid = side.members[lead].proc.pid  # type: ignore[union-attr]
                    c0, l0 = sum(map(cpu_seconds, pids)), cpu_seconds(lpid)
                    res = kv.load(side, ip, n, args.duration, maker(kind, not args.no_check), true_ok)
                    c1, l1 = sum(map(cpu_seconds, pids)), cpu_seconds(lpid)
                    res["leader_cpu_ms_per_op"] = (l1 - l0) * 1000 / max(1, res["ok"])
                    res["servers_cpu_ms_per_op"] = (c1 - c0) * 1000 / max(1, res["ok"])
                    results.setdefault((kind, n), []).append(res)
                    print(f"round {r + 1} clients {n:3d} {kind:<8}{res['rate']:8.0f}/s"
                          f"  p50 {res['p50_ms'] or 0:6.2f} ms"
                          f"  p99 {res['p99_ms'] or 0:7.2f} ms  errors {res['errors']}"
                          f"{' ' + str(res['error_samples'][:2]) if res['errors'] else ''}"
                          f"  CPU/op: leader {res['leader_cpu_ms_per_op']:.2f} ms, 3 servers "
                          f"{res['servers_cpu_ms_per_op']:.2f} ms  harness CPU {res['harness_cpu']:.2f}"
                          f"  load {loadavg()}",
                          flush=True)
        if dead := side.dead():
            raise kv.BenchError(f"{', '.join(dead)} exited during the run")
    except (kv.BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        rc = 1
    finally:
        if side is not None:
            side.close()
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(work, ignore_errors=True)
    if rc:
        return rc

    def med(kind: str, n: int, key: str) -> float:
        return statistics.median(x[key] or 0.0 for x in results[(kind, n)])

    print(f"\nmedians over {args.rounds} rounds x {args.duration:.0f} s per phase; catalog = register and deregister "
          f"alternating{' (no check)' if args.no_check else ' (service + 1 check)'}; load {loadavg()}")
    for n in counts:
        kv_rate, cat_rate = med("kv", n, "rate"), med("catalog", n, "rate")
        ratio = cat_rate / kv_rate if kv_rate else 0.0
        kv_cpu, cat_cpu = med("kv", n, "leader_cpu_ms_per_op"), med("catalog", n, "leader_cpu_ms_per_op")
        print(f"clients={n} kv_put={kv_rate:.0f}/s (p50 {med('kv', n, 'p50_ms'):.2f} ms) "
              f"catalog={cat_rate:.0f}/s (p50 {med('catalog', n, 'p50_ms'):.2f} ms) "
              f"catalog/kv={ratio:.2f}x goal(>=0.5x)={'PASS' if ratio >= 0.5 else 'MISS'} "
              f"leader_cpu_per_op kv={kv_cpu:.2f}ms catalog={cat_cpu:.2f}ms (kv/catalog {kv_cpu / cat_cpu:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
