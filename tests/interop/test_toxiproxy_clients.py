"""Our Toxiproxy API server (chaos/toxiproxy) driven by Toxiproxy's own Python client, toxiproxy-python.

Every toxic is checked on real TCP connections through the proxy, against an upstream that these
tests run: an echo server, and a sender that writes a fixed payload and closes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound, ProxyExists
from toxiproxy.proxy import Proxy
from toxiproxy.server import Toxiproxy

from tests.harness import ROOT, Cluster, ToxiproxyProc, new_block, wait_for

pytestmark = pytest.mark.interop


class Upstream:
    """A TCP server on a thread: `handler(conn)` per connection; closed by the test's teardown."""

    def __init__(self, ip: str, handler: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server((ip, 0))
        self.addr = f"{ip}:{self.sock.getsockname()[1]}"
        self.handler = handler
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def sender(payload: bytes) -> Callable[[socket.socket], None]:
    def send(conn: socket.socket) -> None:
        conn.sendall(payload)
    return send


@pytest.fixture
def tp(cluster: Cluster) -> Iterator[tuple[Toxiproxy, ToxiproxyProc, str]]:
    ip = new_block()
    proc = cluster.toxiproxy(f"{ip}.1", "--seed=7")
    server = Toxiproxy()
    server.update_api_consumer(f"{ip}.1", 8474)
    yield server, proc, ip
    APIConsumer.host, APIConsumer.port = "127.0.0.1", 8474


def connect(proxy: Proxy, timeout: float = 5.0) -> socket.socket:
    host, port = proxy.listen.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def round_trip(s: socket.socket, data: bytes = b"ping") -> float:
    t0 = time.monotonic()
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        assert chunk, "connection closed mid round trip"
        got += chunk
    assert got == data
    return time.monotonic() - t0


def read_all(s: socket.socket) -> tuple[bytes, list[int], float]:
    """Everything until EOF: (data, sizes of each recv, seconds until EOF)."""
    t0 = time.monotonic()
    data, sizes = b"", []
    while chunk := s.recv(65536):
        data += chunk
        sizes.append(len(chunk))
    return data, sizes, time.monotonic() - t0


def test_proxies_are_created_listed_disabled_and_destroyed(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, _, ip = tp
    up = Upstream(f"{ip}.2", echo)
    assert server.running()
    assert b"version" in server.version()
    proxy = server.create(upstream=up.addr, name="echo", listen=f"{ip}.1:0")
    assert proxy.enabled and proxy.listen.startswith(f"{ip}.1:") and not proxy.listen.endswith(":0")
    assert set(server.proxies()) == {"echo"}
    assert server.get_proxy("echo").upstream == up.addr
    with pytest.raises(ProxyExists):
        server.create(upstream=up.addr, name="echo")
    with connect(proxy) as s:
        assert round_trip(s) >= 0
    with proxy.down():
        assert server.get_proxy("echo").enabled is False
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
    with connect(proxy) as s:
        round_trip(s)
    # populate: an unchanged proxy is kept, a changed one replaced, a new one created
    other = Upstream(f"{ip}.3", echo)
    made = server.populate([{"name": "echo", "upstream": up.addr, "listen": proxy.listen},
                            {"name": "second", "upstream": other.addr, "listen": f"{ip}.1:0"}])
    assert [p.name for p in made] == ["second"]
    assert server.get_proxy("echo").listen == proxy.listen
    server.populate([{"name": "echo", "upstream": other.addr, "listen": proxy.listen}])
    assert server.get_proxy("echo").upstream == other.addr
    server.destroy(server.get_proxy("second"))
    assert set(server.proxies()) == {"echo"}
    server.destroy_all()
    assert server.proxies() == {}
    with pytest.raises(NotFound):
        APIConsumer.get("/proxies/echo")
    up.close()
    other.close()


def test_latency_jitter_and_live_updates(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, proc, ip = tp
    up = Upstream(f"{ip}.2", echo)
    proxy = server.create(upstream=up.addr, name="lat", listen=f"{ip}.1:0")
    with connect(proxy) as s:
        base = round_trip(s)
        proxy.add_toxic(type="latency", attributes={"latency": 300})  # on the open connection
        assert round_trip(s) >= 0.29
        proxy.add_toxic(type="latency", stream="upstream", name="up", attributes={"latency": 200})
        assert round_trip(s) >= 0.49
        assert sorted(proxy.toxics()) == ["latency_downstream", "up"]
        proxy.destroy_toxic("up")
        # POST to a toxic changes its attributes (toxiproxy-python has no verb for it)
        proc.api("/proxies/lat/toxics/latency_downstream", "POST", {"attributes": {"latency": 50, "jitter": 40}})
        shown = proc.api("/proxies/lat/toxics/latency_downstream")
        assert shown["attributes"] == {"latency": 50, "jitter": 40} and shown["toxicity"] == 1.0
        rtts = [round_trip(s) for _ in range(12)]
        # the new 50 +- 40 ms applies (lower bound), the old 300 ms no longer does (the fastest of 12 is below it)
        assert all(r >= 0.009 for r in rtts) and min(rtts) < 0.29, rtts
        assert max(rtts) - min(rtts) > 0.01, f"jitter should spread the delays: {rtts}"
        proxy.destroy_toxic("latency_downstream")
        assert min(round_trip(s) for _ in range(3)) < base + 0.25  # the fastest of 3: one stall cannot fail it
    up.close()


def test_removing_a_toxic_lets_go_of_the_data_it_holds(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, _, ip = tp
    up = Upstream(f"{ip}.2", echo)
    proxy = server.create(upstream=up.addr, name="hold", listen=f"{ip}.1:0")
    proxy.add_toxic(type="latency", attributes={"latency": 20000})
    with connect(proxy, timeout=0.5) as s:
        t0 = time.monotonic()
        s.sendall(b"held")
        with pytest.raises(TimeoutError):  # the echo is held by the toxic
            s.recv(10)
        proxy.destroy_toxic("latency_downstream")
        s.settimeout(10)
        assert s.recv(10) == b"held"
        assert time.monotonic() - t0 < 10, "the 20 s delay was cut short when the toxic went away"
    up.close()


def test_bandwidth_limits_the_rate(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, _, ip = tp
    payload = bytes(range(256)) * 200  # 51,200 bytes
    up = Upstream(f"{ip}.2", sender(payload))
    proxy = server.create(upstream=up.addr, name="bw", listen=f"{ip}.1:0")
    proxy.add_toxic(type="bandwidth", attributes={"rate": 100})  # 100 KB/s -> about 0.5 s
    with connect(proxy) as s:
        data, _, took = read_all(s)
    assert data == payload
    assert took >= 0.45, took
    up.close()


def test_slow_close_delays_the_close(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, _, ip = tp
    up = Upstream(f"{ip}.2", sender(b"bye"))
    proxy = server.create(upstream=up.addr, name="sc", listen=f"{ip}.1:0")
    proxy.add_toxic(type="slow_close", attributes={"delay": 600})
    with connect(proxy) as s:
        data, _, took = read_all(s)
    assert data == b"bye" and took >= 0.55, took
    up.close()


def test_timeout_drops_data_and_closes_or_holds(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, _, ip = tp
    up = Upstream(f"{ip}.2", echo)
    proxy = server.create(upstream=up.addr, name="to", listen=f"{ip}.1:0")
    proxy.add_toxic(type="timeout", attributes={"timeout": 500})
    with connect(proxy) as s:
        t0 = time.monotonic()
        s.sendall(b"lost")
        data, _, _ = read_all(s)
        assert data == b"" and time.monotonic() - t0 >= 0.45
    proxy.destroy_toxic("timeout_downstream")
    proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})  # 0: never closes
    with connect(proxy, timeout=0.8) as s:
        s.sendall(b"lost")
        with pytest.raises(TimeoutError):
            s.recv(10)
        proxy.destroy_toxic("timeout_upstream")  # removing it closes the connection it held
        s.settimeout(5)
        assert s.recv(10) == b""
    with connect(proxy) as s:
        round_trip(s)
    up.close()


def test_reset_peer_resets(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, _, ip = tp
    up = Upstream(f"{ip}.2", echo)
    proxy = server.create(upstream=up.addr, name="rst", listen=f"{ip}.1:0")
    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 200})
    with connect(proxy) as s:
        t0 = time.monotonic()
        s.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            while s.recv(10):
                pass
        assert time.monotonic() - t0 >= 0.19
    up.close()


def test_slicer_cuts_and_keeps_the_bytes(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, _, ip = tp
    payload = bytes(i % 251 for i in range(2000))
    up = Upstream(f"{ip}.2", sender(payload))
    proxy = server.create(upstream=up.addr, name="sl", listen=f"{ip}.1:0")
    proxy.add_toxic(type="slicer", attributes={"average_size": 100, "size_variation": 20, "delay": 20000})
    with connect(proxy) as s:
        data, sizes, took = read_all(s)
    assert data == payload
    assert len(sizes) >= 8, sizes  # about 20 slices, 20 ms apart; a slow reader may merge a few
    assert took >= 0.2
    up.close()


def test_limit_data_closes_after_that_many_bytes(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, _, ip = tp
    up = Upstream(f"{ip}.2", sender(b"z" * 5000))
    proxy = server.create(upstream=up.addr, name="lim", listen=f"{ip}.1:0")
    proxy.add_toxic(type="limit_data", attributes={"bytes": 1000})
    with connect(proxy) as s:
        data, _, _ = read_all(s)
    assert data == b"z" * 1000
    up.close()


def test_toxicity_is_a_per_connection_chance(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, proc, ip = tp
    up = Upstream(f"{ip}.2", echo)
    proxy = server.create(upstream=up.addr, name="tox", listen=f"{ip}.1:0")
    proxy.add_toxic(type="latency", toxicity=0.0, attributes={"latency": 400})
    with connect(proxy) as s:  # toxicity 0: no round trip is delayed (the toxic would add >= 0.4 s to all)
        assert min(round_trip(s) for _ in range(3)) < 0.39
    proc.api("/proxies/tox/toxics/latency_downstream", "POST", {"toxicity": 0.5, "attributes": {"latency": 150}})
    slow = 0
    for _ in range(30):
        with connect(proxy) as s:
            slow += round_trip(s) >= 0.14
    assert 5 <= slow <= 25, slow
    up.close()


def test_reset_enables_proxies_and_removes_toxics(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    server, _, ip = tp
    up = Upstream(f"{ip}.2", echo)
    proxy = server.create(upstream=up.addr, name="r", listen=f"{ip}.1:0")
    proxy.add_toxic(type="latency", attributes={"latency": 500})
    proxy.disable()
    assert server.reset()
    got = server.get_proxy("r")
    assert got.enabled and got.toxics() == {}
    with connect(got) as s:  # the 500 ms toxic is gone: it would delay every round trip
        assert min(round_trip(s) for _ in range(3)) < 0.49
    up.close()


def raw(proc: ToxiproxyProc, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(proc.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text.strip() else None
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text.decode()


def test_bad_requests_get_toxiproxys_errors(tp: tuple[Toxiproxy, ToxiproxyProc, str]) -> None:
    _, proc, ip = tp
    up = Upstream(f"{ip}.2", echo)
    code, err = raw(proc, "/proxies", "POST", b"{nope")
    assert code == 400 and err["status"] == 400 and err["error"].startswith("bad request body: "), err
    assert raw(proc, "/proxies", "POST", json.dumps({"name": "x"}).encode()) == \
        (400, {"error": "missing required field: upstream", "status": 400})
    assert raw(proc, "/proxies/none") == (404, {"error": "proxy not found", "status": 404})
    code, made = raw(proc, "/proxies", "POST", json.dumps({"name": "p", "upstream": up.addr,
                                                             "listen": f"{ip}.1:0"}).encode())
    assert code == 201 and made["toxics"] == []
    busy = made["listen"]
    code, err = raw(proc, "/proxies", "POST", json.dumps({"name": "q", "upstream": up.addr, "listen": busy}).encode())
    assert code == 500 and "listen" in err["error"], err
    assert raw(proc, "/proxies/p/toxics", "POST", json.dumps({"type": "nonsense"}).encode()) == \
        (400, {"error": "invalid toxic type", "status": 400})
    assert raw(proc, "/proxies/p/toxics", "POST", json.dumps({"type": "latency", "stream": "sideways"}).encode()) == \
        (400, {"error": "stream was invalid, can be either upstream or downstream", "status": 400})
    code, err = raw(proc, "/proxies/p/toxics", "POST",
                    json.dumps({"type": "latency", "attributes": {"latency": "slow"}}).encode())
    assert code == 400 and "latency" in err["error"]
    code, err = raw(proc, "/proxies/p/toxics", "POST", json.dumps({"type": "latency", "toxicity": 2}).encode())
    assert code == 400 and "toxicity" in err["error"]
    assert raw(proc, "/proxies/p/toxics", "POST", json.dumps({"type": "latency"}).encode())[0] == 200
    assert raw(proc, "/proxies/p/toxics", "POST", json.dumps({"type": "latency"}).encode()) == \
        (409, {"error": "toxic already exists", "status": 409})
    assert raw(proc, "/proxies/p/toxics/none") == (404, {"error": "toxic not found", "status": 404})
    assert raw(proc, "/proxies", headers={"User-Agent": "Mozilla/5.0"})[0] == 403
    code, err = raw(proc, "/populate", "POST", json.dumps([{"name": "a", "upstream": up.addr}, {"name": "b"}]).encode())
    assert (code, err["error"]) == (400, "missing required field: upstream at proxy 2")
    assert set(raw(proc, "/proxies")[1]) == {"p"}, "a bad populate creates nothing"
    assert raw(proc, "/proxies/p", "DELETE") == (204, None)
    assert proc.running()
    up.close()


def test_config_file_populates_at_start_and_a_bad_one_stops_the_server(tmp_path: Path, cluster: Cluster) -> None:
    ip = new_block()
    up = Upstream(f"{ip}.2", echo)
    good = tmp_path / "proxies.json"
    good.write_text(json.dumps([{"name": "rpc", "listen": f"{ip}.1:18300", "upstream": up.addr}]))
    proc = cluster.toxiproxy(f"{ip}.1", f"--config={good}")
    assert proc.api("/proxies")["rpc"]["listen"] == f"{ip}.1:18300"
    with socket.create_connection((f"{ip}.1", 18300), timeout=5) as s:
        round_trip(s)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "rpc"}]))
    cp = subprocess.run([sys.executable, "-m", "pyconsul.chaos.toxiproxy", f"--listen={ip}.3:8474", f"--config={bad}"],
                        capture_output=True, text=True, timeout=30, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert cp.returncode == 2
    assert cp.stderr.strip() == f"pyconsul-chaos toxiproxy: {bad}: missing required field: upstream at proxy 1"
    up.close()


def test_sigterm_closes_every_proxy(cluster: Cluster) -> None:
    ip = new_block()
    proc = cluster.toxiproxy(f"{ip}.1")
    up = Upstream(f"{ip}.2", echo)
    made = proc.api("/proxies", "POST", {"name": "e", "upstream": up.addr, "listen": f"{ip}.1:0"})
    host, port = made["listen"].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    round_trip(s)
    assert proc.stop() == 0
    assert s.recv(10) == b""
    s.close()
    wait_for(lambda: _refused(host, int(port)), 5, "the proxy's port to close")
    up.close()


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False
