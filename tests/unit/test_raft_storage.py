"""RaftStorage: round trips, truncation, rotation, snapshots, torn tails, corruption, and a model check."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyconsul.agent.raft import storage as storage_mod
from pyconsul.agent.raft.messages import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Server,
    Snapshot,
    SnapshotMeta,
    Suffrage,
)
from pyconsul.agent.raft.storage import RaftStorage, StorageCorrupt, StorageFailed

CONF = Configuration((Server("a", "10.0.0.1:8300"), Server("b", "10.0.0.2:8300", Suffrage.NONVOTER)))


def ents(first: int, last: int, term: int = 1, tag: bytes = b"") -> list[Entry]:
    kinds = list(EntryKind)
    return [Entry(term, i, kinds[i % len(kinds)], tag + b"data-%d" % i) for i in range(first, last + 1)]


def reopen(path: Path, s: RaftStorage | None = None, **kw: int) -> RaftStorage:
    if s is not None:
        s.close()
    return RaftStorage.open(path, **kw)


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("log-*.seg"))


def frames(seg: Path) -> list[tuple[int, int]]:
    """(start, end) of every valid frame in a segment."""
    buf = seg.read_bytes()
    seq = int(seg.name[4:-4])
    out: list[tuple[int, int]] = []
    off = 0
    while off < len(buf):
        end = storage_mod._check_frame(buf, off, seq)
        assert isinstance(end, int), end
        out.append((off, end))
        off = end
    return out


def flip(path: Path, offset: int) -> None:
    buf = bytearray(path.read_bytes())
    buf[offset] ^= 0x40
    path.write_bytes(bytes(buf))


# ---------------------------------------------------------------- basics


def test_fresh_directory_is_empty(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path / "raft")
    assert s.initial_state() == (HardState(), SnapshotMeta(), [])
    assert s.load_snapshot() is None
    assert s.stats()["segments"] == 1
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.save(HardState(1), None, [])


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    s.save(HardState(1, "a", 0), None, ents(1, 3))
    s.save(HardState(1, "a", 2), None, ents(4, 10, tag=b"\x00\xff" * 100))
    state = s.initial_state()
    assert state == (HardState(1, "a", 2), SnapshotMeta(), ents(1, 3) + ents(4, 10, tag=b"\x00\xff" * 100))
    s = reopen(tmp_path, s)
    assert s.initial_state() == state
    s.close()


def test_one_fsync_per_save_and_none_for_nothing(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    before = s.stats()["fsyncs"]
    s.save(HardState(1, "a", 0), None, ents(1, 64))
    assert s.stats()["fsyncs"] == before + 1
    s.save(HardState(1, "a", 0), None, [])  # unchanged hard state: nothing to write
    s.save(None, None, [])
    assert s.stats()["fsyncs"] == before + 1
    s.close()


def test_test_only_fsync_delay_stalls_every_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PYCONSUL_TEST_FSYNC_DELAY_MS (tests/integration/test_fsync_stall.py) is read at open(): each data
    fsync then takes at least that long; a store opened without it is not slowed."""
    monkeypatch.setenv(storage_mod.TEST_FSYNC_DELAY_ENV, "60")
    s = RaftStorage.open(tmp_path / "slow")
    monkeypatch.delenv(storage_mod.TEST_FSYNC_DELAY_ENV)
    fast = RaftStorage.open(tmp_path / "fast")
    t0 = time.monotonic()
    s.save(HardState(1, "a", 0), None, ents(1, 3))
    s.save(HardState(1, "a", 0), None, ents(4, 4))
    assert time.monotonic() - t0 >= 0.12
    fast.save(HardState(1, "a", 0), None, ents(1, 3))  # just works; no upper bound on a loaded machine
    s.close()
    fast.close()
    again = RaftStorage.open(tmp_path / "slow")
    assert again.initial_state()[2] == ents(1, 4)
    again.close()


