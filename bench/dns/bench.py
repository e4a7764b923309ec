"""The DNS interface side by side with dnsmasq serving the same records (issue 13, item 7), and the time from a
check going critical to the instance leaving DNS answers.

    .venv/bin/python bench/dns/bench.py [--rev HEAD] [--duration 10] [--rounds 1] [--workloads a10,srv10,...]
                                        [--latency-qps 5000] [--no-edns] [--no-pin] [--critical-rounds 10]

The revision is checked out with `git worktree add --detach` into a temporary directory (uncommitted work is
never measured) and runs one server (`python -m pyconsul.agent agent -server -bootstrap-expect=1
-dns-port=8600`, `{"performance": {"raft_profile": "fast"}}`) with its HTTP and DNS on 127.99.53.1. Through
`PUT /v1/catalog/register` (8 client threads) the bench writes:

- `web10`: 10 instances, `web100`: 100 instances, each on a node of its own (`<svc>-node-<i>`, an address in
  127.201-202.x.y, port 8080) with one service check, passing;
- `svc-0000` ... `svc-0999`: 1,000 services, one instance each on 100 nodes (`cat-node-<i>`, 10 services a
  node), each with a passing check: the catalog at 1,000 services (plus the two above).

dnsmasq (Debian's dnsmasq-base; `--no-daemon --no-resolv --no-hosts --bind-interfaces
--listen-address=127.99.53.2 --port=8600 --local=/consul/ --edns-packet-max=4096`) serves the same records
from an addn-hosts file (`<address> <svc>.service.consul` per instance, `<address> <node>.node.dc1.consul`
per node) and `srv-host=<svc>.service.consul,<node>.node.dc1.consul,8080,1,1` lines in a conf-file: A
answers list every instance, SRV answers every instance with the targets' A records in the additional
section, as Consul's do. Before measuring, both servers are asked each workload's first question with
dnspython and the answers compared (addresses, SRV targets and ports, sizes); a difference is printed.

Workloads (dnsperf's data files; dnsperf cycles through them): `a10` / `srv10` / `a100` / `srv100`: one
question, `web10.service.consul A` and so on; `a1000`: the 1,000 services' A questions in turn; `a1000x`: the
same questions in 50,000 spellings that differ in letter case only (`sVc-0042.SErvice.consUL A`; names are
case-insensitive, so the answers are a1000's): more distinct query bytes than pyconsul's answer cache holds
(MAX_CACHED_ANSWERS, 20,000) unless it folds case (it does since 0c9755e); `a1000w`: a1000's questions while
the bench writes the catalog `--churn` times a second during pyconsul's phases (a check of node `churn-node`,
service `churn`, toggled between passing and warning through `PUT /v1/catalog/register`, from a thread with
one keep-alive connection): the agent drops cached answers when the catalog views behind them change, so this
is the cost of answering from a catalog that changes (the agent's CPU for the writes counts in its qps per
core; the writes done are printed). Every query
carries EDNS0 (dnsperf `-e`, 4,096-byte payload) unless `--no-edns`; with EDNS both servers answer all 100
instances of `web100` A (without it, Consul answers at most `udp_answer_limit` = 3 records to a plain UDP
client and dnsmasq a truncated answer with TC=1: not the same work).

Before the first round every workload's questions are sent twice to both servers (`dnsperf -n 2 -q 20`, not
measured; a1000's for a1000x): pyconsul fills its catalog views and its answer cache on the first question of a
name (see agent/dns/server.py), dnsmasq has nothing to warm.

Pinning: unless `--no-pin`, each server runs under `taskset -c <last CPU>` and dnsperf under `taskset -c
<first CPU>`: each server has one core (the other helpers' and the system's processes may share it; the
server's own CPU time is measured too) and dnsperf never competes with it. For every workload and round, the
two servers are measured back to back, dnsmasq first in odd rounds and pyconsul first in even ones, with:

1. a throughput phase: `dnsperf -s IP -p 8600 -d FILE -l --duration -c 1 -q 100 -v [-e]` (closed loop, 100
   queries outstanding): qps as dnsperf prints it, and p50 / p99 latency (nearest rank) over every query of
   the run, computed from dnsperf's `-v` lines (`> NOERROR web10.service.consul A 0.000412`: rcode, name,
   type, seconds). In a closed loop the latency is mostly queueing (100 outstanding / qps), so
2. a latency phase: the same at a fixed offered load, `-Q --latency-qps` (default 5,000, which both servers
   sustain on one core), p50 / p99 from the `-v` lines: the servers' latency when not saturated.

"lost" counts queries dnsperf had no answer for within 2 s (`-t 2`). With `srv100` (answers of about 4 KB) both
servers lose some: 100 answers in flight overflow dnsperf's UDP receive buffer (net.core.rmem_max, 208 KiB by
default, caps dnsperf's `-b`).

For each phase the server's CPU seconds (utime + stime, all threads, /proc/<pid>/stat) over the run give
"qps per core" = completed queries / server CPU seconds (independent of how much of its core the server was
given on a loaded machine), and its run-queue wait (/proc/<pid>/task/*/schedstat) shows how long it waited
for its core. Goals: pyconsul >= 0.5x dnsmasq's qps on the A workloads, and >= 20,000 qps per core on a1000.

Critical-to-DNS (`--critical-rounds`, 0 to skip): service `flip` has three instances: one registered on the
agent itself through `PUT /v1/agent/service/register` with a TTL check `flip-ttl` (instance address: the
agent's, 127.99.53.1), `flip-node-2` (127.203.0.2, always passing) and `flip-node-3` (127.203.0.3, a catalog
check). Each round, in two modes:

- agent: `PUT /v1/agent/check/fail/flip-ttl` (the agent's local check goes critical and is synced to the
  catalog);
- catalog: `PUT /v1/catalog/register` of flip-node-3 with its check `critical`;

t0 is taken just before the request is sent (from a thread), and the bench asks `flip.service.consul A` with
dnspython (UDP, from this process on the first CPU) every `--poll-ms` (default 1 ms) until the instance's
address is gone: t_gone - t0, p50 and max over the rounds, plus when the HTTP answer came. The check is then
passed again and the bench waits until the instance is back before the next round.

`--profile DIR` samples the agent with py-spy (`py-spy record -r 500 --nonblocking -f raw`, on the client's CPU)
during each of its throughput phases and prints the frames with the most samples: where its DNS path spends
its time.

Every process (agent, dnsmasq, dnsperf, py-spy) is killed by PID at the end (also on Ctrl-C / SIGTERM); the worktree and
files are removed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
AGENT_IP = "127.99.53.1"
DNSMASQ_IP = "127.99.53.2"
DNS_PORT = 8600
HTTP_PORT = 8500
DC = "dc1"
WORKLOADS = ("a10", "srv10", "a100", "srv100", "a1000", "a1000x", "a1000w")
MIXED_CASE_QUERIES = 50_000  # a1000x: distinct question bytes, more than the agent's answer cache holds

sys.path.insert(0, str(REPO / "bench"))
from provenance import header, launch_code  # noqa: E402 -- runs the revision's agent from its own tree


class BenchError(RuntimeError):
    pass


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def runqueue_wait(pid: int) -> float:
    """Seconds all of `pid`'s threads were runnable but waiting for a CPU (/proc/<pid>/task/*/schedstat)."""
    wait = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            wait += int((t / "schedstat").read_text().split()[1])
    return wait / 1e9


