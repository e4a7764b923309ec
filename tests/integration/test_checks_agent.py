"""Health checks run by a real agent (the CheckRunner wired into agent/local): HTTP, TCP, script, TTL and alias
checks reach /v1/agent/checks with Consul's statuses and outputs; a redirect is not followed; a script that
outlives its timeout is killed with its children."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/landing")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        code = {"/ok": 200, "/busy": 429}.get(self.path, 500)
        body = f"path {self.path}".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Iterator[tuple[ThreadingHTTPServer, dict[str, int]]]:
    hits: dict[str, int] = {}
    handler = type("H", (_Handler,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server, hits
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def put(p: AgentProc, path: str, body: Any) -> tuple[int, str]:
    req = urllib.request.Request(f"http://{p.http}{path}", data=json.dumps(body).encode(), method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def check(p: AgentProc, check_id: str) -> dict[str, Any] | None:
    got: dict[str, Any] | None = p.api("/v1/agent/checks").get(check_id)
    return got


def status_is(p: AgentProc, check_id: str, status: str) -> dict[str, Any] | None:
    c = check(p, check_id)
    return c if c is not None and c["Status"] == status else None


def test_checks_run_in_a_real_agent(cluster: Cluster, tmp_path: Path,
                                    target: tuple[ThreadingHTTPServer, dict[str, int]]) -> None:
    server, hits = target
    port = server.server_address[1]
    conf = tmp_path / "scripts.json"
    conf.write_text(json.dumps({"enable_script_checks": True, "performance": {"raft_profile": "fast"}}))
    ip = f"{new_block()}.1"
    a = cluster.agent("a1", ip, "-server", "-bootstrap-expect=1", f"-config-file={conf}")
    wait_for(lambda: a.api("/v1/status/leader"), 30, "a leader")
    pidfile = tmp_path / "grandchild.pid"
    regs = [
        {"Name": "ok", "HTTP": f"http://127.0.0.1:{port}/ok", "Interval": "1s"},
        {"Name": "busy", "HTTP": f"http://127.0.0.1:{port}/busy", "Interval": "1s"},
        {"Name": "redir", "HTTP": f"http://127.0.0.1:{port}/redirect", "Interval": "1s", "Status": "passing"},
        {"Name": "tcp", "TCP": f"127.0.0.1:{port}", "Interval": "1s"},
        {"Name": "script-warn", "Args": ["/bin/sh", "-c", "echo almost; exit 1"], "Interval": "1s"},
        {"Name": "script-hang", "Args": ["/bin/sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"],
         "Interval": "10s", "Timeout": "500ms", "Status": "passing"},
        {"Name": "ttl", "TTL": "1s", "Status": "passing"},
    ]
    for body in regs:
        code, text = put(a, "/v1/agent/check/register", body)
        assert code == 200, (body, code, text)

    assert wait_for(lambda: status_is(a, "ok", "passing"), 15, "the HTTP check passing")["Output"] == \
        f"HTTP GET http://127.0.0.1:{port}/ok: 200 OK Output: path /ok"
    wait_for(lambda: status_is(a, "busy", "warning"), 15, "429 -> warning")
    redir = wait_for(lambda: status_is(a, "redir", "critical"), 15, "302 -> critical")
    assert "302 Found" in redir["Output"] and hits.get("/landing", 0) == 0
    assert wait_for(lambda: status_is(a, "tcp", "passing"), 15, "the TCP check")["Output"] == \
        f"TCP connect 127.0.0.1:{port}: Success"
    assert wait_for(lambda: status_is(a, "script-warn", "warning"), 15, "exit 1 -> warning")["Output"] == "almost\n"
    hang = wait_for(lambda: status_is(a, "script-hang", "critical"), 20, "the script timeout")
    assert hang["Output"].startswith("Timed out (500ms) running check")
    pid = int(pidfile.read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or " Z " in Path(f"/proc/{pid}/stat").read_text(), 10,
             "the script's child to be killed")
    assert wait_for(lambda: status_is(a, "ttl", "critical"), 15, "the TTL to expire")["Output"] == "TTL expired"


def test_alias_and_grpc_checks(cluster: Cluster, tmp_path: Path) -> None:
    ip = f"{new_block()}.1"
    conf = tmp_path / "fast.json"
    conf.write_text(json.dumps({"performance": {"raft_profile": "fast"}}))
    a = cluster.agent("a1", ip, "-server", "-bootstrap-expect=1", f"-config-file={conf}")
    wait_for(lambda: a.api("/v1/status/leader"), 30, "a leader")
    code, text = put(a, "/v1/agent/service/register",
                     {"Name": "web", "ID": "web1", "Check": {"CheckID": "web-ttl", "TTL": "60s", "Status": "passing"}})
    assert code == 200, text
    code, text = put(a, "/v1/agent/service/register",
                     {"Name": "proxy", "Check": {"CheckID": "proxy-alias", "AliasService": "web1"}})
    assert code == 200, text
    wait_for(lambda: status_is(a, "proxy-alias", "passing"), 15, "the alias passing")
    code, text = put(a, "/v1/agent/check/fail/web-ttl?note=down", None)
    assert code == 200, text
    got = wait_for(lambda: status_is(a, "proxy-alias", "critical"), 15, "the alias following web critical")
    assert got["Output"].startswith('Aliased check "')
    # a gRPC check is accepted (python-consul2's suite registers one) and reported critical, with the reason
    code, text = put(a, "/v1/agent/service/register",
                     {"Name": "g", "Check": {"CheckID": "g-grpc", "GRPC": "127.0.0.1:50051/g", "Interval": "1s",
                                             "Status": "passing"}})
    assert code == 200, text
    got = wait_for(lambda: status_is(a, "g-grpc", "critical"), 15, "the gRPC check critical")
    assert "not supported" in got["Output"]
