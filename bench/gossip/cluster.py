"""Real agent processes on loopback for the gossip benchmark: start, kill, poll member lists.

Two flavours share one shape (`Flavour`): pyconsul agents (`python -m pyconsul.agent agent ...`, members over
HTTP `/v1/agent/members`) and HashiCorp serf agents (`serf agent ...`, members over serf's msgpack RPC
on a persistent TCP connection, or over `serf members -format=json` with `--serf-cli`). Every process
gets its own loopback IP so the default ports never collide; every process this module starts is
remembered in `Cluster.procs` and killed by PID in `Cluster.close()`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgpack

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from provenance import provenance  # noqa: E402  (bench/provenance.py)

PY_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
Statuses = dict[str, str]  # member name -> "alive" | "failed" | "left" | ...


class MemberClient(Protocol):
    latencies: list[float]

    def statuses(self) -> Statuses: ...

    def close(self) -> None: ...


class HttpMembers:
    """GET /v1/agent/members over one keep-alive HTTP connection (reconnects after an error)."""

    def __init__(self, ip: str, port: int = 8500, timeout: float = 2.0) -> None:
        self.conn = http.client.HTTPConnection(ip, port, timeout=timeout)
        self.latencies: list[float] = []

    def statuses(self) -> Statuses:
        t = time.monotonic()
        try:
            self.conn.request("GET", "/v1/agent/members")
            resp = self.conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status}")
        self.latencies.append(time.monotonic() - t)
        return {str(m["Name"]): PY_STATUS.get(int(m["Status"]), str(m["Status"])) for m in json.loads(body)}

    def close(self) -> None:
        self.conn.close()


class SerfRpcMembers:
    """serf's RPC protocol (msgpack header + body over TCP): handshake once, then `members` per poll."""

    def __init__(self, ip: str, port: int = 7373, timeout: float = 2.0) -> None:
        self.addr = (ip, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.unpacker: Any = None
        self.seq = 0
        self.latencies: list[float] = []

    def _next(self) -> Any:
        assert self.sock is not None
        while True:
            try:
                return self.unpacker.unpack()
            except msgpack.OutOfData:
                pass
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("serf RPC connection closed")
            self.unpacker.feed(chunk)

    def _call(self, command: str, body: dict[str, Any] | None, *, reply_body: bool) -> Any:
        assert self.sock is not None
        self.seq += 1
        data = msgpack.packb({"Command": command, "Seq": self.seq})
        if body is not None:
            data += msgpack.packb(body)
        self.sock.sendall(data)
        header = self._next()
        if header.get("Error"):
            raise OSError(f"serf RPC {command}: {header['Error']}")
        return self._next() if reply_body else None

    def statuses(self) -> Statuses:
        t = time.monotonic()
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.addr, timeout=self.timeout)
                self.unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
                self._call("handshake", {"Version": 1}, reply_body=False)
            out = self._call("members", None, reply_body=True)
        except (OSError, ValueError):
            self.close()
            raise
        self.latencies.append(time.monotonic() - t)
        return {str(m["Name"]): str(m["Status"]) for m in out["Members"]}

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


class SerfCliMembers:
    """`serf members -rpc-addr=IP:7373 -format=json`: one process per poll (~10-20 ms each)."""

    def __init__(self, ip: str, port: int = 7373, timeout: float = 2.0) -> None:
        self.rpc = f"{ip}:{port}"
        self.timeout = timeout
        self.latencies: list[float] = []

    def statuses(self) -> Statuses:
        t = time.monotonic()
        try:
            out = subprocess.run(["serf", "members", f"-rpc-addr={self.rpc}", "-format=json"],
                                 capture_output=True, timeout=self.timeout, check=True).stdout
        except subprocess.SubprocessError as exc:
            raise OSError(str(exc)) from exc
        self.latencies.append(time.monotonic() - t)
        return {str(m["name"]): str(m["status"]) for m in json.loads(out)["members"]}

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Flavour:
    """How to run and observe one kind of agent."""

    label: str
    ports: tuple[int, ...]  # TCP ports each agent listens on (checked free before the run)
    command: Callable[[str, str, Path, str | None], list[str]]  # (name, ip, data_dir, join_ip) -> argv
    client: Callable[[str], MemberClient]  # ip -> member-list client


def _py_command(name: str, ip: str, data_dir: Path, join: str | None) -> list[str]:
    argv = [sys.executable, "-m", "pyconsul.agent", "agent", f"-node={name}", f"-bind={ip}", f"-client={ip}",
            f"-data-dir={data_dir}"]
    return [*argv, f"-join={join}"] if join else argv


def _serf_command(name: str, ip: str, data_dir: Path, join: str | None) -> list[str]:
    argv = ["serf", "agent", f"-node={name}", f"-bind={ip}:7946", f"-rpc-addr={ip}:7373"]
    return [*argv, f"-join={join}:7946"] if join else argv


