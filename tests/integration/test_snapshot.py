"""`pyconsul snapshot save/restore/inspect` and /v1/snapshot on three real servers and a client agent:
a restore reaches every server at one index; bad archives get a 400 and change nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.harness import Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import http, start_bj

pytestmark = pytest.mark.integration


def kv_keys(p_http: tuple[int, dict[str, str], bytes]) -> list[str]:
    code, _, body = p_http
    return json.loads(body) if code == 200 else []


def test_snapshot_save_restore_inspect_across_servers(cluster: Cluster, tmp_path: Path) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    client = cluster.agent("client1", f"{ip}.9", f"-join={ip}.1", "-datacenter=BJ")
    for k in ("app/a", "app/b", "app/c"):
        assert http(ps[0], f"/v1/kv/{k}", "PUT", f"saved-{k}".encode())[2].strip() == b"true"

    # save through a client agent (forwarded to a server, read on the leader)
    snap = tmp_path / "backup.snap"
    out = client.cli("snapshot", "save", str(snap)).stdout
    assert out.startswith("Saved and verified snapshot to index ")
    saved_index = int(out.split()[-1])
    assert saved_index >= 3 and snap.exists() and not (tmp_path / "backup.snap.part").exists()
    lines = ps[1].cli("snapshot", "inspect", str(snap)).stdout.splitlines()
    fields = dict(line.split() for line in lines)
    assert fields["Index"] == str(saved_index) and fields["Version"] == "1"
    assert int(fields["Size"]) > 0 and int(fields["Term"]) >= 1

    # change the state, then restore: the changes are gone on every server
    assert http(ps[1], "/v1/kv/app/a", "DELETE")[0] == 200
    assert http(ps[2], "/v1/kv/app/new", "PUT", b"after")[2].strip() == b"true"
    assert kv_keys(http(ps[0], "/v1/kv/app?keys")) == ["app/b", "app/c", "app/new"]
    assert ps[2].cli("snapshot", "restore", str(snap)).stdout.strip() == "Restored snapshot"
    for p in ps:  # stale reads: each server's own state machine
        wait_for(lambda p=p: kv_keys(http(p, "/v1/kv/app?keys&stale")) == ["app/a", "app/b", "app/c"], 15,
                 f"{p.ip} restored")
    code, headers, body = http(client, "/v1/kv/app/a?consistent")
    assert code == 200 and base64.b64decode(json.loads(body)[0]["Value"]) == b"saved-app/a"
    # A single key's X-Consul-Index is its ModifyIndex (Consul's KVS.Get), which the restore keeps.
    assert int(headers["X-Consul-Index"]) == json.loads(body)[0]["ModifyIndex"] <= saved_index
    # and the cluster keeps working afterwards, with indexes that keep growing after the restore
    assert http(ps[0], "/v1/kv/app/later", "PUT", b"x")[2].strip() == b"true"
    assert json.loads(http(ps[0], "/v1/kv/app/later")[2])[0]["ModifyIndex"] > saved_index

    # a corrupt archive: 400 with a reason, CLI error, nothing changes
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.snap"
    bad.write_bytes(bytes(data))
    code, _, body = http(ps[0], "/v1/snapshot", "PUT", bytes(data))
    assert code == 400 and b"Invalid snapshot" in body
    cp = ps[0].cli("snapshot", "restore", str(bad), check=False)
    assert cp.returncode == 1 and "Error restoring snapshot" in cp.stderr
    assert "Traceback" not in cp.stderr
    assert http(ps[0], "/v1/snapshot", "PUT", b"")[0] == 400
    assert kv_keys(http(ps[0], "/v1/kv/app?keys")) == ["app/a", "app/b", "app/c", "app/later"]

    # a stale save from a follower works too, and GET carries X-Consul-Index
    code, headers, body = http(ps[1], "/v1/snapshot?stale")
    assert code == 200 and body[:2] == b"\x1f\x8b" and int(headers["X-Consul-Index"]) > saved_index
