"""PUT /v1/snapshot is checked from its head (issue 14): under acl.default_policy=deny an anonymous client, or a
token without snapshot rights, gets 403 "Permission denied" before the agent reads or spools any of the body --
nothing is written to the spool directory (the agent's TMPDIR) -- while the management token still restores."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_acl_enforcement import MASTER, call, make_token
from tests.integration.test_raft_cluster import fast

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def upload(p: AgentProc, announced: int, send: int, token: str = "") -> tuple[int, bytes]:
    """PUT /v1/snapshot announcing `announced` bytes and sending `send` of them at once; the answer's status and
    body (a refusal arrives while the client is still sending)."""
    with socket.create_connection((p.ip, p.http_port), timeout=15) as s:
        head = f"PUT /v1/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: {announced}\r\n"
        if token:
            head += f"X-Consul-Token: {token}\r\n"
        s.sendall(head.encode() + b"\r\n")
        chunk = b"\x1f" * MiB
        try:
            for _ in range(send // MiB):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent closed after its answer: what it sent is still readable
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
                more = s.recv(65536)
                if not more:
                    break
                data += more
        except ConnectionResetError:
            pass
    head_b, _, body = data.partition(b"\r\n\r\n")
    return int(head_b.split(b" ")[1]), body


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_refused_restore_stores_nothing(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    spool_dir: Path = cluster.tmp / "spool"
    spool_dir.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_dir))  # the agent's temporary files (its spooled uploads) go here
    acl = cluster.tmp / "acl.json"
    acl.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny", "tokens": {"master": MASTER}}}))
    ip = new_block()
    server = cluster.agent("s1", f"{ip}.1", "-server", "-bootstrap-expect=1", fast(cluster), f"-config-file={acl}",
                           wait=False)
    wait_for(lambda: call(server, "/v1/kv/ready", "PUT", b"1", MASTER)[0] == 200, 30, "the master token works")
    kv = make_token(server, "kv-only", 'key_prefix "" { policy = "write" }')

    # anonymous, and a token that may write every key but is not management: refused from the head
    for token in ("", kv, "not-a-token"):
        status, body = upload(server, 1024 * MiB, 24 * MiB, token)
        assert status == 403, (status, body)
        assert body in (b"Permission denied\n", b"ACL not found\n")
        assert os.listdir(spool_dir) == [], "nothing of a refused upload was stored"

    # the management token still saves and restores (the archive goes through the spool)
    code, archive = call(server, "/v1/snapshot", token=MASTER)
    assert code == 200 and archive[:2] == b"\x1f\x8b"
    assert call(server, "/v1/kv/after", "PUT", b"x", MASTER)[0] == 200
    assert call(server, "/v1/snapshot", "PUT", archive, MASTER) == (200, b"")
    assert call(server, "/v1/kv/after", token=MASTER)[0] == 404, "the state is the snapshot's"
    wait_for(lambda: os.listdir(spool_dir) == [], 10, "the spooled archive to be freed")
