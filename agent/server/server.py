"""A Consul server: Raft (node.py) + the state store + bootstrap; forwarding (forwarding.py), the
server-RPC methods (rpc.py) and the leader's duties (leader.py) are their own parts.

It builds nothing: agent/agent.py (the composition root) builds the transport, the Raft storage and
node and the state machine, wires their callbacks to this object, and hands them over.

Writes: the leader proposes; a follower forwards to the leader over server RPC. Reads run a
named query (queries.py) against the local store after the barrier the consistency mode asks
for: `stale` none; `default` the leader's lease (else forwarded to the leader); `consistent`
a ReadIndex round confirmed by a quorum. While no leader is known, requests wait a bounded time
(Consul's RPCHoldTimeout) and then fail with "No cluster leader" -- they never hang.

Waiting is event-driven: a write that hit a leader change waits for the next change (or a short
fallback) rather than polling; blocking queries wake when an entry is applied (a synchronous swap of
an asyncio.Event: applying an entry creates no task); the bootstrap loop wakes on LAN member events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from pyconsul.agent.config import AgentConfig
from pyconsul.agent.errors import (
    BadRequest,
    CommandRejected,
    Internal,
    LeadershipLost,
    NoLeader,
    NotLeader,
    PermissionDenied,
)
from pyconsul.agent.gossip.serf import Member, MemberEvent, MemberStatus
from pyconsul.agent.raft.messages import Configuration, Role, Server, SoftState, Suffrage
from pyconsul.agent.raft.node import RaftNode
from pyconsul.agent.raft.transport import Transport
from pyconsul.agent.server import acl_enforce, autopilot, bootstrap, queries
from pyconsul.agent.server.common import RPC_HOLD_TIMEOUT, ReadMeta
from pyconsul.agent.server.forwarding import Forwarder
from pyconsul.agent.server.leader import LeaderDuties
from pyconsul.agent.server.rpc import RPCMethods
from pyconsul.agent.state import restore
from pyconsul.agent.state.commands import Restore, is_restore
from pyconsul.agent.state.commands import decode as decode_command
from pyconsul.agent.state.commands import encode as encode_command
from pyconsul.agent.state.results import StateError, WriteResult
from pyconsul.agent.state.snapshot import load as snapshot_load
from pyconsul.agent.state.store import StateStore
from pyconsul.agent.state.tombstone_gc import TombstoneGC
from pyconsul.agent.supervise import Supervisor

log = logging.getLogger("agent.server")

RETRY_FALLBACK = 0.5  # a write that met a leader change waits for the next change, at most this long
BOOTSTRAP_RETRY = 0.25  # a peer could not be asked for its Raft peers (its RPC may not listen yet)
AUTOPILOT_STATUS = frozenset({"autopilot_configuration", "autopilot_set_configuration", "autopilot_health"})
BOOTSTRAP_FALLBACK = 5.0  # no LAN event: look again anyway (e.g. we were added to a cluster meanwhile)


class _Retry(Exception):
    """A bootstrap check could not be completed now; try again on the next pass."""


def answer(result: Any) -> WriteResult:
    """What the waiting writer makes of its entry's typed result: a rejection raises CommandRejected
    (it changed nothing), a state-machine failure (StateError.internal) Internal; anything else is the
    write's result. Only the writer's server does this; every other server just applies the entry."""
    if isinstance(result, StateError):
        raise Internal(result.message) if result.internal else CommandRejected(result.message)
    out: WriteResult = result
    return out


class StoreFSM:
    """Adapts StateStore to the Raft driver's FSM protocol (restore swaps the store). apply returns
    the store's typed result (StateError, TxnResult, Session, bool, str, None) untouched.
    `on_apply(index)` is called synchronously after each apply and restore (wired by the agent)."""

    def __init__(self, on_apply: Callable[[int], None] | None = None) -> None:
        self.store = StateStore()
        self.on_apply: Callable[[int], None] = on_apply or (lambda index: None)
        self.spool = restore.Spool()  # the pieces of a restore, on the worker thread (state/restore.py)
        self.restores = 0  # how many times the whole state was swapped (restore, restore_prepared)

    def apply(self, index: int, data: bytes) -> Any:
        result = self.store.apply(index, data)
        self._applied(index)
        return result

    def _applied(self, index: int) -> None:
        if self.store.abandoned:
            self.spool.abandon(self.store.abandoned)
        self.on_apply(index)

    def snapshot_deferred(self) -> bool:
        """The Raft driver takes no snapshot while a restore's pieces are only in the log (state/restore.py)."""
        return self.store.restoring()

    def snapshot(self) -> bytes:
        return self.store.snapshot()

    def snapshot_view(self) -> Callable[[], bytes]:
        """Raft's snapshots serialise on the writer thread from this point-in-time capture (node.py)."""
        return self.store.snapshot_view()

    def restore(self, data: bytes) -> None:
        self.store = StateStore.restore(data)
        self.restores += 1
        self.on_apply(self.store.max_index())

    # Work proportional to the whole state runs on the Raft driver's worker thread (node.py, `_prepare`):
    # `heavy` tells it cheaply which entries to prepare, the thread calls `prepare` / `prepare_restore`
    # (pure, thread-safe), and the loop only swaps the result in, in apply order.

    def heavy(self, data: bytes) -> bool:
        return is_restore(data)

    def prepare(self, data: bytes) -> Any:
        return StateStore.prepare(data, self.spool)

    def apply_prepared(self, index: int, data: bytes, prepared: Any) -> Any:
        result = self.store.apply_prepared(index, data, prepared)
        self._applied(index)
        return result

    def prepare_restore(self, data: bytes) -> Any:
        self.spool.reset()  # a snapshot holds no restore in progress (none is taken during one)
        return snapshot_load(data)  # DecodeError (a ValueError) if it is not a state

    def restore_prepared(self, prepared: Any) -> None:
        self.store = StateStore(prepared)
        self.restores += 1
        self.on_apply(self.store.max_index())