PYCONSUL = Flavour("pyconsul", (8301, 8500), _py_command, lambda ip: HttpMembers(ip))
SERF_RPC = Flavour("serf", (7946, 7373), _serf_command, lambda ip: SerfRpcMembers(ip))
SERF_CLI = Flavour("serf", (7946, 7373), _serf_command, lambda ip: SerfCliMembers(ip))


@dataclass
class Agent:
    name: str
    ip: str
    data_dir: Path
    log_path: Path
    client: MemberClient
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Poll:
    """What one agent's poller saw: first successful answer and first time the predicate held."""

    first_answer: float | None
    satisfied: float | None


def port_free(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT from the last run is fine
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Cluster:
    """N agents of one flavour on `net`.1 .. `net`.N; agent 0 is the seed everybody joins."""

    flavour: Flavour
    net: str
    n: int
    workdir: Path
    interval: float
    agents: list[Agent] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        base = self.workdir / self.flavour.label
        for i in range(self.n):
            name = f"{self.flavour.label[:2]}{i + 1:02d}"
            ip = f"{self.net}.{i + 1}"
            data_dir = base / name
            data_dir.mkdir(parents=True, exist_ok=True)
            self.agents.append(Agent(name, ip, data_dir, base / f"{name}.log", self.flavour.client(ip)))
        self.pool = ThreadPoolExecutor(max_workers=self.n, thread_name_prefix=self.flavour.label)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.agents]

    def busy_ports(self) -> list[str]:
        return [f"{a.ip}:{p}" for a in self.agents for p in self.flavour.ports if not port_free(a.ip, p)]

    def start(self, i: int, join: bool) -> float:
        """Start agent i (joining the seed if `join`); returns the monotonic time of the start."""
        a = self.agents[i]
        argv = self.flavour.command(a.name, a.ip, a.data_dir, self.agents[0].ip if join else None)
        with a.log_path.open("ab") as log:
            log.write(f"==== bench: start {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=REPO, start_new_session=True)
        t = time.monotonic()
        with self._lock:
            self.procs.append(proc)
        a.proc = proc
        return t

    def kill9(self, i: int) -> float:
        """SIGKILL agent i and reap it; returns the monotonic time the signal was sent."""
        proc = self.agents[i].proc
        assert proc is not None and proc.poll() is None, f"{self.agents[i].name} is not running"
        os.kill(proc.pid, signal.SIGKILL)
        t = time.monotonic()
        proc.wait(timeout=10)
        self.agents[i].client.close()
        return t

    def dead(self) -> list[str]:
        """Names of agents whose process has exited although it should be running."""
        return [a.name for a in self.agents if a.proc is not None and a.proc.poll() is not None]

    def rss(self) -> list[float]:
        return [rss_mib(a.proc.pid) for a in self.agents if a.proc is not None]

    def watch(self, idx: Sequence[int], pred: Callable[[Statuses], bool], timeout: float) -> list[Poll]:
        """Poll agents `idx` in parallel every `interval` s until `pred` holds for each (or timeout)."""
        deadline = time.monotonic() + timeout
        futs = [self.pool.submit(self._poll_until, self.agents[i].client, pred, deadline) for i in idx]
        return [f.result() for f in futs]

    def _poll_until(self, client: MemberClient, pred: Callable[[Statuses], bool], deadline: float) -> Poll:
        first: float | None = None
        tick = time.monotonic()
        while True:
            try:
                st: Statuses | None = client.statuses()
            except OSError:
                st = None
            now = time.monotonic()
            if st is not None and first is None:
                first = now
            if st is not None and pred(st):
                return Poll(first, now)
            if now >= deadline or self._stop.is_set():
                return Poll(first, None)
            tick = max(tick + self.interval, now)
            self._stop.wait(max(0.0, tick - time.monotonic()))  # the poll cadence, not synchronisation

    def poll_latency_ms(self) -> float:
        lat = [x for a in self.agents for x in a.client.latencies]
        return 1000 * sum(lat) / len(lat) if lat else float("nan")

    def close(self) -> None:
        """Kill every process this cluster ever started (by PID) and close the pollers."""
        self._stop.set()
        with self._lock:
            procs = list(self.procs)
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        for a in self.agents:
            a.client.close()
        self.pool.shutdown(wait=True, cancel_futures=True)


def machine(peers: dict[str, list[str]]) -> dict[str, Any]:
    """Where and with what a benchmark ran; `peers` maps a name to the command printing its version."""
    def out(argv: list[str]) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=REPO)
            return r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
        except (OSError, subprocess.SubprocessError):
            return ""

    prov = provenance()  # full revision (+dirty), nproc, CPU model, kernel, exact command line
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": prov["nproc"], "cpu": prov["cpu"], "kernel": prov["kernel"],
        "python": platform.python_version(),
        "pyconsul": out([sys.executable, "-m", "pyconsul.agent", "version"]),
        **{name: out(argv) for name, argv in peers.items()},
        "git": prov["revision"],
        "provenance": prov,
    }
