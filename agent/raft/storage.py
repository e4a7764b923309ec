"""Durable Raft storage: an append-only segmented log (entries + hard state) and a snapshot store.

Layout of `<data_dir>/raft/`: LOCK (flock'd while open), log-000001.seg ... (consecutive segments; only the
last is appended to), snapshots/<term>-<index>.snap (the newest two; tmp + fsync + rename + fsync dir).

Segment = a sequence of frames. ONE frame per write() call, ONE fdatasync per frame:
  frame  = header `<HHIIQI` (magic, version, segment seq, payload length, frame offset in file, crc32)
           + payload; crc32 (zlib) covers the first 20 header bytes and the payload.
  payload = records, each a type byte then fixed fields (little endian) then raw bytes:
    ENTRY    term u64, index u64, kind u8, len u32, data
    HARD     term u64, commit u64, len u16, vote (utf-8)
    TRUNCATE from u64, term of entry from-1 u64     -- entries >= from are gone (append-only: no rewrite)
    RESET    index u64, term u64                     -- log is empty; next entry is index+1 (after a snapshot)
    SEGMENT  index u64, term u64                     -- first record of every segment: the log ends at
                                                        (index, term) before it; then the HARD state.
A save() of hard state + truncation + entries is one frame: all or nothing on recovery.

Durability contract: save()/save_snapshot()/compact() return only after their data is fsynced; a crash
(kill -9 or power loss that drops un-fsynced data) afterwards never loses it.

Recovery (open): frames are replayed and verified. A damaged frame at the end of the LAST segment with no
valid frame after it is a torn write (the save() that wrote it never returned): it is truncated away with a
warning. Because a frame is written only after the previous one was fsynced, a valid frame after a damaged
one proves the damage is corruption, not a torn write. Any other damage (a non-last segment, a missing
segment, an index gap, a bad latest snapshot that the previous snapshot plus the log cannot replace)
raises StorageCorrupt. Limit: media corruption of the very last frame is indistinguishable from a torn
write and drops that one save.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import re
import struct
import time
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

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

log = logging.getLogger("agent.server.raft")

# Test-only fault injection: milliseconds every data fsync of a RaftStorage opened while this is set
# sleeps first (a stalled disk). Read once in RaftStorage.open(); tests set it in the environment of the
# agents they start (tests/integration/test_fsync_stall.py). Never set it in production.
TEST_FSYNC_DELAY_ENV = "PYCONSUL_TEST_FSYNC_DELAY_MS"

SEGMENT_SIZE = 64 << 20  # rotate when a frame would take the segment past this
KEEP_SNAPSHOTS = 2

_MAGIC = 0xC35A
_VERSION = 1
_FRAME = struct.Struct("<HHIIQI")  # magic, version, seq, payload length, frame offset, crc32
_FRAME_CRC_AT = 20  # the crc covers header bytes [0, 20) and the payload
_MAGIC_BYTES = struct.pack("<H", _MAGIC)
_R_ENTRY, _R_HARD, _R_TRUNCATE, _R_RESET, _R_SEGMENT = 1, 2, 3, 4, 5
_ENTRY = struct.Struct("<BQQBI")  # type, term, index, kind, data length
_HARD = struct.Struct("<BQQH")  # type, term, commit, vote length
_MARK = struct.Struct("<BQQ")  # type, index, term (TRUNCATE, RESET, SEGMENT)
_SNAP = struct.Struct("<8sIQIII")  # magic, meta length, data length, meta crc, data crc, header crc
_SNAP_MAGIC = b"PCRSNAP1"
_SEG_RE = re.compile(r"^log-(\d{6,})\.seg$")
_SNAP_RE = re.compile(r"^(\d+)-(\d+)\.snap$")


class StorageCorrupt(Exception):
    """The on-disk state cannot be trusted. str() is one line: file, offset or index, reason."""

    def __init__(self, file: str | os.PathLike[str], reason: str, *, offset: int | None = None,
                 index: int | None = None) -> None:
        self.file = os.fspath(file)
        self.reason = " ".join(reason.split())
        self.offset = offset
        self.index = index
        super().__init__(str(self))

    def __str__(self) -> str:
        where = "" if self.offset is None else f" at offset {self.offset}"
        where += "" if self.index is None else f" (index {self.index})"
        return f"raft storage corrupt: {self.file}{where}: {self.reason}"


class StorageFailed(Exception):
    """An earlier write or fsync failed; what reached the disk is unknown. Reopen to recover."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _frame(seq: int, offset: int, payload: bytes) -> bytes:
    head = _FRAME.pack(_MAGIC, _VERSION, seq, len(payload), offset, 0)[:_FRAME_CRC_AT]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def _check_frame(buf: bytes, off: int, seq: int) -> int | str:
    """The end offset of the valid frame at `off`, or why it is not one."""
    if len(buf) - off < _FRAME.size:
        return f"incomplete frame header ({len(buf) - off} bytes)"
    magic, version, fseq, length, foff, crc = _FRAME.unpack_from(buf, off)
    if magic != _MAGIC or version != _VERSION:
        return f"bad frame magic/version {magic:#06x}/{version}"
    if fseq != seq or foff != off:
        return f"frame belongs to segment {fseq} offset {foff}"
    end: int = off + _FRAME.size + length
    if end > len(buf):
        return f"frame of {length} bytes runs past the end of the file"
    mv = memoryview(buf)
    if zlib.crc32(mv[off + _FRAME.size:end], zlib.crc32(mv[off:off + _FRAME_CRC_AT])) != crc:
        return "frame CRC mismatch"
    return end


