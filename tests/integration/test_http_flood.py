"""HTTP abuse against a real agent (issue 14 items 3 and 5): a connection flood and slowloris clients.

2,000 idle TCP connections (100 from each of 20 source addresses, under the per-IP cap) plus 50 slow-header clients
that trickle one header byte a second: a well-behaved client still gets its answers (median of 10 requests, each on a
fresh connection, under 1 s; generous, the machine is shared). 250 connections from one more address: 200 admitted
(`limits.http_max_conns_per_client`), 50 closed at accept and counted. The slow-header clients get 408 once their head
has taken 30 s, and the idle connections are closed 30 s after accept, so the flood ends by itself.
HTTP listens on 127.0.0.1 when no client address is given, as Consul.
"""

from __future__ import annotations

import http.client
import json
import resource
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest

from pyconsul.agent.httpd import h1
from tests.harness import ROOT, AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration

IDLE_IPS, IDLE_PER_IP, SLOW = 20, 100, 50
CAP = 200  # AgentConfig().http_max_conns_per_client


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else hard, hard))


def _max_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no Max open files")


def _timed_get(p: AgentProc, path: str) -> float:
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(p.ip, p.http_port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body)
    finally:
        conn.close()
    return time.monotonic() - t0


def _connect(ip: str, src: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(10)
    s.connect((ip, port))
    return s


def _closed_at_once(s: socket.socket) -> bool:
    """The server closed s without a byte: recv gives b"" (or a reset)."""
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_flood_and_slowloris_do_not_starve_a_well_behaved_client(cluster: Cluster) -> None:
    _raise_nofile(IDLE_IPS * IDLE_PER_IP + SLOW + 300 + 200)  # the agent inherits it
    net = new_block()
    p = cluster.agent("flood", f"{net}.1", "-dev")
    assert _max_open_files(p.pid) >= IDLE_IPS * IDLE_PER_IP + SLOW + 300, "the agent can hold the flood"
    p.api("/v1/kv/probe", "PUT", "x")
    baseline = [_timed_get(p, "/v1/kv/probe") for _ in range(5)]
    socks: list[socket.socket] = []
    slow: list[socket.socket] = []
    stop = threading.Event()
    try:
        for i in range(IDLE_IPS):
            src = f"{net}.{10 + i}"
            socks += [_connect(p.ip, src, p.http_port) for _ in range(IDLE_PER_IP)]
        slow += [_connect(p.ip, f"{net}.5", p.http_port) for _ in range(SLOW)]
        for s in slow:
            s.sendall(b"GET /v1/kv/probe HTTP/1.1\r\nHost: x\r\nX-Slow: ")

        def trickle() -> None:
            while not stop.wait(1.0):
                for s in slow:
                    try:
                        s.send(b"a")
                    except OSError:
                        pass

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        # one address over the cap: the first 200 are admitted, the rest closed at accept
        over = [_connect(p.ip, f"{net}.6", p.http_port) for _ in range(CAP + 50)]
        socks += over
        stats = wait_for(lambda: _http_stats(p) if int(_http_stats(p)["conns_open"]) >= IDLE_IPS * IDLE_PER_IP
                         + SLOW + CAP else None, 60, "the agent to accept the flood")
        assert stats["max_conns_per_client"] == str(CAP)
        wait_for(lambda: int(_http_stats(p)["conns_refused"]) >= 50, 30, "refusals counted")
        assert sum(_closed_at_once(s) for s in over[-50:]) == 50
        assert int(_http_stats(p)["conns_refused"]) == 50
        info = p.cli("info").stdout  # the operator's view
        assert "http:\n" in info and "\tconns_refused = 50\n" in info and "\tmax_conns_per_client = 200\n" in info
        assert not _closed_at_once_nonblocking(over[0]), "admitted connections stay open"

        times = [_timed_get(p, "/v1/kv/probe") for _ in range(10)]
        print(f"baseline {[round(x * 1000) for x in baseline]} ms; "
              f"under the flood {[round(x * 1000) for x in times]} ms")
        assert statistics.median(times) < 1.0, times
        assert max(times) < 5.0, times

        # slowloris clients are answered 408 once their head has taken HEAD_TIMEOUT; idle ones are closed
        deadline = time.monotonic() + h1.HEAD_TIMEOUT + 30
        for s in slow[:5]:
            s.settimeout(max(deadline - time.monotonic(), 0.1))
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                assert chunk, "closed without a 408"
                data += chunk
            assert data.startswith(b"HTTP/1.1 408 "), data[:80]
        wait_for(lambda: int(_http_stats(p)["conns_open"]) <= 1,
                 h1.HEAD_TIMEOUT + 30, "the idle and slow connections to be closed")
    finally:
        stop.set()
        for s in socks + slow:
            s.close()
    assert p.running() and "Traceback" not in p.log()


def _http_stats(p: AgentProc) -> dict[str, str]:
    out: dict[str, str] = p.api("/v1/agent/self")["Stats"]["http"]
    return out


def _closed_at_once_nonblocking(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.settimeout(10)


def test_http_listens_on_loopback_by_default(cluster: Cluster) -> None:
    """No -client and no client_addr: HTTP is on 127.0.0.1 only (Consul's default), not on the bind address."""
    net = new_block()
    with socket.socket() as probe:  # a free port on 127.0.0.1 for HTTP (8500 may be taken by anything)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = cluster.tmp / "lo.json"
    conf.write_text(json.dumps({"ports": {"http": port, "dns": -1}}))
    argv = [sys.executable, "-m", "pyconsul.agent", "agent", "-dev", "-node=lo", f"-bind={net}.1",
            f"-config-file={conf}"]
    p = AgentProc("lo", argv, cluster.tmp / "lo.log", ip="127.0.0.1", http_port=port)
    p.start({"PYTHONPATH": str(ROOT)})
    cluster.procs.append(p)
    me = wait_for(lambda: p.api("/v1/agent/self"), 20, "agent up on 127.0.0.1")
    assert me["DebugConfig"]["ClientAddrs"] == ["127.0.0.1"]
    with pytest.raises(OSError):
        socket.create_connection((f"{net}.1", port), timeout=2).close()


def test_reload_changes_the_per_client_cap(cluster: Cluster) -> None:
    """limits.http_max_conns_per_client is applied by a reload (as Consul's), to new connections."""
    net = new_block()
    conf = cluster.tmp / "cap.json"
    conf.write_text(json.dumps({"limits": {"http_max_conns_per_client": 3}}))
    p = cluster.agent("cap", f"{net}.1", "-dev", f"-config-file={conf}")
    held = [_connect(p.ip, f"{net}.7", p.http_port) for _ in range(3)]
    try:
        extra = _connect(p.ip, f"{net}.7", p.http_port)
        assert _closed_at_once(extra)
        extra.close()
        conf.write_text(json.dumps({"limits": {"http_max_conns_per_client": 5}}))
        p.api("/v1/agent/reload", "PUT")
        assert _http_stats(p)["max_conns_per_client"] == "5"
        more = [_connect(p.ip, f"{net}.7", p.http_port) for _ in range(2)]
        held += more
        wait_for(lambda: int(_http_stats(p)["conns_open"]) >= 5, 10, "five held connections")
        assert not any(_closed_at_once_nonblocking(s) for s in more)
        assert _http_stats(p)["conns_refused"] == "1"
    finally:
        for s in held:
            s.close()
