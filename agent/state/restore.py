"""A restore (PUT /v1/snapshot) of a state larger than one Raft entry: its state travels through the log as
consecutive Restore pieces, and every replica switches to it when it applies the last one.

Why through the log (and not hashicorp/raft's user restore, which installs the snapshot on the leader at a
made-up index and lets followers catch up by InstallSnapshot): a piece is an ordinary entry, so the restore
is committed by a quorum before anyone switches (an acknowledged restore survives kill -9 of every server),
every replica switches at the same index (the last piece's), a server that crashes or is wiped catches up
by the log or a snapshot as for any write, and a leader that dies mid-restore cannot leave replicas in
different states (Raft's commit rule decides which pieces exist). The cost: the state is in the log once
more until the next compaction.

Contract (pure; the rules in `step` are the same on the loop side, StateStore, and the thread side, Spool):
- The leader proposes the pieces of one restore in order, a few at a time (server.py: each group once the
  previous one committed, so heartbeats never wait behind more than one AppendEntries batch of them):
  Restore(state=piece, id=<restore id>, offset, total); offsets start at 0 and follow each other; `total`
  is the state's length, at most MAX_TOTAL. Other commands may come between pieces: they apply to the
  state as it is, which the last piece then replaces (the restore takes effect at that index).
- A piece at offset 0 starts a restore (abandoning any other in progress); a piece that does not continue
  the restore in progress is refused (StateError) and ends it; a one-entry Restore, an undecodable entry
  and the abort command (`abort()`: proposed by a leader whose restore failed half-way, and by a new
  leader that finds one in progress) end it too.
- The piece completing `total` decodes the whole state and swaps it in, with the same result and table
  indexes as a one-entry Restore at its index. Decoding is the worker thread's job (Spool, in log order,
  via the Raft driver's prepare hook); the loop only keeps the bookkeeping (Pending without the bytes).
- While a restore is in progress the state machine must not be snapshotted (its pieces live in the log,
  not in the tables): StateStore.restoring() says so, and the Raft driver defers its snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyconsul.agent.state import snapshot
from pyconsul.agent.state.commands import Restore, encode
from pyconsul.agent.state.results import StateError
from pyconsul.agent.state.tables import Tables
from pyconsul.agent.state.wire import DecodeError

PIECE = 4 * 1024 * 1024  # state bytes per piece (one Raft entry, like an InstallSnapshot piece)
MAX_TOTAL = 1024 * 1024 * 1024  # the largest state a restore may announce (HTTP caps it lower: archive.MAX_STATE)
MIN_RATE = 4 * 1024 * 1024  # bytes/s: a restore's timeouts grow by its size at this rate (forwarding, committing)


WINDOW = 4  # pieces proposed at once (16 MiB: one AppendEntries batch), the next group after they commit
ABORT_ID = "-"  # Restore(b"", id=ABORT_ID): end the restore in progress, if any


def abort() -> Restore:
    return Restore(b"", id=ABORT_ID)


def is_abort(cmd: Restore) -> bool:
    return cmd.id == ABORT_ID and not cmd.state and cmd.offset == 0 and cmd.total == 0


def is_piece(cmd: Restore) -> bool:
    """A piece of a restore (or the abort): any Restore but a one-entry one."""
    return bool(cmd.id) or cmd.total > 0


def pieces(state: bytes, restore_id: str) -> list[Restore]:
    """The pieces of a restore of `state`, in order."""
    total = len(state)
    return [Restore(state[o:o + PIECE], id=restore_id, offset=o, total=total) for o in range(0, max(total, 1), PIECE)]


def encoded_pieces(state: bytes, restore_id: str) -> list[bytes]:
    """The pieces as Raft entries (commands.encode)."""
    return [encode(p) for p in pieces(state, restore_id)]


@dataclass(frozen=True, slots=True)
class PieceMeta:
    """What the loop needs of a piece (not its bytes), with the thread's result for the last one."""

    id: str
    offset: int
    total: int
    length: int
    result: Tables | StateError | None = None  # set on the piece that completes the restore


@dataclass(slots=True)
class Pending:
    id: str
    total: int
    received: int = 0
    parts: list[bytes] | None = field(default=None)  # the bytes, where this side decodes them

    @property
    def complete(self) -> bool:
        return self.received >= self.total


def meta_of(cmd: Restore) -> PieceMeta:
    return PieceMeta(cmd.id, cmd.offset, cmd.total, len(cmd.state))


def step(cur: Pending | None, p: PieceMeta, data: bytes | None = None) -> tuple[Pending | None, str]:
    """The restore in progress after piece `p`, and "" -- or (None, why the piece is refused). `data`: keep
    the piece's bytes (the side that decodes)."""
    if not p.id or p.total <= 0 or p.total > MAX_TOTAL or p.offset < 0 or p.length <= 0 \
            or p.offset + p.length > p.total:
        return None, (f"bad restore piece (id {p.id!r}, offset {p.offset}, {p.length} of {p.total} bytes; "
                      f"a restore is at most {MAX_TOTAL} bytes)")
    if p.offset == 0:
        cur = Pending(p.id, p.total, parts=[] if data is not None else None)
    elif cur is None or cur.id != p.id or cur.total != p.total or cur.received != p.offset:
        return None, f"restore piece at offset {p.offset} of {p.total} bytes does not continue a restore in progress"
    cur.received += p.length
    if cur.parts is not None and data is not None:
        cur.parts.append(data)
    return cur, ""


def decode_state(parts: list[bytes]) -> Tables | StateError:
    data = b"".join(parts)
    parts.clear()
    try:
        return snapshot.load(data)
    except DecodeError as exc:
        return StateError(f"invalid snapshot: {exc}")


class Spool:
    """The worker thread's side: the pieces of the restore in progress, in log order; decodes the state
    when the last one arrives. Only the Raft driver's prepare thread calls add/reset; the loop may call
    abandon (a restore it saw abandoned: frees the bytes)."""

    def __init__(self) -> None:
        self.cur: Pending | None = None

    def add(self, cmd: Restore) -> PieceMeta:
        p = meta_of(cmd)
        cur, err = step(self.cur, p, cmd.state)
        if err or cur is None:
            self.cur = None
            return p  # the loop refuses it by the same rule
        if not cur.complete:
            self.cur = cur
            return p
        self.cur = None
        assert cur.parts is not None
        return PieceMeta(p.id, p.offset, p.total, p.length, decode_state(cur.parts))

    def reset(self) -> None:
        """A snapshot was installed: no restore is in progress in it."""
        self.cur = None

    def abandon(self, restore_id: str) -> None:
        cur = self.cur
        if cur is not None and cur.id == restore_id:
            self.cur = None


def finish(cur: Pending, p: PieceMeta) -> Any:
    """The decoded state for a completed restore: the thread's (p.result) or, on the side that kept the
    bytes, decoded here."""
    if cur.parts is not None:
        return decode_state(cur.parts)
    if p.result is None:
        return StateError("restore pieces were not prepared in step", True)
    return p.result
