"""Raft's vocabulary: log entries, configurations, RPC messages and the Ready batch.

Shared by the pure core (core.py), durable storage (storage.py), the asyncio driver (node.py)
and the simulation. Wire enums are append-only: their numbers are persisted and sent.

Contract of a Ready (Raft §5, etcd-raft's ordering rule): the driver must
  1. persist `hard_state` and `entries` (and `snapshot`) durably -- fsync -- first,
  2. then send `messages`,
  3. then apply `committed` entries to the state machine in order,
  4. then call `core.advance(ready)`.
Messages may only leave after what they promise (votes, appended entries) is on disk. The one
exception is `may_send_before_persist` (a leader's replication, thesis §10.2.1): those may leave
before step 1 finishes. The core counts its own log in the commit quorum only up to what advance()
reported durable, so a leader whose write is slow (or lost in a crash) commits only with a majority
of followers. A driver may take further Readies before advancing earlier ones, if it persists them
in order and advances them in order; with nothing else in between it is the plain loop above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from pyconsul.agent.records import shared_repr


class EntryKind(IntEnum):
    NORMAL = 0  # a state machine command
    CONFIG = 1  # data is an encoded Configuration; takes effect when appended (Raft thesis §4.1)
    NOOP = 2  # appended by a new leader to commit entries of earlier terms (§5.4.2)


class Suffrage(IntEnum):
    VOTER = 0
    NONVOTER = 1


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3

    def __str__(self) -> str:
        return {0: "follower", 1: "pre-candidate", 2: "candidate", 3: "leader"}[self.value]


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Server:
    id: str  # stable server ID (Consul: the node ID UUID)
    address: str  # "ip:port" of the server RPC listener
    suffrage: Suffrage = Suffrage.VOTER


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Configuration:
    servers: tuple[Server, ...] = ()

    def voters(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.servers if s.suffrage == Suffrage.VOTER)

    def get(self, server_id: str) -> Server | None:
        for s in self.servers:
            if s.id == server_id:
                return s
        return None


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Entry:
    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class HardState:
    """What must survive a crash besides the log (Raft Figure 2: currentTerm, votedFor) + commit."""

    term: int = 0
    vote: str = ""
    commit: int = 0


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    configuration: Configuration = field(default_factory=Configuration)


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Snapshot:
    meta: SnapshotMeta
    data: bytes


# ---------------------------------------------------------------- RPC messages


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class VoteRequest:
    term: int
    from_: str
    to: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False  # Raft thesis §9.6: does not bump anyone's term
    transfer: bool = False  # leadership transfer (§3.10): ignore leader stickiness


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class VoteResponse:
    term: int
    from_: str
    to: str
    granted: bool
    pre_vote: bool = False


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class AppendRequest:
    term: int
    from_: str
    to: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    read_ctx: int = 0  # ReadIndex round this heartbeat confirms (0 = none)


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class AppendResponse:
    term: int
    from_: str
    to: str
    success: bool
    match_index: int  # on success: last index known to match; on reject: a hint where to back up to
    read_ctx: int = 0


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SnapshotRequest:
    term: int
    from_: str
    to: str
    snapshot: Snapshot


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SnapshotResponse:
    term: int
    from_: str
    to: str
    success: bool
    match_index: int


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class TimeoutNow:
    """Leadership transfer: the target campaigns at once (§3.10)."""

    term: int
    from_: str
    to: str


Message = (
    VoteRequest | VoteResponse | AppendRequest | AppendResponse | SnapshotRequest | SnapshotResponse | TimeoutNow
)


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SnapshotChunk:
    """One piece of an InstallSnapshot, between the drivers (node.py, snapstream.py): the core sends and
    receives whole SnapshotRequests; the leader's driver streams one as chunks of at most CHUNK bytes, one
    in flight per follower, and the follower's driver reassembles it on disk and hands the core the whole
    SnapshotRequest after the last chunk (offset + len(data) == size). Never seen by the core."""

    term: int
    from_: str
    to: str
    index: int  # the snapshot's last included index and term: which snapshot this piece belongs to
    snap_term: int
    configuration: Configuration
    offset: int
    size: int  # the whole snapshot's length in bytes
    data: bytes


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SnapshotChunkAck:
    """The follower's driver has `next_offset` bytes of the snapshot (index, snap_term) on disk: the leader
    sends the piece at next_offset (0: start again; == size: complete, the core's SnapshotResponse follows)."""

    term: int
    from_: str
    to: str
    index: int
    snap_term: int
    next_offset: int


WireMessage = Message | SnapshotChunk | SnapshotChunkAck  # what travels on port 8300 between servers


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class ReadState:
    """A ReadIndex request is answered: reads may be served once applied >= index."""

    ctx: int
    index: int


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SoftState:
    leader: str  # "" when unknown
    role: Role
    term: int


@shared_repr
@dataclass(slots=True, repr=False)
class Ready:
    hard_state: HardState | None = None  # persist if not None
    truncate_from: int | None = None  # delete log entries with index >= this before appending
    entries: list[Entry] = field(default_factory=list)  # append durably
    snapshot: Snapshot | None = None  # received snapshot to persist and restore
    messages: list[Message] = field(default_factory=list)  # send after persisting
    committed: list[Entry] = field(default_factory=list)  # apply in order
    read_states: list[ReadState] = field(default_factory=list)
    soft_state: SoftState | None = None  # set when leader/role/term changed

    def empty(self) -> bool:
        return not (
            self.hard_state or self.truncate_from is not None or self.entries or self.snapshot or self.messages
            or self.committed or self.read_states or self.soft_state
        )


def may_send_before_persist(m: Message) -> bool:
    """Whether `m` may leave before the Ready that carries it is durable: the leader's AppendEntries,
    InstallSnapshot and TimeoutNow promise nothing about the sender's disk (thesis §10.2.1; etcd's
    raft sends MsgApp before its own append is stable). Everything else -- vote requests (the
    candidate counted its own vote), vote and append responses -- waits for the fsync."""
    return isinstance(m, AppendRequest | SnapshotRequest | TimeoutNow)
