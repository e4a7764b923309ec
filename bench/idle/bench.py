"""Idle cost of a 3-server cluster: CPU and wake-ups per second, two revisions side by side in one run.

    .venv/bin/python bench/idle/bench.py [--before REV] [--after REV] [--duration 60] [--warmup 20]

Each revision is checked out with `git worktree add --detach` into a temporary directory (so uncommitted
work is never measured) and runs three servers (`python -m pyconsul.agent agent -server -bootstrap-expect=3`) on
its own loopback block (127.96.<k>.1-3, Consul's default ports), all six servers at the same time. Once
each cluster has a leader and the warm-up has passed, the bench reads /proc for every server at the start
and at the end of `--duration` seconds:

- CPU: utime + stime of the process (all threads), as a percentage of one core.
- wake-ups: voluntary context switches summed over the process's threads (`/proc/PID/task/*/status`):
  each is the thread going to sleep (epoll, a lock, a timer) and being woken again. Involuntary switches
  (preemption, which depends on what else runs) are reported apart.

Nothing is written to the clusters: this is the cost of heartbeats, gossip and timers alone. Every process
is killed by PID at the end (also on Ctrl-C); worktrees and data dirs are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(REPO / "bench"))
from provenance import launch_code  # noqa: E402 -- runs any revision's agent from its own tree


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version()}


def proc_counters(pid: int) -> tuple[float, int, int]:
    """(cpu seconds, voluntary switches, involuntary switches) summed over the process's threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    vol = invol = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    invol += int(line.split()[1])
    return cpu, vol, invol


@dataclass
class Cluster:
    label: str
    rev: str
    tree: Path
    block: str
    work: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ips(self) -> list[str]:
        return [f"{self.block}.{i}" for i in (1, 2, 3)]

    def start(self) -> None:
        env = dict(os.environ)
        for i, ip in enumerate(self.ips(), 1):
            data = self.work / f"s{i}"
            data.mkdir(parents=True)
            log = open(self.work / f"s{i}.log", "wb")  # noqa: SIM115 -- closed with the process
            argv = [sys.executable, "-c", launch_code(self.tree), "agent", "-server", "-bootstrap-expect=3",
                    f"-node=s{i}", f"-bind={ip}", f"-client={ip}", f"-data-dir={data}", "-datacenter=idle",
                    f"-retry-join={self.ips()[0]}", "-retry-interval=1s"]
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                               stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.work))
            log.close()

    def leader(self) -> str:
        leaders = set()
        for ip in self.ips():
            with urllib.request.urlopen(f"http://{ip}:8500/v1/status/leader", timeout=2) as r:
                leaders.add(json.loads(r.read()))
        return leaders.pop() if len(leaders) == 1 else ""

    def check_code(self) -> str:
        """The agent module the servers import, to prove the tree under test is the one running."""
        return subprocess.run([sys.executable, "-c", launch_code(self.tree, "where")], capture_output=True, text=True,
                              check=True, cwd=self.work).stdout.strip()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(5)


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what} (last error: {last})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="f109767", help="revision measured first (default f109767)")
    ap.add_argument("--after", default="HEAD", help="revision compared with it (default HEAD)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds measured (default 60)")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds after the leader is known (default 20)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    revs = {"before": git("rev-parse", "--short=9", args.before), "after": git("rev-parse", "--short=9", args.after)}
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    print(f"# bench/idle  command: {' '.join(sys.argv)}")
    print(f"# bench revision: {git('rev-parse', '--short=9', 'HEAD')}{' (+uncommitted changes)' if dirty else ''}")
    print(f"# machine: {json.dumps(machine())}")
    print(f"# before = {revs['before']}, after = {revs['after']} (each run from its own git worktree)")

    root = Path(tempfile.mkdtemp(prefix="pyconsul-idle-"))
    clusters: list[Cluster] = []
    trees: list[Path] = []

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        for k, (label, rev) in enumerate(revs.items()):
            tree = root / f"tree-{label}"
            git("worktree", "add", "--detach", str(tree), rev)
            trees.append(tree)
            clusters.append(Cluster(label, rev, tree, f"127.96.{k + 1}", root / f"run-{label}"))
        for c in clusters:
            c.work.mkdir()
            print(f"# {c.label}: agent code from {c.check_code()}")
            c.start()
        for c in clusters:
            wait_for(lambda c=c: c.leader(), 90, f"a leader in the {c.label} cluster")
        time.sleep(args.warmup)  # the measured quantity is a rate over time; waiting is the method here
        pids = {c.label: [p.pid for p in c.procs] for c in clusters}
        t0 = time.monotonic()
        start = {pid: proc_counters(pid) for ps in pids.values() for pid in ps}
        time.sleep(args.duration)
        end = {pid: proc_counters(pid) for ps in pids.values() for pid in ps}
        elapsed = time.monotonic() - t0
        for c in clusters:
            if any(p.poll() is not None for p in c.procs):
                raise SystemExit(f"a server of the {c.label} cluster exited during the measurement")
        results: dict[str, Any] = {"revs": revs, "duration_s": elapsed, "machine": machine(), "servers": {}}
        print(f"\n{'side':8} {'rev':10} {'server':7} {'cpu %':>7} {'wakeups/s':>10} {'preempt/s':>10}")
        totals: dict[str, dict[str, float]] = {}
        for c in clusters:
            tot = {"cpu": 0.0, "wake": 0.0, "inv": 0.0}
            rows = []
            for i, pid in enumerate(pids[c.label], 1):
                cpu = (end[pid][0] - start[pid][0]) / elapsed * 100
                wake = (end[pid][1] - start[pid][1]) / elapsed
                inv = (end[pid][2] - start[pid][2]) / elapsed
                tot["cpu"] += cpu
                tot["wake"] += wake
                tot["inv"] += inv
                rows.append({"server": f"s{i}", "cpu_pct": round(cpu, 2), "wakeups_per_s": round(wake, 1),
                             "preemptions_per_s": round(inv, 1)})
                print(f"{c.label:8} {c.rev:10} s{i:<6} {cpu:7.2f} {wake:10.1f} {inv:10.1f}")
            print(f"{c.label:8} {c.rev:10} {'all 3':7} {tot['cpu']:7.2f} {tot['wake']:10.1f} {tot['inv']:10.1f}")
            results["servers"][c.label] = rows
            totals[c.label] = tot
        results["totals"] = totals
        b, a = totals["before"], totals["after"]
        print(f"\nafter/before: cpu {a['cpu'] / b['cpu']:.2f}x, wake-ups {a['wake'] / b['wake']:.2f}x "
              f"(3 idle servers, {elapsed:.0f} s)")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for c in clusters:
            c.stop()
        for tree in trees:
            with contextlib.suppress(subprocess.CalledProcessError):
                git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "prune")


if __name__ == "__main__":
    raise SystemExit(main())
