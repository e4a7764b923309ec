"""The asyncio Raft driver (agent/raft/node.py) on real storage and an in-memory network, in one process.

Covers what the pure core's tests cannot: the writer thread (persist-then-send for followers, the
leader's send-then-persist, order across Readies), the deadline-driven loop (no polling), snapshots
written off the loop and sent to a follower that fell behind, and that a failed write stops the loop
loudly. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from pyconsul.agent.raft.config import RaftConfig
from pyconsul.agent.raft.messages import AppendRequest, AppendResponse, Configuration, Message, Server
from pyconsul.agent.raft.node import RaftLoopFailed, RaftNode
from pyconsul.agent.raft.storage import RaftStorage

FAST = RaftConfig(heartbeat_timeout=0.3, election_timeout=0.3, leader_lease_timeout=0.15, heartbeat_interval=0.05)


class KV:
    """A dict state machine; snapshot() is msgpack of the dict."""

    def __init__(self) -> None:
        self.d: dict[str, bytes] = {}
        self.applied: list[int] = []

    def apply(self, index: int, data: bytes) -> Any:
        k, v = data.split(b"=", 1)
        self.d[k.decode()] = v
        self.applied.append(index)
        return index

    def snapshot(self) -> bytes:
        return bytes(msgpack.packb(self.d, use_bin_type=True))

    def restore(self, data: bytes) -> None:
        self.d = dict(msgpack.unpackb(data, raw=False))


class Net:
    """Delivers on the loop (call_soon), like a socket read; `log` records (sender, message) in send order;
    `cut` drops everything to and from a server."""

    def __init__(self) -> None:
        self.nodes: dict[str, RaftNode] = {}
        self.log: list[Message] = []
        self.cut: set[str] = set()

    def send(self, address: str, msg: Message) -> None:
        self.log.append(msg)
        node = self.nodes.get(address)
        if node is not None and address not in self.cut and msg.from_ not in self.cut:
            asyncio.get_running_loop().call_soon(node.deliver, msg)


async def until(cond: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Cluster:
    def __init__(self, root: Path, n: int = 3, config: RaftConfig = FAST) -> None:
        self.root, self.config, self.net = root, config, Net()
        self.ids = [f"s{i}" for i in range(n)]
        self.conf = Configuration(tuple(Server(i, i) for i in self.ids))
        self.nodes: dict[str, RaftNode] = {}
        self.fsms: dict[str, KV] = {}

    async def start(self, sid: str, bootstrap: bool = True) -> RaftNode:
        fsm = KV()
        node = RaftNode(sid, self.config, RaftStorage.open(self.root / sid), fsm, self.net,  # type: ignore[arg-type]
                        rng=random.Random(sid))
        self.nodes[sid], self.fsms[sid], self.net.nodes[sid] = node, fsm, node
        await node.start()
        for other in self.ids:  # what gossip tells a server that has no configuration yet
            node.learn_address(other, other)
        if bootstrap and not node.bootstrapped:
            node.bootstrap(self.conf)
        return node

    async def leader(self) -> RaftNode:
        await until(lambda: any(n.is_leader for n in self.nodes.values()), "a leader")
        return next(n for n in self.nodes.values() if n.is_leader)

    async def stop(self) -> None:
        for n in self.nodes.values():
            await n.stop()


def run(root: Path, body: Callable[[Cluster], Awaitable[None]], n: int = 3, config: RaftConfig = FAST) -> None:
    async def main() -> None:
        c = Cluster(root, n, config)
        try:
            for sid in c.ids:
                await c.start(sid)
            await body(c)
        finally:
            await c.stop()

    asyncio.run(main())


def test_writes_commit_apply_everywhere_and_survive_a_restart(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        lead = await c.leader()
        results = await asyncio.gather(*(lead.apply(f"k{i}=v{i}".encode()) for i in range(50)))
        assert results == sorted(results) and len(set(results)) == 50  # each write: its own index, in order
        await until(lambda: all(len(f.d) == 50 for f in c.fsms.values()), "every server applied 50 writes")
        for f in c.fsms.values():
            assert f.applied == sorted(f.applied)
        for sid in c.ids:  # restart everyone from disk: every acknowledged write is there
            await c.nodes[sid].stop()
        for sid in c.ids:
            await c.start(sid)
        lead = await c.leader()
        await lead.apply(b"after=restart")
        await until(lambda: all(len(f.d) == 51 for f in c.fsms.values()), "all writes after the restart")

    run(tmp_path, body)


def test_follower_acknowledges_only_what_is_durable(tmp_path: Path) -> None:
    """Every successful AppendResponse a follower sends covers entries already in its storage (checked
    at the moment of sending, from another thread's point of view: the storage's own index)."""
    violations: list[str] = []

    async def body(c: Cluster) -> None:
        lead = await c.leader()
        orig = c.net.send

        def checking_send(address: str, msg: Message) -> None:
            if isinstance(msg, AppendResponse) and msg.success:
                st = c.nodes[msg.from_].storage
                if st.stats()["last_index"] < msg.match_index:
                    violations.append(f"{msg.from_} acked {msg.match_index}, stored {st.stats()['last_index']}")
            orig(address, msg)

        c.net.send = checking_send  # type: ignore[method-assign]
        await asyncio.gather(*(lead.apply(f"k{i}=v".encode()) for i in range(200)))

    run(tmp_path, body)
    assert violations == []


def test_leader_replicates_before_its_own_fsync_and_commits_without_it(tmp_path: Path) -> None:
    """Thesis §10.2.1: with the leader's disk stalled, its AppendEntries still leave at once and the two
    followers' acknowledgements commit the write; the leader's own copy is counted only once durable."""

    async def body(c: Cluster) -> None:
        lead = await c.leader()
        gate = threading.Event()
        st = lead.storage
        real_save = st.save

        def stalled_save(*a: Any) -> None:
            gate.wait(10)
            real_save(*a)

        st.save = stalled_save  # type: ignore[method-assign,assignment]
        try:
            sent_before = len(c.net.log)
            fut = asyncio.ensure_future(lead.apply(b"x=1"))
            await until(lambda: any(isinstance(m, AppendRequest) and m.entries for m in c.net.log[sent_before:]),
                        "AppendEntries with the entry while the leader's write is stalled")
            await until(lambda: all(c.fsms[s].d.get("x") == b"1" for s in c.ids if s != lead.id),
                        "the followers apply the write (committed by the followers alone)")
            assert lead.core is not None and lead.core.commit_index >= lead.core.last_index
            assert not fut.done()  # the leader applies only once its own earlier write is durable
        finally:
            gate.set()
        assert await asyncio.wait_for(fut, 10) > 0

    run(tmp_path, body)


def test_writes_queued_behind_a_slow_fsync_share_one(tmp_path: Path) -> None:
    """Group commit: while the leader's writer is stuck, 20 writes are proposed one pass after another;
    the 20 log writes queued meanwhile reach the leader's disk as one frame with one fsync."""

    async def body(c: Cluster) -> None:
        lead = await c.leader()
        gate = threading.Event()
        st = lead.storage
        real_save = st.save
        calls: list[int] = []

        def gated_save(hs: Any, trunc: Any, entries: Any) -> None:
            calls.append(len(entries))
            gate.wait(10)
            real_save(hs, trunc, entries)

        st.save = gated_save  # type: ignore[method-assign]
        before = st.stats()["fsyncs"]
        futs = [asyncio.ensure_future(lead.apply(b"first=1"))]  # its write blocks the leader's writer
        try:
            await until(lambda: calls, "the first write reached the (stuck) disk")
            for i in range(20):
                futs.append(asyncio.ensure_future(lead.apply(f"k{i}=v".encode())))
                await asyncio.sleep(0.005)  # one Ready (and one queued write) each
        finally:
            gate.set()
        await asyncio.wait_for(asyncio.gather(*futs), 10)
        assert lead.core is not None
        last = lead.core.last_index
        await until(lambda: st.stats()["last_index"] == last, "the leader's log durable")
        assert len(calls) <= 3, calls  # not one save per write
        assert st.stats()["fsyncs"] - before <= 3

    run(tmp_path, body)