class ConsulServer:
    def __init__(self, cfg: AgentConfig, node_id: str, members: Callable[[], list[Member]], transport: Transport,
                 raft: RaftNode, fsm: StoreFSM, *, force_leave: Callable[[str], object] | None = None,
                 wan_members: Callable[[], list[Member]] | None = None, supervisor: Supervisor | None = None) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.members = members
        self.transport = transport
        self.raft = raft
        self.fsm = fsm
        self.wan_members = wan_members or (lambda: [])
        rpc_host, rpc_port = cfg.rpc_advertise()
        self.address = f"{rpc_host}:{rpc_port}"
        self.forward = Forwarder(transport, cfg.datacenter, self.wan_members)
        self.rpc = RPCMethods(self)
        self.leader = LeaderDuties(raft, self.configuration, cfg.datacenter, node_id, members, lambda: self.store,
                                   self._duty_write, force_leave, cfg.autopilot_cleanup_dead_servers,
                                   wait_change=self.wait_raft_change,
                                   gc=TombstoneGC(cfg.tombstone_ttl, cfg.tombstone_ttl_granularity),
                                   last_index=self._last_index, propose_local=self._duty_write,
                                   term=self._term, autopilot_config=cfg.autopilot_config(),
                                   server_stats=self._server_stats,
                                   autopilot_state=lambda: self.store.autopilot_config())
        self.supervisor = supervisor or Supervisor()  # the agent's (one place for every long-lived task)
        self._tasks: set[asyncio.Task[None]] = set()
        self._leader_known = asyncio.Event()  # set while a leader is known
        self._leader_change = asyncio.Event()  # set (and replaced) at every leader/role change
        self._leader_gen = 0
        # blocked queries: index name -> the events of the queries whose index that name can move ("*": any
        # change); an apply sets only the events of the names it changed (queries.watch_names)
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._store_seen: StateStore | None = None  # the store of the last wake-up (a restore replaces it)
        self._lan_changed = asyncio.Event()
        self._restore_lock = asyncio.Lock()  # restores in pieces on this leader: one at a time
        # status requests answered by the agent around this server (wired by agent.py): "event_fire" (a user
        # event for our LAN, from another datacenter's ?dc=), "coordinate_datacenters" (the WAN view) and
        # "coordinate_update" (Consul's Coordinate.Update; a hook may be a coroutine function)
        self.status_hooks: dict[str, Callable[[dict[str, Any]], Any]] = {}
        # ACLs (wired by agent.py): the token resolver (None or not enabled(): nothing is enforced); our own
        # forwarded requests carry self.forward.agent_token() (acl.tokens.agent); acl_enforce.py has the rules
        self.acl: Any = None
        self.forward.agent_token = lambda: str(self.acl.agent_token()) if self.acl is not None else ""
        self._acl_lookup = acl_enforce.StoreLookup(lambda: self.store)

    @property
    def store(self) -> StateStore:
        return self.fsm.store

    def _spawn(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]], *, critical: bool) -> None:
        """A supervised server loop (supervise.py): critical ones stop the agent when they fail, the
        others are restarted with a backoff."""
        t = self.supervisor.spawn(name, factory, critical=critical, restart=not critical)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.transport.start()
        await self.raft.start()
        log.info("raft: initial configuration: servers=%s", [s.id for s in self.configuration().servers])
        self._spawn("bootstrap", self._bootstrap_loop, critical=True)  # without it, no cluster ever forms
        self._spawn("no-leader-logger", self.leader.no_leader_logger, critical=False)
        self._spawn("leader-duties", self.leader.run, critical=False)  # restarts cleanly: re-establishes
        self._spawn("tombstone-reaper", self.leader.tombstone_reaper, critical=False)
        self._spawn("session-expiry", self.leader.session_expiry, critical=False)

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        await self.raft.stop()
        await self.transport.stop()

    # ------------------------------------------------------------ callbacks (wired by the agent)

    def applied(self, index: int) -> None:
        """The FSM applied `index` (or restored a snapshot): wake blocking queries and, when it left
        tombstones, hint the leader's tombstone GC. Synchronous."""
        changed = self.store.last_changed
        if "tombstones" in changed:
            self.leader.tombstones_changed(index)
        if "sessions" in changed:
            self.leader.sessions_changed()
        if self._watchers:
            store = self.store
            # a restored store (a new object) may have moved every index
            self._wake(changed if store is self._store_seen else None)
            self._store_seen = store

    def _wake(self, names: Iterable[str] | None) -> None:
        """Set the events of the blocked queries watching any of `names` (None: all of them)."""
        groups = self._watchers.values() if names is None else \
            [self._watchers[n] for n in (*names, "*") if n in self._watchers]
        for group in groups:
            for ev in group:
                ev.set()

    def _term(self) -> int:
        core = self.raft.core
        return core.term if core is not None else 0

    def _last_index(self) -> int:
        core = self.raft.core
        return core.last_index if core is not None else 0

    def leader_changed(self, ss: SoftState) -> None:
        """Raft's soft state changed (leader or role)."""
        if ss.leader:
            self._leader_known.set()
        else:
            self._leader_known.clear()
        self._leader_gen += 1
        self.leader.leadership_changed()
        ev, self._leader_change = self._leader_change, asyncio.Event()
        ev.set()

    def on_lan_event(self, e: MemberEvent) -> None:
        """LAN membership changed: learn addresses, wake the bootstrap loop; as leader, remove
        servers that left."""
        if e.member.status == MemberStatus.ALIVE:
            s = bootstrap.server_of(e.member, self.cfg.datacenter)
            if s is not None:
                self.raft.learn_address(s.id, s.address)
        self._lan_changed.set()
        if self.raft.core is not None:
            self.leader.on_lan_event(e)

    async def wait_raft_change(self, timeout: float | None) -> None:
        """Return at the next leader/role change, or after `timeout` seconds (None: no limit)."""
        changed = self._leader_change
        if timeout is None:
            await changed.wait()
            return
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await changed.wait()

    async def _leader_changed_since(self, gen: int, until: float) -> None:
        """Return once the leader changed after generation `gen`, or at loop time `until`."""
        if self._leader_gen != gen:
            return
        remaining = until - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await self._leader_change.wait()

    # ------------------------------------------------------------ bootstrap

    async def _bootstrap_loop(self) -> None:
        raft = self.raft
        last_reason = ""
        enabled = bool(self.cfg.bootstrap_expect or self.cfg.bootstrap or self.cfg.dev)
        while enabled and not raft.bootstrapped:
            self._lan_changed.clear()
            wait = BOOTSTRAP_FALLBACK
            for m in self.members():
                s = server_from_member(m, self.cfg.datacenter)
                if s is not None:
                    raft.learn_address(s.id, s.address)
            d = bootstrap.decide(self.members(), self.cfg.datacenter, self.cfg.bootstrap_expect,
                                 self.cfg.bootstrap or self.cfg.dev, self.node_id)
            if d.configuration is not None:
                try:
                    exists = await self._peers_exist(d.configuration)
                except _Retry:
                    exists = None
                    wait = BOOTSTRAP_RETRY
                if exists:
                    log.info("Existing Raft peers reported by another server, disabling bootstrap mode; "
                             "waiting for the leader to add this server")
                    return
                if exists is False and raft.has_state():
                    # while we asked the others, a leader that bootstrapped first reached us (Consul: "failed to
                    # bootstrap cluster" is logged and the server goes on as a member of that cluster)
                    log.info("Raft state arrived while checking peers: a cluster exists, not bootstrapping")
                    return
                if exists is False:
                    log.info("Found expected number of peers, attempting bootstrap: peers=%s",
                             ",".join(s.address for s in d.configuration.servers))
                    raft.bootstrap(d.configuration)
                    return
            elif d.reason != last_reason:
                log.debug("not bootstrapping yet: %s", d.reason)
                last_reason = d.reason
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._lan_changed.wait()

    async def _peers_exist(self, conf: Configuration) -> bool:
        """Consul's maybeBootstrap check: before bootstrapping, ask every other server for its Raft
        peers; if any already has some, a cluster exists and we must be added to it, not start another.
        A server that cannot be asked postpones the decision (we retry on the next loop)."""
        for s in conf.servers:
            if s.id == self.node_id:
                continue
            try:
                peers = await self.transport.request(s.address, "status", {"what": "peers"}, timeout=2.0)
            except Exception as exc:
                log.debug("Failed to confirm peer status for %s: %s; retrying", s.address, exc)
                raise _Retry() from None
            if peers:
                return True
        return False

    # ------------------------------------------------------------ writes and reads

    @property
    def is_leader(self) -> bool:
        return self.raft.is_leader

    @property
    def leader_id(self) -> str:
        return self.raft.leader_id

    async def _wait_leader(self) -> RaftNode:
        if not self.raft.leader_id:
            try:
                async with asyncio.timeout(RPC_HOLD_TIMEOUT):
                    await self._leader_known.wait()
            except TimeoutError:
                raise NoLeader() from None
        return self.raft

    async def apply_local(self, data: bytes) -> WriteResult:
        """Propose on this server (NotLeader unless it leads) and answer once applied here. A new
        leader first establishes its leadership (LeaderDuties.establish: this server and the other
        servers in the catalog), so a write acknowledged by it is never applied before that; the wait
        is bounded by RPC_HOLD_TIMEOUT."""
        leader = self.leader
        if self.raft.is_leader and not leader.is_established():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + RPC_HOLD_TIMEOUT
            while self.raft.is_leader and not leader.is_established():
                changed = leader.establishment_changed
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await changed.wait()
        if is_restore(data):
            return await self._restore(data)
        return answer(await self.raft.apply(data))

    async def _restore(self, data: bytes) -> WriteResult:
        """A Restore (PUT /v1/snapshot): one entry when its state fits in one piece, else proposed as pieces
        (state/restore.py), restore.WINDOW at a time, each group once the previous one is applied here (so
        heartbeats never queue behind more than one AppendEntries batch of it), one restore at a time; answered
        with the last piece's result. A failure half-way (lost leadership, a timeout) proposes the abort when it
        still can (else the next leader does) and is the caller's to retry whole: a restore started again
        replaces the state again. Pieces are only ever made here: one sent to us is refused."""
        try:
            cmd = await asyncio.to_thread(decode_command, data)  # a copy of up to hundreds of MiB: off the loop
        except ValueError:  # DecodeError: the state machine refuses it as it would any undecodable entry
            return answer(await self.raft.apply(data))
        if not isinstance(cmd, Restore) or restore.is_piece(cmd):
            raise BadRequest("a restore piece cannot be proposed from outside; send the whole state")
        if len(cmd.state) <= restore.PIECE:
            return answer(await self.raft.apply(data))
        del data
        state = cmd.state
        del cmd
        parts = await asyncio.to_thread(restore.encoded_pieces, state, uuid.uuid4().hex)
        size = len(state)
        del state
        timeout = 30.0 + size / restore.MIN_RATE
        async with self._restore_lock:
            log.info("restoring a snapshot of %d bytes in %d pieces through the log", size, len(parts))
            result: Any = None
            try:
                async with asyncio.timeout(timeout):
                    for i in range(0, len(parts), restore.WINDOW):
                        results = await self.raft.apply_all(parts[i:i + restore.WINDOW], timeout=timeout)
                        parts[i:i + restore.WINDOW] = [b""] * len(results)  # the log holds them now
                        result = results[-1]
                        for r in results:
                            answer(r)  # a refused piece (CommandRejected) ends the restore
            except Exception:
                with contextlib.suppress(Exception):  # not leader any more: the next leader aborts it
                    await self.raft.apply(encode_command(restore.abort()), timeout=RPC_HOLD_TIMEOUT)
                raise
        return answer(result)

    async def _duty_write(self, data: bytes) -> WriteResult:
        """The leader's own writes (catalog reconcile, session expiry, tombstone reaps): on this server
        only (NotLeader otherwise), never held back by establishment (they are what establishes it)."""
        return answer(await self.raft.apply(data))

    def acl_enabled(self) -> bool:
        acl = self.acl
        return acl is not None and bool(acl.enabled())

    async def authorizer(self) -> Any:
        """The Authorizer of the request being served (acl_enforce.REQUEST_TOKEN), or None when nothing is
        to be enforced: ACLs off, or an in-process caller (no token in the context)."""
        acl = self.acl
        token = acl_enforce.REQUEST_TOKEN.get()
        if acl is None or token is None or not acl.enabled():
            return None
        return await acl.resolve(token)

    async def check_write(self, data: bytes) -> Any:
        """PermissionDenied unless the request's token may apply command `data` (ACLs on only); the token's
        Authorizer (None: nothing enforced) for acl_enforce.filter_write_result."""
        authz = await self.authorizer()
        if authz is None:
            return None
        if is_restore(data):  # not decoded here: a restore may be hundreds of MiB
            if not authz.snapshot():
                raise PermissionDenied()
            return authz
        try:
            cmd = decode_command(data)
        except ValueError:
            return authz  # the state machine refuses what it cannot decode
        acl_enforce.check_write(authz, cmd, self._acl_lookup)
        return authz

    async def write(self, data: bytes, *, checked: bool = False) -> WriteResult:
        """Commit a command through Raft (forwarding to the leader, or to another datacenter for
        `?dc=`); the command's typed result. Raises CommandRejected if the state machine refused it,
        NoLeader if no leader took it within RPC_HOLD_TIMEOUT. With ACLs on, the request's token must
        allow the command (acl_enforce.check_write); the leader checks it again. With them off: no extra
        await on this path."""
        if not checked and self.acl is not None and self.acl_enabled():
            try:
                authz = await self.check_write(data)
            except acl_enforce.TxnDenied as exc:  # rolled back before it was proposed: 409 with the errors
                return exc.result
            result = await self.write(data, checked=True)
            return result if authz is None else acl_enforce.filter_write_result(authz, result)
        remote = self.forward.dc_server()
        if remote:
            return await self.forward.write(remote, data, to_leader=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RPC_HOLD_TIMEOUT
        while True:
            gen = self._leader_gen
            raft = await self._wait_leader()
            try:
                if raft.is_leader:
                    return await self.apply_local(data)
                addr = raft.leader_address()
                if not addr:
                    raise NotLeader(raft.leader_id)
                return await self.forward.write(addr, data, to_leader=True)
            except (NotLeader, NoLeader, LeadershipLost):  # the write did not happen: try the next leader
                if loop.time() >= deadline:
                    raise NoLeader() from None
                await self._leader_changed_since(gen, min(deadline, loop.time() + RETRY_FALLBACK))

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, ReadMeta]:
        """Run query `name` under consistency `mode` (default | consistent | stale); with index > 0,
        block first until the query's index passes it or `wait` seconds elapse."""
        if name not in queries.QUERIES:
            raise BadRequest(f"unknown query {name!r}")
        remote = self.forward.dc_server()
        if remote:
            return await self.forward.read(remote, name, args, mode, index, wait, to_leader=False)
        raft = self.raft
        if self.cfg.debug_stale_reads and mode == "consistent":
            mode = "stale"  # the deliberate bug of -debug-stale-reads (chaos checker self-test)
        if mode != "stale":
            raft = await self._wait_leader()
            if not raft.is_leader:
                addr = raft.leader_address()
                if not addr:
                    raise NoLeader()
                return await self.forward.read(addr, name, args, mode, index, wait, to_leader=True,
                                               last_contact_ms=last_contact_ms(raft.ms_since_leader_contact()))
        authz = await self.authorizer() if self.acl is not None and self.acl_enabled() else None
        if authz is not None:  # before blocking: a denied single-key read or snapshot answers 403 at once
            acl_enforce.check_read(authz, name, args)
        if index:
            await self.wait_for_change(index, name, args, wait)
        if mode != "stale" and (mode == "consistent" or not raft.lease_ok()):
            await raft.read_index()
        value = queries.run(self.store, name, args)
        if authz is not None:  # after every wake: a blocking query shows only what the token may read
            value = acl_enforce.filter_read(authz, name, value)
        meta = self._meta(queries.index_of(self.store, name, args))
        if name == "snapshot":
            # the query captured the state (cheap); serialising it takes seconds for hundreds of MiB, so it
            # runs in a worker thread while the loop keeps heartbeating and serving
            value["state"] = await asyncio.to_thread(value["state"])
            if raft.core is not None:
                value["term"] = raft.core.term
        return value, meta

    def _meta(self, index: int) -> ReadMeta:
        raft = self.raft
        contact = 0 if raft.is_leader else last_contact_ms(raft.ms_since_leader_contact())
        return ReadMeta(index, bool(raft.leader_id), contact)

    async def wait_for_change(self, index: int, name: str, args: dict[str, Any], wait: float) -> None:
        """Blocking query: return when the query's index passes `index`, or after `wait`. It sleeps through
        applies that change none of the index names its index depends on (queries.watch_names), so an
        unrelated write costs a blocked query nothing: no wake-up, no re-read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        ev = asyncio.Event()
        watching: frozenset[str] = frozenset()
        self._store_seen = self.store
        try:
            while True:
                names = queries.watch_names(self.store, name, args) or frozenset({"*"})
                if names != watching:
                    self._unwatch(ev, watching - names)
                    for n in names - watching:
                        self._watchers.setdefault(n, set()).add(ev)
                    watching = names
                ev.clear()  # before the check: an apply after it sets the event again
                if queries.index_of(self.store, name, args) > index:
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await ev.wait()
        finally:
            self._unwatch(ev, watching)

    def _unwatch(self, ev: asyncio.Event, names: Iterable[str]) -> None:
        for n in names:
            group = self._watchers.get(n)
            if group is not None:
                group.discard(ev)
                if not group:
                    del self._watchers[n]

    # ------------------------------------------------------------ operator views

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        """/v1/status/* and /v1/operator/raft/* (answered here, or by the leader for remove_peer)."""
        remote = self.forward.dc_server()
        if remote:
            return await self.forward.status(remote, what, args, to_leader=False)
        if self.acl is not None and what not in acl_enforce.STATUS_TOKEN_FREE:
            authz = await self.authorizer()
            if authz is not None:
                acl_enforce.check_status(authz, what, args or {})
        hook = self.status_hooks.get(what)
        if hook is not None:
            result = hook(args or {})
            return (await result) if asyncio.iscoroutine(result) else result
        if what == "leader":
            return self.leader_address()
        if what == "datacenters":
            return sorted({self.cfg.datacenter} | {m.tags["dc"] for m in self.wan_members() if m.tags.get("dc")})
        if what == "peers":
            return [s.address for s in self.configuration().servers if s.suffrage == 0]
        if what == "raft_configuration":
            return self.raft_configuration_json()
        if what == "remove_peer":
            a = args or {}
            raft = await self._wait_leader()
            if not raft.is_leader:
                return await self.forward.status(raft.leader_address(), what, a, to_leader=True)
            self.remove_peer(str(a.get("id", "")), str(a.get("address", "")))
            return True
        if what in AUTOPILOT_STATUS:  # answered by the leader (its settings and its view of the servers)
            a = args or {}
            raft = await self._wait_leader()
            if not raft.is_leader:
                return await self.forward.status(raft.leader_address(), what, a, to_leader=True)
            return await self._autopilot_status(what, a)
        raise BadRequest(f"unknown status {what!r}")

    async def _autopilot_status(self, what: str, a: dict[str, Any]) -> Any:
        if what == "autopilot_health":
            return self.leader.health_json()
        await self.leader.seed_autopilot_config()  # (if a request comes before establishment stored them)
        if what == "autopilot_configuration":
            return self.leader.autopilot_config.to_json()
        cas = a.get("cas")
        if cas is not None and (not isinstance(cas, int) or isinstance(cas, bool) or cas < 0):
            raise BadRequest("Error parsing cas value")
        try:
            new = autopilot.config_from_json(a.get("config"), self.leader.autopilot_config)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return await self.leader.set_autopilot_config(new, cas)

    def _server_stats(self) -> tuple[float, int, int, list[autopilot.ServerStats]]:
        """The leader's view of every server of its Raft configuration (autopilot health): when it last heard
        from each (its replication progress), how far each log is known to reach, the LAN status."""
        now = asyncio.get_running_loop().time()
        core = self.raft.core
        if core is None:
            return now, 0, 0, []
        peers = core.status()["peers"]
        members = {m.tags.get("id"): m for m in self.members() if m.tags.get("role") == "consul"}
        out = []
        for s in core.configuration.servers:
            m = members.get(s.id)
            if s.id == self.node_id:
                contact, index, term = 0.0, core.last_index, core.log.last_term
            else:
                pr = peers.get(s.id, {})
                heard = float(pr.get("last_contact", -math.inf))
                contact = now - heard if math.isfinite(heard) else math.inf
                index = int(pr.get("match_index", 0))
                try:
                    term = core.term_at(index) if index else 0
                except IndexError:  # compacted away: far behind anyway
                    term = 0
            out.append(autopilot.ServerStats(
                s.id, m.name if m is not None else "", s.address, str(m.status) if m is not None else "none",
                m.tags.get("build", "").split(":")[0] if m is not None else "", s.id == self.node_id,
                s.suffrage == Suffrage.VOTER, contact, term, index))
        return now, core.term, core.last_index, out

    def leader_address(self) -> str:
        return self.raft.leader_address()

    def configuration(self) -> Configuration:
        core = self.raft.core
        return core.configuration if core is not None else Configuration()

    def raft_configuration_json(self) -> dict[str, Any]:
        names = {m.tags.get("id"): m.name for m in self.members()}
        leader = self.raft.leader_id
        return {
            "Servers": [
                {"ID": s.id, "Node": names.get(s.id, ""), "Address": s.address, "Leader": s.id == leader,
                 "ProtocolVersion": "3", "Voter": s.suffrage == 0}
                for s in self.configuration().servers
            ],
            "Index": self.raft.core.commit_index if self.raft.core is not None else 0,
        }

    def remove_server(self, server_id: str) -> None:
        """Leader only: propose removing `server_id` from the Raft configuration."""
        self.raft.change_config(remove=server_id)

    def remove_peer(self, server_id: str = "", address: str = "") -> None:
        if not self.raft.is_leader:
            raise NotLeader(self.raft.leader_id)
        conf = self.configuration()
        for s in conf.servers:
            if (server_id and s.id == server_id) or (address and s.address == address):
                self._check_removal_keeps_quorum(conf, s.id)
                self.raft.change_config(remove=s.id)
                return
        # the client named a peer that is not there: 400 (Consul 1.7 answers 500; its clients raise on both)
        what = f"address {address!r}" if address else f"id {server_id!r}"
        raise BadRequest(f"{what} was not found in the Raft configuration")

    def _check_removal_keeps_quorum(self, conf: Configuration, server_id: str) -> None:
        """Refuse a removal that would leave no voter (hashicorp/raft's checkConfiguration, which is what
        makes Consul refuse removing the last server) or fewer reachable voters than a quorum of those
        left (the leader and every voter heard from within an election timeout): such a configuration can
        never commit again, and the agent would stay leaderless for good."""
        remaining = [s for s in conf.servers if s.id != server_id]
        voters = [s for s in remaining if s.suffrage == Suffrage.VOTER]
        if not voters:
            servers = " ".join(f"{{{'Voter' if s.suffrage == Suffrage.VOTER else 'Nonvoter'} {s.id} {s.address}}}"
                               for s in remaining)
            raise Internal(f"Need at least one voter in configuration: {{[{servers}]}}")
        core = self.raft.core
        if core is None:
            return
        now = asyncio.get_running_loop().time()
        window = self.cfg.raft_config().election_timeout
        peers = core.status()["peers"]
        reachable = sum(1 for s in voters if s.id == self.node_id
                        or (s.id in peers and peers[s.id]["last_contact"] >= now - window))
        if reachable < len(voters) // 2 + 1:
            raise Internal(f"Removing server {server_id} would leave {len(voters)} voters of which only "
                           f"{reachable} are reachable, less than a quorum; refusing")

    async def leave(self) -> None:
        """A leaving server hands leadership over and asks to be removed from Raft."""
        raft = self.raft
        servers = self.configuration().servers
        if len(servers) <= 1:
            return
        if raft.is_leader:
            others = [s.id for s in servers if s.id != self.node_id]
            with contextlib.suppress(Exception):
                raft.transfer_leadership(others[0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while loop.time() < deadline:
            gen = self._leader_gen
            addr = raft.leader_address()
            if addr and not raft.is_leader:
                with contextlib.suppress(Exception):
                    token = self.forward.agent_token() if self.acl_enabled() else ""
                    args: Any = [self.node_id, token] if token else self.node_id
                    await self.transport.request(addr, "remove_self", args, timeout=3.0)
                    return
            await self._leader_changed_since(gen, min(deadline, loop.time() + RETRY_FALLBACK))

    def raft_stats(self) -> dict[str, str]:
        """The Raft part of /v1/agent/self's Stats.consul."""
        out = {"leader": str(self.raft.is_leader).lower()}
        core = self.raft.core
        if core is not None:
            out.update(
                raft_state=str(core.role),
                raft_term=str(core.term),
                raft_commit_index=str(core.commit_index),
                raft_applied_index=str(core.applied),
                raft_last_log_index=str(core.last_index),
                raft_num_peers=str(max(0, len(core.configuration.servers) - 1)),
            )
        out["kv_tombstones"] = str(self.store.tombstone_count())
        # server RPC (port 8300) counters, limits refusals included (agent/raft/transport.py TransportStats)
        out.update({f"rpc_{k}": v for k, v in self.transport.stats.as_map().items()})
        return out

    def role(self) -> Role:
        return self.raft.core.role if self.raft.core is not None else Role.FOLLOWER


# Consul reports time.Since(raft.LastContact()): with no contact ever that is Go's largest Duration
# (2**63 - 1 ns, time.Since saturates), i.e. this many milliseconds.
MAX_LAST_CONTACT_MS = (2**63 - 1) // 1_000_000


def last_contact_ms(ms: float) -> int:
    """X-Consul-LastContact as an integer: never negative, and Consul's saturated value when this
    server never heard from a leader (infinite, NaN or beyond Go's Duration)."""
    if not math.isfinite(ms) or ms >= MAX_LAST_CONTACT_MS:
        return MAX_LAST_CONTACT_MS
    return max(0, int(ms))


def server_from_member(m: Member, dc: str) -> Server | None:
    if m.status != MemberStatus.ALIVE:
        return None
    return bootstrap.server_of(m, dc)
