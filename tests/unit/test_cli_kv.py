"""`kv`, `catalog`, `operator raft` and `operator autopilot` verbs against an in-process fake Consul HTTP API.

The fake is a plain http.server on 127.0.0.1:0 in a thread that records every request and answers
with canned Consul-shaped bodies, so these tests pin the exact requests (paths, query strings,
bodies) and the exact CLI output and exit codes. No agent is started.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent import cli
from pyconsul.agent.cli import catalog, kv, operator


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class FakeConsul:
    """Routes are keyed by (method, path with query string); unknown routes answer 404 with no body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes, str | None]] = []
        self.routes: dict[tuple[str, str], tuple[int, bytes]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append((self.command, self.path, body, self.headers.get("Content-Type")))
                status, payload = fake.routes.get((self.command, self.path), (404, b""))
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"

    def reply(self, method: str, path: str, payload: object, status: int = 200) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.routes[(method, path)] = (status, raw)

    def paths(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.requests]


@pytest.fixture
def consul(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConsul]:
    fake = FakeConsul()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    monkeypatch.setenv("CONSUL_HTTP_ADDR", fake.addr)
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


PAIR = {"LockIndex": 0, "Key": "redis/config/minconns", "Flags": 0, "Value": b64("1"), "CreateIndex": 17,
        "ModifyIndex": 17}
LEADERLESS = b"No cluster leader"

# ---------------------------------------------------------------- kv put


def test_put_writes_raw_body(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("PUT", "/v1/kv/redis/config/minconns", True)
    assert run(capsys, "kv", "put", "redis/config/minconns", "1") == (
        0, "Success! Data written to: redis/config/minconns\n", "")
    assert consul.requests == [("PUT", "/v1/kv/redis/config/minconns", b"1", "application/octet-stream")]


def test_put_without_data_writes_empty_value(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("PUT", "/v1/kv/webapp/beta/active", True)
    assert run(capsys, "kv", "put", "webapp/beta/active")[0] == 0
    assert run(capsys, "kv", "put", "webapp/beta/active", "")[0] == 0
    assert [r[2] for r in consul.requests] == [b"", b""]


def test_put_reads_file_stdin_and_base64(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consul.reply("PUT", "/v1/kv/lic", True)
    lic = tmp_path / "license.lic"
    lic.write_bytes(b"\x00line1\nline2\n")
    assert run(capsys, "kv", "put", "lic", f"@{lic}")[0] == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"abcd1234\n")))
    assert run(capsys, "kv", "put", "lic", "-")[0] == 0
    assert run(capsys, "kv", "put", "-base64", "lic", b64("decoded"))[0] == 0
    assert run(capsys, "kv", "put", "lic", "-x")[0] == 0  # a dash with more text is literal data
    assert [r[2] for r in consul.requests] == [b"\x00line1\nline2\n", b"abcd1234\n", b"decoded", b"-x"]


def test_put_flags_and_cas(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("PUT", "/v1/kv/k?flags=42", True)
    assert run(capsys, "kv", "put", "-flags=42", "k", "v") == (0, "Success! Data written to: k\n", "")
    consul.reply("PUT", "/v1/kv/k?cas=5&flags=42", True)
    assert run(capsys, "kv", "put", "-cas", "-modify-index=5", "-flags=42", "k", "v")[0] == 0
    consul.reply("PUT", "/v1/kv/k?cas=6", False)
    assert run(capsys, "kv", "put", "-cas", "-modify-index", "6", "k", "v") == (
        1, "", "Error! Did not write to k: CAS failed\n")
    assert consul.paths() == [("PUT", "/v1/kv/k?flags=42"), ("PUT", "/v1/kv/k?cas=5&flags=42"),
                              ("PUT", "/v1/kv/k?cas=6")]


def test_put_acquire_and_release(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("PUT", "/v1/kv/lock?acquire=s1", True)
    assert run(capsys, "kv", "put", "-acquire", "-session=s1", "lock", "x") == (
        0, "Success! Lock acquired on: lock\n", "")
    consul.reply("PUT", "/v1/kv/lock?acquire=s2", False)
    assert run(capsys, "kv", "put", "-acquire", "-session=s2", "lock", "x") == (1, "", "Error! Did not acquire lock\n")
    consul.reply("PUT", "/v1/kv/lock?release=s1", True)
    assert run(capsys, "kv", "put", "-release", "-session=s1", "lock") == (0, "Success! Lock released on: lock\n", "")
    consul.reply("PUT", "/v1/kv/lock?release=s2", False)
    assert run(capsys, "kv", "put", "-release", "-session=s2", "lock") == (1, "", "Error! Did not release lock\n")


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        ([], "Error! Missing KEY argument"),
        (["a", "b", "c"], "Error! Too many arguments (expected 1 or 2, got 3)"),
        (["-acquire", "k"], "Error! Missing -session (required with -acquire and -release)"),
        (["-release", "k"], "Error! Missing -session (required with -acquire and -release)"),
        (["-cas", "k", "v"], "Must specify -modify-index with -cas!"),
        (["-base64", "k", "a*=="], "Error! Cannot base 64 decode data: illegal base64 data at input byte 1"),
        (["-base64", "k", "abc"], "Error! Cannot base 64 decode data: illegal base64 data at input byte 0"),
        (["-flags=-1", "k"], 'invalid value "-1" for flag -flags: parse error'),
        (["k", "@/nonexistent/x"], "Error! Failed to read file: open /nonexistent/x: no such file or directory"),
    ],
)
def test_put_argument_errors(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], argv: list[str], err: str
) -> None:
    assert run(capsys, "kv", "put", *argv) == (1, "", err + "\n")
    assert consul.requests == []


