"""The leader's view of one follower: replication progress and flow control (etcd-raft's Progress).

States (Raft §5.3 and thesis §10.2 pipelining):
  PROBE      next_index is a guess; at most one AppendEntries in flight (`probe_sent`) until a
             response or the next heartbeat round. A success moves to REPLICATE.
  REPLICATE  next_index is optimistic: entries are streamed up to `max_inflight` messages ahead of
             acknowledgement. A reject, or an ack that leaves the oldest message unanswered for
             `resend_after`, falls back to PROBE (the message was lost or overtaken).
  SNAPSHOT   an InstallSnapshot (Raft §7) is in flight; nothing else is sent but heartbeats.
Invariants: match < next; match only grows within a term (it is what the follower has durably stored).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

NEVER = float("-inf")


class PeerState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2

    def __str__(self) -> str:
        return ("probe", "replicate", "snapshot")[self.value]


@dataclass(slots=True)
class Progress:
    next: int
    last_heard: float  # any message from the peer in this term (check-quorum)
    match: int = 0
    state: PeerState = PeerState.PROBE
    probe_sent: bool = False
    # (last index sent, when it is due: send time + its bytes' transfer time, see replication.transfer_time)
    inflight: deque[tuple[int, float]] = field(default_factory=deque)
    pending_snapshot: int = 0
    snapshot_sent_at: float = NEVER
    acked_round: int = 0  # highest heartbeat round echoed (ReadIndex)
    acked_at: float = NEVER  # send time of that round (leader lease)
    needs_snapshot: bool = False  # wanted entries we compacted and no snapshot was given to the core
    probe_due: float = NEVER  # PROBE: a heartbeat round may resend the probe from then on (its bytes take time)

    def become_probe(self, next_index: int | None = None) -> None:
        self.state = PeerState.PROBE
        self.probe_sent = False
        self.inflight.clear()
        self.next = max(self.match + 1, next_index if next_index is not None else self.match + 1)

    def become_replicate(self) -> None:
        self.state = PeerState.REPLICATE
        self.probe_sent = False
        self.inflight.clear()
        self.next = self.match + 1

    def become_snapshot(self, index: int, now: float) -> None:
        self.state = PeerState.SNAPSHOT
        self.inflight.clear()
        self.pending_snapshot = index
        self.snapshot_sent_at = now
        self.needs_snapshot = False

    def ack(self, match: int) -> bool:
        """A success up to `match`; True if match advanced. Frees in-flight slots it covers."""
        advanced = match > self.match
        if advanced:
            self.match = match
        if self.next <= self.match:
            self.next = self.match + 1
        while self.inflight and self.inflight[0][0] <= self.match:
            self.inflight.popleft()
        return advanced

    def stalled(self, now: float, resend_after: float) -> bool:
        """The oldest unacknowledged message has been out for too long: assume it was lost."""
        return bool(self.inflight) and self.inflight[0][1] < now - resend_after
