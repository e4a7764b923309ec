"""KV and Raft benchmark: 3 pyconsul servers vs 3 etcd members, real processes on loopback.

    .venv/bin/python bench/kv/bench.py [--trials 10] [--duration 5] [--json out.json]

One side after the other (never both at once): start the 3-node cluster, wait for a leader, then with the
same client harness (Python threads, one keep-alive `http.client` connection per client, writes sent to
the leader) measure PUT throughput and latency with 1 and with `--clients` (64) clients, GET "default"
and GET "consistent" with 64 clients, then `--trials` failovers: SIGKILL the leader, time until the first
committed PUT succeeds on a survivor (one thread per survivor retries every 10 ms), restart the killed
member and wait until the cluster is healthy again. Prints a table with the ratios ours/etcd and the
goals of issue 3 (PUT >= 0.5x etcd and >= 3,000/s with 64 clients; failover p50 <= etcd's).

pyconsul: `python -m pyconsul.agent agent -server -bootstrap-expect=3` on 127.92.0.1-3 with
`{"performance": {"raft_multiplier": 1}}` (hashicorp/raft: heartbeat/election timeout 1 s, lease 0.5 s),
joined with `python -m pyconsul.agent join`; KV over `/v1/kv/KEY` (GET default mode, and `?consistent`).
etcd: 3 members on 127.93.0.1-3 (client :2379, peer :2380), `--heartbeat-interval=100
--election-timeout=1000`, fsync on (default); KV over the v3 JSON gateway (`/v3/kv/put`, `/v3/kv/range`;
"default" read = `serializable: true`, a local read without a quorum round, "consistent" = linearizable).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gossip"))
from cluster import REPO, machine, port_free, rss_mib  # type: ignore[import-not-found,unused-ignore]  # bench/gossip

VALUE = b"v" * 64
Request = tuple[str, str, bytes]  # method, path, body


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(xs: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (with 10 samples p99 is the maximum)."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def call(conn: http.client.HTTPConnection, req: Request) -> tuple[int, bytes]:
    method, path, body = req
    try:
        conn.request(method, path, body=body or None)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        conn.close()
        raise


# ---------------------------------------------------------------------------------------------- sides


@dataclass
class Member:
    name: str
    ip: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Side:
    """One 3-node cluster: how to start it, find its leader, and phrase KV requests."""

    label: str
    net: str
    port: int
    ports: tuple[int, ...]
    workdir: Path
    timeout: float
    n: int = 3
    members: list[Member] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        base = self.workdir / self.label
        base.mkdir(parents=True, exist_ok=True)
        for i in range(self.n):
            name = f"{self.label[0]}{i + 1}"
            self.members.append(Member(name, f"{self.net}.{i + 1}", base / name, base / f"{name}.log"))

    # -- to be specialised
    def argv(self, m: Member) -> list[str]:
        raise NotImplementedError

    def leader_of(self, m: Member) -> str | None:
        """The leader's IP as seen by member m, or None."""
        raise NotImplementedError

    def put(self, key: str) -> Request:
        raise NotImplementedError

    def put_ok(self, status: int, body: bytes) -> bool:
        raise NotImplementedError

    def get(self, key: str, consistent: bool) -> Request:
        raise NotImplementedError

    def after_start(self, i: int) -> None:
        pass

    # -- common
    def conn(self, ip: str, timeout: float = 5.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(ip, self.port, timeout=timeout)

    def busy_ports(self) -> list[str]:
        return [f"{m.ip}:{p}" for m in self.members for p in self.ports if not port_free(m.ip, p)]

    def start(self, i: int) -> None:
        m = self.members[i]
        argv = self.argv(m)
        with m.log_path.open("ab") as f:
            f.write(f"==== bench: start {' '.join(argv)}\n".encode())
            f.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                    cwd=REPO, start_new_session=True)
        self.procs.append(proc)
        m.proc = proc

    def kill9(self, i: int) -> float:
        proc = self.members[i].proc
        assert proc is not None and proc.poll() is None, f"{self.members[i].name} is not running"
        os.kill(proc.pid, signal.SIGKILL)
        t = time.monotonic()
        proc.wait(timeout=10)
        return t

    def dead(self) -> list[str]:
        return [m.name for m in self.members if m.proc is not None and m.proc.poll() is not None]

    def wait_leader(self, idx: Sequence[int], timeout: float | None = None) -> int:
        """Poll until every member in idx names the same leader; returns its index."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            seen: list[str | None] = []
            for i in idx:
                try:
                    seen.append(self.leader_of(self.members[i]))
                except (OSError, http.client.HTTPException, ValueError, KeyError):
                    seen.append(None)
            ips = [m.ip for m in self.members]
            if seen and seen[0] in ips and all(s == seen[0] for s in seen):
                return ips.index(seen[0])
            if dead := self.dead():
                raise BenchError(f"{self.label}: {', '.join(dead)} exited; see {self.members[0].log_path.parent}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.label}: no common leader on {list(idx)} within the deadline: {seen}")
            time.sleep(0.05)

    def wait_put(self, i: int, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        c = self.conn(self.members[i].ip, timeout=2.0)
        try:
            while True:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if self.put_ok(*call(c, self.put("bench/health"))):
                        return
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.label}: PUT via {self.members[i].name} never succeeded")
                time.sleep(0.05)
        finally:
            c.close()

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


@dataclass
class PyconsulSide(Side):
    config: Path | None = None

    def argv(self, m: Member) -> list[str]:
        return [sys.executable, "-m", "pyconsul.agent", "agent", "-server", "-bootstrap-expect=3", f"-node={m.name}",
                f"-bind={m.ip}", f"-client={m.ip}", f"-data-dir={m.data_dir}", f"-config-file={self.config}"]

    def join(self, i: int, target: str) -> None:
        m = self.members[i]
        deadline = time.monotonic() + self.timeout
        while True:
            r = subprocess.run([sys.executable, "-m", "pyconsul.agent", "join", f"-http-addr={m.ip}:8500", target],
                               cwd=REPO, capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"pyconsul: join {m.name} -> {target} failed: {r.stdout}{r.stderr}")
            time.sleep(0.2)

    def after_start(self, i: int) -> None:
        target = next(m.ip for j, m in enumerate(self.members) if j != i and m.proc and m.proc.poll() is None)
        self.join(i, target)

    def leader_of(self, m: Member) -> str | None:
        c = self.conn(m.ip, timeout=1.0)
        try:
            st, body = call(c, ("GET", "/v1/status/leader", b""))
        finally:
            c.close()
        addr = json.loads(body) if st == 200 else ""
        return addr.rsplit(":", 1)[0] if addr else None

    def put(self, key: str) -> Request:
        return ("PUT", f"/v1/kv/{key}", VALUE)

    def put_ok(self, status: int, body: bytes) -> bool:
        return status == 200 and body.strip() == b"true"

    def get(self, key: str, consistent: bool) -> Request:
        return ("GET", f"/v1/kv/{key}" + ("?consistent" if consistent else ""), b"")


@dataclass
class EtcdSide(Side):
    ids: dict[str, str] = field(default_factory=dict)  # member id -> ip

    def argv(self, m: Member) -> list[str]:
        cluster = ",".join(f"{x.name}=http://{x.ip}:2380" for x in self.members)
        return ["etcd", f"--name={m.name}", f"--data-dir={m.data_dir}",
                f"--listen-client-urls=http://{m.ip}:2379", f"--advertise-client-urls=http://{m.ip}:2379",
                f"--listen-peer-urls=http://{m.ip}:2380", f"--initial-advertise-peer-urls=http://{m.ip}:2380",
                f"--initial-cluster={cluster}", "--initial-cluster-state=new", "--initial-cluster-token=kvbench",
                "--heartbeat-interval=100", "--election-timeout=1000"]

    def status(self, m: Member) -> dict[str, Any]:
        c = self.conn(m.ip, timeout=1.0)
        try:
            st, body = call(c, ("POST", "/v3/maintenance/status", b"{}"))
        finally:
            c.close()
        if st != 200:
            raise OSError(f"HTTP {st}")
        out: dict[str, Any] = json.loads(body)
        return out

    def leader_of(self, m: Member) -> str | None:
        s = self.status(m)
        self.ids[str(s["header"]["member_id"])] = m.ip
        lead = str(s.get("leader", "0"))
        if lead == "0":
            return None
        if lead not in self.ids:  # learn the other members' ids
            for x in self.members:
                if x is not m and x.proc is not None and x.proc.poll() is None:
                    with contextlib.suppress(OSError, http.client.HTTPException, ValueError, KeyError):
                        self.ids[str(self.status(x)["header"]["member_id"])] = x.ip
        return self.ids.get(lead)

    def put(self, key: str) -> Request:
        return ("POST", "/v3/kv/put", json.dumps({"key": b64(key), "value": b64(VALUE)}).encode())

    def put_ok(self, status: int, body: bytes) -> bool:
        return status == 200 and b'"header"' in body and b'"error"' not in body

    def get(self, key: str, consistent: bool) -> Request:
        q: dict[str, Any] = {"key": b64(key)}
        if not consistent:
            q["serializable"] = True
        return ("POST", "/v3/kv/range", json.dumps(q).encode())


# ---------------------------------------------------------------------------------------------- load


def load(side: Side, ip: str, clients: int, duration: float, make: Callable[[int, int], Request],
         ok: Callable[[int, bytes], bool]) -> dict[str, Any]:
    """`clients` threads, one keep-alive connection each, back to back for `duration` s."""
    lats: list[list[float]] = [[] for _ in range(clients)]
    errs = [0] * clients
    err_samples: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(k: int) -> None:
        c = side.conn(ip, timeout=10.0)
        mine, j = lats[k], 0
        start.wait()
        try:
            while time.monotonic() < stop_at[0]:
                req = make(k, j)
                j += 1
                t = time.perf_counter()
                try:
                    st, body = call(c, req)
                except (OSError, http.client.HTTPException) as exc:
                    errs[k] += 1
                    if len(err_samples) < 5:
                        err_samples.append(repr(exc))
                    continue
                if ok(st, body):
                    mine.append(time.perf_counter() - t)
                else:
                    errs[k] += 1
                    if len(err_samples) < 5:
                        err_samples.append(f"HTTP {st}: {body[:120]!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    stop_at[0] = t0 + duration
    start.wait()
    for t in threads:
        t.join(duration + 30)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    all_lat = [x for xs in lats for x in xs]
    p50, p99 = percentile(all_lat, 50), percentile(all_lat, 99)
    return {"clients": clients, "ok": len(all_lat), "errors": sum(errs), "error_samples": err_samples,
            "wall_s": wall, "rate": len(all_lat) / wall,
            "p50_ms": None if p50 is None else p50 * 1000, "p99_ms": None if p99 is None else p99 * 1000,
            "harness_cpu": (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall}


def ok_get(status: int, body: bytes) -> bool:
    return status == 200


def failover(side: Side, trial: int) -> dict[str, Any]:
    ips = [m.ip for m in side.members]
    lead = side.wait_leader(range(side.n))
    survivors = [i for i in range(side.n) if i != lead]
    done = threading.Event()
    first: list[tuple[float, str]] = []
    lock = threading.Lock()
    attempts = [0]

    def attempt(i: int, key: str) -> None:
        # a fresh connection per attempt, so a request stuck on the dead leader never delays the next one
        c = side.conn(ips[i], timeout=5.0)
        try:
            ok = side.put_ok(*call(c, side.put(key)))
        except (OSError, http.client.HTTPException):
            ok = False
        finally:
            c.close()
        if ok:
            with lock:
                first.append((time.monotonic(), side.members[i].name))
            done.set()

    pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="failover")
    t_kill = side.kill9(lead)
    try:
        j = 0
        while not done.is_set() and time.monotonic() < t_kill + side.timeout:
            j += 1
            for i in survivors:  # a new PUT every 10 ms on each survivor, whether earlier ones returned or not
                attempts[0] += 1
                pool.submit(attempt, i, f"bench/failover/{trial}/{i}/{j}")
            done.wait(0.01)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if not first:
        raise BenchError(f"{side.label}: no write committed within {side.timeout} s after killing the leader")
    t_ok, via = min(first)
    new_lead = side.wait_leader(survivors)
    side.start(lead)
    t_restart = time.monotonic()
    side.after_start(lead)
    side.wait_leader(range(side.n))
    side.wait_put(lead)
    healthy = time.monotonic() - t_restart
    res = {"killed": side.members[lead].name, "new_leader": side.members[new_lead].name,
           "failover_s": t_ok - t_kill, "first_ok_via": via, "put_attempts": attempts[0], "rejoin_s": healthy}
    log(f"  [{side.label}] trial {trial + 1}: killed {res['killed']}, first write after "
        f"{res['failover_s']:.3f} s via {via}, new leader {res['new_leader']}, healthy again {healthy:.2f} s")
    time.sleep(0.5)
    return res


def run_side(side: Side, args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"side": side.label, "errors": [], "trials": []}
    try:
        if busy := side.busy_ports():
            raise BenchError(f"{side.label}: ports already in use: {', '.join(busy)}")
        t0 = time.monotonic()
        for i in range(side.n):
            side.start(i)
        if isinstance(side, PyconsulSide):
            for i in range(1, side.n):
                side.join(i, side.members[0].ip)
        lead = side.wait_leader(range(side.n))
        side.wait_put(lead)
        res["bootstrap_s"] = time.monotonic() - t0
        lip = side.members[lead].ip
        log(f"[{side.label}] leader {side.members[lead].name} after {res['bootstrap_s']:.2f} s")
        d = args.duration

        def put_key(k: int, j: int) -> Request:
            return side.put(f"bench/k{(k * 7919 + j) % args.keys}")

        def get_key(consistent: bool) -> Callable[[int, int], Request]:
            return lambda k, j: side.get(f"bench/k{(k * 7919 + j) % args.keys}", consistent)

        c = side.conn(lip)
        try:
            for i in range(args.keys):  # every key read below exists
                if not side.put_ok(*call(c, side.put(f"bench/k{i}"))):
                    raise BenchError(f"{side.label}: preload PUT bench/k{i} failed")
        finally:
            c.close()
        phases: list[tuple[str, int, Callable[[int, int], Request], Callable[[int, bytes], bool]]] = [
            ("put_1", 1, put_key, side.put_ok),
            ("put_n", args.clients, put_key, side.put_ok),
            ("get_default", args.clients, get_key(False), ok_get),
            ("get_consistent", args.clients, get_key(True), ok_get),
        ]
        for name, clients, make, ok in phases:
            r = load(side, lip, clients, d, make, ok)
            res[name] = r
            log(f"[{side.label}] {name:<15} {clients:>3} clients: {r['rate']:8.0f}/s  p50 {r['p50_ms'] or 0:7.2f} ms"
                f"  p99 {r['p99_ms'] or 0:7.2f} ms  errors {r['errors']}  harness CPU {r['harness_cpu']:.2f} cores")
        res["rss_mib"] = [rss_mib(m.proc.pid) for m in side.members if m.proc is not None]
        for k in range(args.trials):
            res["trials"].append(failover(side, k))
    except (BenchError, OSError, subprocess.SubprocessError, threading.BrokenBarrierError) as exc:
        res["errors"].append(str(exc))
        log(f"[{side.label}] ERROR: {exc}")
    finally:
        side.close()
    res["logs"] = scan_logs([m.log_path for m in side.members])
    fo = [t["failover_s"] for t in res["trials"]]
    res["failover"] = {"n": len(fo), "p50": percentile(fo, 50), "p99": percentile(fo, 99),
                       "min": min(fo, default=None), "max": max(fo, default=None)}
    rj = [t["rejoin_s"] for t in res["trials"]]
    res["rejoin_p50"] = percentile(rj, 50)
    return res


# ---------------------------------------------------------------------------------------------- report

_LEVEL = re.compile(r"\[(ERROR|ERR|WARN|WARNING)\]|Traceback|Exception|\"level\":\"(error|warn)\"")


def scan_logs(paths: Sequence[Path]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    levels: Counter[str] = Counter()
    for p in paths:
        if not p.exists():
            continue
        for line in p.read_text(errors="replace").splitlines():
            m = _LEVEL.search(line)
            if not m:
                continue
            g = m.group(0)
            levels["error" if g.startswith(("[ERR", "Trace", "Exc")) or "error" in g else "warn"] += 1
            counts[re.sub(r"\d+", "#", line[m.start():]).strip()[:160]] += 1
    return {"errors": levels["error"], "warnings": levels["warn"], "top": counts.most_common(6)}


def _f(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def report(ours: dict[str, Any], etcd: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    def g(side: dict[str, Any], phase: str, key: str) -> float | None:
        v: float | None = side.get(phase, {}).get(key)
        return v

    n = meta["clients"]
    rows: list[tuple[str, float | None, float | None, int]] = [("cluster up -> first write (s)",
                                                                ours.get("bootstrap_s"), etcd.get("bootstrap_s"), 2)]
    for phase, label in (("put_1", "PUT, 1 client"), ("put_n", f"PUT, {n} clients"),
                         ("get_default", f"GET default/serializable, {n} cl."),
                         ("get_consistent", f"GET consistent/linearizable, {n} cl.")):
        rows += [(f"{label}: ops/s", g(ours, phase, "rate"), g(etcd, phase, "rate"), 0),
                 (f"{label}: p50 ms", g(ours, phase, "p50_ms"), g(etcd, phase, "p50_ms"), 2),
                 (f"{label}: p99 ms", g(ours, phase, "p99_ms"), g(etcd, phase, "p99_ms"), 2)]
    rows += [
        ("failover p50 (s)", ours["failover"]["p50"], etcd["failover"]["p50"], 3),
        ("failover p99 = max (s)" if ours["failover"]["n"] <= 100 else "failover p99 (s)",
         ours["failover"]["p99"], etcd["failover"]["p99"], 3),
        ("failover min (s)", ours["failover"]["min"], etcd["failover"]["min"], 3),
        ("restart -> healthy p50 (s)", ours.get("rejoin_p50"), etcd.get("rejoin_p50"), 2),
        ("RSS per server mean (MiB)", sum(ours.get("rss_mib") or [0]) / max(1, len(ours.get("rss_mib") or [])) or None,
         sum(etcd.get("rss_mib") or [0]) / max(1, len(etcd.get("rss_mib") or [])) or None, 1),
    ]
    w = max(len(r[0]) for r in rows) + 2
    print(f"\nKV/Raft benchmark, 3 servers per side, {meta['duration']:.0f} s per load phase, "
          f"{meta['trials']} kill -9 leader trials")
    print(f"{meta['date']}; {meta['cpus']} CPUs ({meta['cpu']}); Linux {meta['kernel']}; Python {meta['python']}; "
          f"{meta['pyconsul']} @ {meta['git']}; {meta['etcd']}")
    print("The client harness (Python threads in this process) shares the CPUs with the servers; its CPU use "
          "per phase is in the JSON (harness_cpu, in cores).\n")
    print(f"{'metric':<{w}}{'pyconsul':>10}{'etcd':>10}{'ours/etcd':>11}")
    for label, a, b, nd in rows:
        print(f"{label:<{w}}{_f(a, nd):>10}{_f(b, nd):>10}{_f(_ratio(a, b)) + 'x' if _ratio(a, b) else 'n/a':>11}")
    print(f"{'harness CPU during PUT ' + str(n) + ' (cores)':<{w}}{_f(g(ours, 'put_n', 'harness_cpu')):>10}"
          f"{_f(g(etcd, 'put_n', 'harness_cpu')):>10}")
    put_o, put_e = g(ours, "put_n", "rate"), g(etcd, "put_n", "rate")
    ratios = {"put_n": _ratio(put_o, put_e), "failover_p50": _ratio(ours["failover"]["p50"], etcd["failover"]["p50"])}
    verdict = {
        "put_n_vs_etcd": None if ratios["put_n"] is None else ratios["put_n"] >= 0.5,
        "put_n_absolute": None if put_o is None else put_o >= 3000,
        "failover_p50": None if ratios["failover_p50"] is None else ratios["failover_p50"] <= 1.0,
    }

    def pf(v: bool | None) -> str:
        return "n/a" if v is None else "PASS" if v else "MISS"

    print("\nGoals of issue 3:")
    print(f"  PUT {n} clients >= 0.5x etcd    {_f(ratios['put_n'])}x   {pf(verdict['put_n_vs_etcd'])}")
    print(f"  PUT {n} clients >= 3,000/s      {_f(put_o, 0)}/s   {pf(verdict['put_n_absolute'])}")
    print(f"  failover p50 <= 1.0x etcd      {_f(ratios['failover_p50'])}x   {pf(verdict['failover_p50'])}")
    for side in (ours, etcd):
        lg = side["logs"]
        errs = sum(side.get(p, {}).get("errors", 0) for p in ("put_1", "put_n", "get_default", "get_consistent"))
        print(f"\n{side['side']}: {errs} failed requests under load; logs: {lg['errors']} error lines, "
              f"{lg['warnings']} warning lines" + (f"; bench errors: {side['errors']}" if side["errors"] else ""))
        for p in ("put_1", "put_n", "get_default", "get_consistent"):
            if side.get(p, {}).get("error_samples"):
                print(f"  {p}: {side[p]['error_samples'][:3]}")
        for text, cnt in lg["top"]:
            print(f"  {cnt:>5}  {text}")
    return {"ratios": ratios, "pass": verdict}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64, help="concurrent clients for the loaded phases (64)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per load phase (default 5)")
    ap.add_argument("--keys", type=int, default=1000, help="distinct keys written and read (default 1000)")
    ap.add_argument("--trials", type=int, default=10, help="kill -9 leader trials per side (default 10)")
    ap.add_argument("--timeout", type=float, default=60.0, help="deadline of each wait, s (default 60)")
    ap.add_argument("--py-net", default="127.92.0", help="/24 prefix for pyconsul servers (default 127.92.0)")
    ap.add_argument("--etcd-net", default="127.93.0", help="/24 prefix for etcd members (default 127.93.0)")
    ap.add_argument("--raft-multiplier", type=int, default=1, help="pyconsul performance.raft_multiplier (1)")
    ap.add_argument("--raft-profile", choices=("consul", "fast"), default="consul",
                    help="pyconsul performance.raft_profile: consul (x raft_multiplier) or fast")
    ap.add_argument("--workdir", type=Path, help="data dirs and logs (default: a temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    args = ap.parse_args(argv)
    if not shutil.which("etcd"):
        ap.error("the etcd binary is not on PATH (apt-get install etcd-server)")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks that kill the servers

    signal.signal(signal.SIGTERM, on_term)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kv-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fast = workdir / "fast.json"
    perf = {"raft_multiplier": args.raft_multiplier, "raft_profile": args.raft_profile}
    fast.write_text(json.dumps({"performance": perf}) + "\n")
    meta = machine({"etcd": ["etcd", "--version"]})
    meta |= {"clients": args.clients, "duration": args.duration, "trials": args.trials,
                        "keys": args.keys, "raft_multiplier": args.raft_multiplier,
                        "raft_profile": args.raft_profile, "command": " ".join(sys.argv)}
    log(f"workdir {workdir}")
    try:
        ours = run_side(PyconsulSide("pyconsul", args.py_net, 8500, (8300, 8301, 8500), workdir, args.timeout,
                                     config=fast), args)
        etcd = run_side(EtcdSide("etcd", args.etcd_net, 2379, (2379, 2380), workdir, args.timeout), args)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")
    summary = report(ours, etcd, meta)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "pyconsul": ours, "etcd": etcd} | summary, indent=2) + "\n")
        log(f"raw results written to {args.json}")
    return 1 if ours["errors"] or etcd["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