def _valid_frame_after(buf: bytes, start: int, seq: int) -> bool:
    p = buf.find(_MAGIC_BYTES, start)
    while p >= 0:
        if isinstance(_check_frame(buf, p, seq), int):
            return True
        p = buf.find(_MAGIC_BYTES, p + 1)
    return False


def _entry_at(buf: bytes, off: int) -> Entry | None:
    """The ENTRY record at `off`, or None if there is none (offsets come from the replay)."""
    try:
        kind, term, index, ekind, dlen = _ENTRY.unpack_from(buf, off)
        data = buf[off + _ENTRY.size:off + _ENTRY.size + dlen]
        if kind != _R_ENTRY or len(data) != dlen:
            return None
        return Entry(term, index, EntryKind(ekind), data)
    except (struct.error, ValueError):
        return None


def _hard_record(hs: HardState) -> bytes:
    vote = hs.vote.encode()
    if len(vote) > 0xFFFF:
        raise ValueError("vote id longer than 65535 bytes")
    return _HARD.pack(_R_HARD, hs.term, hs.commit, len(vote)) + vote


def _encode_meta(meta: SnapshotMeta) -> bytes:
    servers = [[s.id, s.address, int(s.suffrage)] for s in meta.configuration.servers]
    return bytes(msgpack.packb([meta.index, meta.term, servers], use_bin_type=True))


def _decode_meta(raw: bytes) -> SnapshotMeta:
    obj: Any = msgpack.unpackb(raw, raw=False)
    index, term, servers = obj
    if not (isinstance(index, int) and isinstance(term, int) and isinstance(servers, list)):
        raise ValueError("bad snapshot meta shape")
    conf = Configuration(tuple(Server(str(i), str(a), Suffrage(int(s))) for i, a, s in servers))
    return SnapshotMeta(index, term, conf)


