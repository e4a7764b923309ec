"""N blocking watchers (default 2,000) on one service against one server: how long until all are woken when a
check of the service turns critical, and what they cost the agent in memory (issue 12, item 10).

    .venv/bin/python bench/discovery/watchers.py [--rev HEAD] [--watchers 2000] [--rounds 5] [--wait 5m]
                                                 [--kv-probe 1.0]

The revision is checked out with `git worktree add --detach` into a temporary directory (uncommitted work is
never measured) and runs one server (`python -m pyconsul.agent agent -server -bootstrap-expect=1`) on
127.98.2.1. The bench raises its own RLIMIT_NOFILE to the hard limit before starting the agent, so the agent
inherits it; the agent's "Max open files" is read from /proc/<pid>/limits and printed.

Service `web` is registered with `PUT /v1/catalog/register` on node `web-node` (not the agent's node, so
anti-entropy leaves it alone) with one service check, passing. The watchers are N keep-alive HTTP/1.1
connections on asyncio Protocols in this process (one request each, no library: a response's arrival is
timestamped in `data_received`, so the client adds microseconds, not a parser's milliseconds), each sending
`GET /v1/health/service/web?index=<current>&wait=<--wait>`. The bench then waits until the agent is quiet (its
CPU under 2 % of a core over 0.5 s, i.e. every request is parsed and blocked) and reads the agent's VmRSS from
/proc/<pid>/status ("open"; "idle" is read before the connections were made).

Every round:

1. KV probe: `PUT /v1/kv/bench/probe` while all watchers are blocked, then `--kv-probe` seconds; the number of
   watchers answered in that time is printed (0 expected: a blocked query wakes only for the index names its
   read depends on).
2. The check turns critical (passing again in the next round, and so on) by re-registering it through
   `PUT /v1/catalog/register`. t_send is when the request is written, t_ack when its answer has arrived. Each
   watcher's latency is the arrival of its whole answer minus t_send: p50, p99 (nearest rank) and max over the
   N watchers. This includes the write's own Raft commit (the check is critical once it is applied), so it
   is an upper bound of "from the check turning critical". The agent answers the woken watchers before the
   writer (they are woken in the apply, the writer's answer is queued behind them), so t_ack is printed as a
   time from t_send too, with the number of watchers answered after it. Every answer is checked: 200, a
   larger X-Consul-Index, and the new status in the body.
3. The agent's CPU time (utime + stime from /proc) from t_send until the last answer, divided by N: the agent's
   cost per woken watcher, which does not depend on what else runs on the machine (unlike the latencies: on a
   loaded machine the agent waits for a core), and its share of one core over that span (100 % = it never
   waited), and how long its event loop thread (and all its threads) waited for a CPU in that span (from
   /proc/<pid>/task/*/schedstat: time runnable but not running). The bench's own CPU and wait are printed too.
   `--nice -10` runs the bench and the agent ahead of other processes, to measure the latencies on a machine
   others are loading: it sets the niceness and, as the kernel groups processes by session for scheduling
   (autogroup), the bench's and the agent's autogroup niceness (/proc/<pid>/autogroup).
4. The watchers are re-armed with the new index and the bench waits until the agent is quiet again.

The agent is killed by PID at the end (also on Ctrl-C); the worktree and data dir are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
IP = "127.98.2.1"
PORT = 8500

sys.path.insert(0, str(REPO / "bench"))
from provenance import header, launch_code  # noqa: E402 -- runs the revision's agent from its own tree


class BenchError(RuntimeError):
    pass


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sched(pid: int | str) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) over all threads, from /proc/<pid>/task/*/schedstat
    (a thread that ended in between is lost)."""
    run = wait = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            a, b = (t / "schedstat").read_text().split()[:2]
            run, wait = run + int(a), wait + int(b)
    return run / 1e9, wait / 1e9


