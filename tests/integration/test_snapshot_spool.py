"""PUT /v1/snapshot of an archive over 64 MiB (issue 14, the HTTP side of large restores): an incompressible state
of 75 MiB (random KV values) saved by GET /v1/snapshot and restored by PUT, once with Content-Length and once
chunked (as Consul's Go client sends an io.Reader). The body is spooled to a temporary file as it arrives
(agent/httpd/h1.py), so the agent never holds the archive in memory besides the restored state itself."""

from __future__ import annotations

import random
from collections.abc import Iterator
from http.client import HTTPConnection

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import fast, http

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1024 * 1024
KEYS, VALUE = 150, 512 * 1024  # KV values are at most 512 KiB


def _put_archive(p: AgentProc, archive: bytes, chunked: bool) -> tuple[int, bytes]:
    conn = HTTPConnection(p.ip, p.http_port, timeout=300)
    try:
        if chunked:
            def pieces() -> Iterator[bytes]:
                for i in range(0, len(archive), 3 * MiB + 17):
                    yield archive[i : i + 3 * MiB + 17]

            conn.request("PUT", "/v1/snapshot", body=pieces(), encode_chunked=True,
                         headers={"Transfer-Encoding": "chunked"})
        else:
            conn.request("PUT", "/v1/snapshot", body=archive)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_incompressible_state_over_64_mib_round_trips(cluster: Cluster) -> None:
    ip = new_block()
    p = cluster.agent("big", f"{ip}.1", "-server", "-bootstrap-expect=1", fast(cluster))
    wait_for(lambda: http(p, "/v1/kv/ready", "PUT", b"1")[0] == 200, 60, "leader and KV writes")
    rng = random.Random(14)
    values = [rng.randbytes(VALUE) for _ in range(KEYS)]
    for i, v in enumerate(values):
        code, _, body = http(p, f"/v1/kv/big/{i:03}", "PUT", v, timeout=60)
        assert code == 200, body
    code, _, archive = http(p, "/v1/snapshot", timeout=300)
    assert code == 200 and len(archive) > 72 * MiB, len(archive)  # random values do not compress

    for chunked in (False, True):
        assert http(p, "/v1/kv/big/000", "DELETE")[0] == 200
        assert http(p, "/v1/kv/marker", "PUT", b"after the save")[0] == 200
        code, body = _put_archive(p, archive, chunked)
        assert code == 200, body[:300]
        assert http(p, "/v1/kv/marker")[0] == 404, "the state is the snapshot's"
        for i in (0, KEYS // 2, KEYS - 1):
            code, _, got = http(p, f"/v1/kv/big/{i:03}?raw", timeout=30)
            assert code == 200 and got == values[i]
    assert p.running() and "Traceback" not in p.log()
