"""What only the leader does (Consul's leader.go): reconcile LAN members into the catalog with a
serfHealth check, destroy expired sessions, and keep the Raft configuration in line with the LAN pool
(autopilot.py decides; one configuration change per pass): joined servers come in as non-voters and are
promoted once healthy for server_stabilization_time (`health`, refreshed every pass from `server_stats`).
Every change goes through Raft like any other write, so a leader that loses leadership mid-pass just
fails the write and stops.

A new leader first establishes its leadership (`establish`, Consul's establishLeadership + reconcile):
it registers itself and every alive server in the catalog, and only then does ConsulServer.apply_local
let writes in, so a session created right after the first acknowledged write finds its node.

A follower's loops sleep until the Raft role or leader changes (`wait_change`): no periodic wake-ups
on followers. The leader makes a pass at once when it takes over, then every LEADER_LOOP_INTERVAL.

Session expiry is deadline-driven (`session_expiry`): the leader sleeps until the store's next session
deadline (Consul keeps one timer per session), woken early only when a session change could bring an
earlier one -- a new TTL session cannot expire sooner than MIN_NEW_SESSION_DEADLINE after it is applied,
so a burst of creates costs one recomputation, not one per create. A renew only moves a deadline later.

Tombstone reaping (Consul's TombstoneGC, state/tombstone_gc.py): the GC is enabled while this server
leads; taking over hints the last log index (every tombstone a predecessor left), every applied delete
that left a tombstone hints its index (`tombstones_changed`), and `tombstone_reaper` sleeps until the
GC's next deadline -- no polling -- then proposes TombstoneReap(index) on this server only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pyconsul.agent.errors import CommandRejected, PyconsulError
from pyconsul.agent.flags import format_duration
from pyconsul.agent.gossip.serf import Member, MemberEvent, MemberStatus
from pyconsul.agent.raft.messages import Configuration
from pyconsul.agent.server import autopilot, bootstrap
from pyconsul.agent.server.autopilot import AutopilotConfig, ServerHealth, ServerStats
from pyconsul.agent.state import autopilot as autopilot_state
from pyconsul.agent.state import commands as c
from pyconsul.agent.state import restore
from pyconsul.agent.state.commands import AutopilotConf
from pyconsul.agent.state.results import WriteResult
from pyconsul.agent.state.sessions import SESSION_TTL_MIN, SESSION_TTL_MULTIPLIER
from pyconsul.agent.state.tables import Tables
from pyconsul.agent.state.tombstone_gc import TombstoneGC

log = logging.getLogger("agent.server")

NO_LEADER_LOG_INTERVAL = 15.0
LEADER_LOOP_INTERVAL = 1.0
# A new leader waits autopilot's server_stabilization_time before it calls a Raft server with no LAN member at
# all "stale" (its LAN view may still be filling), and before it promotes anyone (its health view is new).
# The earliest a session created now can expire (2 x the 10 s minimum TTL), less a margin for the time
# between the leader stamping `now` into the command and the entry being applied.
MIN_NEW_SESSION_DEADLINE = SESSION_TTL_MULTIPLIER * SESSION_TTL_MIN - 1.0


class LeaderRaft(Protocol):
    """The part of agent.raft.node.RaftNode the leader duties use."""

    @property
    def is_leader(self) -> bool: ...
    @property
    def leader_id(self) -> str: ...
    def change_config(self, add: Any = None, remove: str | None = None) -> int: ...


class SessionStore(Protocol):
    def expired_sessions(self, now: float) -> list[str]: ...
    def next_session_deadline(self) -> float | None: ...


async def _sleep(timeout: float | None) -> None:
    await asyncio.sleep(LEADER_LOOP_INTERVAL if timeout is None else timeout)


class LeaderDuties:
    """`wait_change(timeout)` returns when the Raft role or leader changed, or after `timeout` seconds
    (None: no limit); ConsulServer.wait_raft_change. The default just sleeps (for tests)."""

    def __init__(self, raft: LeaderRaft, configuration: Callable[[], Configuration], datacenter: str, node_id: str,
                 members: Callable[[], list[Member]], store: Callable[[], SessionStore],
                 write: Callable[[bytes], Awaitable[WriteResult]], force_leave: Callable[[str], object] | None = None,
                 cleanup_dead_servers: bool = True, clock: Callable[[], float] = time.monotonic,
                 wait_change: Callable[[float | None], Awaitable[None]] = _sleep,
                 gc: TombstoneGC | None = None, last_index: Callable[[], int] = lambda: 0,
                 propose_local: Callable[[bytes], Awaitable[WriteResult]] | None = None,
                 wall: Callable[[], float] = time.time, term: Callable[[], int] = lambda: 0,
                 autopilot_config: AutopilotConfig | None = None,
                 server_stats: Callable[[], tuple[float, int, int, list[ServerStats]]] | None = None,
                 autopilot_state: Callable[[], AutopilotConf | None] | None = None) -> None:
        self.raft = raft
        self.configuration = configuration
        self.datacenter = datacenter
        self.node_id = node_id
        self.members = members
        self.store = store
        self.write = write
        self.force_leave = force_leave
        # autopilot's settings from the config file: they seed the replicated state when it has none (at
        # establishment, or after a restore of a snapshot without them); `autopilot_config` is what is in force
        self.autopilot_seed = autopilot_config or AutopilotConfig(cleanup_dead_servers=cleanup_dead_servers)
        self.autopilot_state = autopilot_state  # the state's settings (StateStore.autopilot_config); None in tests
        self._autopilot_tables = Tables()  # stands in for the state without a store (unit tests of the leader)
        # (now, term, last index, one ServerStats per server of the configuration): the leader's view, for health
        self.server_stats = server_stats
        self.health: dict[str, ServerHealth] = {}  # server ID -> health (autopilot.update_health); leader only
        self.health_at = 0.0  # the `now` of server_stats when `health` was computed
        self.clock = clock
        self.wait_change = wait_change
        self._autopilot_warned = ""
        self.reconciled: dict[str, tuple[str, str, bool]] = {}  # member name -> what the catalog has
        self.gc = gc if gc is not None else TombstoneGC()
        self.last_index = last_index
        self.propose_local = propose_local or write  # the reap is proposed here, never forwarded
        self._gc_wake = asyncio.Event()  # set when the GC's next deadline may have moved earlier
        self.reaped = 0  # reaps committed by this server (a stat for tests and operators)
        # Establishing leadership: the catalog has this server and every alive server of the datacenter
        # before the leader takes writes. `established_term` is the Raft term this server established its
        # leadership in; ConsulServer.apply_local lets a write in only when it is the current term (keyed by
        # term, not by a callback: Raft's role may change before the soft-state callback runs), waiting on
        # `establishment_changed`, which is set (and replaced) at every establishment and role change.
        self.term = term
        self.established_term = -1
        self.establishment_changed = asyncio.Event()
        self.wall = wall  # sessions' deadlines are wall-clock times (the leader stamps time.time())
        # more of establishLeadership, run in order after the servers are registered (agent.py wires the ACL
        # setup, agent/acl/leader.py): each gets propose_local (writes not held back by establishment)
        self.establish_hooks: list[Callable[[Callable[[bytes], Awaitable[WriteResult]]], Awaitable[None]]] = []
        self._session_due = math.inf  # when session_expiry looks next (wall clock)
        self._session_stale = True  # recompute the next deadline from the store
        self._session_wake = asyncio.Event()

    def leadership_changed(self) -> None:
        """The Raft role or leader changed (synchronous): wake writes waiting for establishment (they look
        again: a lost leadership sends them on to NotLeader)."""
        self._signal_establishment()
        self._session_stale = True
        self._session_wake.set()

    def _signal_establishment(self) -> None:
        ev, self.establishment_changed = self.establishment_changed, asyncio.Event()
        ev.set()

    def is_established(self) -> bool:
        """This server leads and established its leadership in the current term."""
        return self.raft.is_leader and self.established_term == self.term()

    async def run(self) -> None:
        was_leader = False
        leader_since = 0.0
        led_term = -1
        while True:
            if not self.raft.is_leader:
                if was_leader:
                    self.set_gc_leader(False)
                was_leader = False
                await self.wait_change(None)
                continue
            if not was_leader or led_term != self.term():
                self.reconciled.clear()  # a new leader re-checks everything once
                self.health = {}  # ... and watches every server for a whole stabilization time again
                was_leader = True
                leader_since = self.clock()
                self.set_gc_leader(True)
                led_term = self.term()
            try:
                if self.established_term != led_term:
                    await self.establish(led_term)
                stabilized = self.clock() - leader_since >= self.autopilot_config.server_stabilization_time
                await self.one_pass(stabilized)
            except PyconsulError as exc:
                log.debug("leader loop: %s", exc)
            except TimeoutError:  # a write that did not commit in time (a lost quorum): next pass
                log.warning("leader loop: a write timed out; retrying on the next pass")
            await self.wait_change(LEADER_LOOP_INTERVAL)

    async def establish(self, term: int) -> None:
        """Consul's establishLeadership + the servers' part of its first reconcile: register this server
        and every alive server of the datacenter (node, address, service consul, serfHealth passing), then
        let writes in. A registration that fails does not hold writes back: they wait at most
        RPC_HOLD_TIMEOUT anyway, and the next pass retries it."""
        try:
            mine = [m for m in self.members() if m.status == MemberStatus.ALIVE and m.tags.get("role") == "consul"
                    and m.tags.get("dc", self.datacenter) == self.datacenter]
            mine.sort(key=lambda m: m.tags.get("id") != self.node_id)  # this server first
            for m in mine:
                await self._register(m)
            try:
                await self.seed_autopilot_config()
            except PyconsulError as exc:  # the next pass retries
                log.warning("establishing leadership: autopilot settings: %s", exc)
            for hook in self.establish_hooks:
                try:
                    await hook(self.propose_local)
                except PyconsulError as exc:  # the next leader (or the hook's own loop) retries
                    log.warning("establishing leadership: %s", exc)
            restoring = getattr(self.store(), "restoring", None)  # (the state store's; not every test fake's)
            if restoring is not None and restoring():  # earlier terms are all applied once a write of ours is
                # a restore in pieces its leader did not finish: end it, so snapshots resume (state/restore.py)
                await self.propose_local(c.encode(restore.abort()))
        finally:
            if self.raft.is_leader and self.term() == term:
                self.established_term = term
            self._signal_establishment()

    async def one_pass(self, stable: bool) -> None:
        await self.seed_autopilot_config()
        self.autopilot(stable)
        await self.reconcile_members()

    # ------------------------------------------------------------ session expiry

    def sessions_changed(self) -> None:
        """An applied entry changed the sessions table (synchronous). A new TTL session expires no sooner
        than MIN_NEW_SESSION_DEADLINE from now: look again then, unless we look earlier anyway."""
        if not self.raft.is_leader:
            return
        candidate = self.wall() + MIN_NEW_SESSION_DEADLINE
        if candidate < self._session_due:
            self._session_due = candidate  # re-arm the sleep; the store is scanned only then
            self._session_wake.set()

    async def session_expiry(self) -> None:
        """As leader, destroy each TTL session when its deadline passes; sleep until the next one."""
        while True:
            self._session_wake.clear()
            if not self.raft.is_leader:
                self._session_due, self._session_stale = math.inf, True
                await self._session_wake.wait()  # set at the next role change
                continue
            now = self.wall()
            if self._session_stale or self._session_due <= now:
                self._session_due = await self._expire_sessions(now)
                self._session_stale = False
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self._session_due - now, 24 * 3600.0)):
                    await self._session_wake.wait()

    async def _expire_sessions(self, now: float) -> float:
        """Destroy the sessions expired at `now`; the next time to look (wall clock)."""
        store = self.store()
        try:
            for sid in store.expired_sessions(now):
                log.info("session %s expired: destroying it", sid)
                await self.write(c.encode(c.SessionDestroy(sid, now=now)))
        except (PyconsulError, TimeoutError) as exc:  # lost leadership or quorum: try again shortly
            log.debug("session expiry: %s", exc)
            return now + LEADER_LOOP_INTERVAL
        nxt = self.store().next_session_deadline()
        return math.inf if nxt is None else nxt

    # ------------------------------------------------------------ tombstone GC

    def set_gc_leader(self, leader: bool) -> None:
        """Leadership gained: enable the GC and hint the last log index (Consul's establishLeadership),
        so the predecessor's tombstones are reaped no earlier than ttl from now. Lost: disable it."""
        self.gc.set_enabled(leader)
        if leader:
            self.gc.hint(self.last_index(), self.clock())
        self._gc_wake.set()

    def tombstones_changed(self, index: int) -> None:
        """An applied entry at `index` left tombstones (a delete, delete-tree, txn delete or restore).
        Synchronous; a no-op unless this server leads."""
        if not self.gc.enabled:
            return
        before = self.gc.next_deadline()
        self.gc.hint(index, self.clock())
        if self.gc.next_deadline() < before:
            self._gc_wake.set()

    async def tombstone_reaper(self) -> None:
        """Sleep until the GC's next deadline (or a hint that moves it), then propose the reap."""
        while True:
            now = self.clock()
            deadline = self.gc.next_deadline()
            if deadline <= now:
                index = self.gc.expired(now)
                if index and self.raft.is_leader:
                    await self._reap(index)
                continue
            self._gc_wake.clear()
            if deadline == math.inf:
                await self._gc_wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - now):
                        await self._gc_wake.wait()

    async def _reap(self, index: int) -> None:
        try:
            await self.propose_local(c.encode(c.TombstoneReap(index)))
        except (PyconsulError, TimeoutError) as exc:  # lost leadership: the next leader reaps them
            log.warning("Failed to reap tombstones up to %d: %s", index, exc)
            self.tombstones_changed(index)  # still leading (a timeout): try again a ttl later
        else:
            self.reaped += 1
            log.debug("reaped tombstones up to index %d", index)

    # ------------------------------------------------------------ membership

    def on_lan_event(self, e: MemberEvent) -> None:
        """As leader, remove a server that left (or was reaped) from the Raft configuration at once."""
        if not self.raft.is_leader or e.kind not in ("member-leave", "member-reap"):
            return
        s = bootstrap.server_of(e.member, self.datacenter)
        if s is None or s.id == self.node_id or self.configuration().get(s.id) is None:
            return
        log.info("removing server %s from the Raft configuration: it %s", e.member.name, e.kind.split("-")[1])
        with contextlib.suppress(Exception):
            self.raft.change_config(remove=s.id)

    def refresh_health(self) -> dict[str, ServerHealth]:
        """Recompute every server's health from the leader's view (server_stats); the last result if there is
        no view (not wired, or not the leader)."""
        if self.server_stats is None or not self.raft.is_leader:
            return self.health
        now, term, last_index, stats = self.server_stats()
        self.health = autopilot.update_health(self.health, stats, term, last_index, now, self.autopilot_config)
        self.health_at = now
        return self.health

    def autopilot(self, stable: bool) -> None:
        """Add joined servers (as non-voters), remove left ones, promote stable non-voters, clean up dead ones
        (autopilot.py); one Raft configuration change per pass."""
        conf = self.configuration()
        if not conf.servers:
            return
        cfg = self.autopilot_config
        self.refresh_health()
        p = autopilot.plan(conf, self.members(), self.datacenter, self.node_id, cfg.cleanup_dead_servers)
        if p.warning and stable and p.warning != self._autopilot_warned:
            log.warning("autopilot: %s", p.warning)  # once per distinct situation, not every pass
            self._autopilot_warned = p.warning
        elif not p.warning:
            self._autopilot_warned = ""
        for name in p.force_leave:
            log.info("autopilot: attempting removal of failed server node %s", name)
            if self.force_leave is not None:
                self.force_leave(name)
        change: dict[str, Any] | None = None
        promote = autopilot.promotion(conf, self.health, self.health_at, cfg) if self.server_stats else None
        if p.add is not None:
            log.info("Adding server %s to the Raft configuration as a non-voter", p.add.address)
            change = {"add": p.add}
        elif p.remove_left:
            log.info("removing server %s from the Raft configuration: it left", p.remove_left[0])
            change = {"remove": p.remove_left[0]}
        elif promote is not None:
            log.info("autopilot: Promoting server to voter: id=%s address=%s", promote.id, promote.address)
            change = {"add": promote}
        elif p.remove_stale and stable:
            log.info("autopilot: removing stale Raft server %s (no LAN member)", p.remove_stale[0])
            change = {"remove": p.remove_stale[0]}
        if change is not None:
            try:
                self.raft.change_config(**change)
            except Exception as exc:  # a change in flight: try again on the next pass
                log.debug("autopilot: configuration change postponed: %s", exc)

    def health_json(self) -> dict[str, Any]:
        """GET /v1/operator/autopilot/health (Consul 1.7's OperatorHealthReply), from a fresh look."""
        health = self.refresh_health()
        wall, now = self.wall(), self.health_at
        servers = []
        for h in sorted(health.values(), key=lambda h: (not h.stats.leader, h.stats.name, h.stats.id)):
            s = h.stats
            since = datetime.datetime.fromtimestamp(wall - max(0.0, now - h.stable_since), datetime.UTC)
            servers.append({
                "ID": s.id, "Name": s.name, "Address": s.address, "SerfStatus": s.serf_status,
                "Version": s.version, "Leader": s.leader,
                "LastContact": format_duration(s.last_contact) if math.isfinite(s.last_contact) else "-1ns",
                "LastTerm": s.last_term, "LastIndex": s.last_index, "Healthy": h.healthy, "Voter": s.voter,
                "StableSince": since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        return {"Healthy": bool(servers) and all(h.healthy for h in health.values()),
                "FailureTolerance": autopilot.failure_tolerance(health.values()), "Servers": servers}

    # ------------------------------------------------------------ autopilot's settings (Raft state)

    def _stored_autopilot(self) -> AutopilotConf | None:
        if self.autopilot_state is None:
            return autopilot_state.get(self._autopilot_tables)
        return self.autopilot_state()

    @property
    def autopilot_config(self) -> AutopilotConfig:
        """The settings in force: the replicated state's (state/autopilot.py), else the config file's."""
        stored = self._stored_autopilot()
        return autopilot.from_state(stored) if stored is not None else self.autopilot_seed

    async def _autopilot_write(self, cmd: c.AutopilotSet) -> bool:
        if self.autopilot_state is None:  # no store (unit tests of the leader alone): the same rules, in memory
            t = self._autopilot_tables
            return autopilot_state.apply(t, max(self.last_index(), t.max_index(autopilot_state.INDEX)) + 1, cmd)
        return await self.propose_local(c.encode(cmd)) is True  # (a refusal raises CommandRejected)

    async def seed_autopilot_config(self) -> None:
        """Put the config file's settings into the state if it has none (Consul's getOrCreateAutopilotConfig, at
        establishment and whenever autopilot finds none); a no-op entry if another write got there first."""
        if self._stored_autopilot() is None and self.raft.is_leader:
            log.info("autopilot: storing the configured settings in the state: %s", self.autopilot_seed.to_json())
            await self._autopilot_write(c.AutopilotSet(autopilot.to_state(self.autopilot_seed), seed=True))

    async def set_autopilot_config(self, new: AutopilotConfig, cas: int | None) -> bool:
        """PUT /v1/operator/autopilot/configuration on the leader, through Raft: False if ?cas= does not match
        the stored settings' ModifyIndex (or there are none)."""
        done = await self._autopilot_write(c.AutopilotSet(autopilot.to_state(new), cas=cas is not None,
                                                          index=cas or 0))
        if done:
            log.info("autopilot: configuration updated: %s", self.autopilot_config.to_json())
        return done

    async def reconcile_members(self) -> None:
        done = self.reconciled
        members = {m.name: m for m in self.members()}
        for m in members.values():
            if m.tags.get("dc", self.datacenter) != self.datacenter:
                continue
            if m.status in (MemberStatus.ALIVE, MemberStatus.FAILED):
                await self._register(m)
            elif m.status == MemberStatus.LEFT and m.name in done:
                await self.write(c.encode(c.Deregister(m.name, now=time.time())))
                done.pop(m.name, None)
        for name in [n for n in done if n not in members]:  # reaped
            await self.write(c.encode(c.Deregister(name, now=time.time())))
            done.pop(name, None)

    async def _register(self, m: Member) -> None:
        """Register an alive or failed LAN member with its serfHealth check, unless the catalog already
        has it so (`reconciled`); a rejected registration is retried on the next pass."""
        health = "passing" if m.status == MemberStatus.ALIVE else "critical"
        is_server = m.tags.get("role") == "consul"
        key = (m.addr, health, is_server)
        if self.reconciled.get(m.name) == key:
            return
        service = c.ServiceDef("consul", "consul", (), "", {}, int(m.tags.get("port", "8300"))) \
            if is_server else None
        output = "Agent alive and reachable" if health == "passing" else "Agent not live or unreachable"
        check = c.CheckDef("serfHealth", "Serf Health Status", health, m.name, "", "", output)
        cmd = c.Register(m.name, m.addr, m.tags.get("id", ""), self.datacenter,
                         {"lan": m.addr, "wan": m.addr}, {"consul-network-segment": ""}, service, (check,),
                         now=time.time())
        try:
            await self.write(c.encode(cmd))
        except CommandRejected as exc:  # e.g. a node name taken by another ID: retried next pass
            log.debug("reconcile of %s rejected: %s", m.name, exc)
        else:
            self.reconciled[m.name] = key

    async def no_leader_logger(self) -> None:
        """Log Consul's "No cluster leader" error every NO_LEADER_LOG_INTERVAL while no leader is known."""
        due: float | None = None
        while True:
            if self.raft.leader_id:
                due = None
                await self.wait_change(None)
                continue
            now = self.clock()
            if due is None:
                due = now + NO_LEADER_LOG_INTERVAL
            elif now >= due:
                log.error("Coordinate update error: error=\"No cluster leader\"")
                due = now + NO_LEADER_LOG_INTERVAL
            await self.wait_change(due - now)