def main_thread_wait(pid: int) -> float:
    """Seconds the agent's main thread (the event loop) was runnable but waiting for a CPU."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9


def autogroup_nice(pid: int | str, nice: int) -> str:
    """Set the niceness of `pid`'s scheduler autogroup (with kernel.sched_autogroup_enabled, a process's own
    niceness only ranks it within its session's group); the group as the kernel shows it, or why not."""
    try:
        f = Path(f"/proc/{pid}/autogroup")
        f.write_text(str(nice))
        return f.read_text().strip()
    except OSError as exc:
        return f"unchanged ({exc.strerror})"


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def nofile_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"soft {soft}, hard {hard}"
    return "unknown"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentile(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


@dataclass(slots=True)
class Answer:
    status: int
    index: int
    body: bytes
    t_first: float  # the first byte arrived
    t_done: float  # the whole answer arrived


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time; answers must carry Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fut: asyncio.Future[Answer] | None = None
        self.t_first = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def request(self, method: str, path: str, body: bytes = b"") -> asyncio.Future[Answer]:
        assert self.transport is not None and (self.fut is None or self.fut.done())
        self.fut = asyncio.get_running_loop().create_future()
        self.buf.clear()
        self.t_first = 0.0
        self.transport.write(f"{method} {path} HTTP/1.1\r\nHost: {IP}:{PORT}\r\nContent-Length: {len(body)}\r\n\r\n"
                             .encode() + body)
        return self.fut

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.t_first:
            self.t_first = now
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.fut is None or self.fut.done():
            return
        lines = bytes(self.buf[:end]).split(b"\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
        length = int(hdrs.get(b"content-length", b"0"))
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4:end + 4 + length])
        self.fut.set_result(Answer(status, int(hdrs.get(b"x-consul-index", b"0")), body, self.t_first, now))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError(f"connection lost: {exc}"))


async def connect() -> Conn:
    _, proto = await asyncio.get_running_loop().create_connection(Conn, IP, PORT)
    return proto


