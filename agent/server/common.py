"""What servers and client agents share without importing Raft or the store (client agents stay
light: they never load agent.raft.core, agent.raft.storage or agent.state.store)."""

from __future__ import annotations

from dataclasses import dataclass

RPC_HOLD_TIMEOUT = 7.0  # Consul: how long a request waits for a leader before "No cluster leader"


class NoLeader(Exception):
    """Consul's "No cluster leader": no leader is known right now."""

    def __str__(self) -> str:
        return "No cluster leader"


@dataclass(frozen=True, slots=True)
class ReadMeta:
    index: int
    known_leader: bool
    last_contact_ms: int
