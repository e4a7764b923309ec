"""Hostile and malformed HTTP input against real agents (issue 11, items 4 and 6): every malformed
request is a 400 with Consul's wording, never a 500; Consul's LockDelay units; keys are byte strings end
to end (HTTP -> Raft -> store -> forwarded reads -> JSON); per-route body limits refused from
Content-Length; a gzip bomb on PUT /v1/snapshot is refused quickly with bounded memory."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import tarfile
import time
import zlib

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import fast, start_bj

pytestmark = pytest.mark.integration

U64 = 1 << 64
MiB = 1024 * 1024


def raw_http(p: AgentProc, method: str, path: str, body: bytes | None = None,
             timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    """A request whose path goes out byte for byte (py-consul style: already percent-encoded)."""
    conn = http.client.HTTPConnection(p.ip, p.http_port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def head_only(p: AgentProc, head: bytes) -> tuple[int, bytes]:
    """Send a request head announcing a body, and never the body: the answer must come anyway."""
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, "closed without an answer"
            data += chunk
        top, _, rest = data.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", "0"))
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(lines[0].split()[1]), rest[:n]


def rss_kib(p: AgentProc) -> int:
    for line in open(f"/proc/{p.pid}/status").read().splitlines():  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def single_server(cluster: Cluster, name: str = "s1") -> AgentProc:
    ip = new_block()
    s = cluster.agent(name, f"{ip}.1", "-server", "-bootstrap-expect=1", fast(cluster))
    wait_for(lambda: raw_http(s, "PUT", "/v1/kv/ready", b"1")[0] == 200, 30, "leader and KV writes")
    # Sessions need the node in the catalog, which the leader registers a moment after it is elected.
    wait_for(lambda: json.loads(raw_http(s, "GET", f"/v1/catalog/node/{name}")[2] or b"null"), 30,
             "the server's own catalog registration")
    return s


def test_malformed_input_is_400_never_500(cluster: Cluster) -> None:
    s = single_server(cluster)
    big, neg = str(U64), "-1"
    cases: list[tuple[str, str, bytes | None, str]] = [
        ("GET", f"/v1/kv/ready?index={big}", None, "Invalid index"),
        ("GET", f"/v1/kv/ready?index={neg}", None, "Invalid index"),
        ("GET", "/v1/catalog/nodes?index=1e3", None, "Invalid index"),
        ("PUT", f"/v1/kv/x?cas={big}", b"v", "Invalid cas"),
        ("PUT", f"/v1/kv/x?flags={big}", b"v", "Invalid flags"),
        ("PUT", f"/v1/kv/x?flags={neg}", b"v", "Invalid flags"),
        ("PUT", "/v1/kv/x?flags=+5", b"v", "Invalid flags"),
        ("DELETE", f"/v1/kv/x?cas={big}", None, "Invalid cas"),
    ]
    for field in ("Flags", "Index"):
        for bad in (U64, -1, 1e30):
            op = {"KV": {"Verb": "set", "Key": "t", "Value": "", field: bad}}
            cases.append(("PUT", "/v1/txn", json.dumps([op]).encode(), "Failed to parse body"))
    deep = b"[" * 5000 + b"]" * 5000
    deep_obj = b'{"a":' * 5000 + b"1" + b"}" * 5000
    for path, prefix in (("/v1/txn", "Failed to parse body"), ("/v1/session/create", "Request decode failed"),
                         ("/v1/catalog/register", "Request decode failed")):
        cases.append(("PUT", path, deep, f"{prefix}: JSON nested deeper than 64 levels"))
        cases.append(("PUT", path, deep_obj, f"{prefix}: JSON nested deeper than 64 levels"))
    cases.append(("PUT", "/v1/operator/keyring", deep, "Request decode failed: JSON nested deeper"))
    for checks in (b'"serfHealth"', b'{"a": 1}', b"[1, 2]", b"5"):
        cases.append(("PUT", "/v1/session/create", b'{"Checks": ' + checks + b"}",
                      "Request decode failed: Checks must be a list"))
    for delay in (b"Infinity", b"-Infinity", b"NaN", b"1e400", b"-5", b'"-5s"', b'"forever"', b"true",
                  b"1e300"):
        cases.append(("PUT", "/v1/session/create", b'{"LockDelay": ' + delay + b"}", "Request decode failed"))
    cases.append(("PUT", "/v1/session/create", b'{"TTL": "1e400h"}', "Request decode failed"))
    cases.append(("PUT", "/v1/catalog/register", b'{"Node": "n", "Address": "a", "X": 1e999}',
                  "Request decode failed: number out of range"))
    cases.append(("PUT", "/v1/catalog/register", b'{"Node": "n", "Address": "a", "X": ' + b"9" * 5000 + b"}",
                  "Request decode failed"))
    failures = []
    for method, path, body, want in cases:
        code, _, text = raw_http(s, method, path, body)
        if code != 400 or not text.decode("utf-8", "replace").startswith(want):
            failures.append(f"{method} {path[:60]} {(body or b'')[:50]!r}: {code} {text[:120]!r}")
    assert not failures, "\n".join(failures)
    # The largest uint64 values are fine.
    top = str(U64 - 1)
    assert raw_http(s, "PUT", f"/v1/kv/f?flags={top}", b"v")[0] == 200
    code, _, body = raw_http(s, "GET", "/v1/kv/f")
    assert code == 200 and json.loads(body)[0]["Flags"] == U64 - 1
    assert raw_http(s, "GET", f"/v1/kv/f?index={top}&wait=1ms")[0] == 200
    # A lone surrogate escape in JSON is U+FFFD (as Go decodes it), not a 500.
    surrogate_op = b'[{"KV": {"Verb": "set", "Key": "s\\udcff", "Value": "eA=="}}]'
    code, _, body = raw_http(s, "PUT", "/v1/txn", surrogate_op)
    assert code == 200 and json.loads(body)["Results"][0]["KV"]["Key"] == "s\ufffd"
    assert raw_http(s, "GET", "/v1/kv/s%EF%BF%BD?raw")[2] == b"x"
    # Paths with bytes that are not UTF-8 name things exactly; messages that echo them never fail.
    assert raw_http(s, "PUT", "/v1/session/renew/%ff") == (404, raw_http(s, "PUT", "/v1/session/renew/%ff")[1],
                                                           b"Session id '\xff' not found\n")
    for method, path in (("PUT", "/v1/agent/join/%ff"), ("PUT", "/v1/agent/force-leave/%ff"),
                         ("GET", "/v1/session/info/%ff"), ("GET", "/v1/catalog/node/%ff"),
                         ("PUT", "/v1/session/destroy/%ff"), ("GET", "/v1/kv/%ff?keys&separator=%ff")):
        code, _, text = raw_http(s, method, path)
        assert b"codec can't" not in text, (method, path, code, text)
    assert "Traceback" not in s.log()


def test_lock_delay_follows_consuls_threshold(cluster: Cluster) -> None:
    s = single_server(cluster)
    want = {  # request LockDelay -> Consul's stored LockDelay (nanoseconds)
        b"5000": 5000,  # >= 1000: nanoseconds (was 5,000 s)
        b"1000": 1000,
        b"999": 999 * 10**9,  # below the threshold: seconds
        b"15": 15 * 10**9,
        b"0": 0,
        b"2.5e10": 25 * 10**9,
        b'"15s"': 15 * 10**9,
        b'"15ns"': 15 * 10**9,  # Consul applies the threshold to strings too
        b'"1.5us"': 1500,
    }
    for raw, ns in want.items():
        code, _, body = raw_http(s, "PUT", "/v1/session/create", b'{"LockDelay": ' + raw + b"}")
        assert code == 200, (raw, body)
        sid = json.loads(body)["ID"]
        info = json.loads(raw_http(s, "GET", f"/v1/session/info/{sid}")[2])
        assert info[0]["LockDelay"] == ns, (raw, info[0]["LockDelay"])
    # No Checks field: serfHealth; an explicit empty list or null: none (Consul's FixupChecks).
    for body_in, checks in ((b"{}", ["serfHealth"]), (b'{"Checks": []}', []), (b'{"Checks": null}', [])):
        sid = json.loads(raw_http(s, "PUT", "/v1/session/create", body_in)[2])["ID"]
        assert json.loads(raw_http(s, "GET", f"/v1/session/info/{sid}")[2])[0]["Checks"] == checks


def test_keys_are_byte_strings_end_to_end(cluster: Cluster) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    client = cluster.agent("client1", f"{ip}.9", f"-join={ip}.1", "-datacenter=BJ")
    # Two keys that differ only in a byte that is not UTF-8, written through two different servers.
    assert raw_http(ps[1], "PUT", "/v1/kv/b/a%ff", b"ff")[2].strip() == b"true"
    assert raw_http(ps[2], "PUT", "/v1/kv/b/a%fe", b"fe")[2].strip() == b"true"
    assert raw_http(client, "PUT", "/v1/kv/b/caf%C3%A9", b"utf8")[2].strip() == b"true"
    for p in (*ps, client):  # default reads (forwarded to the leader) and stale reads (local state)
        for q in ("", "&stale"):
            assert raw_http(p, "GET", f"/v1/kv/b/a%ff?raw{q}")[2] == b"ff", (p.name, q)
            assert raw_http(p, "GET", f"/v1/kv/b/a%fe?raw{q}")[2] == b"fe", (p.name, q)
    wait_for(lambda: raw_http(ps[0], "GET", "/v1/kv/b/a%fe?raw&stale")[2] == b"fe", 10, "replicated")
    code, _, body = raw_http(client, "GET", "/v1/kv/b/?keys")
    # Consul's JSON shows the undecodable byte as U+FFFD: two keys, shown alike; UTF-8 keys are untouched.
    assert code == 200 and sorted(json.loads(body)) == ["b/a\ufffd", "b/a\ufffd", "b/café"]
    code, _, body = raw_http(ps[0], "GET", "/v1/kv/b/a%ff")
    entry = json.loads(body)[0]
    assert entry["Key"] == "b/a\ufffd" and base64.b64decode(entry["Value"]) == b"ff"
    recurse = json.loads(raw_http(ps[1], "GET", "/v1/kv/b/?recurse")[2])
    assert sorted(base64.b64decode(e["Value"]) for e in recurse) == [b"fe", b"ff", b"utf8"]
    # The U+FFFD key itself is a third, distinct key.
    assert raw_http(ps[0], "GET", "/v1/kv/b/a%EF%BF%BD")[0] == 404
    # Deleting one leaves the other.
    assert raw_http(client, "DELETE", "/v1/kv/b/a%ff")[0] == 200
    assert raw_http(ps[0], "GET", "/v1/kv/b/a%ff")[0] == 404
    assert raw_http(ps[2], "GET", "/v1/kv/b/a%fe?raw")[2] == b"fe"
    # CAS and lock operations carry the byte key through Raft too.
    idx = json.loads(raw_http(ps[0], "GET", "/v1/kv/b/a%fe")[2])[0]["ModifyIndex"]
    assert raw_http(ps[1], "PUT", f"/v1/kv/b/a%fe?cas={idx}", b"fe2")[2].strip() == b"true"
    assert raw_http(ps[0], "GET", "/v1/kv/b/a%fe?raw")[2] == b"fe2"
    for p in ps:
        assert "Traceback" not in p.log()


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _gzip_bomb(prefix: bytes, zeros: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(prefix)]
    block = bytes(MiB)
    for _ in range(zeros // MiB):
        out.append(z.compress(block))
    out.append(z.flush())
    return b"".join(out)


def test_body_limits_and_snapshot_bombs(cluster: Cluster) -> None:
    s = single_server(cluster)
    # KV: Consul's 413 from Content-Length, before the body is sent.
    n = 512 * 1024 + 1
    code, text = head_only(s, b"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n)
    assert (code, text) == (413, b"Request body(524289 bytes) too large, max size: 524288 bytes\n")
    assert raw_http(s, "PUT", "/v1/kv/big", b"v" * (512 * 1024))[0] == 200
    code, text = head_only(s, b"PUT /v1/txn HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n)
    assert code == 413 and b"max size: 524288 bytes" in text
    # Other routes: the 1 MiB default; the snapshot route: 1 GiB (spooled to a temporary file as it arrives).
    code, text = head_only(s, b"PUT /v1/catalog/register HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                           % (MiB + 1))
    assert code == 413 and b"max size: 1048576 bytes" in text
    code, text = head_only(s, b"PUT /v1/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                           % (1024 * MiB + 1))
    assert code == 413 and b"max size: 1073741824 bytes" in text

    # Snapshot bombs: refused quickly, with the reason, and the agent's memory stays flat.
    bombs = {
        "zeros": (_gzip_bomb(b"", 512 * MiB), "inflates beyond what its members announce"),
        "huge member": (_gzip_bomb(_tar_header("state.bin", 100 * 1024 * MiB), 256 * MiB),
                        "archive member 'state.bin' is too large (107374182400 bytes"),
        "unsafe path": (_gzip_bomb(_tar_header("../../etc/passwd", 1) + b"x".ljust(512, b"\0"), 0),
                        "unsafe path"),
    }
    before = rss_kib(s)
    for name, (bomb, reason) in bombs.items():
        assert len(bomb) < MiB
        t0 = time.monotonic()
        code, _, text = raw_http(s, "PUT", "/v1/snapshot", bomb, timeout=60)
        took = time.monotonic() - t0
        assert code == 400 and reason in text.decode(), (name, code, text)
        assert took < 10, f"{name}: {took:.1f} s"
    grown = rss_kib(s) - before
    assert grown < 100 * 1024, f"RSS grew {grown // 1024} MiB refusing snapshot bombs"
    assert raw_http(s, "GET", "/v1/kv/big?raw")[0] == 200  # the agent still serves
    assert "Traceback" not in s.log()