async def call(conn: Conn, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Answer:
    raw = json.dumps(body).encode() if body is not None else b""
    return await asyncio.wait_for(conn.request(method, path, raw), timeout)


def registration(status: str) -> dict[str, Any]:
    return {"Node": "web-node", "Address": "127.0.0.2",
            "Service": {"ID": "web1", "Service": "web", "Port": 8080},
            "Check": {"CheckID": "web-alive", "Name": "web alive", "ServiceID": "web1", "Status": status}}


async def wait_quiet(pid: int, timeout: float = 120.0) -> float:
    """Until the agent used < 2 % of a core over 0.5 s (every request parsed and blocked); the seconds taken."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        c0 = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(pid) - c0 < 0.01:
            return time.monotonic() - t0
    raise BenchError("the agent never went quiet")


async def run(pid: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 90
    while True:  # the agent starts, then its leader may not have taken a write yet
        try:
            ctl = await connect()
            a = await call(ctl, "PUT", "/v1/catalog/register", registration("passing"))
            if a.status == 200:
                break
            err = f"HTTP {a.status} {a.body[:200]!r}"
        except OSError as exc:
            err = repr(exc)
        if time.monotonic() > deadline:
            raise BenchError(f"catalog register never succeeded: {err}")
        await asyncio.sleep(0.2)
    a = await call(ctl, "GET", "/v1/health/service/web")
    index = a.index
    await wait_quiet(pid)
    rss_idle = rss_mib(pid)
    conns: list[Conn] = []
    for k in range(0, args.watchers, 200):
        conns += await asyncio.gather(*(connect() for _ in range(min(200, args.watchers - k))))
    print(f"# agent: pid {pid}, open files {nofile_limit(pid)}; {len(conns)} watcher connections open; "
          f"agent VmRSS idle {rss_idle:.1f} MiB", flush=True)
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        futs = [c.request("GET", f"/v1/health/service/web?index={index}&wait={args.wait}") for c in conns]
        settle = await wait_quiet(pid)
        early = sum(f.done() for f in futs)
        if early:
            raise BenchError(f"round {r + 1}: {early} watchers answered before any write "
                             f"(e.g. {next(f for f in futs if f.done()).result().body[:200]!r})")
        rss_open = rss_mib(pid)
        a = await call(ctl, "PUT", "/v1/kv/bench/probe", {"round": r})
        if a.status != 200:
            raise BenchError(f"KV probe: HTTP {a.status} {a.body[:200]!r}")
        await asyncio.sleep(args.kv_probe)
        kv_woken = sum(f.done() for f in futs)
        status = "critical" if r % 2 == 0 else "passing"
        c0, s0, q0, b0, m0 = cpu_seconds(pid), self_cpu(), sched(pid), sched("self"), main_thread_wait(pid)
        t_send = time.monotonic()
        a = await call(ctl, "PUT", "/v1/catalog/register", registration(status))
        t_ack = time.monotonic()
        if a.status != 200:
            raise BenchError(f"catalog register: HTTP {a.status} {a.body[:200]!r}")
        done, pending = await asyncio.wait(futs, timeout=60)
        t_end = time.monotonic()
        c1, s1, q1, b1, m1 = cpu_seconds(pid), self_cpu(), sched(pid), sched("self"), main_thread_wait(pid)
        answers = [f.result() for f in done if f.exception() is None]
        bad = [x for x in answers if x.status != 200 or x.index <= index or f'"Status":"{status}"'.encode() not in
               x.body.replace(b" ", b"")]
        lost = len(futs) - len(answers)
        if not answers:
            raise BenchError(f"round {r + 1}: no watcher answered within 60 s")
        lat = [x.t_done - t_send for x in answers]
        res = {"round": r + 1, "status": status, "settle_s": settle, "kv_woken": kv_woken, "answered": len(answers),
               "lost": lost + len(pending), "bad": len(bad), "ack_ms": (t_ack - t_send) * 1000,
               "after_ack": sum(x.t_done > t_ack for x in answers),
               "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
               "max_ms": max(lat) * 1000, "min_ms": min(lat) * 1000,
               "agent_cpu_us_per_watcher": (c1 - c0) / args.watchers * 1e6,
               "agent_cpu_share": (c1 - c0) / max(1e-9, t_end - t_send), "bench_cpu_s": s1 - s0,
               "agent_runqueue_ms": (q1[1] - q0[1]) * 1000, "loop_runqueue_ms": (m1 - m0) * 1000,
               "bench_runqueue_ms": (b1[1] - b0[1]) * 1000,
               "span_ms": (t_end - t_send) * 1000, "rss_open_mib": rss_open, "load": loadavg()}
        rounds.append(res)
        print(f"round {r + 1}: -> {status:<8} answered {len(answers)}/{args.watchers} (bad {len(bad)}, "
              f"lost {res['lost']})  from the write sent: p50 {res['p50_ms']:.0f} ms  p99 {res['p99_ms']:.0f} ms  "
              f"max {res['max_ms']:.0f} ms  (first {res['min_ms']:.0f})  write answered at {res['ack_ms']:.0f} ms "
              f"({res['after_ack']} watchers after it)  agent CPU {res['agent_cpu_us_per_watcher']:.0f} us/watcher "
              f"({res['agent_cpu_share'] * 100:.0f} % of a core over the span; its event loop waited "
              f"{res['loop_runqueue_ms']:.0f} ms for a CPU, all its threads {res['agent_runqueue_ms']:.0f} ms)  "
              f"bench CPU {res['bench_cpu_s']:.2f} s (waited "
              f"{res['bench_runqueue_ms']:.0f} ms)  "
              f"KV write woke {kv_woken}  VmRSS open {rss_open:.1f} MiB  load {res['load']}", flush=True)
        index = max(x.index for x in answers)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    if ctl.transport is not None:
        ctl.transport.close()
    rounds[0]["rss_idle_mib"] = rss_idle
    return rounds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default="HEAD", help="revision measured (default HEAD)")
    ap.add_argument("--watchers", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--wait", default="5m", help="?wait= of each blocking query (default 5m)")
    ap.add_argument("--kv-probe", type=float, default=1.0, help="seconds to wait after the KV write (default 1)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the bench and the agent at this niceness (e.g. -10 as root, to shield the "
                         "latencies from other load on the machine; default 0: unchanged)")
    args = ap.parse_args(argv)
    ag = ""
    if args.nice:
        with contextlib.suppress(OSError):
            os.setsid()  # a session (so an autogroup) of our own, when we are not a process group leader
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # the agent inherits it
        ag = f"; bench autogroup {autogroup_nice('self', args.nice)}"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.watchers + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        ap.error(f"RLIMIT_NOFILE hard limit {hard} < {need}: raise it (ulimit -Hn) first")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the agent inherits it
    print(header())
    rev = git("rev-parse", args.rev)
    work = Path(tempfile.mkdtemp(prefix="bench-watchers-"))
    tree = work / "tree"
    git("worktree", "add", "--detach", str(tree), rev)
    print(f"# measured: {rev} (detached worktree); bench RLIMIT_NOFILE {soft} -> {hard}; "
          f"niceness {os.getpriority(os.PRIO_PROCESS, 0)}{ag}; load {loadavg()}")

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    proc: subprocess.Popen[bytes] | None = None
    rc = 0
    try:
        conf = work / "fast.json"
        # all watchers come from one address: lift limits.http_max_conns_per_client (default 200 per client IP)
        conf.write_text(json.dumps({"performance": {"raft_profile": "fast"},
                                    "limits": {"http_max_conns_per_client": 0}}))
        log = open(work / "agent.log", "wb")  # noqa: SIM115 -- closed with the process
        argv_ = [sys.executable, "-c", launch_code(tree), "agent", "-server", "-bootstrap-expect=1", "-node=bench",
                 f"-bind={IP}", f"-client={IP}", f"-data-dir={work / 'data'}", f"-config-file={conf}"]
        proc = subprocess.Popen(argv_, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=work)
        log.close()
        if args.nice:
            print(f"# agent autogroup {autogroup_nice(proc.pid, args.nice)}")
        rounds = asyncio.run(run(proc.pid, args))

        def med(key: str) -> float:
            return float(statistics.median(x[key] for x in rounds))

        worst = max(x["max_ms"] for x in rounds)
        ok = all(x["lost"] == 0 and x["bad"] == 0 for x in rounds)
        kv = sum(x["kv_woken"] for x in rounds)
        print(f"watchers={args.watchers} rounds={len(rounds)} medians over rounds (from the write sent): "
              f"p50={med('p50_ms'):.0f}ms p99={med('p99_ms'):.0f}ms max={med('max_ms'):.0f}ms; worst max={worst:.0f}ms "
              f"agent_cpu={med('agent_cpu_us_per_watcher'):.0f}us/watcher "
              f"(={med('agent_cpu_us_per_watcher') * args.watchers / 1000:.0f}ms for all) "
              f"loop_waited_for_cpu={med('loop_runqueue_ms'):.0f}ms "
              f"rss_idle={rounds[0]['rss_idle_mib']:.1f}MiB rss_open={med('rss_open_mib'):.1f}MiB "
              f"kv_write_woke={kv} answers_ok={'yes' if ok else 'NO'} "
              f"goal(all<1s)={'PASS' if worst < 1000 and ok else 'MISS'}")
        if proc.poll() is not None:
            print(f"# the agent exited ({proc.returncode}); its log:\n{(work / 'agent.log').read_text()[-3000:]}")
            rc = 1
    except (BenchError, OSError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        with contextlib.suppress(OSError):
            print((work / "agent.log").read_text()[-3000:], file=sys.stderr)
        rc = 1
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.wait(10)
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