def test_hard_state_alone_survives(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    s.save(HardState(3, "node-ü", 0), None, [])
    s.save(HardState(4, "", 0), None, [])
    s = reopen(tmp_path, s)
    assert s.initial_state()[0] == HardState(4, "", 0)
    s.close()


def test_truncate_then_append(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    s.save(None, None, ents(1, 10, term=1))
    s.save(HardState(2, "b", 3), 6, ents(6, 8, term=2))  # a follower resolving a conflict
    want = ents(1, 5, term=1) + ents(6, 8, term=2)
    assert s.initial_state()[2] == want
    s.save(None, 4, [])  # truncation alone
    s.save(None, 4, ents(4, 4, term=3))  # truncate_from past the end is a no-op
    want = ents(1, 3, term=1) + ents(4, 4, term=3)
    assert s.initial_state()[2] == want
    s = reopen(tmp_path, s)
    assert s.initial_state() == (HardState(2, "b", 3), SnapshotMeta(), want)
    s.close()


def test_invalid_saves_raise_before_writing(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    s.save(None, None, ents(1, 5))
    size = s.stats()["bytes"]
    with pytest.raises(ValueError, match="expected 6"):
        s.save(HardState(9), None, ents(7, 8))
    with pytest.raises(ValueError, match="expected 3"):
        s.save(None, 3, ents(4, 4))
    with pytest.raises(ValueError, match="expected 7"):
        s.save(None, None, [*ents(6, 6), *ents(8, 8)])
    s.save_snapshot(Snapshot(SnapshotMeta(4, 1, CONF), b"s"))
    with pytest.raises(ValueError, match="inside the snapshot"):
        s.save(None, 3, ents(3, 3))
    with pytest.raises(ValueError, match="beyond the snapshot"):
        s.compact(5)
    assert s.initial_state()[0] == HardState()
    assert s.stats()["bytes"] == size
    s.close()


def test_second_open_of_same_directory_is_refused(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    with pytest.raises(RuntimeError, match="in use"):
        RaftStorage.open(tmp_path)
    s.close()
    RaftStorage.open(tmp_path).close()


def test_segment_rotation(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path, segment_size=600)
    for i in range(1, 41):
        s.save(HardState(i, "a", i - 1), None, ents(i, i))
    assert s.stats()["segments"] > 5
    assert s.stats()["bytes"] == sum(p.stat().st_size for p in segments(tmp_path))
    s.save(None, 3, ents(3, 5, term=7))  # truncation reaching back into an older segment
    want = (HardState(40, "a", 39), SnapshotMeta(), ents(1, 2) + ents(3, 5, term=7))
    assert s.initial_state() == want
    s = reopen(tmp_path, s, segment_size=600)
    assert s.initial_state() == want
    s.close()


def test_oversized_batch_gets_its_own_segment(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path, segment_size=256)
    s.save(None, None, ents(1, 50, tag=b"x" * 100))
    s.save(None, None, ents(51, 51))
    s = reopen(tmp_path, s, segment_size=256)
    assert s.initial_state()[2] == ents(1, 50, tag=b"x" * 100) + ents(51, 51)
    s.close()


# ---------------------------------------------------------------- snapshots


def test_snapshot_keeps_later_entries_and_compacts(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path, segment_size=400)
    for i in range(1, 31):
        s.save(HardState(1, "a", i), None, ents(i, i))
    segs = s.stats()["segments"]
    snap1 = Snapshot(SnapshotMeta(10, 1, CONF), b"state@10")
    s.save_snapshot(snap1)
    assert s.load_snapshot() == snap1
    assert s.initial_state() == (HardState(1, "a", 30), snap1.meta, ents(11, 30))
    assert s.stats()["segments"] == segs, "one snapshot: the log back to 0 stays (fallback)"
    snap2 = Snapshot(SnapshotMeta(25, 1, CONF), b"state@25")
    s.save_snapshot(snap2)
    assert s.stats()["segments"] < segs, "segments up to the previous snapshot are deleted"
    assert s.initial_state() == (HardState(1, "a", 30), snap2.meta, ents(26, 30))
    s.save_snapshot(Snapshot(SnapshotMeta(28, 1), b"state@28"))
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["1-25.snap", "1-28.snap"]
    s.compact(28)
    s.save(None, None, ents(31, 32))
    s = reopen(tmp_path, s, segment_size=400)
    assert s.initial_state() == (HardState(1, "a", 30), SnapshotMeta(28, 1), ents(29, 32))
    assert s.load_snapshot() == Snapshot(SnapshotMeta(28, 1), b"state@28")
    s.close()


def test_snapshot_not_matching_the_log_discards_it(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    s.save(None, None, ents(1, 10, term=1))
    s.save_snapshot(Snapshot(SnapshotMeta(5, 2, CONF), b"leader's"))  # term differs at 5: Raft §7
    assert s.initial_state()[2] == []
    s.save(None, None, ents(6, 7, term=2))
    s.save_snapshot(Snapshot(SnapshotMeta(20, 3), b"far ahead"))  # beyond the log
    assert s.initial_state()[2] == []
    s.save(None, None, ents(21, 22, term=3))
    s.save_snapshot(Snapshot(SnapshotMeta(15, 3), b"stale"))  # older than what we have: ignored
    s = reopen(tmp_path, s)
    assert s.initial_state() == (HardState(), SnapshotMeta(20, 3), ents(21, 22, term=3))
    s.close()


def test_crash_between_snapshot_and_reset_is_finished_on_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    s = RaftStorage.open(tmp_path)
    s.save(None, None, ents(1, 10, term=1))

    def crash(payload: bytes) -> tuple[int, int]:
        raise OSError("power cut")

    monkeypatch.setattr(s, "_write", crash)
    with pytest.raises(OSError, match="power cut"):
        s.save_snapshot(Snapshot(SnapshotMeta(7, 2), b"x"))
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger="agent.server.raft"):
        s = reopen(tmp_path, s)
    assert "discarding" in caplog.text
    assert s.initial_state() == (HardState(), SnapshotMeta(7, 2), [])
    s.save(None, None, ents(8, 9, term=2))
    s = reopen(tmp_path, s)
    assert s.initial_state() == (HardState(), SnapshotMeta(7, 2), ents(8, 9, term=2))
    s.close()


def test_corrupt_latest_snapshot_falls_back_only_when_the_log_covers_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = RaftStorage.open(tmp_path)
    s.save(None, None, ents(1, 20))
    s.save_snapshot(Snapshot(SnapshotMeta(5, 1), b"five"))
    s.save_snapshot(Snapshot(SnapshotMeta(12, 1), b"twelve"))
    s.close()
    latest = tmp_path / "snapshots" / "1-12.snap"
    flip(latest, latest.stat().st_size - 1)
    with caplog.at_level(logging.WARNING, logger="agent.server.raft"):
        s = RaftStorage.open(tmp_path)
    assert "falling back" in caplog.text
    assert s.initial_state() == (HardState(), SnapshotMeta(5, 1), ents(6, 20))
    assert s.load_snapshot() == Snapshot(SnapshotMeta(5, 1), b"five")
    # a received snapshot replaces the log: the previous snapshot cannot stand in for it any more
    s.save_snapshot(Snapshot(SnapshotMeta(30, 2), b"thirty"))
    s.close()
    flip(tmp_path / "snapshots" / "2-30.snap", 40)
    with pytest.raises(StorageCorrupt, match=r"2-30\.snap") as err:
        RaftStorage.open(tmp_path)
    assert "\n" not in str(err.value) and "CRC" in str(err.value)


def test_corrupt_only_snapshot_without_log_is_fatal(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    s.save_snapshot(Snapshot(SnapshotMeta(9, 1), b"nine"))
    s.close()
    flip(tmp_path / "snapshots" / "1-9.snap", 3)
    with pytest.raises(StorageCorrupt, match="bad snapshot header"):
        RaftStorage.open(tmp_path)


# ---------------------------------------------------------------- crashes and corruption


def _last_frame_fixture(tmp_path: Path) -> tuple[Path, Path, tuple[int, int]]:
    src = tmp_path / "src"
    s = RaftStorage.open(src)
    s.save(HardState(1, "a", 0), None, ents(1, 3))
    s.save(HardState(2, "b", 3), 2, ents(2, 4, term=2))
    s.close()
    seg = segments(src)[-1]
    return src, seg, frames(seg)[-1]


def test_torn_tail_at_every_byte_recovers_the_prefix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src, seg, (start, end) = _last_frame_fixture(tmp_path)
    full = seg.read_bytes()
    for cut in range(start, end):
        d = tmp_path / f"cut{cut}"
        shutil.copytree(src, d)
        (d / seg.name).write_bytes(full[:cut])
        with caplog.at_level(logging.WARNING, logger="agent.server.raft"):
            s = RaftStorage.open(d)
        assert s.initial_state() == (HardState(1, "a", 0), SnapshotMeta(), ents(1, 3)), cut
        s.save(None, None, ents(4, 4))  # appending after recovery works and survives
        s = reopen(d, s)
        assert s.initial_state()[2] == ents(1, 4)
        s.close()
    assert "torn write" in caplog.text


@pytest.mark.parametrize("damage", ["zeros appended", "garbage appended", "head of last frame lost"])
def test_torn_tail_shapes(tmp_path: Path, damage: str) -> None:
    src, seg, (start, _) = _last_frame_fixture(tmp_path)
    buf = bytearray(seg.read_bytes())
    if damage == "zeros appended":
        buf += bytes(8192)
    elif damage == "garbage appended":
        buf += os.urandom(5000)
    else:  # later pages of the last write reached the disk, the first did not
        buf[start:start + 8] = bytes(8)
    seg.write_bytes(bytes(buf))
    s = RaftStorage.open(src)
    want = ents(1, 3) if damage == "head of last frame lost" else ents(1, 1) + ents(2, 4, term=2)
    assert s.initial_state()[2] == want
    s.close()


def test_torn_segment_creation_is_removed(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path, segment_size=300)
    s.save(None, None, ents(1, 2))
    s.close()
    (tmp_path / "log-000002.seg").write_bytes(b"\x5a\xc3\x01")  # a rotation that never returned
    s = RaftStorage.open(tmp_path, segment_size=300)
    assert s.initial_state()[2] == ents(1, 2) and s.stats()["segments"] == 1
    s.save(None, None, ents(3, 20))
    s = reopen(tmp_path, s)
    assert s.initial_state()[2] == ents(1, 20)
    s.close()


def test_bit_flip_in_the_middle_is_corruption(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    for i in range(1, 6):
        s.save(None, None, ents(i, i))
    s.close()
    seg = segments(tmp_path)[-1]
    start, end = frames(seg)[2]
    flip(seg, end - 3)
    with pytest.raises(StorageCorrupt) as err:
        RaftStorage.open(tmp_path)
    msg = str(err.value)
    assert seg.name in msg and f"offset {start}" in msg and "CRC" in msg and "\n" not in msg


def test_damage_in_a_non_last_segment_is_corruption(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path, segment_size=300)
    for i in range(1, 20):
        s.save(None, None, ents(i, i))
    s.close()
    first = segments(tmp_path)[0]
    first.write_bytes(first.read_bytes()[:-5])  # even a "torn" tail is corruption when a segment follows
    with pytest.raises(StorageCorrupt, match=first.name):
        RaftStorage.open(tmp_path)


def test_missing_segment_is_corruption(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path, segment_size=300)
    for i in range(1, 20):
        s.save(None, None, ents(i, i))
    s.close()
    segments(tmp_path)[1].unlink()
    with pytest.raises(StorageCorrupt, match="missing"):
        RaftStorage.open(tmp_path)


def test_index_gap_is_corruption(tmp_path: Path) -> None:
    s = RaftStorage.open(tmp_path)
    s.save(None, None, ents(1, 3))
    s.close()
    seg = segments(tmp_path)[-1]
    size = seg.stat().st_size
    e = Entry(1, 5, EntryKind.NORMAL, b"skipped 4")
    payload = storage_mod._ENTRY.pack(storage_mod._R_ENTRY, e.term, e.index, e.kind, len(e.data)) + e.data
    with seg.open("ab") as f:  # a well-formed frame with a wrong index: CRC cannot catch this
        f.write(storage_mod._frame(1, size, payload))
    with pytest.raises(StorageCorrupt, match="index gap: expected 4, found 5") as err:
        RaftStorage.open(tmp_path)
    assert seg.name in str(err.value) and "(index 5)" in str(err.value)


def test_write_failure_poisons_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = RaftStorage.open(tmp_path)
    s.save(None, None, ents(1, 1))

    def broken(fd: int) -> None:
        raise OSError(5, "EIO")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(OSError):
        s.save(None, None, ents(2, 2))
    monkeypatch.undo()
    with pytest.raises(StorageFailed, match="reopen"):
        s.save(None, None, ents(2, 2))
    s = reopen(tmp_path, s)
    assert s.initial_state()[2] == ents(1, 2), "the page cache still had it; a power cut would have lost it"
    s.close()


# ---------------------------------------------------------------- model check


class Model:
    """What the storage must return: hard state, snapshot (index, term, data) and the log after it."""

    def __init__(self) -> None:
        self.hs = HardState()
        self.snap: Snapshot | None = None
        self.base, self.base_term = 0, 0
        self.log: list[Entry] = []

    @property
    def last(self) -> int:
        return self.base + len(self.log)

    def term_at(self, i: int) -> int | None:
        if i == self.base:
            return self.base_term
        return self.log[i - self.base - 1].term if self.base < i <= self.last else None

    def snap_index(self) -> int:
        return 0 if self.snap is None else self.snap.meta.index

    def save_snapshot(self, snap: Snapshot) -> None:
        m = snap.meta
        if m.index <= self.snap_index():
            return
        if self.term_at(m.index) == m.term:
            self.log = [e for e in self.log if e.index > m.index]
        else:
            self.log = []
        self.base, self.base_term, self.snap = m.index, m.term, snap

    def expected(self) -> tuple[HardState, SnapshotMeta, list[Entry]]:
        return self.hs, SnapshotMeta() if self.snap is None else self.snap.meta, self.log


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_operations_match_a_model(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d)
        size = data.draw(st.sampled_from([200, 500, 4096]), label="segment_size")
        s = RaftStorage.open(path, segment_size=size)
        m = Model()
        term = 1
        try:
            for _ in range(data.draw(st.integers(1, 30), label="ops")):
                op = data.draw(st.sampled_from(["append", "append", "append", "snapshot", "compact", "reopen"]))
                if op == "append":
                    trunc = None
                    if data.draw(st.booleans()) and m.last > m.snap_index():
                        trunc = data.draw(st.integers(m.snap_index() + 1, m.last + 1))
                    term += data.draw(st.integers(0, 1))
                    first = m.last + 1 if trunc is None else min(trunc, m.last + 1)
                    n = data.draw(st.integers(0, 5))
                    new = [Entry(term, i, EntryKind.NORMAL, os.urandom(data.draw(st.integers(0, 80))))
                           for i in range(first, first + n)]
                    hs = HardState(term, f"n{term}", m.last) if data.draw(st.booleans()) else None
                    s.save(hs, trunc, new)
                    if trunc is not None:
                        m.log = [e for e in m.log if e.index < trunc]
                    m.log += new
                    m.hs = hs or m.hs
                elif op == "snapshot":
                    idx = data.draw(st.integers(0, m.last + 3))
                    t = m.term_at(idx)
                    if t is None or data.draw(st.booleans()):
                        t = term + data.draw(st.integers(0, 1))
                    term = max(term, t)
                    snap = Snapshot(SnapshotMeta(idx, t, CONF), b"state@%d" % idx)
                    s.save_snapshot(snap)
                    m.save_snapshot(snap)
                elif op == "compact":
                    s.compact(data.draw(st.integers(0, m.snap_index())))
                else:
                    s = reopen(path, s, segment_size=size)
                assert s.initial_state() == m.expected()
            s = reopen(path, s, segment_size=size)
            assert s.initial_state() == m.expected()
            assert s.load_snapshot() == m.snap
            assert s.stats()["entries"] == len(m.log)
        finally:
            s.close()


def test_storage_corrupt_message_is_one_line() -> None:
    err = StorageCorrupt("/x/log-000001.seg", "bad\nthing", offset=12, index=3)
    assert str(err) == "raft storage corrupt: /x/log-000001.seg at offset 12 (index 3): bad thing"
    assert struct.calcsize("<HHIIQI") == storage_mod._FRAME.size == 24
