"""A corrupt Raft log or snapshot stops the agent with one clear line and never serves data from it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import http

pytestmark = pytest.mark.integration


def single_server(cluster: Cluster, ip: str, threshold: int) -> AgentProc:
    conf = cluster.tmp / "small-snapshots.json"
    conf.write_text(json.dumps({"raft_snapshot_threshold": threshold, "raft_trailing_logs": 4,
                                "performance": {"raft_profile": "fast"}}))
    p = cluster.agent("solo", f"{ip}.1", "-server", "-bootstrap", f"-config-file={conf}")
    wait_for(lambda: json.loads(http(p, "/v1/status/leader")[2]), 20, "a leader")
    return p


def write_keys(p: AgentProc, n: int) -> None:
    for i in range(n):
        assert http(p, f"/v1/kv/k/{i}", "PUT", f"value-{i}".encode())[2].strip() == b"true"


def restart_fails(cluster: Cluster, ip: str) -> str:
    conf = cluster.tmp / "small-snapshots.json"
    p = cluster.agent("solo", f"{ip}.1", "-server", "-bootstrap", f"-config-file={conf}", wait=False)
    wait_for(lambda: not p.running(), 20, "the agent to refuse to start")
    assert p.popen is not None and p.popen.returncode not in (0, None)
    return p.log()


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["log", "snapshot"])
def test_corrupt_storage_stops_the_agent_clearly(cluster: Cluster, damage: str) -> None:
    ip = new_block()
    p = single_server(cluster, ip, threshold=20)
    write_keys(p, 75)  # snapshots at 20, 40, 60; log entries after the last one
    raft_dir = cluster.tmp / "solo" / "raft"
    wait_for(lambda: list((raft_dir / "snapshots").glob("*.snap")), 10, "a snapshot on disk")
    p.signal(signal.SIGTERM)
    wait_for(lambda: not p.running(), 15, "the agent to stop")
    if damage == "log":
        segments = sorted(raft_dir.glob("log-*.seg"))
        assert segments, list(raft_dir.rglob("*"))
        flip_middle_byte(segments[0])  # valid frames follow the damage: corruption, not a torn tail
    else:
        snaps = sorted((raft_dir / "snapshots").glob("*.snap"))
        for s in snaps:  # no fallback: every snapshot is damaged
            flip_middle_byte(s)
    log = restart_fails(cluster, ip)
    assert "Raft storage is corrupt, refusing to start" in log
    assert "Traceback" not in log
