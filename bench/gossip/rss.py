"""Memory and start-up of a client agent with the default configuration, any revisions side by side.

    .venv/bin/python bench/gossip/rss.py [--rev 92e6ecc --rev HEAD] [--agents 1] [--runs 5] [--settle 3]

The figure is the one `bench/gossip/bench.py` reports as "RSS per agent" (VmRSS of each agent once it is
up), without the serf side and the failure trials, so a change to start-up can be measured in seconds.
Each revision is checked out with `git worktree add --detach` into a temporary directory (uncommitted work
is never measured; `--tree PATH` measures a directory as it is, labelled "+tree") and runs, `--runs` times,
`--agents` client agents started at once as the gossip bench starts them (`pyconsul agent -node=N -bind=IP
-client=IP -data-dir=DIR`, the others with `-join=` the first; no servers, so anti-entropy only retries)
on its own loopback block (127.95.<k>.1..N). For every agent it records:

- api up: seconds from its process start until `GET /v1/agent/self` first answers 200 ("last API up" in
  the gossip bench is the slowest of them);
- VmRSS, RssAnon, RssFile (MiB) from /proc/PID/status `--settle` seconds after the last agent is up;
- with `--libs`, the shared objects (libssl, libcrypto, extension modules) the agent has mapped.

`--start installed` runs the agents as a regular (non-editable) install would run: `python -S` with the venv's
site-packages on `sys.path`, so the `.pth` files are not processed -- the venv's editable-install hook imports
pathlib, urllib.parse and ipaddress (and the distutils shim) into every process before the agent starts, which
an installed agent does not pay for; site.py itself is not imported either (a few KiB). `--start both` measures
every revision both ways, interleaved (sides labelled `REV` and `REV/inst`).

The output starts with the provenance header (bench/provenance.py) and names the file of the agent
package each tree runs. Every process is killed by PID (also on Ctrl-C); worktrees and data dirs are
removed. Exit status 1 when an agent did not come up within `--timeout`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import site
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from provenance import header, launch_code  # noqa: E402  (bench/provenance.py)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) / 1024
    if "VmRSS" not in out:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return out


def shared_objects(pid: int) -> list[str]:
    """The shared libraries and extension modules mapped into a process (from /proc/PID/maps)."""
    libs = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and ".so" in parts[5]:
            libs.add(Path(parts[5]).name)
    return sorted(libs)


def api_up(ip: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:8500/v1/agent/self", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def python_argv(code: str, installed: bool) -> list[str]:
    """The interpreter command running `code`: as the venv starts Python (site.py processes the .pth files,
    among them the editable install's finder), or, `installed`, with -S and site-packages put on sys.path by
    hand (no .pth file runs: what a non-editable install of the agent imports)."""
    if not installed:
        return [sys.executable, "-c", code]
    return [sys.executable, "-S", "-c", f"import sys\nsys.path.extend({site.getsitepackages()!r})\n{code}"]


@dataclass
class Side:
    label: str
    tree: Path
    block: str
    work: Path
    installed: bool = False
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ips(self, n: int) -> list[str]:
        return [f"{self.block}.{i}" for i in range(1, n + 1)]

    def where(self) -> str:
        """The agent module the tree imports, to prove the tree under test is the one running."""
        return subprocess.run(python_argv(launch_code(self.tree, "where"), self.installed), capture_output=True,
                              text=True, check=True, cwd=self.work).stdout.strip()

    def run_once(self, run: int, agents: int, settle: float, timeout: float) -> list[dict[str, Any]]:
        """Start `agents` agents at once, wait until each answers, settle, read /proc, kill them."""
        ips = self.ips(agents)
        starts: list[float] = []
        self.procs = []
        try:
            for i, ip in enumerate(ips):
                data = self.work / f"r{run}-a{i}"
                data.mkdir(parents=True)
                argv = [*python_argv(launch_code(self.tree), self.installed), "agent", f"-node=rss{i}",
                        f"-bind={ip}", f"-client={ip}", f"-data-dir={data}"]
                if i:
                    argv.append(f"-join={ips[0]}")
                log = open(self.work / f"r{run}-a{i}.log", "wb")  # noqa: SIM115 -- closed right after Popen
                starts.append(time.monotonic())
                self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.work,
                                                   stdin=subprocess.DEVNULL, start_new_session=True))
                log.close()
            up: dict[int, float] = {}
            deadline = time.monotonic() + timeout
            while len(up) < agents:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{self.label}: agents {sorted(set(range(agents)) - set(up))} not up "
                                     f"within {timeout}s (logs in {self.work}; use --keep)")
                for i, ip in enumerate(ips):
                    if i not in up and api_up(ip):
                        up[i] = time.monotonic() - starts[i]
                    if self.procs[i].poll() is not None:
                        raise SystemExit(f"{self.label}: agent {i} exited ({self.work / f'r{run}-a{i}.log'})")
                time.sleep(0.01)  # polling for readiness; the 10 ms is the resolution of "api up"
            time.sleep(settle)  # the measured quantity is the memory of an agent that has been up a while
            rows = []
            for i, p in enumerate(self.procs):
                if p.poll() is not None:
                    raise SystemExit(f"{self.label}: agent {i} exited while settling")
                rows.append({"run": run, "agent": i, "api_up_s": round(up[i], 3), **{
                    k: round(v, 2) for k, v in proc_memory(p.pid).items()}, "libs": shared_objects(p.pid)})
            return rows
        finally:
            self.stop()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    rss = [r["VmRSS"] for r in rows]
    return {"rss_mean": statistics.fmean(rss), "rss_min": min(rss), "rss_max": max(rss),
            "anon_mean": statistics.fmean(r["RssAnon"] for r in rows),
            "file_mean": statistics.fmean(r["RssFile"] for r in rows),
            "api_up_median": statistics.median(r["api_up_s"] for r in rows),
            "api_up_max": max(r["api_up_s"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rev", action="append", default=[], help="a revision to measure (repeatable; default HEAD)")
    ap.add_argument("--tree", type=Path, action="append", default=[], help="a source tree measured as it is")
    ap.add_argument("--agents", type=int, default=1, help="client agents started at once per run (default 1)")
    ap.add_argument("--runs", type=int, default=5, help="runs per revision (default 5)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after the last agent is up (default 3)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for the agents to come up (default 60)")
    ap.add_argument("--start", choices=("venv", "installed", "both"), default="venv",
                    help="how agents start: as the venv starts Python (default; its editable-install hook runs), "
                         "as a non-editable install (python -S, site-packages on sys.path), or both")
    ap.add_argument("--libs", action="store_true", help="also list the shared objects each revision maps")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) instead of removing it")
    ap.add_argument("--json", type=Path, help="also write every row here")
    args = ap.parse_args(argv)
    if not 1 <= args.agents <= 250:
        ap.error("--agents must be 1..250")

    sides_spec = [(git("rev-parse", "--short=9", r), r) for r in (args.rev or ([] if args.tree else ["HEAD"]))]
    print(header())
    root = Path(tempfile.mkdtemp(prefix="pyconsul-rss-"))
    trees: list[Path] = []
    sides: list[Side] = []

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "sides": {}}
    try:
        for k, (short, rev) in enumerate(sides_spec):
            tree = root / f"tree-{short}"
            git("worktree", "add", "--detach", str(tree), rev)
            trees.append(tree)
            sides.append(Side(short, tree, f"127.95.{k + 1}", root / f"run-{short}"))
        for k, path in enumerate(args.tree, start=len(sides)):
            sides.append(Side(f"{path.name}+tree", path.resolve(), f"127.95.{k + 1}", root / f"run-tree{k}"))
        if args.start != "venv":
            inst = [Side(f"{s.label}/inst", s.tree, "", Path(f"{s.work}-inst"), installed=True) for s in sides]
            sides = inst if args.start == "installed" else [x for pair in zip(sides, inst, strict=True) for x in pair]
        for k, s in enumerate(sides):
            s.block = f"127.95.{k + 1}"
        for s in sides:
            s.work.mkdir()
            how = "python -S, site-packages on sys.path" if s.installed else "the venv's python"
            print(f"# {s.label}: agent code from {s.where()} ({how})")
        print(f"# {args.agents} client agent(s) per run, {args.runs} runs per side (sides interleaved), "
              f"RSS read {args.settle:g} s after the last agent answered")
        rows: dict[str, list[dict[str, Any]]] = {s.label: [] for s in sides}
        for run in range(args.runs):
            for s in sides:  # interleaved, so a slow moment of the machine hits every side alike
                rows[s.label] += s.run_once(run, args.agents, args.settle, args.timeout)
        print(f"\n{'side':16} {'VmRSS mean':>10} {'min':>6} {'max':>6} {'anon':>6} {'file':>6} "
              f"{'api up p50':>10} {'max':>6}  (MiB, s)")
        for s in sides:
            sm = summary(rows[s.label])
            results["sides"][s.label] = {"summary": sm, "rows": rows[s.label]}
            print(f"{s.label:16} {sm['rss_mean']:10.2f} {sm['rss_min']:6.2f} {sm['rss_max']:6.2f} "
                  f"{sm['anon_mean']:6.2f} {sm['file_mean']:6.2f} {sm['api_up_median']:10.3f} "
                  f"{sm['api_up_max']:6.3f}")
        if args.libs:
            for s in sides:
                print(f"\n# {s.label} maps: {' '.join(rows[s.label][0]['libs'])}")
        if len(sides) == 2:
            a, b = (results["sides"][s.label]["summary"] for s in sides)
            print(f"\n{sides[1].label}/{sides[0].label}: RSS {b['rss_mean'] / a['rss_mean']:.2f}x, "
                  f"api up p50 {b['api_up_median'] / a['api_up_median']:.2f}x")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for s in sides:
            s.stop()
        for tree in trees:
            with contextlib.suppress(subprocess.CalledProcessError):
                git("worktree", "remove", "--force", str(tree))
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "prune")
        if args.keep:
            print(f"# work directory kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
