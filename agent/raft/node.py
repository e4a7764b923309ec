"""The asyncio driver of one Raft server: persist -> send -> apply -> advance.

It owns the clock, the disk (RaftStorage) and the network (Transport); every decision is the
pure RaftCore's. One loop task processes inputs in order: incoming messages, proposals and
timer ticks all funnel into `_kick()`, and `_drain()` handles each Ready as the contract in
messages.py says.

Threads: all disk I/O after start() (every save with its fdatasync, snapshot writes, close) runs on
ONE writer thread, in submission order, so a slow disk never blocks the event loop (which also runs
gossip and HTTP). A Ready is handled in two halves:
  * at once, on the loop: the messages that may leave before the Ready is durable
    (`may_send_before_persist`: a leader's AppendEntries / InstallSnapshot / TimeoutNow -- thesis
    §10.2.1, the leader's fsync overlaps replication), and the write is queued for the thread;
  * once that write and every earlier one are durable, in Ready order: the other messages (votes,
    acknowledgements: they promise what was written), the received snapshot's restore, the committed
    entries, read states, soft state, then core.advance(ready) -- which is how the core learns that its
    own log is durable up to the Ready's last entry (the leader counts itself in the commit quorum
    only then). One exception (`_apply_early`): committed entries that were durable here before the
    Ready (every earlier write finished, none of them is in this Ready's write) are applied at once,
    while the writer fsyncs: a follower learns in AppendEntries N+1 that N committed, and N's apply then
    overlaps N+1's fsync instead of delaying N+1's acknowledgement. It promises nothing new: the entry
    is committed and on our disk; core.applied still moves only at advance().
  A follower's acknowledgements (AppendResponse) are the one kind of "other message" that the writer thread
  sends itself, right after the fsync (`_writer_acks`, Transport.send_threadsafe), when no earlier batch still
  holds messages for the loop: same order, same promise, one thread wake-up sooner; if the transport cannot
  take one at once, it and every later one leave from the loop as above.
A hard state that differs from the last one written only in `commit` is not written at once (commit is
volatile in Raft Figure 2; the stored one is a hint): it goes out with the next write, or at stop().

No polling: one pass (`_process`) runs when something happened -- an input kicks it with one
loop.call_soon per loop iteration (deliver, peer_lost, apply, read_index, transfer, change_config,
bootstrap), a finished write runs it directly, and a timer (loop.call_at) fires at the core's next
deadline. A message or proposal reaching an idle node (no write in flight, no pass queued) runs the
pass at once instead (`_kick_idle`): a lone write goes to the disk and the followers one loop
iteration sooner, while under load one iteration's inputs still make one Ready.
`_task` only supervises: it ends with RaftLoopFailed when a pass raised (a failed write, a
bug), after the error was logged with its traceback and `on_failed` was told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyconsul.agent.config import RaftConfig
from pyconsul.agent.errors import LeadershipLost, NoLeader, NotLeader
from pyconsul.agent.raft import wire
from pyconsul.agent.raft.core import RaftCore
from pyconsul.agent.raft.messages import (
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Message,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotRequest,
    SnapshotResponse,
    SoftState,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    WireMessage,
    may_send_before_persist,
)
from pyconsul.agent.raft.snapstream import SnapshotStreams
from pyconsul.agent.raft.storage import RaftStorage
from pyconsul.agent.raft.transport import Transport

log = logging.getLogger("agent.server.raft")

STOP_TIMEOUT = 30.0  # stop() waits this long for the writes already queued (a hung disk)


class FSM(Protocol):
    """The replicated state machine as the driver sees it."""

    def apply(self, index: int, data: bytes) -> Any: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


@dataclass
class _Waiter:
    term: int
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Batch:
    """A Ready whose second half (see the module doc) waits for its write and every earlier one."""

    rd: Ready
    late: list[Message]  # messages that leave only once the write is durable
    done: bool = False  # the write finished (or there was none)
    early: int = 0  # how many of rd.committed were applied before the write (see RaftNode._apply_early)
    error: BaseException | None = None
    prep_pending: bool = False  # its heavy decoding (see RaftNode._prepare) runs on the worker thread
    prepared: dict[int, Any] | None = None  # entry index (or _SNAPSHOT) -> what the FSM prepared for it
    acks: list[_Ack] | None = None  # its late messages, handed to the writer thread instead (RaftNode._writer_acks)


@dataclass(slots=True)
class _Ack:
    """A late message the writer thread sends itself once the write carrying it is durable (RaftNode._writer_acks);
    `sent` is set on that thread before the write's completion reaches the loop, which sends it if not."""

    msg: Message
    address: str
    data: bytes  # the encoded frame
    sent: bool = False


