"""A running agent's HTTP API and CLI: force-leave, bad input, counters, -dev."""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request

import pytest

from tests.harness import ROOT, STATUS, AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration


def _status(p: AgentProc, name: str) -> str | None:
    m = p.members().get(name)
    return STATUS.get(int(m["Status"])) if m else None


def _http(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_force_leave_moves_failed_member_to_left(cluster: Cluster) -> None:
    ip = new_block()
    a = cluster.agent("a", f"{ip}.1")
    b = cluster.agent("b", f"{ip}.2", f"-join={ip}.1")
    c = cluster.agent("c", f"{ip}.3", f"-join={ip}.1")
    wait_for(lambda: _status(a, "c") == "alive" and _status(c, "b") == "alive", 20, "3 members")
    b.kill9()
    wait_for(lambda: _status(a, "b") == "failed", 30, "b failed")
    out = a.cli("force-leave", "b")
    assert out.returncode == 0
    wait_for(lambda: _status(a, "b") == "left" and _status(c, "b") == "left", 20, "b left everywhere")
    cp = a.cli("force-leave", "nosuchnode", check=False)
    assert cp.returncode == 1 and "No node found" in (cp.stdout + cp.stderr)
    a.cli("force-leave", "-prune", "b")
    wait_for(lambda: _status(a, "b") is None, 20, "b pruned")


def test_bad_http_input_gets_clear_errors(cluster: Cluster) -> None:
    ip = new_block()
    a = cluster.agent("a", f"{ip}.1")
    base = f"http://{a.http}"
    assert _http(base + "/v1/operator/keyring", "POST", b"{not json")[0] == 400
    code, text = _http(base + "/v1/operator/keyring", "POST", b'{"Key": 5}')
    assert code == 400 and "Key" in text
    code, text = _http(base + "/v1/operator/keyring", "POST", b'{"Key": "@@@"}')
    assert code == 400 and "base64" in text
    code, text = _http(base + "/v1/operator/keyring", "POST", b'{"Key": "' + b"A" * 44 + b'"}')
    assert code == 400 and "encryption not enabled" in text
    assert _http(base + "/v1/no/such/thing")[0] == 404
    assert _http(base + "/v1/agent/members", "DELETE")[0] == 405
    assert "Traceback" not in a.log()


def test_garbage_packets_are_counted_and_harmless(cluster: Cluster) -> None:
    ip = new_block()
    a = cluster.agent("a", f"{ip}.1")
    cluster.agent("b", f"{ip}.2", f"-join={ip}.1")
    wait_for(lambda: _status(a, "b") == "alive", 20, "b joined")
    junk = [b"", b"\x00", b"\x07\xff\xff", os.urandom(1400), b"\x04" + os.urandom(200), b"\x0c" + os.urandom(64)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for j in junk * 20:
            s.sendto(j, (f"{ip}.1", 8301))
    for j in junk:
        with socket.create_connection((f"{ip}.1", 8301), timeout=5) as t:
            t.sendall(j)
    wait_for(lambda: int(a.api("/v1/agent/self")["Stats"]["serf_lan"]["dropped_malformed"]) >= 20, 10,
             "malformed packets counted")
    info = a.cli("info").stdout
    assert "dropped_malformed" in info and "serf_lan:" in info
    assert int(a.api("/v1/agent/self")["Stats"]["serf_lan"]["stream_errors"]) >= 1
    assert _status(a, "b") == "alive" and a.running()
    assert "Traceback" not in a.log()


def test_dev_mode_starts_a_server_without_data_dir(cluster: Cluster) -> None:
    ip = new_block()
    argv = [sys.executable, "-m", "pyconsul.agent", "agent", "-dev", "-node=dev1", f"-bind={ip}.1", f"-client={ip}.1"]
    p = AgentProc("dev1", argv, cluster.tmp / "dev1.log", ip=f"{ip}.1").start({"PYTHONPATH": str(ROOT)})
    cluster.procs.append(p)
    me = wait_for(lambda: p.api("/v1/agent/self"), 20, "dev agent up")
    assert me["Config"]["Server"] is True
    assert me["Member"]["Tags"]["role"] == "consul"
    assert set(p.members(wan=True)) == {"dev1.dc1"}


def test_agent_process_keeps_openssl_out_unless_asked(cluster: Cluster) -> None:
    """`pyconsul agent` does not map libssl/libcrypto (about 4 MiB of RSS); PYCONSUL_OPENSSL=1 restores
    the default imports. Gossip encryption (cryptography's own OpenSSL) is tested in tests/interop."""
    ip = new_block()
    lean = cluster.agent("lean", f"{ip}.1")
    with open(f"/proc/{lean.pid}/maps") as f:
        maps = f.read()
    assert "libssl" not in maps and "_ssl." not in maps and "_hashlib." not in maps
    assert lean.cli("kv", "get", "-help").returncode == 0  # the CLI (same package) still works
    os.environ["PYCONSUL_OPENSSL"] = "1"
    try:
        full = cluster.agent("full", f"{ip}.2")
    finally:
        del os.environ["PYCONSUL_OPENSSL"]
    with open(f"/proc/{full.pid}/maps") as f:
        assert "_ssl." in f.read()


def test_http_listens_on_every_client_addr(cluster: Cluster) -> None:
    ip = new_block()
    p = cluster.agent("multi", f"{ip}.1", f"-client={ip}.1 {ip}.2")
    for addr in (f"{ip}.1", f"{ip}.2"):
        code, body = _http(f"http://{addr}:8500/v1/agent/self")
        assert code == 200 and '"ClientAddrs"' in body
    assert p.api("/v1/agent/self")["DebugConfig"]["ClientAddrs"] == [f"{ip}.1", f"{ip}.2"]
