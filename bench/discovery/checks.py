"""One agent running N HTTP checks (default 1,000 at a 10 s interval) against a local target: the agent's CPU
and how far each check drifts from its schedule (issue 12, item 10).

    .venv/bin/python bench/discovery/checks.py [--rev HEAD] [--checks 1000] [--interval 10s]
                                               [--duration 60] [--warmup 15]

The revision is checked out with `git worktree add --detach` into a temporary directory (uncommitted work is
never measured) and runs one server (`python -m pyconsul.agent agent -server -bootstrap-expect=1`) on
127.98.1.1. The target is an HTTP server in this process (asyncio, on 127.0.0.1) that answers 200 and
records when each check's path (/c/<i>) was hit. After registering the checks over the HTTP API and the
warm-up (every check has run), the bench reads the agent's utime + stime (all threads) from /proc at the start
and at the end of `--duration` seconds:

- CPU: as a percentage of one core.
- drift: for each check, its hits in the window are compared with its own schedule (first hit + k * interval);
  the report gives the largest gap between two hits minus the interval, and the largest phase error
  (|hit - (first + k * interval)|), over all checks, and how many checks ran the expected number of times.
- checks passing at the end (GET /v1/agent/checks).

The agent is killed by PID at the end (also on Ctrl-C); the worktree and data dir are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
IP = "127.98.1.1"

sys.path.insert(0, str(REPO / "bench"))
from provenance import header, launch_code  # noqa: E402 -- runs the revision's agent from its own tree

from pyconsul.agent.flags import parse_duration  # noqa: E402 -- Go durations, as the agent reads them


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Target:
    """HTTP/1.1 on 127.0.0.1 in a thread of this process: 200 "ok" for every path; hit times per path."""

    def __init__(self) -> None:
        self.hits: dict[str, list[float]] = {}
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=2048))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        server.close()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            line = await r.readline()
            await r.readuntil(b"\r\n\r\n")
            path = line.split(b" ")[1].decode()
            self.hits.setdefault(path, []).append(time.monotonic())
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await w.drain()
        except (OSError, asyncio.IncompleteReadError, IndexError, asyncio.LimitOverrunError):
            pass
        finally:
            w.close()


def api(path: str, method: str = "GET", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{IP}:8500{path}", data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
    return json.loads(raw) if raw.strip() else None


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


def drift(hits: dict[str, list[float]], paths: list[str], start: float, end: float,
          interval: float) -> tuple[float, float, int]:
    """(largest gap minus interval, largest phase error, checks with the expected number of runs)."""
    worst_gap = worst_phase = 0.0
    on_time = 0
    for p in paths:
        ts = [t for t in hits.get(p, []) if start <= t <= end]
        if not ts:
            worst_gap = max(worst_gap, end - start)
            continue
        for a, b in itertools.pairwise(ts):
            worst_gap = max(worst_gap, abs((b - a) - interval))
        for k, t in enumerate(ts):
            worst_phase = max(worst_phase, abs(t - (ts[0] + k * interval)))
        expected = int((end - ts[0]) // interval) + 1
        on_time += len(ts) == expected
    return worst_gap, worst_phase, on_time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default="HEAD", help="revision measured (default HEAD)")
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--interval", default="10s")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds measured (default 60)")
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds after registering (default 15)")
    args = ap.parse_args(argv)
    interval = parse_duration(args.interval)
    print(header())
    rev = git("rev-parse", args.rev)
    work = Path(tempfile.mkdtemp(prefix="bench-checks-"))
    tree = work / "tree"
    git("worktree", "add", "--detach", str(tree), rev)
    print(f"# measured: {rev} (detached worktree)")
    target = Target()
    target.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        conf = work / "fast.json"
        conf.write_text(json.dumps({"performance": {"raft_profile": "fast"}}))
        log = open(work / "agent.log", "wb")  # noqa: SIM115 -- closed with the process
        argv_ = [sys.executable, "-c", launch_code(tree), "agent", "-server", "-bootstrap-expect=1", "-node=bench",
                 f"-bind={IP}", f"-client={IP}", f"-data-dir={work / 'data'}", f"-config-file={conf}"]
        proc = subprocess.Popen(argv_, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=work)
        log.close()
        wait_for(lambda: api("/v1/status/leader"), 60, "a leader")
        paths = [f"/c/{i}" for i in range(args.checks)]
        for i, p in enumerate(paths):
            api("/v1/agent/check/register", "PUT",
                {"Name": f"c{i}", "HTTP": f"http://127.0.0.1:{target.port}{p}", "Interval": args.interval})
        time.sleep(args.warmup)  # the measured window starts after every staggered first run
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.duration)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        checks = api("/v1/agent/checks")
        passing = sum(1 for c in checks.values() if c["Status"] == "passing")
        gap, phase, on_time = drift(target.hits, paths, t0, t1, interval)
        cpu = 100.0 * (c1 - c0) / (t1 - t0)
        print(f"checks={args.checks} interval={args.interval} window={t1 - t0:.1f}s agent_cpu={cpu:.1f}% of one core "
              f"max_gap_error={gap * 1000:.0f}ms max_phase_error={phase * 1000:.0f}ms "
              f"on_schedule={on_time}/{args.checks} passing={passing}/{args.checks}")
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.wait(10)
        target.stop()
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