_SNAPSHOT = -1  # key of a received snapshot's prepared state in _Batch.prepared


@dataclass(slots=True)
class _Write:
    """What the writer thread persists for one Ready, in this order."""

    snapshot: Snapshot | None
    hard_state: HardState | None
    truncate_from: int | None
    entries: list[Entry] = field(default_factory=list)
    acks: list[_Ack] = field(default_factory=list)  # sent once all of the above is durable


_Done = Callable[[Any, BaseException | None], None]
_Job = tuple[Callable[[Any], Any], Any, _Done]


class _Writer:
    """One daemon thread running jobs in submission order (FIFO). Jobs that queued up while the thread
    was busy and that `merge` can combine with the one before (consecutive log writes) run as ONE job:
    one frame, one fsync for the group (group commit; what the event loop used to get for free while it
    was blocked in fsync). Then, on the loop, every job's `done(result, error)` runs in order, followed
    by one `after()`. Leaner than a one-worker ThreadPoolExecutor (no Future, no locks besides the
    queue's): this is on every write's path."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop, after: Callable[[], None],
                 merge: Callable[[Any, Any], Any | None]) -> None:
        self._q: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._loop, self._after, self._merge = loop, after, merge
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Any], Any], arg: Any, done: _Done) -> None:
        self._q.put((fn, arg, done))

    def close(self) -> None:
        """The thread exits after the jobs already queued."""
        self._q.put(None)

    def _run(self) -> None:
        held: _Job | None = None
        while True:
            job = held if held is not None else self._q.get()
            held = None
            if job is None:
                return
            fn, arg, done = job
            dones = [done]
            while True:  # group the log writes queued behind this one
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)  # keep the close request (nothing is queued behind it)
                    break
                merged = self._merge(arg, nxt[1]) if nxt[0] == fn else None
                if merged is None:
                    held = nxt
                    break
                arg = merged
                dones.append(nxt[2])
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(arg)
            except BaseException as exc:  # handed to the loop, which stops Raft (see RaftNode._fail)
                error = exc
            try:
                self._loop.call_soon_threadsafe(self._deliver, dones, result, error)
            except RuntimeError:  # the loop closed while we were writing
                pass
            del job, fn, arg, done, dones, result, error

    def _deliver(self, dones: list[_Done], result: Any, error: BaseException | None) -> None:
        for d in dones:
            d(result, error)
        self._after()


def _merge_writes(a: Any, b: Any) -> _Write | None:
    """One write doing `a` then `b`, if `b` only appends after `a` (no snapshot, no truncation)."""
    if not (isinstance(a, _Write) and isinstance(b, _Write)) or b.snapshot is not None or b.truncate_from is not None:
        return None
    hs = b.hard_state if b.hard_state is not None else a.hard_state
    return _Write(a.snapshot, hs, a.truncate_from, a.entries + b.entries, a.acks + b.acks)


class RaftLoopFailed(Exception):
    """The Raft loop stopped on an unexpected error (a failed write, a bug); the server must stop."""


class RaftNode:
    def __init__(
        self,
        server_id: str,
        config: RaftConfig,
        storage: RaftStorage,
        fsm: FSM,
        transport: Transport,
        *,
        rng: random.Random | None = None,
        on_leader_change: Callable[[SoftState], None] | None = None,
    ) -> None:
        self.id = server_id
        self.config = config
        self.storage = storage
        self.fsm = fsm
        self.transport = transport
        self.rng = rng or random.Random()
        self.on_leader_change = on_leader_change
        self.core: RaftCore | None = None
        self.addresses: dict[str, str] = {}
        self._waiters: dict[int, _Waiter] = {}
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_ctx = 0
        self._inbox: list[Message] = []
        self._lost: list[str] = []  # servers whose connection to us closed (RaftCore.leader_unreachable)
        self._task: asyncio.Task[None] | None = None  # supervision: ends with RaftLoopFailed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False  # a _process pass is queued (call_soon)
        self._in_pass = False  # a _process pass is running (callbacks it makes must not start another)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._stopped = False
        self._failed_fut: asyncio.Future[None] | None = None
        # the writer thread and the Readies waiting for it (oldest first)
        self._writer: _Writer | None = None  # started by start()
        self._pipeline: deque[_Batch] = deque()
        self._hs_written: HardState | None = None  # last hard state handed to the writer
        self._hs_deferred: HardState | None = None  # a newer one that differs only in commit
        self._snapshotting = False  # a snapshot of our own is being written
        # the writer thread sends acknowledgements itself (_writer_acks) through this, while _acks_ok (cleared by
        # that thread when one could not be sent: the rest then wait for the loop, in order; set again by the loop
        # when no write is in flight)
        self._send_threadsafe: Callable[[str, bytes], bool] | None = getattr(transport, "send_threadsafe", None)
        self._acks_ok = True
        self._preparer: _Writer | None = None  # worker thread decoding restores off the loop; made by start()
        self._preparing = 0  # batches whose preparation runs
        self.wakeups = 0  # _process passes (debug counter: bench/kv/raft_wakeups.py)
        self.failed: BaseException | None = None  # why the loop stopped (RaftLoopFailed)
        self.on_failed: Callable[[BaseException], None] | None = None
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.last_snapshot_index = 0
        self.soft = SoftState("", Role.FOLLOWER, 0)
        self.last_leader_contact = 0.0
        self.streams: SnapshotStreams | None = None  # InstallSnapshot in pieces (snapstream.py); made by start()
        self._chunks: list[SnapshotChunk | SnapshotChunkAck] = []

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else asyncio.get_running_loop().time()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        hs, meta, entries = self.storage.initial_state()
        snap = self.storage.load_snapshot()
        applied = 0
        if snap is not None:
            try:
                self.fsm.restore(snap.data)
            except ValueError as exc:  # the file's checksum held, but its contents are not a state
                from pyconsul.agent.raft.storage import StorageCorrupt

                path = self.storage.snap_dir / f"{snap.meta.term}-{snap.meta.index}.snap"
                raise StorageCorrupt(path, f"the snapshot does not restore: {exc}", index=snap.meta.index) from None
            applied = snap.meta.index
            self.last_snapshot_index = snap.meta.index
        self._hs_written = hs
        self.core = RaftCore(self.id, self.config, self.rng, self._now(), hard_state=hs, snapshot=meta,
                             entries=entries, applied=applied)
        if snap is not None:
            self.core.set_snapshot(snap)
        self._update_addresses(self.core.configuration)
        self._loop = asyncio.get_running_loop()
        self._writer = _Writer(f"raft-writer-{self.id[:8]}", self._loop, self._process, _merge_writes)
        self._preparer = _Writer(f"raft-prepare-{self.id[:8]}", self._loop, self._process, lambda a, b: None)
        self.streams = SnapshotStreams(self.id, self.storage.snap_dir, self._send_wire, self._writer.submit,
                                       self.deliver, self._now, self.config.election_timeout,
                                       prewrite=self.storage.snapshot_file)
        self._failed_fut = self._loop.create_future()
        self._task = self._loop.create_task(self._run())
        self._kick()

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RaftLoopFailed):
                await self._task
        for w in self._waiters.values():
            if not w.future.done():
                w.future.set_exception(NoLeader())
        # after every queued write: the deferred commit hint, then release the files
        hs = self._hs_deferred
        self._hs_deferred = None
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()

        def done(_: Any, error: BaseException | None) -> None:
            if not closed.done():
                closed.set_result(None)
            if error is not None:
                log.warning("raft storage: closing failed: %s", error)

        if self._writer is None:  # never started
            self._close_storage(hs)
            return
        self._writer.submit(self._close_storage, hs, done)
        self._writer.close()
        if self._preparer is not None:
            self._preparer.close()
        try:
            await asyncio.wait_for(closed, STOP_TIMEOUT)
        except TimeoutError:  # a disk that hangs must not hang the shutdown; the writes left are not acked
            log.warning("raft storage: writes still pending after %.0f s; not waiting for them", STOP_TIMEOUT)

    def _close_storage(self, hs: HardState | None) -> None:
        """Writer thread: write the last commit hint (best effort) and close the storage."""
        try:
            if hs is not None:
                self.storage.save(hs, None, [])
        finally:
            self.storage.close()

    @property
    def bootstrapped(self) -> bool:
        return self.core is not None and bool(self.core.configuration.servers)

    def has_state(self) -> bool:
        """False only for a server that never saw any Raft state (it may still bootstrap)."""
        return self.core is not None and self.core.has_state()

    def bootstrap(self, configuration: Configuration) -> None:
        assert self.core is not None
        self.core.bootstrap(configuration)
        self._update_addresses(configuration)
        self._kick()

    # ------------------------------------------------------------ inputs

    def peer_lost(self, server_id: str) -> None:
        """The transport saw `server_id`'s connection close (called on the loop thread)."""
        self._lost.append(server_id)
        self._kick()

    def deliver(self, msg: WireMessage) -> None:
        """A message from the transport (called on the loop thread)."""
        if isinstance(msg, SnapshotChunk | SnapshotChunkAck):  # the drivers' business (snapstream.py)
            self._chunks.append(msg)
            self._kick()
            return
        if isinstance(msg, SnapshotResponse) and self.streams is not None:
            self.streams.answered(msg.from_)
        if isinstance(msg, (VoteRequest, VoteResponse, TimeoutNow)):
            log.debug("received %s", msg)
        self._inbox.append(msg)
        self._kick_idle()

    def _kick(self) -> None:
        """Run a pass soon (once per loop iteration, however many inputs arrived in it)."""
        if not self._scheduled and self._loop is not None and not self._stopped:
            self._scheduled = True
            self._loop.call_soon(self._process)

    def _kick_idle(self) -> None:
        """Like _kick, but an idle node (no write in flight, no pass queued, not inside a pass) runs the
        pass at once: a lone write or AppendEntries skips one loop iteration on its way to the disk and
        the followers. A busy node queues the pass as _kick does, so the inputs of one loop iteration
        still make one Ready (one AppendEntries per follower, one write) under load."""
        if self._pipeline or self._scheduled or self._in_pass or self._loop is None or self._stopped:
            self._kick()
        else:
            self._process()

    @property
    def is_leader(self) -> bool:
        return self.core is not None and self.core.role == Role.LEADER

    @property
    def leader_id(self) -> str:
        return self.core.leader if self.core is not None else ""

    def leader_address(self) -> str:
        return self.addresses.get(self.leader_id, "")

    async def apply(self, data: bytes, timeout: float = 30.0) -> Any:
        """Propose data; return the FSM's result once committed and applied here (leader only)."""
        assert self.core is not None
        index = self.core.propose(data, self._now())  # NotLeader propagates
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[index] = _Waiter(self.core.term, fut)
        self._kick_idle()
        async with asyncio.timeout(timeout):  # not wait_for: no extra waiter, one loop iteration less
            return await fut

    async def apply_all(self, datas: list[bytes], timeout: float = 30.0) -> list[Any]:
        """Propose every one of `datas` at once, at consecutive indexes with nothing in between (the pieces of
        a restore, state/restore.py); the FSM's results once all are applied here (leader only). The first
        failure (LeadershipLost, a timeout) is raised; the other futures are retrieved."""
        assert self.core is not None
        loop = asyncio.get_running_loop()
        now = self._now()
        futs: list[asyncio.Future[Any]] = []
        for data in datas:  # no await in this loop: no other proposal can come between them
            index = self.core.propose(data, now)  # NotLeader propagates (before the first, or never)
            fut: asyncio.Future[Any] = loop.create_future()
            self._waiters[index] = _Waiter(self.core.term, fut)
            futs.append(fut)
        self._kick_idle()
        async with asyncio.timeout(timeout):
            results = await asyncio.gather(*futs, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)

    async def read_index(self, timeout: float = 10.0) -> None:
        """Linearizable read barrier (ReadIndex, thesis §6.4): returns once this server has
        applied everything committed before the call, leadership confirmed by a quorum."""
        assert self.core is not None
        self._read_ctx += 1
        ctx = self._read_ctx
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[ctx] = fut
        try:
            self.core.read_index(ctx, self._now())
        except NotLeader:
            self._reads.pop(ctx, None)
            raise
        self._kick()
        async with asyncio.timeout(timeout):
            index = await fut
        await self.wait_applied(index, timeout)

    def ms_since_leader_contact(self) -> float:
        """X-Consul-LastContact: milliseconds since this follower last heard from the leader."""
        if self.core is None or self.is_leader:
            return 0.0
        return max(0.0, (self._now() - self.core.last_leader_contact()) * 1000.0)

    def lease_ok(self) -> bool:
        return self.core is not None and self.core.lease_read_ok(self._now())

    async def wait_applied(self, index: int, timeout: float) -> None:
        assert self.core is not None
        if self.core.applied >= index:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, fut))
        async with asyncio.timeout(timeout):
            await fut

    def transfer_leadership(self, target: str) -> None:
        assert self.core is not None
        self.core.transfer_leadership(target, self._now())
        self._kick()

    def change_config(self, add: Any = None, remove: str | None = None) -> int:
        assert self.core is not None
        idx = self.core.propose_config_change(add=add, remove=remove, now=self._now())
        self._kick()
        return idx

    # ------------------------------------------------------------ the loop

    async def _run(self) -> None:
        """Supervision only: returns never, raises RaftLoopFailed once a pass failed."""
        assert self._failed_fut is not None
        await self._failed_fut

    def _process(self) -> None:
        """One pass: finished writes, then inputs, then timers, then every Ready; re-arm the timer."""
        self._scheduled = False
        if self._stopped or self.failed is not None or self.core is None:
            return
        self._in_pass = True
        try:
            self._pass(self.core)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._in_pass = False

    def _pass(self, core: RaftCore) -> None:
        self.wakeups += 1
        now = self._now()
        self._finish_writes(core)
        inbox, self._inbox = self._inbox, []
        for msg in inbox:
            core.step(msg, now)
        if self._chunks:
            self._take_chunks(core)
        lost, self._lost = self._lost, []
        for peer in lost:
            core.leader_unreachable(peer, now)
        core.tick(now)
        while core.has_ready():
            self._drain(core)
        # Re-arm only for an earlier deadline: a follower's election deadline moves later on every
        # AppendEntries, and a timer that fires early costs one pass (which re-arms), not one per message.
        deadline = core.next_deadline()
        if deadline < self._timer_at and self._loop is not None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self._process()

    def _fail(self, exc: BaseException) -> None:
        """Never die silently: say why, fail every caller, tell the owner (which stops the agent)."""
        log.error("raft loop failed; this server stops taking part in Raft", exc_info=exc)
        self.failed = exc
        if self._timer is not None:
            self._timer.cancel()
        for w in self._waiters.values():
            if not w.future.done():
                w.future.set_exception(NoLeader())
        self._waiters.clear()
        if self._failed_fut is not None and not self._failed_fut.done():
            err = RaftLoopFailed(f"{type(exc).__name__}: {exc}")
            err.__cause__ = exc
            self._failed_fut.set_exception(err)
        if self.on_failed is not None:
            self.on_failed(exc)

    def _drain(self, core: RaftCore) -> None:
        """Take one Ready: send what may leave now, queue its write, and finish it at once if it has no
        write and nothing is waiting before it (see the module doc for the two halves)."""
        rd = core.ready()
        if rd.truncate_from is not None:
            self._fail_waiters_from(rd.truncate_from)  # those entries left the core's log already
        late: list[Message] = []
        for msg in rd.messages:
            if may_send_before_persist(msg):
                self._send(msg)
            else:
                late.append(msg)
        batch = _Batch(rd, late)
        self._prepare(batch)
        write = self._write_for(rd)
        if write is not None and late and self._writer_acks(late, write):
            batch.acks, batch.late = write.acks, []
        if write is None:
            batch.done = True
            if not self._pipeline and not batch.prep_pending:
                self._finish(core, batch)
                return
            self._pipeline.append(batch)
            if self._preparing:
                self._send_durable()
            return
        self._pipeline.append(batch)
        assert self._writer is not None
        self._writer.submit(self._persist, write,
                            lambda _, error, b=batch: self._write_done(b, error))  # type: ignore[misc]
        if not batch.prep_pending:
            self._apply_early(batch)

    def _writer_acks(self, late: list[Message], write: _Write) -> bool:
        """Whether the writer thread sends `late` itself right after `write` is durable (Transport.send_threadsafe),
        instead of the loop once it wakes to finish the batch: a follower's acknowledgement leaves one thread
        wake-up sooner (under load the loop's wake-up after the fsync was a third of a follower's time per write).
        Only AppendResponses (what a follower sends per write), and only when no earlier batch still has late
        messages for the loop: the writer runs writes in order, so the order of messages stays the Ready order.
        Still after the write: the message promises only what the fsync made durable (Raft §5, Figure 2)."""
        if self._send_threadsafe is None:
            return False
        if not self._pipeline:
            self._acks_ok = True  # no write in flight: no acknowledgement of an earlier one is still unsent
        if not self._acks_ok or any(b.late for b in self._pipeline):
            return False
        acks = []
        for msg in late:
            addr = self.addresses.get(msg.to)
            if not isinstance(msg, AppendResponse) or not addr:
                return False
            acks.append(_Ack(msg, addr, wire.frame(wire.encode_message(msg))))
        write.acks = acks
        return True

    def _apply_early(self, b: _Batch) -> None:
        """Apply the committed entries of a Ready that was just queued for writing, while the writer
        fsyncs it, if they were all durable here before it: every earlier write finished (`b` is the
        only batch in the pipeline) and none of them is among the Ready's own entries, truncation or
        snapshot. Such an entry is committed and on our disk already, so applying it promises nothing
        that this Ready's write must first make true (a follower typically learns in AppendEntries N
        that N-1 committed: N-1's apply then overlaps N's fsync instead of delaying N's ack). The rest
        of the Ready (its messages, read states, soft state, advance) still waits for the write, and
        so does core.applied (advance), so reads and snapshots see the applied index only then."""
        rd = b.rd
        if (not rd.committed or len(self._pipeline) != 1 or rd.snapshot is not None or rd.truncate_from is not None
                or (rd.entries and rd.committed[-1].index >= rd.entries[0].index)):
            return
        for e in rd.committed:
            self._apply(e)
        b.early = len(rd.committed)

    def _write_for(self, rd: Ready) -> _Write | None:
        """What must reach the disk for `rd`; None if nothing (a commit-only hard state is deferred)."""
        hs = rd.hard_state
        if rd.snapshot is None and rd.truncate_from is None and not rd.entries:
            if hs is None:
                return None
            last = self._hs_written
            if last is not None and (hs.term, hs.vote) == (last.term, last.vote):
                self._hs_deferred = hs  # only the commit hint moved
                return None
        if hs is None:
            hs = self._hs_deferred
        self._hs_deferred = None
        if hs is not None:
            self._hs_written = hs
        return _Write(rd.snapshot, hs, rd.truncate_from, rd.entries)

    def _persist(self, w: _Write) -> None:
        """Writer thread. A received snapshot first: the entries of the same Ready continue after it."""
        if w.snapshot is not None:
            meta = w.snapshot.meta  # a streamed snapshot's file was written with its last piece: renamed here
            written = self.streams.prewritten.pop((meta.index, meta.term), None) if self.streams else None
            self.storage.save_snapshot(w.snapshot, written=written)
        if w.hard_state is not None or w.truncate_from is not None or w.entries:
            self.storage.save(w.hard_state, w.truncate_from, w.entries)
        send = self._send_threadsafe
        for a in w.acks:  # durable now (an exception above sends none of them)
            if not self._acks_ok or send is None:
                break
            try:
                a.sent = send(a.address, a.data)
            except Exception:  # never a failed write: the loop sends it (and the rest) as usual
                log.exception("raft: sending an acknowledgement from the writer thread failed")
                a.sent = False
            if not a.sent:
                self._acks_ok = False  # this one and the rest leave from the loop, in order

    def _write_done(self, batch: _Batch, error: BaseException | None) -> None:
        """Loop thread, when the writer finished `batch`'s write; its `after` (_process) finishes it."""
        batch.done = True
        batch.error = error

    def _finish_writes(self, core: RaftCore) -> None:
        """Finish every batch whose write (and every earlier one) is durable, in order."""
        q = self._pipeline
        while q and q[0].done:
            b = q[0]
            if b.error is not None:
                raise b.error  # the store is poisoned (StorageFailed): nothing more may be promised
            if b.prep_pending:
                self._send_durable()
                return
            q.popleft()
            self._finish(core, b)

    def _prepare(self, b: _Batch) -> None:
        """Decoding proportional to the whole state -- a received snapshot, a committed Restore command -- runs
        on the worker thread (`_preparer`), never on the loop: the FSM's optional `heavy(data)` picks the
        entries cheaply, `prepare(data)` / `prepare_restore(data)` (pure, thread-safe) run there, and _finish
        only swaps the results in, in apply order (`apply_prepared`, `restore_prepared`). The batch (and every
        later one) is finished only after that; meanwhile the messages of durable batches still leave
        (_send_durable), so a server busy decoding keeps answering its leader."""
        heavy: Callable[[bytes], bool] | None = getattr(self.fsm, "heavy", None)
        rd = b.rd
        if heavy is None or (rd.snapshot is None and not rd.committed):
            return
        items = [e for e in rd.committed if e.kind == EntryKind.NORMAL and heavy(e.data)]
        snap = rd.snapshot
        if not items and snap is None:
            return
        fsm: Any = self.fsm

        def work(_: None) -> dict[int, Any]:
            t0 = time.monotonic()
            out: dict[int, Any] = {}
            if snap is not None:  # first, as _finish applies them: the entries continue after the snapshot
                try:
                    out[_SNAPSHOT] = fsm.prepare_restore(snap.data)
                except Exception as exc:  # raised on the loop by _finish, as restore() would have
                    out[_SNAPSHOT] = exc
            out.update((e.index, fsm.prepare(e.data)) for e in items)
            log.info("decoded %s off the loop in %.2f s", "a snapshot" if snap is not None else "a restore",
                     time.monotonic() - t0)
            return out

        def done(result: dict[int, Any] | None, error: BaseException | None) -> None:
            b.prep_pending = False
            self._preparing -= 1
            b.prepared = result
            if error is not None and b.error is None:
                b.error = error

        b.prep_pending = True
        self._preparing += 1
        assert self._preparer is not None
        self._preparer.submit(work, None, done)

    def _send_durable(self) -> None:
        """While a batch waits for its preparation, the messages of the batches before and after it whose
        writes are durable leave, in order: they promise what is on disk (votes, acknowledgements of entries
        and snapshots), never what is applied, so they need not wait for the state machine."""
        for b in self._pipeline:
            if not b.done or b.error is not None:
                break
            if b.late or b.acks:
                self._send_late(b)

    def _finish(self, core: RaftCore, b: _Batch) -> None:
        rd = b.rd
        if rd.snapshot is not None:
            prepared = b.prepared.get(_SNAPSHOT) if b.prepared is not None else None
            if isinstance(prepared, Exception):
                raise prepared
            if prepared is not None:
                self.fsm.restore_prepared(prepared)  # type: ignore[attr-defined]
            else:
                self.fsm.restore(rd.snapshot.data)
            self.last_snapshot_index = rd.snapshot.meta.index
            self._update_addresses(rd.snapshot.meta.configuration)
        self._send_late(b)
        for e in rd.committed[b.early:] if b.early else rd.committed:
            self._apply(e, b.prepared)
        for rs in rd.read_states:
            self._read_ready(rs)
        if rd.soft_state is not None:
            self._soft_state(rd.soft_state)
        core.advance(rd)  # the core learns its log is durable through rd.entries
        self._release_applied(core.applied)
        self._maybe_snapshot(core)  # callers drain the core next (a leader's own write may commit)

    def _send_late(self, b: _Batch) -> None:
        """A durable batch's late messages, those the writer thread did not send (in order)."""
        for msg in b.late:
            self._send(msg)
        b.late = []
        if b.acks is not None:
            for a in b.acks:
                if not a.sent:
                    self._send(a.msg)
            b.acks = None

    def _take_chunks(self, core: RaftCore) -> None:
        """Pieces of snapshots and their acknowledgements, after the pass's messages (a piece is taken only
        from the leader the core knows in its current term)."""
        chunks, self._chunks = self._chunks, []
        streams = self.streams
        assert streams is not None
        for m in chunks:
            if isinstance(m, SnapshotChunk):
                streams.on_chunk(m, core.term, core.leader)
            elif core.role == Role.LEADER:
                streams.on_ack(m)

    def _send_wire(self, msg: WireMessage) -> None:
        addr = self.addresses.get(msg.to)
        if addr:
            self.transport.send(addr, msg)

    def _send(self, msg: Message) -> None:
        if isinstance(msg, SnapshotRequest) and self.streams is not None:
            self.streams.send(msg)  # streamed in pieces (snapstream.py): no frame holds a whole snapshot
            return
        if isinstance(msg, (VoteRequest, VoteResponse, TimeoutNow)):
            log.debug("sending %s", msg)
        addr = self.addresses.get(msg.to)
        if addr:
            self.transport.send(addr, msg)

    def _apply(self, e: Entry, prepared: dict[int, Any] | None = None) -> None:
        result: Any = None
        if e.kind == EntryKind.NORMAL:
            try:
                if prepared is not None and e.index in prepared:
                    result = self.fsm.apply_prepared(e.index, e.data, prepared[e.index])  # type: ignore[attr-defined]
                else:
                    result = self.fsm.apply(e.index, e.data)
            except Exception as exc:  # the FSM must not raise; if it does, the writer hears why
                log.exception("state machine failed to apply index %d", e.index)
                result = exc
        elif e.kind == EntryKind.CONFIG:
            assert self.core is not None
            self._update_addresses(self.core.configuration)
        w = self._waiters.pop(e.index, None)
        if w is not None and not w.future.done():
            if w.term != e.term:
                w.future.set_exception(LeadershipLost())
            elif isinstance(result, Exception):
                w.future.set_exception(result)
            else:
                w.future.set_result(result)

    def _fail_waiters_from(self, index: int) -> None:
        for idx in [i for i in self._waiters if i >= index]:
            w = self._waiters.pop(idx)
            if not w.future.done():
                w.future.set_exception(LeadershipLost("entry overwritten by a new leader"))

    def _read_ready(self, rs: ReadState) -> None:
        fut = self._reads.pop(rs.ctx, None)
        if fut is not None and not fut.done():
            fut.set_result(rs.index)

    def _release_applied(self, applied: int) -> None:
        keep = []
        for idx, fut in self._applied_waiters:
            if applied >= idx:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((idx, fut))
        self._applied_waiters = keep

    def _soft_state(self, ss: SoftState) -> None:
        old = self.soft
        self.soft = ss
        if ss.role != Role.LEADER and self.streams is not None:
            self.streams.stop_sending()
        if ss.role != old.role:
            log.info("entering %s state: term=%d", ss.role, ss.term)
        if ss.leader != old.leader:
            if ss.leader:
                log.info("New leader elected: leader=%s term=%d", ss.leader, ss.term)
            if ss.role != Role.LEADER:
                for ctx, fut in list(self._reads.items()):
                    if not fut.done():
                        fut.set_exception(NotLeader(ss.leader))
                    self._reads.pop(ctx, None)
        if self.on_leader_change is not None:
            self.on_leader_change(ss)

    def learn_address(self, server_id: str, address: str) -> None:
        """An address for a server we may have to answer before any configuration names it (a
        not-yet-bootstrapped server voting for, or replying to, the first leader). From gossip."""
        if server_id and address and server_id != self.id:
            self.addresses[server_id] = address

    def _update_addresses(self, conf: Configuration) -> None:
        for s in conf.servers:
            self.addresses[s.id] = s.address

    def _maybe_snapshot(self, core: RaftCore) -> None:
        """Snapshot the state machine every snapshot_threshold applied entries. Serialising happens on the
        loop (FSM.snapshot() must see one point in time) unless the FSM offers `snapshot_view()`, a cheap
        point-in-time capture returning the function that serialises it. Serialising, writing and fsyncing
        the file run on the worker thread (`_preparer`: seconds for hundreds of MiB, which must not hold up
        the log's writes -- a follower's acknowledgements wait for them); only the rename and the storage's
        bookkeeping run on the writer thread, in order with the log. Until that is durable the core
        neither sends this snapshot nor compacts its log."""
        if self._snapshotting or core.applied - self.last_snapshot_index < self.config.snapshot_threshold:
            return
        if core.applied < core.log.offset:
            return  # a received snapshot beyond `applied` is still being written: it supersedes ours
        deferred: Callable[[], bool] | None = getattr(self.fsm, "snapshot_deferred", None)
        if deferred is not None and deferred():
            return  # a restore's pieces are only in the log (state/restore.py): after its last piece
        index = core.applied
        meta = core.snapshot_meta(index)
        view: Callable[[], Callable[[], bytes]] | None = getattr(self.fsm, "snapshot_view", None)
        serialise: Callable[[], bytes]
        if view is not None:
            serialise = view()
        else:
            data = self.fsm.snapshot()
            serialise = lambda: data  # noqa: E731
        self._snapshotting = True

        def write(_: None) -> tuple[Snapshot, Any]:
            snap = Snapshot(meta, serialise())
            return snap, self.storage.snapshot_file(snap)

        def install(arg: tuple[Snapshot, Any]) -> Snapshot:
            self.storage.save_snapshot(arg[0], written=arg[1])
            return arg[0]

        def written(arg: tuple[Snapshot, Any] | None, error: BaseException | None) -> None:
            if error is not None or arg is None or self._stopped:
                self._snapshot_done(None, error)
                return
            assert self._writer is not None
            self._writer.submit(install, arg, self._snapshot_done)

        assert self._preparer is not None
        self._preparer.submit(write, None, written)

    def _snapshot_done(self, snap: Snapshot | None, error: BaseException | None) -> None:
        self._snapshotting = False
        if self._stopped:
            return
        if error is not None or snap is None:
            self._pipeline.append(_Batch(Ready(), [], done=True, error=error))  # stops the loop, in order
            self._kick()
            return
        core = self.core
        assert core is not None
        index = snap.meta.index
        if index > self.last_snapshot_index:  # a received snapshot may have overtaken ours
            core.set_snapshot(snap)
            core.compact(index)  # the core keeps trailing_logs entries behind it
            self.last_snapshot_index = index
        log.info("snapshot complete up to: index=%d", index)
        self._kick()