def test_put_server_error_and_key_escaping(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("PUT", "/v1/kv/a%20b/c:d", LEADERLESS, status=500)
    assert run(capsys, "kv", "put", "a b/c:d", "v") == (
        1, "", "Error! Failed writing data: Unexpected response code: 500 (No cluster leader)\n")
    consul.reply("PUT", "/v1/kv/k?cas=3", LEADERLESS, status=500)
    assert run(capsys, "kv", "put", "-cas", "-modify-index=3", "k", "v")[2] == (
        "Error! Did not write to k: Unexpected response code: 500 (No cluster leader)\n")


# ---------------------------------------------------------------- kv get


def test_get_prints_the_raw_value(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("GET", "/v1/kv/redis/config/minconns", [PAIR])
    assert run(capsys, "kv", "get", "/redis/config/minconns") == (0, "1\n", "")  # leading slash is stripped
    assert run(capsys, "kv", "get", "-base64", "redis/config/minconns") == (0, b64("1") + "\n", "")
    consul.reply("GET", "/v1/kv/empty", [{**PAIR, "Key": "empty", "Value": None}])
    assert run(capsys, "kv", "get", "empty") == (0, "\n", "")
    assert consul.paths()[0] == ("GET", "/v1/kv/redis/config/minconns")


def test_get_detailed(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("GET", "/v1/kv/redis/config/minconns", [PAIR])
    code, out, _ = run(capsys, "kv", "get", "-detailed", "redis/config/minconns")
    assert code == 0
    assert out == (
        "CreateIndex      17\n"
        "Flags            0\n"
        "Key              redis/config/minconns\n"
        "LockIndex        0\n"
        "ModifyIndex      17\n"
        "Session          -\n"
        "Value            1\n"
    )
    locked = {**PAIR, "Key": "l", "Session": "adf4238a-882b-9ddc-4a9d-5b6758e4159e", "LockIndex": 1, "Value": None}
    consul.reply("GET", "/v1/kv/l", [locked])
    out = run(capsys, "kv", "get", "-detailed", "l")[1]
    assert out.splitlines()[5:] == ["Session          adf4238a-882b-9ddc-4a9d-5b6758e4159e", "Value            "]


def test_get_missing_key_and_errors(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "kv", "get", "nope") == (1, "", "Error! No key exists at: nope\n")
    consul.reply("GET", "/v1/kv/k", LEADERLESS, status=500)
    assert run(capsys, "kv", "get", "k") == (
        1, "", "Error querying Consul agent: Unexpected response code: 500 (No cluster leader)\n")
    assert run(capsys, "kv", "get") == (1, "", "Error! Missing KEY argument\n")
    assert run(capsys, "kv", "get", "a", "b") == (1, "", "Too many arguments (expected 1, got 2)\n")


def test_get_recurse(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = [{**PAIR, "Key": "redis/config/maxconns", "Value": b64("25")},
             {**PAIR, "Key": "redis/config/minconns", "Value": b64("1")},
             {**PAIR, "Key": "redis/config/users/", "Value": None}]
    consul.reply("GET", "/v1/kv/redis?recurse=", pairs)
    assert run(capsys, "kv", "get", "-recurse", "redis") == (
        0, "redis/config/maxconns:25\nredis/config/minconns:1\nredis/config/users/:\n", "")
    code, out, _ = run(capsys, "kv", "get", "-recurse", "-detailed", "redis")
    blocks = out.split("\n\n")
    assert code == 0 and len(blocks) == 3
    assert blocks[0].splitlines()[2] == "Key              redis/config/maxconns"
    assert out.endswith("Value            \n")
    consul.reply("GET", "/v1/kv/?recurse=", pairs[:1])
    assert run(capsys, "kv", "get", "-recurse") == (0, "redis/config/maxconns:25\n", "")
    assert run(capsys, "kv", "get", "-recurse", "nothing") == (0, "", "")  # 404 means no keys: no output


def test_get_keys_separator_and_server_flags(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("GET", "/v1/kv/redis/?keys=&separator=%2F", ["redis/config/", "redis/x"])
    assert run(capsys, "kv", "get", "-keys", "redis/") == (0, "redis/config/\nredis/x\n", "")
    consul.reply("GET", "/v1/kv/?keys=", ["a", "b/c"])
    assert run(capsys, "kv", "get", "-keys", "-separator=") == (0, "a\nb/c\n", "")
    consul.reply("GET", "/v1/kv/k?dc=dc2&stale=", [PAIR])
    assert run(capsys, "kv", "get", "-stale", "-datacenter=dc2", "k") == (0, "1\n", "")


# ---------------------------------------------------------------- kv delete


def test_delete(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("DELETE", "/v1/kv/redis/config/minconns", True)
    assert run(capsys, "kv", "delete", "redis/config/minconns") == (
        0, "Success! Deleted key: redis/config/minconns\n", "")
    consul.reply("DELETE", "/v1/kv/redis?recurse=", True)
    assert run(capsys, "kv", "delete", "-recurse", "redis") == (0, "Success! Deleted keys with prefix: redis\n", "")
    consul.reply("DELETE", "/v1/kv/k?cas=4", True)
    assert run(capsys, "kv", "delete", "-cas", "-modify-index=4", "k") == (0, "Success! Deleted key: k\n", "")
    consul.reply("DELETE", "/v1/kv/k?cas=3", False)
    assert run(capsys, "kv", "delete", "-cas", "-modify-index=3", "k") == (
        1, "", "Error! Did not delete key k: CAS failed\n")
    consul.reply("DELETE", "/v1/kv/k", LEADERLESS, status=500)
    assert run(capsys, "kv", "delete", "k") == (
        1, "", "Error deleting key k: Unexpected response code: 500 (No cluster leader)\n")


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        ([], "Error! Missing KEY argument"),
        (["-cas", "k"], "Must specify -modify-index with -cas!"),
        (["-modify-index=3", "k"], "Cannot specify -modify-index without -cas!"),
        (["-cas", "-modify-index=3", "-recurse", "k"], "Cannot specify both -cas and -recurse!"),
        (["a", "b"], "Too many arguments (expected 1, got 2)"),
    ],
)
def test_delete_argument_errors(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], argv: list[str], err: str
) -> None:
    assert run(capsys, "kv", "delete", *argv) == (1, "", err + "\n")
    assert consul.requests == []


# ---------------------------------------------------------------- kv export / import

EXPORTED = (
    "[\n"
    "\t{\n"
    '\t\t"key": "vault/core/a<b>",\n'
    '\t\t"flags": 0,\n'
    f'\t\t"value": "{b64("x")}"\n'
    "\t},\n"
    "\t{\n"
    '\t\t"key": "vault/logical",\n'
    '\t\t"flags": 42,\n'
    '\t\t"value": ""\n'
    "\t}\n"
    "]\n"
).replace("<", "\\u003c").replace(">", "\\u003e")


def test_export(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = [{**PAIR, "Key": "vault/core/a<b>", "Value": b64("x")},
             {**PAIR, "Key": "vault/logical", "Flags": 42, "Value": None}]
    consul.reply("GET", "/v1/kv/vault?recurse=", pairs)
    assert run(capsys, "kv", "export", "vault") == (0, EXPORTED, "")
    assert run(capsys, "kv", "export", "missing") == (0, "[]\n", "")
    consul.reply("GET", "/v1/kv/?recurse=&stale=", LEADERLESS, status=500)
    assert run(capsys, "kv", "export", "-stale") == (
        1, "", "Error querying Consul agent: Unexpected response code: 500 (No cluster leader)\n")


def test_import_round_trips_export(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consul.reply("PUT", "/v1/kv/vault/core/a%3Cb%3E", True)
    consul.reply("PUT", "/v1/kv/vault/logical?flags=42", True)
    doc = tmp_path / "export.json"
    doc.write_text(EXPORTED)
    want = "Imported: vault/core/a<b>\nImported: vault/logical\n"
    assert run(capsys, "kv", "import", f"@{doc}") == (0, want, "")
    monkeypatch.setattr(sys, "stdin", io.StringIO(EXPORTED))
    assert run(capsys, "kv", "import", "-") == (0, want, "")
    assert run(capsys, "kv", "import", EXPORTED) == (0, want, "")
    assert [(m, p, body) for m, p, body, _ in consul.requests[:2]] == [
        ("PUT", "/v1/kv/vault/core/a%3Cb%3E", b"x"), ("PUT", "/v1/kv/vault/logical?flags=42", b"")]


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        ([], "Error! Missing DATA argument"),
        ([""], "Error! Empty DATA argument"),
        (["a", "b"], "Error! Too many arguments (expected 1, got 2)"),
        (["{"], "Cannot unmarshal data: "),
        (['[{"key": "k", "flags": 0, "value": "%%%"}]'],
         "Error base 64 decoding value for key k: illegal base64 data at input byte 0"),
    ],
)
def test_import_errors(consul: FakeConsul, capsys: pytest.CaptureFixture[str], argv: list[str], err: str) -> None:
    code, out, got = run(capsys, "kv", "import", *argv)
    assert (code, out) == (1, "")
    assert got.startswith(err) and got.count("\n") == 1
    assert consul.requests == []


def test_import_write_failure(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("PUT", "/v1/kv/k", LEADERLESS, status=500)
    assert run(capsys, "kv", "import", '[{"key": "k", "flags": 0, "value": ""}]') == (
        1, "", "Error! Failed writing data for key k: Unexpected response code: 500 (No cluster leader)\n")


# ---------------------------------------------------------------- catalog

NODES: list[dict[str, Any]] = [
    {"ID": "27a2e1c6-8c3a-9ba1-7b4b-5a0a9d3c3f2e", "Node": "server-1", "Address": "10.77.0.11",
     "Datacenter": "bj", "TaggedAddresses": {"wan": "1.2.3.4", "lan": "10.77.0.11"}, "Meta": {"rack": "r1"}},
    {"ID": "", "Node": "c1", "Address": "10.77.0.121", "Datacenter": "bj", "TaggedAddresses": None, "Meta": None},
]


def test_catalog_datacenters(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("GET", "/v1/catalog/datacenters", ["bj", "sh"])
    assert run(capsys, "catalog", "datacenters") == (0, "bj\nsh\n", "")
    consul.reply("GET", "/v1/catalog/datacenters", [])
    assert run(capsys, "catalog", "datacenters") == (1, "", "No datacenters found\n")
    consul.reply("GET", "/v1/catalog/datacenters", LEADERLESS, status=500)
    assert run(capsys, "catalog", "datacenters") == (
        1, "", "Error listing datacenters: Unexpected response code: 500 (No cluster leader)\n")
    assert run(capsys, "catalog", "datacenters", "x") == (1, "", "Too many arguments (expected 0, got 1)\n")


def test_catalog_nodes(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("GET", "/v1/catalog/nodes", NODES)
    assert run(capsys, "catalog", "nodes") == (0, (
        "Node      ID        Address      DC\n"
        "server-1  27a2e1c6  10.77.0.11   bj\n"
        "c1                  10.77.0.121  bj\n"), "")
    assert run(capsys, "catalog", "nodes", "-detailed")[1].splitlines() == [
        "Node      ID                                    Address      DC  TaggedAddresses              Meta",
        "server-1  27a2e1c6-8c3a-9ba1-7b4b-5a0a9d3c3f2e  10.77.0.11   bj  lan=10.77.0.11, wan=1.2.3.4  rack=r1",
        "c1                                              10.77.0.121  bj" + " " * 31,
    ]
    consul.reply("GET", "/v1/catalog/nodes?near=_agent&node-meta=a%3A1&node-meta=b%3A2&stale=", [])
    assert run(capsys, "catalog", "nodes", "-stale", "-near=_agent", "-node-meta=b=2", "-node-meta", "a=1") == (
        0, "", "No nodes match the given query - try expanding your search.\n")
    consul.reply("GET", "/v1/catalog/nodes", LEADERLESS, status=500)
    assert run(capsys, "catalog", "nodes") == (
        1, "", "Error listing nodes: Unexpected response code: 500 (No cluster leader)\n")
    assert run(capsys, "catalog", "nodes", "-node-meta=x")[0] == 1


def test_catalog_nodes_for_service(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    entries = [{"ID": NODES[0]["ID"], "Node": "server-1", "Address": "10.77.0.11", "Datacenter": "bj",
                "NodeMeta": {"rack": "r1"}, "ServiceName": "web"}]
    consul.reply("GET", "/v1/catalog/service/web", entries)
    assert run(capsys, "catalog", "nodes", "-service=web") == (0, (
        "Node      ID        Address     DC\n"
        "server-1  27a2e1c6  10.77.0.11  bj\n"), "")
    assert run(capsys, "catalog", "nodes", "-service=web", "-detailed")[1].splitlines()[1].endswith("rack=r1")
    consul.reply("GET", "/v1/catalog/service/db", LEADERLESS, status=500)
    assert run(capsys, "catalog", "nodes", "-service=db")[2] == (
        "Error listing nodes for service: Unexpected response code: 500 (No cluster leader)\n")


def test_catalog_services(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("GET", "/v1/catalog/services", {"redis": ["v1", "primary"], "consul": [], "postgresql": ["leader"]})
    assert run(capsys, "catalog", "services") == (0, "consul\npostgresql\nredis\n", "")
    assert run(capsys, "catalog", "services", "-tags") == (0, (
        "consul          \n"
        "postgresql      leader\n"
        "redis           primary,v1\n"), "")
    node = {"Node": {"Node": "n1"}, "Services": {
        "web-1": {"ID": "web-1", "Service": "web", "Tags": ["b"]},
        "web-2": {"ID": "web-2", "Service": "web", "Tags": ["a"]},
        "consul": {"ID": "consul", "Service": "consul", "Tags": []}}}
    consul.reply("GET", "/v1/catalog/node/n1", node)
    assert run(capsys, "catalog", "services", "-node=n1", "-tags") == (0, "consul      \nweb         a,b\n", "")
    consul.reply("GET", "/v1/catalog/node/ghost", None)
    assert run(capsys, "catalog", "services", "-node=ghost") == (
        0, "", "No services match the given query - try expanding your search.\n")
    consul.reply("GET", "/v1/catalog/services", LEADERLESS, status=500)
    assert run(capsys, "catalog", "services") == (
        1, "", "Error listing services: Unexpected response code: 500 (No cluster leader)\n")


# ---------------------------------------------------------------- operator raft

RAFT = {
    "Servers": [
        {"ID": "e3b0c442-98fc-1c14-9afb-f4c8996fb924", "Node": "n1", "Address": "10.77.0.11:8300", "Leader": True,
         "Voter": True, "ProtocolVersion": "3"},
        {"ID": "4b227777-d4dd-1fc6-1c5b-6da4a8a1a1c2", "Node": "n2", "Address": "10.77.0.12:8300", "Leader": False,
         "Voter": False, "ProtocolVersion": ""},
    ],
    "Index": 22,
}


def test_raft_list_peers(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("GET", "/v1/operator/raft/configuration", RAFT)
    assert run(capsys, "operator", "raft", "list-peers") == (0, (
        "Node  ID                                    Address          State     Voter  RaftProtocol\n"
        "n1    e3b0c442-98fc-1c14-9afb-f4c8996fb924  10.77.0.11:8300  leader    true   3\n"
        "n2    4b227777-d4dd-1fc6-1c5b-6da4a8a1a1c2  10.77.0.12:8300  follower  false  <=1\n"), "")
    consul.reply("GET", "/v1/operator/raft/configuration?stale=", LEADERLESS + b"\n", status=500)
    assert run(capsys, "operator", "raft", "list-peers", "-stale") == (1, "", (
        "Error getting peers: Failed to retrieve raft configuration: "
        "Unexpected response code: 500 (No cluster leader)\n"))


def test_raft_remove_peer(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("DELETE", "/v1/operator/raft/peer?address=10.77.0.12%3A8300", b"")
    assert run(capsys, "operator", "raft", "remove-peer", "-address=10.77.0.12:8300") == (
        0, 'Removed peer with address "10.77.0.12:8300"\n', "")
    consul.reply("DELETE", "/v1/operator/raft/peer?id=abc", b"")
    assert run(capsys, "operator", "raft", "remove-peer", "-id", "abc") == (0, 'Removed peer with id "abc"\n', "")
    assert run(capsys, "operator", "raft", "remove-peer") == (
        1, "", "Error removing peer: an address or id is required for the peer to remove\n")
    assert run(capsys, "operator", "raft", "remove-peer", "-id=a", "-address=b") == (
        1, "", "Error removing peer: cannot give both an address and id\n")
    consul.reply("DELETE", "/v1/operator/raft/peer?id=gone", b"id not found", status=500)
    assert run(capsys, "operator", "raft", "remove-peer", "-id=gone") == (
        1, "", "Error removing peer: Unexpected response code: 500 (id not found)\n")
    assert len(consul.requests) == 3


# ---------------------------------------------------------------- operator autopilot

AUTOPILOT = {"CleanupDeadServers": True, "LastContactThreshold": "200ms", "MaxTrailingLogs": 250, "MinQuorum": 0,
             "ServerStabilizationTime": "10s", "RedundancyZoneTag": "", "DisableUpgradeMigration": False,
             "UpgradeVersionTag": "", "CreateIndex": 5, "ModifyIndex": 9}


def test_autopilot_get_config(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("GET", "/v1/operator/autopilot/configuration", AUTOPILOT)
    assert run(capsys, "operator", "autopilot", "get-config") == (0, (
        "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\nMinQuorum = 0\n"
        "ServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\nDisableUpgradeMigration = false\n"
        "UpgradeVersionTag = \"\"\n"), "")
    consul.reply("GET", "/v1/operator/autopilot/configuration?stale=", LEADERLESS, status=500)
    assert run(capsys, "operator", "autopilot", "get-config", "-stale") == (1, "", (
        "Error querying Autopilot configuration: Unexpected response code: 500 (No cluster leader)\n"))


def test_autopilot_set_config(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.reply("GET", "/v1/operator/autopilot/configuration", AUTOPILOT)
    consul.reply("PUT", "/v1/operator/autopilot/configuration?cas=9", True)
    assert run(capsys, "operator", "autopilot", "set-config", "-cleanup-dead-servers=false",
               "-last-contact-threshold=1s", "-max-trailing-logs", "100",
               "-server-stabilization-time=1m30s") == (0, "Configuration updated!\n", "")
    _, path, body, _ = consul.requests[-1]
    assert path == "/v1/operator/autopilot/configuration?cas=9"  # the ModifyIndex just read
    sent = json.loads(body)
    assert (sent["CleanupDeadServers"], sent["LastContactThreshold"], sent["MaxTrailingLogs"],
            sent["ServerStabilizationTime"]) == (False, "1s", 100, "1m30s")
    # a flag left out keeps the value read; a changed ModifyIndex makes the CAS fail: exit 1
    consul.reply("PUT", "/v1/operator/autopilot/configuration?cas=9", False)
    assert run(capsys, "operator", "autopilot", "set-config", "-max-trailing-logs=7") == (
        1, "Configuration could not be atomically updated, please try again\n", "")
    sent = json.loads(consul.requests[-1][2])
    assert (sent["CleanupDeadServers"], sent["LastContactThreshold"], sent["MaxTrailingLogs"]) == (True, "200ms", 7)
    consul.reply("PUT", "/v1/operator/autopilot/configuration?cas=9", b"Error parsing autopilot config", status=400)
    assert run(capsys, "operator", "autopilot", "set-config", "-max-trailing-logs=7") == (1, "", (
        "Error setting Autopilot configuration: Unexpected response code: 400 (Error parsing autopilot config)\n"))
    n = len(consul.requests)
    assert run(capsys, "operator", "autopilot", "set-config", "-max-trailing-logs=-1")[0] == 1
    assert run(capsys, "operator", "autopilot", "set-config", "-last-contact-threshold=soon")[0] == 1
    assert len(consul.requests) == n  # refused before asking the agent


# ---------------------------------------------------------------- dispatch, help, transport


@pytest.mark.parametrize(
    ("group", "subs"),
    [(["kv"], kv.KV_COMMANDS), (["catalog"], catalog.CATALOG_COMMANDS),
     (["operator"], operator.OPERATOR_COMMANDS), (["operator", "raft"], operator.RAFT_COMMANDS),
     (["operator", "autopilot"], operator.AUTOPILOT_COMMANDS)],
)
def test_groups_list_their_subcommands(
    capsys: pytest.CaptureFixture[str], group: list[str], subs: dict[str, Any]
) -> None:
    name = " ".join(group)
    code, out, err = run(capsys, *group)
    assert (code, out) == (1, "")
    assert err.startswith(f"Usage: pyconsul {name} <subcommand>")
    assert all(f"\n    {sub} " in err for sub in subs)
    code, out, _ = run(capsys, *group, "-h")
    assert code == 0 and out.startswith(f"Usage: pyconsul {name} <subcommand>")
    code, _, err = run(capsys, *group, "bogus")
    assert code == 1 and err.startswith(f"Error: unknown command '{name} bogus'")
    for sub in subs:
        code, out, _ = run(capsys, *group, sub, "-h")
        assert code == 0 and out.startswith(f"Usage: pyconsul {name} {sub}")


def test_usage_lists_new_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-h"]) == 0
    out = capsys.readouterr().out
    for verb in ("kv", "catalog", "operator"):
        assert f"\n    {verb} " in out


def test_bad_flag_shows_subcommand_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "kv", "get", "-nope", "k")
    assert code == 1 and err.startswith("flag provided but not defined: -nope\n\nUsage: pyconsul kv get")
    assert "-stale" in err and "-http-addr" in err


def test_connection_refused_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "kv", "get", "-http-addr=127.0.0.1:1", "k") == (1, "", (
        'Error querying Consul agent: Get "http://127.0.0.1:1/v1/kv/k": '
        "dial tcp 127.0.0.1:1: connect: connection refused\n"))
    assert run(capsys, "operator", "raft", "list-peers", "-http-addr=127.0.0.1:1")[2].count("\n") == 1