def test_follower_applies_an_entry_durable_earlier_while_the_next_one_is_written(tmp_path: Path) -> None:
    """A follower that learns in AppendEntries N+1 that N committed applies N at once (N has been on its
    disk since its own write finished), overlapping N+1's fsync instead of waiting for it; N+1 is
    acknowledged only once durable, and applied only once it commits."""

    async def body(c: Cluster) -> None:
        lead = await c.leader()
        f = next(n for n in c.nodes.values() if n is not lead)
        orig = c.net.send

        def no_heartbeats_to_f(address: str, msg: Message) -> None:  # commit reaches f only with entries
            if not (address == f.id and isinstance(msg, AppendRequest) and not msg.entries):
                orig(address, msg)

        c.net.send = no_heartbeats_to_f  # type: ignore[method-assign]
        gate = threading.Event()
        st = f.storage
        real_save = st.save
        stuck: list[int] = []

        def gated_save(hs: Any, trunc: Any, entries: Any) -> None:
            if entries and entries[-1].index == second:
                stuck.append(entries[-1].index)
                gate.wait(10)
            real_save(hs, trunc, entries)

        try:
            first = await lead.apply(b"a=1")
            second = first + 1
            await until(lambda: st.stats()["last_index"] >= first and not f._pipeline, "f wrote the first entry")
            st.save = gated_save  # type: ignore[method-assign,assignment]
            fut = asyncio.ensure_future(lead.apply(b"b=2"))
            await until(lambda: stuck, "f's write of the second entry reached its (stuck) disk")
            await until(lambda: first in c.fsms[f.id].applied, "f applies the first entry meanwhile", 5.0)
            assert second not in c.fsms[f.id].applied
            acks = [m for m in c.net.log if isinstance(m, AppendResponse) and m.from_ == f.id and m.success]
            assert all(m.match_index < second for m in acks)  # the second entry is not acknowledged yet
        finally:
            gate.set()
            c.net.send = orig  # type: ignore[method-assign]
        assert await asyncio.wait_for(fut, 10) == second
        await until(lambda: second in c.fsms[f.id].applied, "f applies the second entry")
        assert c.fsms[f.id].applied == sorted(c.fsms[f.id].applied)

    run(tmp_path, body)


