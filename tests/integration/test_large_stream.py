"""Beyond one server-RPC frame (64 MiB), on three real servers (issue 11, item 2):
- PUT /v1/snapshot of a state over 64 MiB through a follower: the Restore is streamed to the leader in PART frames
  and committed as consecutive pieces (state/restore.py); every server switches to it, and it survives kill -9 of
  every server (the pieces are replayed from the log: no Raft snapshot is taken in the middle of a restore);
- a consistent KV read and GET /v1/snapshot through a follower (and the snapshot through a client agent) whose
  reply from the leader is over 64 MiB: it streams in PART frames (used to be 500 ReplyTooLarge).
The state is few large values (~70 MiB in 1 MiB values, compressible so that the archive fits the 64 MiB body).
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import zlib

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import http, leader_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = 70
VALUE = 1024 * 1024


def value(i: int) -> bytes:
    return (f"{i:04}" * (VALUE // 4)).encode()


def crafted_archive() -> tuple[bytes, int]:
    """An archive of KEYS values of 1 MiB (as `pyconsul snapshot save` writes) and the size of its state."""
    from pyconsul.agent.state import archive, snapshot
    from pyconsul.agent.state.tables import KVEntry, Tables

    t = Tables()
    for i in range(KEYS):
        key = f"big/{i:03}"
        t.put("kvs", key, KVEntry(key, value(i), 0, 10, 10))
    t.bump("kvs", 10)
    state = snapshot.dump(t)
    assert len(state) > 64 << 20, len(state)
    data = archive.write_archive(state, 10)
    assert len(data) < 64 << 20  # the PUT body limit
    return data, len(state)


def followers(ps: list[AgentProc]) -> list[AgentProc]:
    return [p for p in ps if p.api("/v1/agent/self")["Stats"]["consul"]["leader"] != "true"]


def has_big(p: AgentProc, i: int = KEYS - 1) -> bool:
    code, _, body = http(p, f"/v1/kv/big/{i:03}?stale&raw", timeout=30)
    return code == 200 and body == value(i)


def test_restore_reads_and_snapshots_beyond_one_frame_through_a_follower(cluster: Cluster) -> None:
    ip = new_block()
    cfg = cluster.tmp / "large.json"  # 3 s election timeouts: moving 70 MiB x 3 on a busy 2-core CI machine
    cfg.write_text(json.dumps({"performance": {"raft_multiplier": 3}}))
    ps = [cluster.agent(f"node{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", "-datacenter=BJ",
                        f"-config-file={cfg}") for i in (1, 2, 3)]
    for p in ps[1:]:
        p.cli("join", f"{ip}.1")
    wait_for(lambda: leader_of(ps), 60, "a leader")
    assert http(ps[0], "/v1/kv/old", "PUT", b"before", timeout=30)[0] == 200
    archive_bytes, state_size = crafted_archive()

    # restore through a follower: forwarded to the leader (streamed), committed in pieces. Should it still meet
    # an election on a starved machine, it is sent again (a restore is idempotent), as test_large_state does.
    def restore_via_follower() -> bool:
        code, _, body = http(followers(ps)[0], "/v1/snapshot", "PUT", archive_bytes, timeout=180)
        assert code in (200, 500), body[:300]  # 500: "No cluster leader" or leadership lost mid-way
        return code == 200

    wait_for(restore_via_follower, 300, "the restore acknowledged", interval=1.0)
    for p in ps:
        wait_for(lambda p=p: has_big(p), 60, f"{p.ip} restored")
        assert http(p, "/v1/kv/old?stale")[0] == 404
    # writes go on after it, with indexes above the restore's
    assert http(ps[0], "/v1/kv/after", "PUT", b"x", timeout=30)[0] == 200

    # a consistent read through a follower whose answer from the leader is over 64 MiB
    f = followers(ps)[0]
    code, headers, body = http(f, "/v1/kv/big/?recurse&consistent", timeout=120)
    assert code == 200, body[:300]
    entries = json.loads(body)
    assert len(entries) == KEYS and base64.b64decode(entries[5]["Value"]) == value(5)
    del body, entries

    # GET /v1/snapshot through a follower (the leader's state streams to it) and through a client agent (which
    # asks a server, which asks the leader: streamed twice)
    client = cluster.agent("client1", f"{ip}.9", f"-join={ip}.1", "-datacenter=BJ")
    for via in (f, client):
        code, headers, body = http(via, "/v1/snapshot", timeout=120)
        assert code == 200 and int(headers["X-Consul-Index"]) > 0, body[:300]
        with tarfile.open(fileobj=io.BytesIO(zlib.decompress(body, wbits=31)), mode="r:") as tar:
            member = tar.getmember("state.bin")
            assert member.size > state_size  # the restored state and the writes after it
        del body

    # an acknowledged restore survives kill -9 of every server (its pieces are replayed from the log)
    for p in ps:
        p.kill9()
    for p in ps:
        p.start()
    wait_for(lambda: leader_of(ps), 60, "a leader after the restart")
    for p in ps:
        wait_for(lambda p=p: has_big(p, 0) and has_big(p), 60, f"{p.ip} has the restored state after kill -9")
        wait_for(lambda p=p: http(p, "/v1/kv/after?stale")[0] == 200, 30, f"{p.ip} has the later write")
