"""InstallSnapshot in pieces (agent/raft/snapstream.py): reassembly, one piece in flight, loss and restarts."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyconsul.agent.raft import wire
from pyconsul.agent.raft.messages import (
    Configuration,
    Server,
    Snapshot,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotMeta,
    SnapshotRequest,
    WireMessage,
)
from pyconsul.agent.raft.snapstream import SnapshotStreams

CONF = Configuration((Server("L", "127.0.0.1:1"), Server("F", "127.0.0.1:2")))


class Net:
    """Two streams objects; messages wait in `wire` until delivered (or dropped) by the test."""

    def __init__(self, tmp: Path, chunk: int = 1 << 20) -> None:
        self.clock = 0.0
        self.wire: list[WireMessage] = []
        self.delivered: list[SnapshotRequest] = []
        self.jobs: list[tuple[Callable[[Any], Any], Any, Callable[[Any, BaseException | None], None]]] = []
        self.leader = self.make("L", tmp, chunk)
        self.follower = self.make("F", tmp, chunk)

    def make(self, sid: str, tmp: Path, chunk: int) -> SnapshotStreams:
        return SnapshotStreams(sid, tmp, self.wire.append, lambda fn, arg, done: self.jobs.append((fn, arg, done)),
                               self.delivered.append, lambda: self.clock, resend_after=1.0, chunk_size=chunk)

    def run_jobs(self) -> None:
        while self.jobs:
            fn, arg, done = self.jobs.pop(0)
            try:
                result, error = fn(arg), None
            except Exception as exc:
                result, error = None, exc
            done(result, error)

    def step(self, drop: Callable[[WireMessage], bool] = lambda m: False) -> int:
        """Deliver everything on the wire (through the codec) and run the writer jobs; returns pieces seen."""
        pieces = 0
        while self.wire or self.jobs:
            msgs, self.wire[:] = list(self.wire), []
            for m in msgs:
                if drop(m):
                    continue
                back = wire.decode_message(wire.unframe(wire.frame(wire.encode_message(m))[4:]))
                if isinstance(back, SnapshotChunk):
                    pieces += 1
                    self.follower.on_chunk(back, 5, "L")
                elif isinstance(back, SnapshotChunkAck):
                    self.leader.on_ack(back)
            self.run_jobs()
        return pieces


def request(data: bytes, term: int = 5) -> SnapshotRequest:
    return SnapshotRequest(term, "L", "F", Snapshot(SnapshotMeta(100, 4, CONF), data))


def test_a_snapshot_streams_in_pieces_one_in_flight_and_is_reassembled(tmp_path: Path) -> None:
    net = Net(tmp_path)
    data = os.urandom((5 << 20) + 123)
    net.leader.send(request(data))
    assert len(net.wire) == 1  # one piece in flight until it is acknowledged
    assert net.step() == 6
    assert [r.snapshot for r in net.delivered] == [Snapshot(SnapshotMeta(100, 4, CONF), data)]
    assert not list(tmp_path.iterdir())  # the temp file is gone
    net.leader.send(request(data))  # the core asks again before the follower's SnapshotResponse: ignored
    assert net.wire == []
    net.leader.answered("F")
    net.leader.send(request(data))  # after the answer, a new request is a new stream
    assert len(net.wire) == 1


def test_every_frame_is_bounded_whatever_the_snapshot_size(tmp_path: Path) -> None:
    net = Net(tmp_path, chunk=wire.SNAPSHOT_CHUNK)
    net.leader.send(request(b"x" * (9 << 20)))
    sizes = []
    while net.wire:
        m = net.wire.pop(0)
        sizes.append(len(wire.frame(wire.encode_message(m))))
        assert isinstance(m, SnapshotChunk)
        net.follower.on_chunk(m, 5, "L")
        net.run_jobs()
        while net.wire and isinstance(net.wire[0], SnapshotChunkAck):
            ack = net.wire.pop(0)
            assert isinstance(ack, SnapshotChunkAck)
            net.leader.on_ack(ack)
    assert len(sizes) == 3 and max(sizes) <= wire.MAX_CHUNK_FRAME and net.delivered[0].snapshot.data == b"x" * (9 << 20)


def test_a_lost_piece_is_sent_again_when_the_core_retries(tmp_path: Path) -> None:
    net = Net(tmp_path)
    data = os.urandom(3 << 20)
    net.leader.send(request(data))
    dropped: list[int] = []

    def drop_second(m: WireMessage) -> bool:
        if isinstance(m, SnapshotChunk) and m.offset == 1 << 20 and not dropped:
            dropped.append(m.offset)
            return True
        return False

    net.step(drop_second)
    assert dropped and not net.delivered  # stuck: the piece at 1 MiB was lost
    net.leader.send(request(data))  # the core retries before resend_after: nothing yet
    assert net.wire == []
    net.clock += 1.5
    net.leader.send(request(data))
    net.step()
    assert len(net.delivered) == 1 and net.delivered[0].snapshot.data == data


def test_the_follower_restarts_a_stream_it_does_not_know_and_ignores_non_leaders(tmp_path: Path) -> None:
    net = Net(tmp_path)
    data = os.urandom(3 << 20)
    net.leader.send(request(data))
    net.step(lambda m: isinstance(m, SnapshotChunk) and m.offset == 2 << 20)  # the last piece is lost
    net.follower = net.make("F", tmp_path, 1 << 20)  # the follower restarted: its partial stream is gone
    net.clock += 2
    net.leader.send(request(data))  # the piece at 2 MiB again: the follower asks for 0
    net.step()
    assert len(net.delivered) == 1 and net.delivered[0].snapshot.data == data
    # a piece from another server, or from an older term, is dropped without an answer
    stranger = SnapshotChunk(5, "X", "F", 100, 4, CONF, 0, 10, b"0123456789")
    net.follower.on_chunk(stranger, 5, "L")
    net.follower.on_chunk(SnapshotChunk(4, "L", "F", 100, 4, CONF, 0, 10, b"0123456789"), 5, "L")
    net.run_jobs()
    assert net.wire == [] and len(net.delivered) == 1


def test_a_new_snapshot_or_term_starts_again_at_zero(tmp_path: Path) -> None:
    net = Net(tmp_path)
    net.leader.send(request(os.urandom(2 << 20)))
    net.step(lambda m: isinstance(m, SnapshotChunkAck))  # acks lost: the leader is stuck at piece 0
    newer = request(os.urandom(2 << 20), term=6)
    net.leader.send(newer)
    first = net.wire[0]
    assert isinstance(first, SnapshotChunk) and first.offset == 0 and first.term == 6
    net.wire.clear()
    net.leader.stop_sending()  # deposed: nothing more is sent, whatever the acks say
    net.leader.on_ack(SnapshotChunkAck(6, "F", "L", 100, 4, 1 << 20))
    assert net.wire == []


def test_the_last_piece_prewrites_the_snapshot_file_outside_the_raft_pipeline(tmp_path: Path) -> None:
    """The durable file is written with the last piece (storage.snapshot_file on the writer thread), before the
    core sees the snapshot; the core's Ready then only renames it (node.py, _persist)."""
    net = Net(tmp_path)
    made: list[Snapshot] = []

    def prewrite(snap: Snapshot) -> Path:
        made.append(snap)
        path = tmp_path / "pre.tmp"
        path.write_bytes(snap.data)
        return path

    net.follower = SnapshotStreams("F", tmp_path, net.wire.append, lambda fn, arg, done: net.jobs.append(
        (fn, arg, done)), net.delivered.append, lambda: net.clock, resend_after=1.0, chunk_size=1 << 20,
        prewrite=prewrite)
    data = os.urandom((2 << 20) + 5)
    net.leader.send(request(data))
    net.step()
    assert [s.data for s in made] == [data] and made[0].meta == SnapshotMeta(100, 4, CONF)
    assert net.follower.prewritten == {(100, 4): tmp_path / "pre.tmp"} and net.delivered[0].snapshot.data == data