def test_idle_loop_sleeps_until_the_next_deadline(tmp_path: Path) -> None:
    """No polling: an idle follower wakes for the leader's heartbeats (every 50 ms here) and little else."""

    async def body(c: Cluster) -> None:
        lead = await c.leader()
        await asyncio.sleep(0.3)
        before = {s: n.wakeups for s, n in c.nodes.items()}
        t0 = asyncio.get_running_loop().time()
        await asyncio.sleep(1.0)
        dt = asyncio.get_running_loop().time() - t0
        for sid, n in c.nodes.items():
            rate = (n.wakeups - before[sid]) / dt
            hb = 1 / FAST.heartbeat_interval
            assert rate <= (3 * hb if sid == lead.id else 1.5 * hb), (sid, rate)

    run(tmp_path, body)


def test_snapshot_written_off_the_loop_compacts_and_catches_up_a_wiped_follower(tmp_path: Path) -> None:
    cfg = RaftConfig(heartbeat_timeout=0.3, election_timeout=0.3, leader_lease_timeout=0.15,
                     heartbeat_interval=0.05, snapshot_threshold=40, trailing_logs=10)

    async def body(c: Cluster) -> None:
        lead = await c.leader()
        victim = next(s for s in c.ids if s != lead.id)
        await c.nodes[victim].stop()
        c.net.cut.add(victim)
        for i in range(120):
            await lead.apply(f"k{i}=v{i}".encode())
        await until(lambda: lead.last_snapshot_index >= 40, "the leader's snapshot")
        assert lead.core is not None and lead.core.status()["first_index"] > 1  # the log was compacted
        assert list((tmp_path / lead.id / "snapshots").glob("*.snap"))
        for p in (tmp_path / victim).rglob("*"):  # wipe the follower: it can only catch up by snapshot
            if p.is_file():
                p.unlink()
        c.net.cut.discard(victim)
        node = await c.start(victim, bootstrap=False)
        await until(lambda: len(c.fsms[victim].d) == 120, "the wiped follower restored and caught up", 20)
        assert node.last_snapshot_index >= 40

    run(tmp_path, body, config=cfg)