def percentile(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)] if s else math.nan


# ---- the records ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instance:
    service: str
    node: str
    address: str
    port: int = 8080


def records() -> list[Instance]:
    out: list[Instance] = []
    for n, third in ((10, 201), (100, 202)):
        out += [Instance(f"web{n}", f"web{n}-node-{i}", f"127.{third}.{i // 250}.{i % 250 + 1}") for i in range(n)]
    out += [Instance(f"svc-{k:04d}", f"cat-node-{k % 100}", f"127.204.0.{k % 100 + 1}") for k in range(1000)]
    return out


def registration(x: Instance, status: str = "passing") -> dict[str, Any]:
    sid = f"{x.service}-{x.node}"
    return {"Node": x.node, "Address": x.address,
            "Service": {"ID": sid, "Service": x.service, "Port": x.port},
            "Check": {"CheckID": f"service:{sid}", "Name": "alive", "ServiceID": sid, "Status": status}}


def http_call(method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(AGENT_IP, HTTP_PORT, timeout=timeout)
    try:
        conn.request(method, path, json.dumps(body).encode() if body is not None else None)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class Registrar:
    """Keep-alive connections, one per thread, for the bulk catalog writes."""

    def __init__(self) -> None:
        self.local = threading.local()

    def put(self, path: str, body: Any) -> None:
        for attempt in range(5):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(AGENT_IP, HTTP_PORT, timeout=30)
            try:
                conn.request("PUT", path, json.dumps(body).encode())
                r = conn.getresponse()
                data = r.read()
                if r.status == 200:
                    return
                err = f"HTTP {r.status} {data[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                err = repr(exc)
                conn.close()
                self.local.conn = None
            time.sleep(0.05 * (attempt + 1))
        raise BenchError(f"PUT {path}: {err}")


def wait_writable(timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    err = ""
    while time.monotonic() < deadline:
        try:
            status, body = http_call("PUT", "/v1/catalog/register", registration(Instance("probe", "probe-node",
                                                                                            "127.205.0.1")))
            if status == 200:
                return
            err = f"HTTP {status} {body[:200]!r}"
        except OSError as exc:
            err = repr(exc)
        time.sleep(0.2)
    raise BenchError(f"the agent never took a catalog write: {err}")


def dnsmasq_files(work: Path, insts: list[Instance], edns: bool) -> Path:
    hosts = work / "dnsmasq.hosts"
    lines: list[str] = []
    nodes: dict[str, str] = {}
    srv: list[str] = []
    for x in insts:
        lines.append(f"{x.address} {x.service}.service.consul")
        nodes[x.node] = x.address
        srv.append(f"srv-host={x.service}.service.consul,{x.node}.node.{DC}.consul,{x.port},1,1")
    lines += [f"{a} {n}.node.{DC}.consul" for n, a in nodes.items()]
    hosts.write_text("\n".join(lines) + "\n")
    conf = work / "dnsmasq.conf"
    conf.write_text("\n".join([
        "no-resolv", "no-hosts", "bind-interfaces", f"listen-address={DNSMASQ_IP}", f"port={DNS_PORT}",
        "local=/consul/", f"addn-hosts={hosts}", "pid-file=", "user=root", "local-ttl=0",
        f"edns-packet-max={4096 if edns else 512}", *srv]) + "\n")
    return conf


def query_files(work: Path) -> dict[str, Path]:
    out = {}
    for name, lines in (("a10", ["web10.service.consul A"]), ("srv10", ["web10.service.consul SRV"]),
                        ("a100", ["web100.service.consul A"]), ("srv100", ["web100.service.consul SRV"]),
                        ("a1000", [f"svc-{k:04d}.service.consul A" for k in range(1000)]),
                        ("a1000x", mixed_case()),
                        ("a1000w", [f"svc-{k:04d}.service.consul A" for k in range(1000)])):
        p = work / f"{name}.txt"
        p.write_text("\n".join(lines) + "\n")
        out[name] = p
    return out


def mixed_case() -> list[str]:
    """MIXED_CASE_QUERIES distinct A questions over the 1,000 services, told apart by letter case only (as a
    resolver using 0x20 randomisation asks): DNS names are case-insensitive, so the answers are a1000's."""
    rng = random.Random(53)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < MIXED_CASE_QUERIES:
        name = "".join(c.upper() if rng.random() < 0.5 else c for c in f"svc-{len(out) % 1000:04d}.service.consul")
        if name not in seen:
            seen.add(name)
            out.append(f"{name} A")
    return out


# ---- asking -------------------------------------------------------------------------------------------------


def ask(ip: str, name: str, rdtype: str, edns: bool, timeout: float = 2.0) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, payload=4096)
    q.flags &= ~dns.flags.RD
    return dns.query.udp(q, ip, port=DNS_PORT, timeout=timeout)


def summary(m: dns.message.Message) -> tuple[set[str], set[str], set[str], int, bool]:
    """(A addresses in the answer, SRV "target:port" in the answer, A addresses in the additional section,
    wire size, TC)."""
    a, s, extra = set(), set(), set()
    for rr in m.answer:
        for rd in rr:
            if rd.rdtype == dns.rdatatype.A:
                a.add(rd.address)
            elif rd.rdtype == dns.rdatatype.SRV:
                s.add(f"{str(rd.target).lower()}:{rd.port}")
    for rr in m.additional:
        for rd in rr:
            if rd.rdtype == dns.rdatatype.A:
                extra.add(rd.address)
    return a, s, extra, len(m.to_wire()), bool(m.flags & dns.flags.TC)


def compare(files: dict[str, Path], workloads: list[str], edns: bool) -> None:
    for w in workloads:
        name, rdtype = files[w].read_text().split("\n", 1)[0].split()
        got = {}
        for who, ip in (("dnsmasq", DNSMASQ_IP), ("pyconsul", AGENT_IP)):
            try:
                got[who] = summary(ask(ip, name, rdtype, edns))
            except Exception as exc:
                raise BenchError(f"{who} at {ip}:{DNS_PORT} did not answer {name} {rdtype}: {exc!r}") from exc
        d, p = got["dnsmasq"], got["pyconsul"]
        same = d[:3] == p[:3]
        print(f"# answers {w} ({name} {rdtype}): dnsmasq {len(d[0]) or len(d[1])} records, {len(d[2])} additional A, "
              f"{d[3]} bytes{' TC' if d[4] else ''}; pyconsul {len(p[0]) or len(p[1])} records, {len(p[2])} "
              f"additional A, {p[3]} bytes{' TC' if p[4] else ''}; "
              f"{'same records' if same else 'RECORDS DIFFER'}", flush=True)
        if not same:
            for label, i in (("A", 0), ("SRV", 1), ("additional A", 2)):
                if d[i] != p[i]:
                    print(f"#   {label}: only dnsmasq {sorted(d[i] - p[i])[:5]} only pyconsul "
                          f"{sorted(p[i] - d[i])[:5]}")


# ---- dnsperf --------------------------------------------------------------------------------------------------


@dataclass
class Phase:
    server: str
    workload: str
    kind: str  # "throughput" or "latency"
    qps: float = math.nan
    completed: int = 0
    lost: int = 0
    rcodes: str = ""
    resp_bytes: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    cpu_s: float = math.nan
    wall_s: float = math.nan
    runq_ms: float = math.nan
    load: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_core(self) -> float:
        return self.completed / self.cpu_s if self.cpu_s > 0 else math.nan


LINE = re.compile(rb"^> (\S+) \S+ \S+ ([0-9.]+)$", re.M)


def run_dnsperf(server: str, pid: int, ip: str, workload: str, path: Path, kind: str, args: argparse.Namespace,
                out: Path) -> Phase:
    argv = ["dnsperf", "-s", ip, "-p", str(DNS_PORT), "-d", str(path), "-l", str(args.duration), "-c", "1",
            "-q", str(args.outstanding), "-t", "2", "-v"]
    if kind == "latency":
        argv = [*argv, "-Q", str(args.latency_qps)]
    if not args.no_edns:
        argv.append("-e")
    if args.client_cpu is not None:
        argv = ["taskset", "-c", str(args.client_cpu), *argv]
    churn = Churn(args.churn) if workload.endswith("w") and server == "pyconsul" and args.churn > 0 else None
    c0, q0, t0 = cpu_seconds(pid), runqueue_wait(pid), time.monotonic()
    if churn is not None:
        churn.start()
    try:
        with open(out, "wb") as f:
            r = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=args.duration + 60, check=False)
    finally:
        if churn is not None:
            churn.stop()
    c1, q1, t1 = cpu_seconds(pid), runqueue_wait(pid), time.monotonic()
    raw = out.read_bytes()
    if r.returncode != 0:
        raise BenchError(f"dnsperf exited {r.returncode}: {raw[-2000:].decode(errors='replace')}")
    text = raw[-4000:].decode(errors="replace")
    ph = Phase(server, workload, kind, cpu_s=c1 - c0, wall_s=t1 - t0, runq_ms=(q1 - q0) * 1000, load=loadavg())

    def num(label: str) -> float:
        m = re.search(rf"{label}:\s+([0-9.]+)", text)
        return float(m.group(1)) if m else math.nan

    ph.qps = num("Queries per second")
    ph.completed = int(num("Queries completed"))
    ph.lost = int(num("Queries lost"))
    m = re.search(r"Response codes:\s+(.*)", text)
    ph.rcodes = m.group(1).strip() if m else ""
    m = re.search(r"response ([0-9.]+)", text)
    ph.resp_bytes = float(m.group(1)) if m else math.nan
    lat = [float(x) * 1000 for rc, x in LINE.findall(raw) if rc == b"NOERROR"]
    if lat:
        ph.p50_ms, ph.p99_ms, ph.max_ms = percentile(lat, 50), percentile(lat, 99), max(lat)
    ph.extra["latencies"] = len(lat)
    if churn is not None:
        ph.extra["writes"] = churn.done
        ph.extra["write_errors"] = churn.errors
    return ph


