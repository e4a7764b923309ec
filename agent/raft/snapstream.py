"""InstallSnapshot in pieces: the driver's side of sending and receiving a snapshot larger than a frame.

The pure core (core.py, replication.py) sends and receives ONE logical SnapshotRequest carrying the whole
snapshot, and tracks the follower's progress as before (PeerState.SNAPSHOT until the SnapshotResponse, retried
after election_timeout). Between the two drivers the request travels as SnapshotChunks of at most
wire.SNAPSHOT_CHUNK bytes (hashicorp/raft streams the snapshot over one connection; etcd splits it into
pieces too), so no frame is larger than wire.MAX_CHUNK_FRAME whatever the size of the state:

  leader (Outgoing)                               follower (Incoming)
  core emits SnapshotRequest -> piece at 0  --->  piece at `received`: written to a temp file (writer thread)
                         piece at next_offset <-  then SnapshotChunkAck(next_offset = received)
  ...                                             last piece: the file is read back, the core is handed the
  ack == size: the stream is over           <---  whole SnapshotRequest (the core persists, restores and
                                                  answers it with its SnapshotResponse, as before)

Flow control: ONE piece in flight per follower (the next one leaves when the previous is acknowledged, i.e.
written), so a snapshot never queues more than one piece ahead of heartbeats on the peer connection and the
follower's memory holds one piece until the last.
Loss and restarts: the core re-emits its SnapshotRequest every election_timeout while the follower is in
SNAPSHOT state; the same snapshot for the same follower in the same term continues the stream (the piece in
flight is sent again if it is overdue), anything else starts it at 0. A follower takes a piece only from its
current leader in its current term and at the offset it expects; any other offset is answered with the offset
it has (0 when it has no stream of that snapshot: start again). A new term, leader or snapshot starts a new
stream; the temp file of an abandoned one is deleted (and any left by a crash is deleted at start-up by
storage.py, which removes snapshots/*.tmp).
No asyncio here: the node gives us `send` (to the transport), `submit` (a job for its writer thread, whose
done callback runs on the loop) and `deliver` (a whole SnapshotRequest for the core).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyconsul.agent.raft import wire
from pyconsul.agent.raft.messages import (
    Snapshot,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotMeta,
    SnapshotRequest,
    WireMessage,
)

log = logging.getLogger("agent.server.raft")

COMPLETE_HOLD = 30.0  # a complete stream waits this long for the follower's SnapshotResponse before sending again
_Done = Callable[[Any, BaseException | None], None]
Submit = Callable[[Callable[[Any], Any], Any, _Done], None]


@dataclass(slots=True)
class _Out:
    req: SnapshotRequest
    offset: int  # the piece in flight starts here
    sent_at: float
    complete: bool = False  # every piece is on the follower's disk; its core's SnapshotResponse is due


@dataclass(slots=True)
class _In:
    key: tuple[int, str, int, int, int]  # term, leader, index, snap_term, size
    first: SnapshotChunk  # ids and configuration (its data is dropped once written)
    path: Path
    received: int = 0
    busy: bool = False  # a piece is being written


class SnapshotStreams:
    """Both directions for one server (the node calls it on the loop thread)."""

    def __init__(self, server_id: str, tmp_dir: Path, send: Callable[[WireMessage], None], submit: Submit,
                 deliver: Callable[[SnapshotRequest], None], now: Callable[[], float], resend_after: float,
                 chunk_size: int = wire.SNAPSHOT_CHUNK, prewrite: Callable[[Snapshot], Path] | None = None) -> None:
        """`prewrite(snapshot)` (storage.snapshot_file) runs on the writer thread after the last piece, BEFORE
        the core is handed the snapshot: the durable file is then ready for the core's Ready to rename
        (`prewritten`), and writing hundreds of MiB never sits in the Raft pipeline, where it would hold up the
        follower's answers to its leader."""
        self.id = server_id
        self.tmp_dir = tmp_dir
        self._send, self._submit, self._deliver, self._now = send, submit, deliver, now
        self.resend_after = resend_after
        self.chunk_size = min(chunk_size, wire.SNAPSHOT_CHUNK)
        self._prewrite = prewrite
        self.prewritten: dict[tuple[int, int], Path] = {}  # (index, term) -> the snapshot's durable tmp file
        self._out: dict[str, _Out] = {}
        self._in: _In | None = None
        self.pieces_sent = 0
        self.pieces_received = 0
        self.snapshots_received = 0

    # ------------------------------------------------------------ leader

    def send(self, req: SnapshotRequest) -> None:
        """The core sends `req`: start streaming it, or continue the stream already under way."""
        cur = self._out.get(req.to)
        meta = req.snapshot.meta
        if cur is not None and cur.req.term == req.term and (cur.req.snapshot.meta.index, cur.req.snapshot.meta.term) \
                == (meta.index, meta.term):
            overdue = self._now() - cur.sent_at
            if not cur.complete and overdue >= self.resend_after:
                self._piece(cur)  # the piece in flight (or its ack) was lost
            if not cur.complete or overdue < COMPLETE_HOLD:
                return
            # complete long ago and the core still asks: the follower lost it (a crash before it was durable)
        cur = self._out[req.to] = _Out(req, 0, self._now())
        log.info("sending snapshot to %s: index=%d size=%d bytes in pieces of %d", req.to, meta.index,
                 len(req.snapshot.data), self.chunk_size)
        self._piece(cur)

    def on_ack(self, m: SnapshotChunkAck) -> None:
        cur = self._out.get(m.from_)
        if cur is None or cur.req.term != m.term or (cur.req.snapshot.meta.index, cur.req.snapshot.meta.term) != (
                m.index, m.snap_term):
            return
        size = len(cur.req.snapshot.data)
        if m.next_offset >= size:
            # complete: the follower's core persists it and answers with a SnapshotResponse (persisting 200 MiB
            # can outlast the core's retry): the core's requests for the same snapshot are ignored meanwhile
            cur.complete, cur.sent_at = True, self._now()
            return
        if cur.complete:
            return
        if m.next_offset == cur.offset:
            return  # an answer to a duplicate piece: the one in flight is the one it wants
        cur.offset = m.next_offset  # the next piece (or, if less, what the follower really has)
        self._piece(cur)

    def answered(self, peer: str) -> None:
        """The core heard the follower's SnapshotResponse: the stream is over."""
        self._out.pop(peer, None)

    def stop_sending(self) -> None:
        """No longer leader: drop every stream (and the references to the snapshot's data)."""
        self._out.clear()

    def _piece(self, cur: _Out) -> None:
        snap = cur.req.snapshot
        data = snap.data
        end = min(cur.offset + self.chunk_size, len(data))
        cur.sent_at = self._now()
        self.pieces_sent += 1
        self._send(SnapshotChunk(cur.req.term, cur.req.from_, cur.req.to, snap.meta.index, snap.meta.term,
                                 snap.meta.configuration, cur.offset, len(data), data[cur.offset:end]))

    # ------------------------------------------------------------ follower

    def on_chunk(self, m: SnapshotChunk, term: int, leader: str) -> None:
        """A piece, given the core's current term and leader."""
        if m.to != self.id or m.term != term or m.from_ != leader:
            return  # not (yet) from our leader: dropped; the leader sends it again
        key = (m.term, m.from_, m.index, m.snap_term, m.size)
        cur = self._in
        if cur is None or cur.key != key:
            if m.offset != 0:
                self._ack(m, 0)  # not a stream we have: start again
                return
            self._abandon()
            cur = self._in = _In(key, m, self.tmp_dir / f"incoming-{m.snap_term}-{m.index}.tmp")
        if cur.busy:
            return  # a duplicate of the piece being written (one in flight)
        if m.offset != cur.received:
            self._ack(m, cur.received)
            return
        cur.busy = True
        last = m.offset + len(m.data) >= m.size

        def done(result: Any, error: BaseException | None) -> None:
            self._written(cur, m, result, error)

        if last and self._prewrite is not None:
            prewrite = self._prewrite
            meta = SnapshotMeta(m.index, m.snap_term, cur.first.configuration)

            def write_last(args: tuple[Path, int, bytes, bool]) -> tuple[bytes, Path]:
                data = _write_piece(args)
                assert data is not None
                return data, prewrite(Snapshot(meta, data))

            self._submit(write_last, (cur.path, m.offset, m.data, last), done)
            return
        self._submit(_write_piece, (cur.path, m.offset, m.data, last), done)

    def _written(self, cur: _In, m: SnapshotChunk, result: bytes | tuple[bytes, Path] | None,
                 error: BaseException | None) -> None:
        cur.busy = False
        if self._in is not cur:
            return  # abandoned meanwhile (a newer stream); its file is being deleted
        if error is not None:
            log.warning("snapshot piece could not be written (%s); starting the transfer again", error)
            self._abandon()
            self._ack(m, 0)
            return
        self.pieces_received += 1
        cur.received = m.offset + len(m.data)
        if result is None:
            self._ack(m, cur.received)
            return
        self._in = None
        self.snapshots_received += 1
        f = cur.first
        if isinstance(result, tuple):
            result, path = result
            for stale in self.prewritten.values():  # at most one waits: an older one was ignored by the core
                self._submit(_remove, stale, lambda _, __: None)
            self.prewritten = {(f.index, f.snap_term): path}
        log.info("received snapshot from %s: index=%d size=%d bytes", f.from_, f.index, len(result))
        self._ack(m, cur.received)
        self._deliver(SnapshotRequest(f.term, f.from_, f.to, Snapshot(SnapshotMeta(f.index, f.snap_term,
                                                                                   f.configuration), result)))

    def _ack(self, m: SnapshotChunk, offset: int) -> None:
        self._send(SnapshotChunkAck(m.term, self.id, m.from_, m.index, m.snap_term, offset))

    def _abandon(self) -> None:
        cur, self._in = self._in, None
        if cur is not None:
            self._submit(_remove, cur.path, lambda _, __: None)


def _write_piece(args: tuple[Path, int, bytes, bool]) -> bytes | None:
    """Writer thread: the piece at its offset; after the last one, the whole snapshot (the file is removed:
    the core's Ready persists the snapshot in its own file, with checksums and fsync)."""
    path, offset, data, last = args
    with open(path, "r+b" if offset else "wb") as f:
        f.seek(offset)
        f.write(data)
    if not last:
        return None
    out = path.read_bytes()
    os.unlink(path)
    return out


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
