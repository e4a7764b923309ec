"""Real processes on loopback for integration and interop tests.

Each test gets its own 127.77.N.0/24 block, so agents keep Consul's default ports without
colliding. Every process is started by us, tracked by PID, and killed by PID on teardown.
Waiting is polling with a deadline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

_block = iter(range(1, 250))


def new_block() -> str:
    """A fresh 127.77.N prefix for one test (pid-salted so parallel runs do not meet)."""
    return f"127.{77 + (os.getpid() % 100)}.{next(_block)}"


def wait_for(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll cond until it returns a truthy value; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            val = cond()
            if val:
                return val
        except Exception as exc:  # the thing polled may not be up yet
            last_exc = exc
        time.sleep(interval)
    detail = f" (last error: {last_exc})" if last_exc else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


async def until(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.01) -> None:
    """wait_for inside an event loop: poll cond (letting other tasks run) until it is truthy; fail with `what`
    after timeout seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> Proc:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.pid, sig)

    def kill9(self) -> None:
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        return self.popen.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class AgentProc(Proc):
    ip: str = ""
    http_port: int = 8500

    @property
    def http(self) -> str:
        return f"{self.ip}:{self.http_port}"

    def api(self, path: str, method: str = "GET", body: Any = None, timeout: float = 5.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.http}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def members(self, wan: bool = False) -> dict[str, dict[str, Any]]:
        out = self.api("/v1/agent/members" + ("?wan=1" if wan else ""))
        return {m["Name"]: m for m in out}

    def cli(self, *args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(
            [sys.executable, "-m", "pyconsul.agent", *args], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "CONSUL_HTTP_ADDR": self.http}, cwd=ROOT, stdin=subprocess.DEVNULL,
        )
        if check and cp.returncode != 0:
            raise AssertionError(f"pyconsul {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
        return cp


STATUS = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}


@dataclass
class Cluster:
    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def agent(self, name: str, ip: str, *flags: str, data_dir: bool = True, wait: bool = True) -> AgentProc:
        argv = [sys.executable, "-m", "pyconsul.agent", "agent", f"-node={name}", f"-bind={ip}", f"-client={ip}"]
        if data_dir:
            argv.append(f"-data-dir={self.tmp / name}")
        argv += list(flags)
        p = AgentProc(name, argv, self.tmp / f"{name}.log", ip=ip)
        p.start({"PYTHONPATH": str(ROOT)})
        self.procs.append(p)
        if wait:
            wait_for(lambda: p.api("/v1/agent/self") if p.running() else _died(p), 20, f"agent {name} HTTP")
        return p

    def serf(self, name: str, ip: str, *flags: str, port: int = 7946) -> SerfProc:
        rpc = f"{ip}:7373"
        argv = ["serf", "agent", f"-node={name}", f"-bind={ip}:{port}", f"-rpc-addr={rpc}", "-log-level=debug",
                *flags]
        p = SerfProc(name, argv, self.tmp / f"serf-{name}.log", rpc=rpc, addr=f"{ip}:{port}")
        p.start()
        self.procs.append(p)
        wait_for(lambda: p.members() if p.running() else _died(p), 20, f"serf {name} RPC")
        return p

    def toxiproxy(self, ip: str, *args: str, port: int = 8474) -> ToxiproxyProc:
        """Our Toxiproxy API server (`python -m pyconsul.chaos.toxiproxy`) on ip:port."""
        argv = [sys.executable, "-m", "pyconsul.chaos.toxiproxy", f"--listen={ip}:{port}", "--log-level=INFO", *args]
        p = ToxiproxyProc("toxiproxy", argv, self.tmp / "toxiproxy.log", url=f"http://{ip}:{port}")
        p.start({"PYTHONPATH": str(ROOT)})
        self.procs.append(p)
        wait_for(lambda: p.api("/version") if p.running() else _died(p), 20, "toxiproxy API")
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop(timeout=5)

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log()[-6000:]}" for p in self.procs)


@dataclass
class SerfProc(Proc):
    rpc: str = ""
    addr: str = ""

    def members(self) -> dict[str, dict[str, Any]]:
        cp = subprocess.run(["serf", "members", f"-rpc-addr={self.rpc}", "-format=json"], capture_output=True,
                            text=True, timeout=10, stdin=subprocess.DEVNULL)
        if cp.returncode != 0:
            raise RuntimeError(cp.stderr)
        return {m["name"]: m for m in json.loads(cp.stdout)["members"]}

    def run(self, verb: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`serf VERB -rpc-addr=... ARGS` (Go flags must come before positional arguments)."""
        return subprocess.run(["serf", verb, f"-rpc-addr={self.rpc}", *args], capture_output=True, text=True,
                              timeout=15, stdin=subprocess.DEVNULL)


@dataclass
class ToxiproxyProc(Proc):
    url: str = ""

    def api(self, path: str, method: str = "GET", body: Any = None, timeout: float = 10.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None


def _died(p: Proc) -> Any:
    raise AssertionError(f"{p.name} exited early:\n{p.log()[-4000:]}")


def cluster_fixture(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