def test_a_failed_write_stops_the_loop_loudly(tmp_path: Path) -> None:
    failures: list[BaseException] = []

    async def body(c: Cluster) -> None:
        lead = await c.leader()
        lead.on_failed = failures.append

        def broken(*a: Any) -> None:
            raise OSError(5, os.strerror(5))

        lead.storage.save = broken  # type: ignore[method-assign,assignment]
        with pytest.raises(Exception):  # noqa: B017 - the waiter fails (NoLeader), whatever the class
            await asyncio.wait_for(lead.apply(b"x=1"), 10)
        await until(lambda: failures, "on_failed")
        assert isinstance(failures[0], OSError)
        assert lead._task is not None
        await until(lead._task.done, "the supervision task ends")
        assert isinstance(lead._task.exception(), RaftLoopFailed)

    run(tmp_path, body)


def test_follower_acknowledgements_leave_from_the_writer_thread_once_durable(tmp_path: Path) -> None:
    """A transport with send_threadsafe: a follower's AppendResponse is sent by the writer thread right after
    the fsync (checked at that moment: the entries are in storage), and when the transport refuses one (the
    connection is busy) or raises, it and the rest leave from the loop: every write still commits and applies
    everywhere, and no Raft loop stops."""
    from pyconsul.agent.raft import wire

    violations: list[str] = []
    by_thread: list[int] = []
    refused: list[int] = []

    async def body(c: Cluster) -> None:
        loop = asyncio.get_running_loop()

        def send_threadsafe(address: str, data: bytes) -> bool:
            assert threading.current_thread() is not threading.main_thread()
            msg = wire.decode_message(wire.unframe(data[wire.HEADER.size:]))
            assert isinstance(msg, AppendResponse)
            calls = len(by_thread) + len(refused)
            if calls % 5 == 4:
                refused.append(msg.match_index)
                return False
            if calls % 7 == 6:  # a transport bug is not a failed write: the loop sends it
                refused.append(msg.match_index)
                raise RuntimeError("send_threadsafe broke")
            st = c.nodes[msg.from_].storage
            if msg.success and st.stats()["last_index"] < msg.match_index:
                violations.append(f"{msg.from_} acked {msg.match_index}, stored {st.stats()['last_index']}")
            by_thread.append(msg.match_index)
            c.net.log.append(msg)
            node = c.net.nodes.get(address)
            if node is not None:
                loop.call_soon_threadsafe(node.deliver, msg)
            return True

        for n in c.nodes.values():
            n._send_threadsafe = send_threadsafe  # what the real Transport offers
        lead = await c.leader()
        for i in range(30):  # one at a time (latency-bound, the case this is for), then concurrent
            await lead.apply(f"k{i}=v".encode())
        await asyncio.gather(*(lead.apply(f"c{i}=v".encode()) for i in range(100)))
        await until(lambda: all(len(f.d) == 130 for f in c.fsms.values()), "every server applied 130 writes")
        assert all(n.failed is None for n in c.nodes.values())

    run(tmp_path, body)
    assert violations == []
    assert len(by_thread) >= 20 and refused, (len(by_thread), refused)