def _read_snapshot(path: Path) -> Snapshot:
    """Read and verify a whole snapshot file; raise StorageCorrupt naming the damaged part."""
    buf = path.read_bytes()
    if len(buf) < _SNAP.size:
        raise StorageCorrupt(path, "snapshot shorter than its header", offset=0)
    magic, mlen, dlen, mcrc, dcrc, hcrc = _SNAP.unpack_from(buf)
    if magic != _SNAP_MAGIC or zlib.crc32(buf[:_SNAP.size - 4]) != hcrc:
        raise StorageCorrupt(path, "bad snapshot header (magic or CRC)", offset=0)
    if len(buf) != _SNAP.size + mlen + dlen:
        raise StorageCorrupt(path, f"snapshot is {len(buf)} bytes, header says {_SNAP.size + mlen + dlen}", offset=0)
    meta_raw, data = buf[_SNAP.size:_SNAP.size + mlen], buf[_SNAP.size + mlen:]
    if zlib.crc32(meta_raw) != mcrc:
        raise StorageCorrupt(path, "snapshot meta CRC mismatch", offset=_SNAP.size)
    if zlib.crc32(data) != dcrc:
        raise StorageCorrupt(path, "snapshot data CRC mismatch", offset=_SNAP.size + mlen)
    try:
        meta = _decode_meta(meta_raw)
    except Exception as err:  # CRC passed, so this is a format bug or a foreign file
        raise StorageCorrupt(path, f"undecodable snapshot meta: {err}", offset=_SNAP.size) from None
    m = _SNAP_RE.match(path.name)
    if m is None or (int(m[1]), int(m[2])) != (meta.term, meta.index):
        raise StorageCorrupt(path, f"file name does not match meta term {meta.term} index {meta.index}")
    return Snapshot(meta, data)


class _LogIndex:
    """Where each physically present entry lives (not its data). Invariant: entries base+1 .. last are
    present and contiguous; term_at(base) is base_term."""

    __slots__ = ("base", "base_term", "offs", "segs", "terms")

    def __init__(self, base: int, base_term: int) -> None:
        self.reset(base, base_term)

    def reset(self, base: int, base_term: int) -> None:
        self.base, self.base_term = base, base_term
        self.terms: array[int] = array("Q")
        self.segs: array[int] = array("Q")
        self.offs: array[int] = array("Q")

    @property
    def last(self) -> int:
        return self.base + len(self.terms)

    def term_at(self, index: int) -> int | None:
        if index == self.base:
            return self.base_term
        return self.terms[index - self.base - 1] if self.base < index <= self.last else None

    def append(self, term: int, seq: int, off: int) -> None:
        self.terms.append(term)
        self.segs.append(seq)
        self.offs.append(off)

    def truncate(self, first: int, prev_term: int) -> None:
        """Drop entries >= first; if that reaches below base, the log restarts at (first-1, prev_term)."""
        if first - 1 < self.base:
            self.reset(first - 1, prev_term)
            return
        keep = first - self.base - 1
        del self.terms[keep:], self.segs[keep:], self.offs[keep:]

    def drop_through(self, index: int) -> None:
        """Forget entries <= index (their segment is being deleted)."""
        if index <= self.base:
            return
        term = self.term_at(index)
        assert term is not None, "drop_through beyond the last index"
        cut = index - self.base
        del self.terms[:cut], self.segs[:cut], self.offs[:cut]
        self.base, self.base_term = index, term


@dataclass
class _Segment:
    seq: int
    base: int  # the log's last index when this segment was started (its SEGMENT record)
    size: int
    path: Path