class Churn:
    """Catalog writes at `rate` a second from a thread (one keep-alive connection) until stop()."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.done = 0
        self.errors = 0
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(30)

    def run(self) -> None:
        conn = http.client.HTTPConnection(AGENT_IP, HTTP_PORT, timeout=10)
        x = Instance("churn", "churn-node", "127.205.0.2")
        t_next = time.monotonic()
        while not self.halt.is_set():
            body = json.dumps(registration(x, "warning" if self.done % 2 == 0 else "passing")).encode()
            try:
                conn.request("PUT", "/v1/catalog/register", body)
                resp = conn.getresponse()
                resp.read()
                self.done += resp.status == 200
                self.errors += resp.status != 200
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection(AGENT_IP, HTTP_PORT, timeout=10)
            t_next += 1 / self.rate
            self.halt.wait(max(0.0, t_next - time.monotonic()))
        conn.close()


def show(ph: Phase) -> None:
    print(f"{ph.workload:<7}{ph.kind:<11}{ph.server:<9} qps {ph.qps:9.0f}  p50 {ph.p50_ms:7.3f} ms  "
          f"p99 {ph.p99_ms:7.3f} ms  max {ph.max_ms:7.2f} ms  lost {ph.lost}  resp {ph.resp_bytes:.0f} B  "
          f"server CPU {ph.cpu_s:.2f} s of {ph.wall_s:.1f} s ({ph.per_core:.0f} q per CPU-s; waited "
          f"{ph.runq_ms:.0f} ms for its core)  [{ph.rcodes}]  load {ph.load}"
          + (f"  catalog writes {ph.extra['writes']} ({ph.extra['write_errors']} failed)" if "writes" in ph.extra
             else ""), flush=True)


# ---- critical -> gone from DNS --------------------------------------------------------------------------------


def addresses(name: str) -> set[str] | None:
    try:
        m = ask(AGENT_IP, name, "A", edns=True, timeout=0.5)
    except Exception:  # a lost or late answer: poll again
        return None
    return summary(m)[0]


def wait_dns(name: str, address: str, present: bool, poll_s: float, timeout: float = 30.0) -> float:
    """Poll until `address` is (or is not) in the answer; the monotonic time it was first seen so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = addresses(name)
        now = time.monotonic()
        if got is not None and (address in got) == present:
            return now
        time.sleep(poll_s)
    raise BenchError(f"{address} {'never appeared in' if present else 'never left'} {name}'s answers "
                     f"within {timeout:.0f} s")


