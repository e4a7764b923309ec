"""The asyncio driver of one Raft server: persist -> send -> apply -> advance.

It owns the clock, the disk (RaftStorage) and the network (Transport); every decision is the
pure RaftCore's. One loop task processes inputs in order: incoming messages, proposals and
timer ticks all funnel into `_kick()`, and `_drain()` handles each Ready exactly as the contract
in messages.py says (fsync before any message that promises what was written leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.config import RaftConfig
from agent.errors import LeadershipLost, NoLeader, NotLeader
from agent.raft.core import RaftCore
from agent.raft.messages import (
    Configuration,
    Entry,
    EntryKind,
    Message,
    ReadState,
    Role,
    Snapshot,
    SoftState,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from agent.raft.storage import RaftStorage
from agent.raft.transport import Transport

log = logging.getLogger("agent.server.raft")


class FSM(Protocol):
    """The replicated state machine as the driver sees it."""

    def apply(self, index: int, data: bytes) -> Any: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


@dataclass
class _Waiter:
    term: int
    future: asyncio.Future[Any]


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
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.last_snapshot_index = 0
        self.soft = SoftState("", Role.FOLLOWER, 0)
        self.last_leader_contact = 0.0

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        hs, meta, entries = self.storage.initial_state()
        snap = self.storage.load_snapshot()
        applied = 0
        if snap is not None:
            try:
                self.fsm.restore(snap.data)
            except ValueError as exc:  # the file's checksum held, but its contents are not a state
                from agent.raft.storage import StorageCorrupt

                path = self.storage.snap_dir / f"{snap.meta.term}-{snap.meta.index}.snap"
                raise StorageCorrupt(path, f"the snapshot does not restore: {exc}", index=snap.meta.index) from None
            applied = snap.meta.index
            self.last_snapshot_index = snap.meta.index
        self.core = RaftCore(self.id, self.config, self.rng, self._now(), hard_state=hs, snapshot=meta,
                             entries=entries, applied=applied)
        if snap is not None:
            self.core.set_snapshot(snap)
        self._update_addresses(self.core.configuration)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for w in self._waiters.values():
            if not w.future.done():
                w.future.set_exception(NoLeader())
        self.storage.close()

    @property
    def bootstrapped(self) -> bool:
        return self.core is not None and bool(self.core.configuration.servers)

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

    def deliver(self, msg: Message) -> None:
        """A message from the transport (called on the loop thread)."""
        if isinstance(msg, (VoteRequest, VoteResponse, TimeoutNow)):
            log.debug("received %s", msg)
        self._inbox.append(msg)
        self._kick()

    def _kick(self) -> None:
        self._wake.set()

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
        self._kick()
        return await asyncio.wait_for(fut, timeout)

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
        index = await asyncio.wait_for(fut, timeout)
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
        await asyncio.wait_for(fut, timeout)

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
        assert self.core is not None
        core = self.core
        while True:
            now = self._now()
            inbox, self._inbox = self._inbox, []
            for msg in inbox:
                core.step(msg, now)
            lost, self._lost = self._lost, []
            for peer in lost:
                core.leader_unreachable(peer, now)
            core.tick(now)
            while core.has_ready():
                self._drain(core)
            delay = max(0.0005, min(core.next_deadline() - self._now(), 0.05))
            self._wake.clear()
            if self._inbox:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _drain(self, core: RaftCore) -> None:
        rd = core.ready()
        # 1. persist (fsync) before anything that promises it leaves; a received snapshot first,
        #    since the entries of the same Ready continue the log after it
        if rd.snapshot is not None:
            self.storage.save_snapshot(rd.snapshot)
            self.fsm.restore(rd.snapshot.data)
            self.last_snapshot_index = rd.snapshot.meta.index
            self._update_addresses(rd.snapshot.meta.configuration)
        if rd.hard_state is not None or rd.truncate_from is not None or rd.entries:
            self.storage.save(rd.hard_state, rd.truncate_from, rd.entries)
        if rd.truncate_from is not None:
            self._fail_waiters_from(rd.truncate_from)
        # 2. send
        for msg in rd.messages:
            if isinstance(msg, (VoteRequest, VoteResponse, TimeoutNow)):
                log.debug("sending %s", msg)
            addr = self.addresses.get(msg.to)
            if addr:
                self.transport.send(addr, msg)
        # 3. apply
        for e in rd.committed:
            self._apply(e)
        for rs in rd.read_states:
            self._read_ready(rs)
        if rd.soft_state is not None:
            self._soft_state(rd.soft_state)
        # 4. advance
        core.advance(rd)
        self._release_applied(core.applied)
        self._maybe_snapshot(core)

    def _apply(self, e: Entry) -> None:
        result: Any = None
        if e.kind == EntryKind.NORMAL:
            try:
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
        if core.applied - self.last_snapshot_index < self.config.snapshot_threshold:
            return
        index = core.applied
        data = self.fsm.snapshot()
        snap = Snapshot(core.snapshot_meta(index), data)
        self.storage.save_snapshot(snap)
        core.set_snapshot(snap)
        core.compact(index)  # the core keeps trailing_logs entries behind it
        self.last_snapshot_index = index
        log.info("snapshot complete up to: index=%d", index)
