"""The in-memory Raft log of one server, and the history of configurations it contains.

RaftLog holds the entries (offset, last] plus the term of entry `offset` (the compaction point or the
snapshot's last included entry). It also tracks what the driver has been handed for persistence:
  * `unsent_from`: the first index not yet given out in a Ready (everything below it is on disk or
    in the Ready being persisted),
  * `pending_truncate`: the lowest index of entries already given out that have since been removed
    (the driver must delete them from disk: Ready.truncate_from),
  * `persisted`: the last index the driver has confirmed durable (advance()).
Invariants: offset <= persisted < unsent_from <= last_index + 1; terms never decrease along the log.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

import msgpack

from pyconsul.agent.raft.messages import Configuration, Entry, EntryKind, SnapshotMeta
from pyconsul.agent.raft.wire import decode_config, encode_config


def _term(e: Entry) -> int:
    return e.term


def encode_configuration(c: Configuration) -> bytes:
    """Data of a CONFIG entry (msgpack, the same shape as on the wire)."""
    data: bytes = msgpack.packb(encode_config(c), use_bin_type=True)
    return data


def decode_configuration(data: bytes) -> Configuration:
    return decode_config(msgpack.unpackb(data, raw=False))


class RaftLog:
    def __init__(self, snapshot: SnapshotMeta, entries: Sequence[Entry]) -> None:
        """Load durable state. Entries at or below the snapshot index are ignored (the snapshot covers
        them); entries after it are kept only if they follow it (contiguous from snapshot.index + 1 and,
        where the entry at snapshot.index survives, with the snapshot's term). Anything else is a log
        the snapshot superseded (InstallSnapshot, Raft Figure 13 step 7) and is dropped."""
        self.offset = snapshot.index
        self.offset_term = snapshot.term
        kept: list[Entry] = []
        consistent = True
        for e in entries:
            if e.index == snapshot.index and e.term != snapshot.term:
                consistent = False
            if e.index > snapshot.index:
                kept.append(e)
        superseded = bool(kept) and (not consistent or kept[0].index != snapshot.index + 1)
        if superseded:
            kept = []
        for a, b in itertools.pairwise(kept):
            if b.index != a.index + 1 or b.term < a.term:
                raise ValueError(f"raft log is not contiguous at index {b.index}")
        self.entries: list[Entry] = kept
        self.unsent_from = self.last_index + 1
        # entries on disk that the snapshot superseded must go before anything is appended after it
        self.pending_truncate: int | None = snapshot.index + 1 if superseded else None
        self.persisted = self.last_index

    # ------------------------------------------------------------ queries

    @property
    def first_index(self) -> int:
        return self.offset + 1

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at index, or None when it is compacted away or beyond the end."""
        if index == self.offset:
            return self.offset_term
        if self.offset < index <= self.offset + len(self.entries):
            return self.entries[index - self.offset - 1].term
        return None

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.offset - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo..hi inclusive; the caller guarantees offset < lo."""
        return self.entries[lo - self.offset - 1:hi - self.offset]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log is at least as up-to-date as ours."""
        return last_term > self.last_term or (last_term == self.last_term and last_index >= self.last_index)

    def conflict_hint(self, index: int, floor: int) -> int:
        """A rejected AppendEntries at `index`: where the leader should probe next (never below `floor`,
        our commit index, whose prefix is known to match). Skips back over the whole run of entries with
        the conflicting term (thesis §5.3 optimisation), or to our last entry when index is beyond it.
        Terms never decrease along the log, so the run's start is found by bisection."""
        if index > self.last_index:
            return max(floor, self.last_index)
        term = self.term_at(index)
        if term is None or index <= self.offset:
            return max(floor, index - 1)
        first = bisect.bisect_left(self.entries, term, hi=index - self.offset - 1, key=_term) + self.offset + 1
        return max(floor, first - 1)

    # ------------------------------------------------------------ mutation

    def append(self, entries: Sequence[Entry]) -> None:
        """Append after the last entry (the leader's own proposals)."""
        self.entries.extend(entries)

    def merge(self, entries: Sequence[Entry], commit: int) -> int | None:
        """Follower path (Raft Figure 2, AppendEntries steps 3-4): `entries` follow a matching prefix and
        start after `commit`. Skip the ones we already have, truncate at the first conflict, append the
        rest. Returns the index of the first entry added (anything at or after it was replaced), or None.
        Invariant: committed entries never conflict (Log Matching + Leader Completeness, §5.4)."""
        for k, e in enumerate(entries):
            t = self.term_at(e.index)
            if t == e.term:
                continue
            if t is not None:
                if e.index <= commit:
                    raise AssertionError(f"conflict at committed index {e.index} (commit {commit})")
                self.truncate(e.index)
            if e.index != self.last_index + 1:
                raise AssertionError(f"entry {e.index} does not follow the log's last index {self.last_index}")
            self.entries.extend(entries[k:])
            return e.index
        return None

    def truncate(self, index: int) -> None:
        """Delete entries >= index (index > offset)."""
        del self.entries[index - self.offset - 1:]
        if index < self.unsent_from:
            self.pending_truncate = index if self.pending_truncate is None else min(self.pending_truncate, index)
            self.unsent_from = index
        self.persisted = min(self.persisted, index - 1)

    def compact(self, index: int) -> None:
        """Drop entries <= index (offset <= index <= last_index); the caller covers them by a snapshot."""
        if index <= self.offset:
            return
        term = self.term_at(index)
        assert term is not None
        del self.entries[:index - self.offset]
        self.offset, self.offset_term = index, term
        self.unsent_from = max(self.unsent_from, index + 1)
        self.persisted = max(self.persisted, index)
        if self.pending_truncate is not None and self.pending_truncate <= index:
            self.pending_truncate = index + 1

    def restore(self, meta: SnapshotMeta) -> None:
        """Reset to a received snapshot (Figure 13 step 8). Entries given out after it must go from disk."""
        # Whatever was given out after meta.index conflicts with it; anything below it is covered by it
        # (the storage drops that log when it saves a snapshot whose last entry it does not hold).
        stale = self.pending_truncate is not None or self.unsent_from > meta.index + 1
        self.pending_truncate = meta.index + 1 if stale else None
        self.entries = []
        self.offset, self.offset_term = meta.index, meta.term
        self.unsent_from = meta.index + 1
        self.persisted = meta.index

    def take_unsent(self) -> tuple[int | None, list[Entry]]:
        """What the next Ready must persist: (truncate_from, entries). Marks them given out."""
        trunc, self.pending_truncate = self.pending_truncate, None
        entries = self.entries[self.unsent_from - self.offset - 1:] if self.unsent_from <= self.last_index else []
        self.unsent_from = self.last_index + 1
        return trunc, entries

    def has_unsent(self) -> bool:
        return self.pending_truncate is not None or self.unsent_from <= self.last_index

    def stable_to(self, index: int, term: int) -> None:
        """The driver persisted entries up to (index, term); ignored if they were replaced meanwhile."""
        if index > self.persisted and self.term_at(index) == term and index < self.unsent_from:
            self.persisted = index


class ConfigHistory:
    """Configurations in force at each point of the log: the base (from the snapshot or compaction
    point) plus one per CONFIG entry. The latest is in force as soon as it is appended (thesis §4.1)."""

    def __init__(self, base_index: int, base: Configuration, entries: Sequence[Entry]) -> None:
        self.items: list[tuple[int, Configuration]] = [(base_index, base)]
        self._voters_of: Configuration | None = None
        self._voters: tuple[str, ...] = ()
        for e in entries:
            self.observe(e)

    def observe(self, e: Entry) -> None:
        if e.kind == EntryKind.CONFIG:
            self.items.append((e.index, decode_configuration(e.data)))

    @property
    def latest(self) -> Configuration:
        return self.items[-1][1]

    def voters(self) -> tuple[str, ...]:
        """Voters of the latest configuration (cached: asked on every acknowledgement)."""
        c = self.items[-1][1]
        if c is not self._voters_of:
            self._voters_of, self._voters = c, c.voters()
        return self._voters

    @property
    def latest_index(self) -> int:
        return self.items[-1][0]

    def at(self, index: int) -> Configuration:
        """The configuration in force once entry `index` is in the log (for snapshot metadata)."""
        for i, c in reversed(self.items):
            if i <= index:
                return c
        return self.items[0][1]

    def truncate(self, index: int) -> None:
        """Entries >= index were removed: the configurations they carried go with them."""
        while len(self.items) > 1 and self.items[-1][0] >= index:
            self.items.pop()

    def compact(self, index: int) -> None:
        """Forget configurations superseded at or before index (keep the one in force there)."""
        while len(self.items) > 1 and self.items[1][0] <= index:
            self.items.pop(0)

    def reset(self, index: int, c: Configuration) -> None:
        self.items = [(index, c)]