def critical_rounds(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    reg = {"ID": "flip1", "Name": "flip", "Port": 9090,
           "Check": {"CheckID": "flip-ttl", "Name": "flip ttl", "TTL": "10m", "Status": "passing"}}
    status, body = http_call("PUT", "/v1/agent/service/register", reg)
    if status != 200:
        raise BenchError(f"agent service register: HTTP {status} {body[:200]!r}")
    for x, st in ((Instance("flip", "flip-node-2", "127.203.0.2", 9090), "passing"),
                  (Instance("flip", "flip-node-3", "127.203.0.3", 9090), "passing")):
        status, body = http_call("PUT", "/v1/catalog/register", registration(x, st))
        if status != 200:
            raise BenchError(f"catalog register: HTTP {status} {body[:200]!r}")
    name = "flip.service.consul"
    poll = args.poll_ms / 1000
    modes = {
        "agent": (AGENT_IP, lambda: http_call("PUT", "/v1/agent/check/fail/flip-ttl"),
                  lambda: http_call("PUT", "/v1/agent/check/pass/flip-ttl")),
        "catalog": ("127.203.0.3",
                    lambda: http_call("PUT", "/v1/catalog/register",
                                      registration(Instance("flip", "flip-node-3", "127.203.0.3", 9090), "critical")),
                    lambda: http_call("PUT", "/v1/catalog/register",
                                      registration(Instance("flip", "flip-node-3", "127.203.0.3", 9090)))),
    }
    res: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for r in range(args.critical_rounds):
        for mode, (addr, fail, recover) in modes.items():
            wait_dns(name, addr, True, poll)
            acked: list[float] = []

            def send(fail: Any = fail, acked: list[float] = acked, mode: str = mode) -> None:
                st, b = fail()
                acked.append(time.monotonic())
                if st != 200:
                    print(f"# {mode}: HTTP {st} {b[:200]!r}", file=sys.stderr)

            th = threading.Thread(target=send)
            t0 = time.monotonic()
            th.start()
            gone = wait_dns(name, addr, False, poll)
            th.join(30)
            ack = (acked[0] - t0) * 1000 if acked else math.nan
            res[mode].append(((gone - t0) * 1000, ack))
            print(f"critical round {r + 1} {mode:<8} gone from DNS after {(gone - t0) * 1000:7.1f} ms "
                  f"(HTTP answered at {ack:.1f} ms)  load {loadavg()}", flush=True)
            st, b = recover()
            if st != 200:
                raise BenchError(f"{mode} recover: HTTP {st} {b[:200]!r}")
    return res


# ---- main -----------------------------------------------------------------------------------------------------


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(10)


def wait_dns_up(ip: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    err = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited ({proc.returncode})")
        try:
            ask(ip, "web10.service.consul", "A", edns=True, timeout=0.5)
            return
        except Exception as exc:  # not up yet
            err = repr(exc)
        time.sleep(0.2)
    raise BenchError(f"{what} never answered DNS at {ip}:{DNS_PORT}: {err}")


def wait_registered(insts: list[Instance], edns: bool, timeout: float = 60.0) -> None:
    """Until the agent answers every instance of web10 and web100 (its DNS reads may be stale for a moment)."""
    want: dict[str, set[str]] = {}
    for x in insts:
        if x.service in ("web10", "web100"):
            want.setdefault(x.service, set()).add(x.address)
    deadline = time.monotonic() + timeout
    while True:
        got = {s: summary(ask(AGENT_IP, f"{s}.service.consul", "A", edns=True))[0] for s in want}
        if got == want or not edns:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"pyconsul answers {[(s, len(a)) for s, a in got.items()]} instances, want "
                             f"{[(s, len(a)) for s, a in want.items()]}")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default="HEAD", help="revision measured (default HEAD)")
    ap.add_argument("--duration", type=int, default=10, help="seconds of each dnsperf phase (default 10)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of every workload (default 1)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of {', '.join(WORKLOADS)}")
    ap.add_argument("--outstanding", type=int, default=100, help="dnsperf -q in the throughput phase (default 100)")
    ap.add_argument("--latency-qps", type=int, default=5000,
                    help="dnsperf -Q of the latency phase (default 5000; 0 skips the phase)")
    ap.add_argument("--no-edns", action="store_true", help="plain 512-byte UDP queries (no dnsperf -e)")
    ap.add_argument("--no-pin", action="store_true", help="no taskset: servers and dnsperf float")
    ap.add_argument("--critical-rounds", type=int, default=10, help="rounds of critical -> gone (0 skips)")
    ap.add_argument("--churn", type=float, default=10.0,
                    help="catalog writes a second during pyconsul's a1000w phases (default 10)")
    ap.add_argument("--poll-ms", type=float, default=1.0, help="DNS poll interval while waiting (default 1 ms)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="sample the agent with py-spy (pip install py-spy) during its throughput phases; collapsed "
                         "stacks into this directory, the top frames printed")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (dnsperf -v outputs, logs)")
    args = ap.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    if bad := [w for w in workloads if w not in WORKLOADS]:
        ap.error(f"unknown workloads {bad}")
    for tool in ("dnsperf", "dnsmasq", "taskset"):
        if shutil.which(tool) is None and not (tool == "dnsmasq" and Path("/usr/sbin/dnsmasq").exists()):
            ap.error(f"{tool} not found: apt-get install dnsperf dnsmasq-base util-linux")
    dnsmasq_bin = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu: int | None = None
    args.client_cpu = None
    if not args.no_pin and len(cpus) >= 2:
        server_cpu, args.client_cpu = cpus[-1], cpus[0]
    pin = ["taskset", "-c", str(server_cpu)] if server_cpu is not None else []

    print(header())
    rev = git("rev-parse", args.rev)
    work = Path(tempfile.mkdtemp(prefix="bench-dns-"))
    tree = work / "tree"
    git("worktree", "add", "--detach", str(tree), rev)
    print(f"# measured: {rev} (detached worktree); dnsperf {dnsperf_version()}, {dnsmasq_version(dnsmasq_bin)}; "
          f"servers pinned to CPU {server_cpu}, "
          f"dnsperf and the poller to CPU {args.client_cpu}; EDNS0 {'off' if args.no_edns else 'on (4096)'}; "
          f"load {loadavg()}", flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    agent: subprocess.Popen[bytes] | None = None
    dm: subprocess.Popen[bytes] | None = None
    rc = 0
    try:
        if args.client_cpu is not None:
            os.sched_setaffinity(0, {args.client_cpu})  # the registrations and the DNS poller
        conf = work / "fast.json"
        conf.write_text(json.dumps({"performance": {"raft_profile": "fast"}}))
        with open(work / "agent.log", "wb") as log:
            agent = subprocess.Popen(
                [*pin, sys.executable, "-c", launch_code(tree), "agent", "-server", "-bootstrap-expect=1",
                 "-node=bench", f"-bind={AGENT_IP}", f"-client={AGENT_IP}", f"-data-dir={work / 'data'}",
                 f"-dns-port={DNS_PORT}", f"-config-file={conf}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=work)
        insts = records()
        dconf = dnsmasq_files(work, insts, not args.no_edns)
        with open(work / "dnsmasq.log", "wb") as log:
            dm = subprocess.Popen([*pin, dnsmasq_bin, "--no-daemon", f"--conf-file={dconf}"], stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        files = query_files(work)
        wait_writable()
        t0 = time.monotonic()
        reg = Registrar()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda x: reg.put("/v1/catalog/register", registration(x)), insts))
        print(f"# registered {len(insts)} instances of {len({x.service for x in insts})} services on "
              f"{len({x.node for x in insts})} nodes in {time.monotonic() - t0:.1f} s", flush=True)
        wait_dns_up(AGENT_IP, agent, "pyconsul")
        wait_dns_up(DNSMASQ_IP, dm, "dnsmasq")
        wait_registered(insts, not args.no_edns)
        compare(files, workloads, not args.no_edns)

        phases: list[Phase] = []
        kinds = ["throughput"] + (["latency"] if args.latency_qps > 0 else [])
        servers = {"dnsmasq": (dm, DNSMASQ_IP), "pyconsul": (agent, AGENT_IP)}
        # Every question twice (pyconsul fills its views and answer cache), not measured; a1000x's 50,000
        # spellings miss the cache by design, a1000's questions fill the same views.
        for w in dict.fromkeys("a1000" if w.startswith("a1000") else w for w in workloads):
            for proc, ip in servers.values():
                assert proc is not None
                warm = ["dnsperf", "-s", ip, "-p", str(DNS_PORT), "-d", str(files[w]), "-n", "2", "-q", "20"]
                try:
                    subprocess.run([*warm, *([] if args.no_edns else ["-e"])], capture_output=True, timeout=120,
                                   check=False)
                except subprocess.TimeoutExpired:
                    print(f"# warm-up of {w} at {ip} took over 120 s: measuring anyway", flush=True)
        for r in range(args.rounds):
            order = ["dnsmasq", "pyconsul"] if r % 2 == 0 else ["pyconsul", "dnsmasq"]
            for w in workloads:
                for kind in kinds:
                    for s in order:
                        proc, ip = servers[s]
                        assert proc is not None
                        if proc.poll() is not None:
                            raise BenchError(f"{s} exited ({proc.returncode})")
                        spy = None
                        if args.profile and s == "pyconsul" and kind == "throughput":
                            spy = start_py_spy(proc.pid, args)
                        ph = run_dnsperf(s, proc.pid, ip, w, files[w], kind, args, work / f"{s}-{w}-{kind}-{r}.out")
                        if spy is not None:
                            show_profile(spy, args.profile / f"pyconsul-{w}-{r + 1}.txt")
                        ph.extra["round"] = r + 1
                        phases.append(ph)
                        show(ph)
        report(phases, workloads, kinds)
        if args.critical_rounds > 0:
            res = critical_rounds(args)
            for mode, xs in res.items():
                gone = [g for g, _ in xs]
                acks = [a for _, a in xs]
                print(f"critical->gone {mode}: rounds={len(xs)} p50={statistics.median(gone):.1f}ms "
                      f"max={max(gone):.1f}ms (HTTP answer p50 {statistics.median(acks):.1f} ms, max "
                      f"{max(acks):.1f} ms; poll every {args.poll_ms:g} ms)", flush=True)
        if agent.poll() is not None:
            print(f"# the agent exited ({agent.returncode}); its log:\n{(work / 'agent.log').read_text()[-3000:]}")
            rc = 1
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        with contextlib.suppress(OSError):
            print((work / "agent.log").read_text()[-3000:], file=sys.stderr)
        rc = 1
    finally:
        kill(agent)
        kill(dm)
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(tree))
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rc


def report(phases: list[Phase], workloads: list[str], kinds: list[str]) -> None:
    def med(w: str, kind: str, s: str, attr: str) -> float:
        xs = [getattr(p, attr) for p in phases if p.workload == w and p.kind == kind and p.server == s]
        return float(statistics.median(xs)) if xs else math.nan

    print("# medians over rounds; ratio = pyconsul / dnsmasq; per core = completed queries / server CPU seconds")
    for w in workloads:
        for kind in kinds:
            d, p = med(w, kind, "dnsmasq", "qps"), med(w, kind, "pyconsul", "qps")
            dc, pc = med(w, kind, "dnsmasq", "per_core"), med(w, kind, "pyconsul", "per_core")
            goals = []
            if kind == "throughput" and w.startswith("a"):
                goals.append(f"goal(>=0.5x)={'PASS' if p >= 0.5 * d else 'MISS'}")
            if kind == "throughput" and w.startswith("a1000"):
                goals.append(f"goal(>=20000/core)={'PASS' if pc >= 20000 else 'MISS'}")
            print(f"{w} {kind}: dnsmasq qps={d:.0f} p99={med(w, kind, 'dnsmasq', 'p99_ms'):.3f}ms "
                  f"per_core={dc:.0f}; pyconsul qps={p:.0f} p99={med(w, kind, 'pyconsul', 'p99_ms'):.3f}ms "
                  f"per_core={pc:.0f}; ratio={p / d if d else math.nan:.2f}x "
                  f"(per core {pc / dc if dc else math.nan:.2f}x) {' '.join(goals)}", flush=True)


def start_py_spy(pid: int, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], Path]:
    args.profile.mkdir(parents=True, exist_ok=True)
    out = args.profile / f"raw-{pid}-{time.monotonic_ns()}.txt"
    cmd = ["py-spy", "record", "-p", str(pid), "-r", "500", "-d", str(args.duration), "-f", "raw", "-o", str(out),
           "--nonblocking"]
    if args.client_cpu is not None:
        cmd = ["taskset", "-c", str(args.client_cpu), *cmd]
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd[cmd.index("py-spy")] = spy_bin
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def show_profile(spy: tuple[subprocess.Popen[bytes], Path], dest: Path, top: int = 12) -> None:
    """The py-spy samples' top frames: by own time (the leaf) and by time inside (anywhere on the stack)."""
    proc, raw = spy
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    kill(proc)
    if not raw.exists():
        print("# py-spy wrote nothing")
        return
    raw.rename(dest)
    leaf: dict[str, int] = {}
    inside: dict[str, int] = {}
    total = 0
    for line in dest.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + int(n)
        for f in set(frames):
            inside[f] = inside.get(f, 0) + int(n)
    print(f"# py-spy: {total} samples of the agent (collapsed stacks in {dest})")
    # "inside": only the DNS server's and dnspython's frames (the event loop and the CLI are on every stack)
    inside = {f: n for f, n in inside.items() if "agent/dns/" in f or "(dns/" in f}
    for label, table in (("own", leaf), ("inside", inside)):
        for f, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"#   {label:<6} {100 * n / max(total, 1):5.1f} %  {f}")


def dnsperf_version() -> str:
    r = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True, check=False)
    m = re.search(r"Version (\S+)", r.stdout + r.stderr)
    return m.group(1) if m else "?"


def dnsmasq_version(binary: str) -> str:
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return r.stdout.split("  ", 1)[0].strip() or "dnsmasq ?"


if __name__ == "__main__":
    raise SystemExit(main())
