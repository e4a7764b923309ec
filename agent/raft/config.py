"""Raft timing and batching, with named presets (Consul's scaled defaults, etcd's, a fast profile).

Pure: imported by the Raft core (`core`, `replication`), so it must not import the agent's config
loader, the network or the clock (tests/unit/test_import_rule.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RaftConfig:
    """Raft timing (seconds). `consul(m)` is hashicorp/raft's defaults scaled by Consul's
    raft_multiplier (default 5; production advice 1); `fast()` is our documented low-latency
    profile for LANs. Timeouts are randomised in [T, 2T] by the core."""

    heartbeat_timeout: float  # follower: no leader contact for this long -> election (randomised)
    election_timeout: float  # candidate: restart the election after this long (randomised)
    leader_lease_timeout: float  # leader: serve default-mode reads while a quorum answered within this
    heartbeat_interval: float  # leader: idle AppendEntries this often (hashicorp: heartbeat_timeout / 10)
    max_append_entries: int = 64  # entries per AppendEntries (batching)
    # ... and their data bytes (past the first entry): a batch must fit in one 64 MiB frame (raft/wire.py)
    max_append_bytes: int = 16 * 1024 * 1024
    max_inflight: int = 128  # pipelined AppendEntries in flight per follower
    snapshot_threshold: int = 16384  # Consul: snapshot after this many new entries
    trailing_logs: int = 10240  # Consul: entries kept after a snapshot for slow followers
    pre_vote: bool = True  # Raft thesis §9.6: no term inflation from partitioned nodes
    check_quorum: bool = True  # a leader that cannot reach a quorum steps down

    @classmethod
    def consul(cls, multiplier: int = 5) -> RaftConfig:
        m = float(multiplier)
        return cls(heartbeat_timeout=1.0 * m, election_timeout=1.0 * m, leader_lease_timeout=0.5 * m,
                   heartbeat_interval=0.1 * m)

    @classmethod
    def etcd_like(cls) -> RaftConfig:
        """etcd's defaults (heartbeat 100 ms, election 1,000 ms): for side-by-side benchmarks."""
        return cls(heartbeat_timeout=1.0, election_timeout=1.0, leader_lease_timeout=0.5, heartbeat_interval=0.1)

    @classmethod
    def fast(cls) -> RaftConfig:
        """Failover well under a second on a quiet LAN; costs more heartbeat traffic."""
        return cls(heartbeat_timeout=0.3, election_timeout=0.3, leader_lease_timeout=0.15, heartbeat_interval=0.05)