class RaftStorage:
    """Durable log + stable store + snapshots in one directory. Blocking; one caller at a time (RaftNode
    calls it from its writer thread only, after start())."""

    def __init__(self, path: Path, segment_size: int, lock_fd: int) -> None:
        self.path = path
        self.snap_dir = path / "snapshots"
        self.segment_size = segment_size
        self._lock_fd = lock_fd
        self._fd = -1  # the last segment, O_APPEND
        self._segments: list[_Segment] = []
        self._idx = _LogIndex(0, 0)
        self._hs = HardState()
        self._snap_meta = SnapshotMeta()
        self._snap_path: Path | None = None
        self._fsyncs = 0
        self._stall = 0.0  # seconds slept before each data fsync: test-only (TEST_FSYNC_DELAY_ENV)
        self._failed: BaseException | None = None
        self._closed = False

    # ------------------------------------------------------------ open / recovery

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, segment_size: int = SEGMENT_SIZE) -> RaftStorage:
        """Create the directory if needed, take its lock, recover; raise StorageCorrupt on bad data."""
        root = Path(path)
        for d in (root, root / "snapshots"):
            if not d.is_dir():
                d.mkdir(parents=True, exist_ok=True)
                _fsync_dir(d.parent)
        lock_fd = os.open(root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise RuntimeError(f"{root} is in use by another RaftStorage") from None
        self = cls(root, segment_size, lock_fd)
        stall = os.environ.get(TEST_FSYNC_DELAY_ENV, "")
        if stall:
            self._stall = max(0.0, float(stall) / 1000.0)
            log.warning("raft storage: %s=%s: every fsync is delayed (a test-only fault injection)",
                        TEST_FSYNC_DELAY_ENV, stall)
        try:
            self._recover()
        except BaseException:
            self.close()
            raise
        return self

    def _recover(self) -> None:
        for tmp in self.snap_dir.glob("*.tmp"):
            tmp.unlink()  # an unfinished save_snapshot that never returned
        segs = sorted((int(m[1]), self.path / n) for n in os.listdir(self.path) if (m := _SEG_RE.match(n)))
        for (a, _), (b, p) in itertools.pairwise(segs):
            if b != a + 1:
                raise StorageCorrupt(p, f"segment {a + 1} is missing")
        for n, (seq, p) in enumerate(segs):
            self._replay_segment(seq, p, last=n == len(segs) - 1)
        snaps = self._snapshot_files()
        if not self._segments:
            if snaps:
                raise StorageCorrupt(self.path, "snapshots exist but no log segment (hard state lost)")
            self._create_segment(1, b"")
        else:
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
        self._choose_snapshot(snaps)
        self._reconcile()

    def _snapshot_files(self) -> list[tuple[int, int, Path]]:
        """(index, term, path) of every snapshot file, newest first."""
        names = ((_SNAP_RE.match(n), n) for n in os.listdir(self.snap_dir))
        return sorted(((int(m[2]), int(m[1]), self.snap_dir / n) for m, n in names if m), reverse=True)

    def _replay_segment(self, seq: int, path: Path, *, last: bool) -> None:
        buf = path.read_bytes()
        off = 0
        while off < len(buf):
            end = _check_frame(buf, off, seq)
            if isinstance(end, str):
                if not last or _valid_frame_after(buf, off + 1, seq):
                    raise StorageCorrupt(path, end, offset=off)
                self._drop_torn_tail(path, off, len(buf), end)
                break
            self._apply_frame(path, seq, buf, off, end)
            off = end
        if off > 0:
            self._segments[-1].size = off

    def _drop_torn_tail(self, path: Path, off: int, size: int, why: str) -> None:
        log.warning("raft storage: %s: dropping torn write at offset %d (%d bytes: %s)", path, off, size - off, why)
        if off == 0:  # not even the SEGMENT frame survived: the rotation that created it never returned
            path.unlink()
            _fsync_dir(self.path)
            return
        os.truncate(path, off)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.fsync(fd)  # the truncation is durable before anything is appended after it
        finally:
            os.close(fd)

    def _apply_frame(self, path: Path, seq: int, buf: bytes, off: int, end: int) -> None:
        pos = off + _FRAME.size
        idx = self._idx
        try:
            while pos < end:
                kind = buf[pos]
                if (kind == _R_SEGMENT) != (pos == _FRAME.size):  # off == 0: the segment's first record
                    raise ValueError("a segment starts with a SEGMENT record and has no other")
                if kind == _R_ENTRY:
                    _, term, index, ekind, dlen = _ENTRY.unpack_from(buf, pos)
                    EntryKind(ekind)
                    if index != idx.last + 1:
                        raise StorageCorrupt(path, f"index gap: expected {idx.last + 1}, found {index}",
                                             offset=off, index=index)
                    if pos + _ENTRY.size + dlen > end:
                        raise ValueError("entry data runs past its frame")
                    idx.append(term, seq, pos)
                    pos += _ENTRY.size + dlen
                elif kind == _R_HARD:
                    _, term, commit, vlen = _HARD.unpack_from(buf, pos)
                    if pos + _HARD.size + vlen > end:
                        raise ValueError("vote runs past its frame")
                    vote = buf[pos + _HARD.size:pos + _HARD.size + vlen].decode()
                    self._hs = HardState(term, vote, commit)
                    pos += _HARD.size + vlen
                elif kind in (_R_TRUNCATE, _R_RESET, _R_SEGMENT):
                    _, index, term = _MARK.unpack_from(buf, pos)
                    pos += _MARK.size
                    if kind == _R_TRUNCATE:
                        if not 0 < index <= idx.last + 1 or idx.term_at(index - 1) not in (None, term):
                            raise ValueError(f"truncate from {index} (term {term} before it) does not fit the "
                                             f"log ending at {idx.last}")
                        idx.truncate(index, term)
                    elif kind == _R_RESET:
                        idx.reset(index, term)
                    elif not self._segments:
                        idx.reset(index, term)  # the oldest kept segment defines where the log starts
                    elif (index, term) != (idx.last, idx.term_at(idx.last)):
                        raise StorageCorrupt(path, f"segment starts after index {index} term {term} but the "
                                             f"previous segment ends at index {idx.last}", offset=off)
                    if kind == _R_SEGMENT:
                        self._segments.append(_Segment(seq, index, 0, path))
                else:
                    raise ValueError(f"unknown record type {kind}")
            if pos != end:
                raise ValueError("records run past their frame")
        except (ValueError, struct.error, UnicodeDecodeError) as err:
            raise StorageCorrupt(path, f"bad record in a valid frame: {err}", offset=off) from None

    def _choose_snapshot(self, snaps: list[tuple[int, int, Path]]) -> None:
        """Use the newest snapshot. If it is corrupt, fall back (with a warning, renaming it *.corrupt) only
        when the previous snapshot (or none, at index 0) plus the log reproduce everything it covered."""
        if not snaps:
            return
        index, _, path = snaps[0]
        try:
            self._snap_meta, self._snap_path = _read_snapshot(path).meta, path
            return
        except StorageCorrupt as err:
            damage = err
        prev_meta, prev_path = SnapshotMeta(), None
        if len(snaps) > 1:
            try:
                prev_meta, prev_path = _read_snapshot(snaps[1][2]).meta, snaps[1][2]
            except StorageCorrupt:
                raise damage from None
        idx = self._idx
        if idx.term_at(prev_meta.index) != prev_meta.term or idx.last < index:
            raise damage
        log.warning("raft storage: %s; falling back to snapshot at index %d plus the log", damage, prev_meta.index)
        os.replace(path, path.with_name(path.name + ".corrupt"))
        _fsync_dir(self.snap_dir)
        self._snap_meta, self._snap_path = prev_meta, prev_path

    def _reconcile(self) -> None:
        """Make the log agree with the snapshot (Raft §7): keep entries after it if the log holds the
        snapshot's last entry, else discard the log (finishing a save_snapshot a crash interrupted)."""
        idx, s = self._idx, self._snap_meta
        first = self._segments[0].path
        if s.index < idx.base:
            raise StorageCorrupt(first, f"log starts after index {idx.base} but the snapshot ends at {s.index}",
                                 index=idx.base)
        if idx.term_at(s.index) != s.term:
            log.warning("raft storage: log (last index %d) does not contain snapshot %d/%d; discarding it",
                        idx.last, s.term, s.index)
            self._write(_MARK.pack(_R_RESET, s.index, s.term))
            idx.reset(s.index, s.term)

    # ------------------------------------------------------------ writing

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("RaftStorage is closed")
        if self._failed is not None:
            raise StorageFailed(f"an earlier write failed ({self._failed}); reopen to recover")

    def _create_segment(self, seq: int, payload: bytes) -> int:
        """Create segment `seq` whose first frame is SEGMENT + HARD + payload; fsync it and the directory.
        Returns the file offset of `payload`."""
        path = self.path / f"log-{seq:06d}.seg"
        head = _MARK.pack(_R_SEGMENT, self._idx.last, self._idx.term_at(self._idx.last) or 0) + _hard_record(self._hs)
        frame = _frame(seq, 0, head + payload)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, frame)
            self._datasync(fd)
            _fsync_dir(self.path)
        except BaseException:
            os.close(fd)
            raise
        self._fsyncs += 2
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(seq, self._idx.last, len(frame), path))
        return _FRAME.size + len(head)

    def _datasync(self, fd: int) -> None:
        if self._stall:
            time.sleep(self._stall)  # test-only: see TEST_FSYNC_DELAY_ENV
        os.fdatasync(fd)

    def _write(self, payload: bytes) -> tuple[int, int]:
        """Append one frame durably: one write() and one fdatasync() (plus a directory fsync when the
        segment rotates). Returns (segment seq, file offset of payload). Any OSError poisons the store."""
        self._check_usable()
        seg = self._segments[-1]
        try:
            if seg.size + _FRAME.size + len(payload) > self.segment_size:
                return seg.seq + 1, self._create_segment(seg.seq + 1, payload)
            _write_all(self._fd, _frame(seg.seq, seg.size, payload))
            self._datasync(self._fd)
        except BaseException as err:
            self._failed = err
            raise
        self._fsyncs += 1
        off = seg.size + _FRAME.size
        seg.size = off + len(payload)
        return seg.seq, off

    def save(self, hard_state: HardState | None, truncate_from: int | None, entries: Sequence[Entry]) -> None:
        """Persist a Ready's hard state, truncation and entries as ONE frame: durable (fdatasync) on return,
        all-or-nothing after a crash. truncate_from deletes entries >= it first (a TRUNCATE record, not a
        rewrite); entries must then continue the log contiguously. Raises ValueError before writing."""
        self._check_usable()
        idx = self._idx
        parts: list[bytes] = []
        size = 0
        last = idx.last
        if truncate_from is not None and truncate_from <= last:
            if truncate_from <= self._snap_meta.index:
                raise ValueError(f"truncate_from {truncate_from} is inside the snapshot (index "
                                 f"{self._snap_meta.index})")
            prev_term = idx.term_at(truncate_from - 1)
            assert prev_term is not None, "snapshot index >= log base"
            parts.append(_MARK.pack(_R_TRUNCATE, truncate_from, prev_term))
            size = _MARK.size
            last = truncate_from - 1
        rel: list[int] = []
        for n, e in enumerate(entries):
            if e.index != last + 1 + n:
                raise ValueError(f"entry index {e.index} does not continue the log (expected {last + 1 + n})")
            rel.append(size)
            parts.append(_ENTRY.pack(_R_ENTRY, e.term, e.index, e.kind, len(e.data)))
            parts.append(e.data)
            size += _ENTRY.size + len(e.data)
        if hard_state is not None and hard_state != self._hs:
            parts.append(_hard_record(hard_state))
        if not parts:
            return
        seq, off = self._write(b"".join(parts))
        if last < idx.last:
            idx.truncate(last + 1, idx.term_at(last) or 0)
        for e, r in zip(entries, rel, strict=True):
            idx.append(e.term, seq, off + r)
        if hard_state is not None:
            self._hs = hard_state

    def snapshot_file(self, snapshot: Snapshot) -> Path:
        """The heavy half of save_snapshot, safe on any thread (it touches no state of this object): the
        snapshot's file written and fsynced under a temporary name (`*.tmp`, deleted at open if a crash left
        it). save_snapshot(snapshot, written=path) then only renames it, so a large snapshot's write does not
        hold up the log's writes when they run on another thread."""
        meta = snapshot.meta
        meta_raw = _encode_meta(meta)
        head = _SNAP.pack(_SNAP_MAGIC, len(meta_raw), len(snapshot.data), zlib.crc32(meta_raw),
                          zlib.crc32(snapshot.data), 0)[:-4]
        tmp = self.snap_dir / f"{meta.term}-{meta.index}.snap.{os.urandom(4).hex()}.tmp"
        if self._stall:
            time.sleep(self._stall)  # test-only: see TEST_FSYNC_DELAY_ENV
        with open(tmp, "wb") as f:  # in parts: no copy of the whole snapshot
            f.write(head + struct.pack("<I", zlib.crc32(head)))
            f.write(meta_raw)
            f.write(snapshot.data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def save_snapshot(self, snapshot: Snapshot, written: Path | None = None) -> None:
        """Persist a snapshot (tmp + fsync + rename + fsync dir; `written`: the tmp file snapshot_file() made).
        If the log holds the snapshot's last entry (index and term) the entries after it are kept; otherwise
        the log is discarded (Raft §7) with a durable RESET record. Keeps the newest two snapshots; then drops
        segments nobody needs. A snapshot not newer than the current one is ignored."""
        self._check_usable()
        meta = snapshot.meta
        if meta.index <= self._snap_meta.index:
            log.debug("raft storage: ignoring snapshot at %d (have %d)", meta.index, self._snap_meta.index)
            if written is not None:
                written.unlink(missing_ok=True)
            return
        path = self.snap_dir / f"{meta.term}-{meta.index}.snap"
        if written is None:
            written = self.snapshot_file(snapshot)
        os.replace(written, path)
        _fsync_dir(self.snap_dir)
        self._fsyncs += 2
        if self._idx.term_at(meta.index) != meta.term:
            self._write(_MARK.pack(_R_RESET, meta.index, meta.term))
            self._idx.reset(meta.index, meta.term)
        self._snap_meta, self._snap_path = meta, path
        snaps = self._snapshot_files()
        for _, _, old in snaps[KEEP_SNAPSHOTS:]:
            old.unlink()
        if len(snaps) > KEEP_SNAPSHOTS:
            _fsync_dir(self.snap_dir)
            self._fsyncs += 1
        self._drop_segments(self._snap_meta.index)

    def compact(self, upto_index: int) -> None:
        """Drop log entries <= upto_index, which must be covered by the snapshot (else ValueError).
        Entries <= the snapshot index are never served; this deletes whole segments, oldest first, and
        keeps those needed to rebuild from the previous snapshot (see _choose_snapshot)."""
        self._check_usable()
        if upto_index > self._snap_meta.index:
            raise ValueError(f"compact({upto_index}) beyond the snapshot at {self._snap_meta.index}")
        self._drop_segments(upto_index)

    def _drop_segments(self, upto_index: int) -> None:
        # the previous snapshot's index (0 if none): fallback needs the log after it
        snaps = self._snapshot_files()
        limit = min(upto_index, snaps[1][0] if len(snaps) > 1 else 0)
        dropped = False
        while len(self._segments) > 1 and self._segments[1].base <= limit:
            self._idx.drop_through(self._segments[1].base)  # nothing later than this lives in segment 0
            self._segments.pop(0).path.unlink()
            dropped = True
        if dropped:
            _fsync_dir(self.path)
            self._fsyncs += 1

    # ------------------------------------------------------------ reading

    def initial_state(self) -> tuple[HardState, SnapshotMeta, list[Entry]]:
        """(hard state, snapshot meta, entries after the snapshot) -- what RaftCore starts from."""
        self._check_usable()
        idx, first = self._idx, self._snap_meta.index + 1
        out: list[Entry] = []
        buf, buf_seq = b"", -1
        for i in range(first - idx.base - 1, len(idx.terms)):
            seq, off = idx.segs[i], idx.offs[i]
            if seq != buf_seq:
                buf, buf_seq = (self.path / f"log-{seq:06d}.seg").read_bytes(), seq
            entry = _entry_at(buf, off)
            if entry is None or entry.index != idx.base + 1 + i:
                raise StorageCorrupt(self.path / f"log-{seq:06d}.seg", "entry changed on disk since open",
                                     offset=off, index=idx.base + 1 + i)
            out.append(entry)
        return self._hs, self._snap_meta, out

    def load_snapshot(self) -> Snapshot | None:
        """The current snapshot, verified again (StorageCorrupt if it rotted since open)."""
        self._check_usable()
        return None if self._snap_path is None else _read_snapshot(self._snap_path)

    def stats(self) -> dict[str, int]:
        snap, last = self._snap_meta.index, self._idx.last
        return {"bytes": sum(s.size for s in self._segments), "segments": len(self._segments),
                "entries": last - snap, "fsyncs": self._fsyncs, "first_index": snap + 1, "last_index": last,
                "snapshot_index": snap}

    def close(self) -> None:
        """Release the files and the directory lock. Idempotent. Everything saved is already durable."""
        if self._closed:
            return
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
        os.close(self._lock_fd)  # releases the flock
