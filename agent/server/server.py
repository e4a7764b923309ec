"""A Consul server: Raft (node.py) + the state store + bootstrap, forwarding and autopilot.

Writes: the leader proposes; a follower forwards to the leader over server RPC. Reads run a
named query (queries.py) against the local store after the barrier the consistency mode asks
for: `stale` none; `default` the leader's lease (else forwarded to the leader); `consistent`
a ReadIndex round confirmed by a quorum. While no leader is known, requests wait a bounded time
(Consul's RPCHoldTimeout) and then fail with "No cluster leader" -- they never hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, RaftConfig
from agent.errors import BadRequest, CommandRejected, Internal, LeadershipLost, NoLeader, NotLeader, PyconsulError
from agent.gossip.serf import Member, MemberEvent, MemberStatus
from agent.raft.messages import Configuration, Role, Server, SoftState
from agent.raft.node import RaftNode
from agent.raft.storage import RaftStorage
from agent.raft.transport import Transport
from agent.server import autopilot, bootstrap, queries
from agent.server.common import REQUEST_DC, RPC_HOLD_TIMEOUT, ReadMeta, pick_dc_server, remote_dc
from agent.state import commands as c
from agent.state.results import StateError, WriteResult, reply_from_wire, reply_to_wire
from agent.state.store import StateStore

log = logging.getLogger("agent.server")

NO_LEADER_LOG_INTERVAL = 15.0
LEADER_LOOP_INTERVAL = 1.0
SERVER_STABILIZATION = 10.0  # Consul autopilot's server_stabilization_time: a new leader waits this
# long before it calls a Raft server with no LAN member at all "stale" (its LAN view may still be filling)


class _Retry(Exception):
    """A bootstrap check could not be completed now; try again on the next pass."""


def answer(result: Any) -> WriteResult:
    """What the waiting writer makes of its entry's typed result: a rejection raises CommandRejected
    (it changed nothing); anything else is the write's result. Only the writer's server does this;
    every other server just applies the entry."""
    if isinstance(result, StateError):
        raise CommandRejected(result.message)
    out: WriteResult = result
    return out


class StoreFSM:
    """Adapts StateStore to the Raft driver's FSM protocol (restore swaps the store). apply returns
    the store's typed result (StateError, TxnResult, Session, bool, str, None) untouched."""

    def __init__(self, on_apply: Callable[[int], None]) -> None:
        self.store = StateStore()
        self.on_apply = on_apply

    def apply(self, index: int, data: bytes) -> Any:
        result = self.store.apply(index, data)
        self.on_apply(index)
        return result

    def snapshot(self) -> bytes:
        return self.store.snapshot()

    def restore(self, data: bytes) -> None:
        self.store = StateStore.restore(data)
        self.on_apply(self.store.max_index())


class ConsulServer:
    def __init__(self, cfg: AgentConfig, node_id: str, data_dir: Path, members: Callable[[], list[Member]],
                 raft_config: RaftConfig | None = None, force_leave: Callable[[str], object] | None = None,
                 wan_members: Callable[[], list[Member]] | None = None) -> None:
        self.cfg = cfg
        self.wan_members = wan_members or (lambda: [])
        self._rng = random.Random()
        self.force_leave = force_leave
        self.node_id = node_id
        self.data_dir = data_dir
        self.members = members
        self.raft_config = raft_config or cfg.raft_config()
        self.changed = asyncio.Condition()
        self.fsm = StoreFSM(self._on_apply)
        rpc_host, rpc_port = cfg.rpc_advertise()
        self.address = f"{rpc_host}:{rpc_port}"
        self.transport = Transport(node_id, cfg.datacenter, (cfg.bind_addr, cfg.ports.server),
                                   self._deliver, self._on_request, self._peer_lost)
        self.raft: RaftNode | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._leader_event = asyncio.Event()
        self._last_no_leader_log = 0.0
        self._autopilot_warned = ""

    @property
    def store(self) -> StateStore:
        return self.fsm.store

    def _spawn(self, coro: Any) -> None:
        t: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        storage = RaftStorage.open(self.data_dir / "raft")
        self.raft = RaftNode(self.node_id, self.raft_config, storage, self.fsm, self.transport,
                             rng=random.Random(), on_leader_change=self._leader_changed)
        await self.transport.start()
        await self.raft.start()
        log.info("raft: initial configuration: servers=%s",
                 [s.id for s in self.raft.core.configuration.servers] if self.raft.core else [])
        self._spawn(self._bootstrap_loop())
        self._spawn(self._no_leader_logger())
        self._spawn(self._leader_loop())

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self.raft is not None:
            await self.raft.stop()
        await self.transport.stop()

    def _peer_lost(self, server_id: str) -> None:
        if self.raft is not None:
            self.raft.peer_lost(server_id)

    def _deliver(self, msg: Any) -> None:
        if self.raft is not None:
            self.raft.deliver(msg)

    def _on_apply(self, index: int) -> None:
        async def notify() -> None:
            async with self.changed:
                self.changed.notify_all()
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(notify())

    def _leader_changed(self, ss: SoftState) -> None:
        if ss.leader:
            self._leader_event.set()
        else:
            self._leader_event.clear()

    # ------------------------------------------------------------ bootstrap and autopilot

    def on_lan_event(self, e: MemberEvent) -> None:
        """LAN membership changed: maybe bootstrap; as leader, remove servers that left."""
        raft = self.raft
        if raft is not None and e.member.status == MemberStatus.ALIVE:
            s = bootstrap.server_of(e.member, self.cfg.datacenter)
            if s is not None:
                raft.learn_address(s.id, s.address)
        if raft is None or not raft.is_leader or e.kind not in ("member-leave", "member-reap"):
            return
        s = bootstrap.server_of(e.member, self.cfg.datacenter)
        if s is None or s.id == self.node_id or raft.core is None or raft.core.configuration.get(s.id) is None:
            return
        log.info("removing server %s from the Raft configuration: it %s", e.member.name, e.kind.split("-")[1])
        with contextlib.suppress(Exception):
            raft.change_config(remove=s.id)

    async def _bootstrap_loop(self) -> None:
        assert self.raft is not None
        last_reason = ""
        enabled = bool(self.cfg.bootstrap_expect or self.cfg.bootstrap or self.cfg.dev)
        while enabled and not self.raft.bootstrapped:
            for m in self.members():
                s = server_from_member(m, self.cfg.datacenter)
                if s is not None:
                    self.raft.learn_address(s.id, s.address)
            d = bootstrap.decide(self.members(), self.cfg.datacenter, self.cfg.bootstrap_expect,
                                 self.cfg.bootstrap or self.cfg.dev, self.node_id)
            if d.configuration is not None:
                try:
                    exists = await self._peers_exist(d.configuration)
                except _Retry:
                    exists = None
                if exists:
                    log.info("Existing Raft peers reported by another server, disabling bootstrap mode; "
                             "waiting for the leader to add this server")
                    return
                if exists is False:
                    log.info("Found expected number of peers, attempting bootstrap: peers=%s",
                             ",".join(s.address for s in d.configuration.servers))
                    self.raft.bootstrap(d.configuration)
                    return
            elif d.reason != last_reason:
                log.debug("not bootstrapping yet: %s", d.reason)
                last_reason = d.reason
            await asyncio.sleep(0.2)

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

    async def _leader_loop(self) -> None:
        """Leader duties (Consul leader.go): reconcile LAN members into the catalog with a
        serfHealth check, and destroy expired sessions. Writes go through Raft like any other."""
        reconciled: dict[str, tuple[str, str, bool]] = {}
        was_leader = False
        leader_since = 0.0
        while True:
            await asyncio.sleep(LEADER_LOOP_INTERVAL)
            raft = self.raft
            if raft is None or not raft.is_leader:
                was_leader = False
                continue
            if not was_leader:
                reconciled.clear()  # a new leader re-checks everything once
                was_leader = True
                leader_since = time.monotonic()
            try:
                self._autopilot(raft, time.monotonic() - leader_since >= SERVER_STABILIZATION)
                await self._reconcile_members(reconciled)
                now = time.time()
                for sid in self.store.expired_sessions(now):
                    log.info("session %s expired: destroying it", sid)
                    await self.write(c.encode(c.SessionDestroy(sid, now=now)))
            except PyconsulError as exc:
                log.debug("leader loop: %s", exc)

    def _autopilot(self, raft: RaftNode, stable: bool) -> None:
        """Add joined servers, remove left ones, clean up dead ones (autopilot.py); one Raft
        configuration change per pass."""
        if raft.core is None:
            return
        p = autopilot.plan(raft.core.configuration, self.members(), self.cfg.datacenter, self.node_id,
                           self.cfg.autopilot_cleanup_dead_servers)
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
        if p.add is not None:
            log.info("Adding server %s to the Raft configuration", p.add.address)
            change = {"add": p.add}
        elif p.remove_left:
            log.info("removing server %s from the Raft configuration: it left", p.remove_left[0])
            change = {"remove": p.remove_left[0]}
        elif p.remove_stale and stable:
            log.info("autopilot: removing stale Raft server %s (no LAN member)", p.remove_stale[0])
            change = {"remove": p.remove_stale[0]}
        if change is not None:
            try:
                raft.change_config(**change)
            except Exception as exc:  # a change in flight: try again on the next pass
                log.debug("autopilot: configuration change postponed: %s", exc)

    async def _reconcile_members(self, done: dict[str, tuple[str, str, bool]]) -> None:
        members = {m.name: m for m in self.members()}
        for m in members.values():
            if m.tags.get("dc", self.cfg.datacenter) != self.cfg.datacenter:
                continue
            if m.status in (MemberStatus.ALIVE, MemberStatus.FAILED):
                health = "passing" if m.status == MemberStatus.ALIVE else "critical"
                is_server = m.tags.get("role") == "consul"
                key = (m.addr, health, is_server)
                if done.get(m.name) == key:
                    continue
                service = c.ServiceDef("consul", "consul", (), "", {}, int(m.tags.get("port", "8300"))) \
                    if is_server else None
                output = "Agent alive and reachable" if health == "passing" else "Agent not live or unreachable"
                check = c.CheckDef("serfHealth", "Serf Health Status", health, m.name, "", "", output)
                cmd = c.Register(m.name, m.addr, m.tags.get("id", ""), self.cfg.datacenter,
                                 {"lan": m.addr, "wan": m.addr}, {"consul-network-segment": ""}, service, (check,),
                                 now=time.time())
                try:
                    await self.write(c.encode(cmd))
                except CommandRejected as exc:  # e.g. a node name taken by another ID: retried next pass
                    log.debug("reconcile of %s rejected: %s", m.name, exc)
                else:
                    done[m.name] = key
            elif m.status == MemberStatus.LEFT and m.name in done:
                await self.write(c.encode(c.Deregister(m.name, now=time.time())))
                done.pop(m.name, None)
        for name in [n for n in done if n not in members]:  # reaped
            await self.write(c.encode(c.Deregister(name, now=time.time())))
            done.pop(name, None)

    async def _no_leader_logger(self) -> None:
        while True:
            await asyncio.sleep(NO_LEADER_LOG_INTERVAL)
            if self.raft is not None and not self.raft.leader_id:
                log.error("Coordinate update error: error=\"No cluster leader\"")

    # ------------------------------------------------------------ writes and reads

    async def _wait_leader(self) -> RaftNode:
        assert self.raft is not None
        if not self.raft.leader_id:
            try:
                await asyncio.wait_for(self._leader_event.wait(), RPC_HOLD_TIMEOUT)
            except TimeoutError:
                raise NoLeader() from None
        return self.raft

    def _dc_server(self) -> str:
        """For a request aimed at another datacenter (`?dc=`): one of its servers, else ""."""
        dc = remote_dc(self.cfg.datacenter)
        return pick_dc_server(self.wan_members, dc, self._rng) if dc else ""

    async def write(self, data: bytes) -> WriteResult:
        """Commit a command through Raft (forwarding to the leader, or to another datacenter for
        `?dc=`); the command's typed result. Raises CommandRejected if the state machine refused it,
        NoLeader if no leader took it within RPC_HOLD_TIMEOUT."""
        remote = self._dc_server()
        if remote:
            return reply_from_wire(
                await self.transport.request(remote, "apply_forward", data, timeout=RPC_HOLD_TIMEOUT * 2))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RPC_HOLD_TIMEOUT
        while True:
            raft = await self._wait_leader()
            try:
                if raft.is_leader:
                    return answer(await raft.apply(data))
                addr = raft.leader_address()
                if not addr:
                    raise NotLeader(raft.leader_id)
                return reply_from_wire(await self.transport.request(addr, "apply", data, timeout=RPC_HOLD_TIMEOUT))
            except (NotLeader, NoLeader, LeadershipLost):  # the write did not happen: try the next leader
                if loop.time() >= deadline:
                    raise NoLeader() from None
                await asyncio.sleep(0.05)

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, ReadMeta]:
        """Run query `name` under consistency `mode` (default | consistent | stale); with index > 0,
        block first until the query's index passes it or `wait` seconds elapse."""
        assert self.raft is not None
        if name not in queries.QUERIES:
            raise BadRequest(f"unknown query {name!r}")
        remote = self._dc_server()
        if remote:
            res = await self.transport.request(
                remote, "read_forward", {"name": name, "args": args, "mode": mode, "index": index, "wait": wait},
                timeout=RPC_HOLD_TIMEOUT * 2 + wait)
            return res["value"], ReadMeta(res["index"], bool(res.get("known_leader", True)),
                                          int(res.get("last_contact", 0)))
        raft = self.raft
        if self.cfg.debug_stale_reads and mode == "consistent":
            mode = "stale"  # the deliberate bug of -debug-stale-reads (chaos checker self-test)
        if mode != "stale":
            raft = await self._wait_leader()
            if not raft.is_leader:
                addr = raft.leader_address()
                if not addr:
                    raise NoLeader()
                res = await self.transport.request(
                    addr, "read", {"name": name, "args": args, "mode": mode, "index": index, "wait": wait},
                    timeout=RPC_HOLD_TIMEOUT + wait)
                return res["value"], ReadMeta(res["index"], True, int(raft.ms_since_leader_contact()))
        if index:
            await self.wait_for_change(index, name, args, wait)
        if mode != "stale" and (mode == "consistent" or not raft.lease_ok()):
            await raft.read_index()
        value = queries.run(self.store, name, args)
        if name == "snapshot" and raft.core is not None:
            value["term"] = raft.core.term
        return value, self._meta(queries.index_of(self.store, name, args))

    def _meta(self, index: int) -> ReadMeta:
        raft = self.raft
        known = bool(raft and raft.leader_id)
        contact = 0 if raft is None or raft.is_leader else int(raft.ms_since_leader_contact())
        return ReadMeta(index, known, contact)

    async def wait_for_change(self, index: int, name: str, args: dict[str, Any], wait: float) -> None:
        """Blocking query: return when the query's index passes `index`, or after `wait`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait

        def passed() -> bool:
            return queries.index_of(self.store, name, args) > index

        async with self.changed:
            while not passed():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), remaining)

    async def _on_request(self, method: str, args: Any) -> Any:
        raft = self.raft
        if raft is None:
            raise NoLeader()
        if method == "apply":
            if not raft.is_leader:
                raise NotLeader(raft.leader_id)
            if not isinstance(args, bytes):
                raise BadRequest("apply takes bytes")
            return reply_to_wire(answer(await raft.apply(args)))
        if method == "read":
            if not isinstance(args, dict):
                raise BadRequest("read takes a map")
            if not raft.is_leader:
                raise NotLeader(raft.leader_id)
            value, meta = await self.read(str(args["name"]), dict(args["args"]), str(args["mode"]),
                                          int(args.get("index", 0)), float(args.get("wait", 0.0)))
            return {"value": value, "index": meta.index}
        if method == "apply_forward":  # from a client agent: we forward to the leader if needed
            if not isinstance(args, bytes):
                raise BadRequest("apply_forward takes bytes")
            return reply_to_wire(await self.write(args))
        if method == "read_forward":
            if not isinstance(args, dict):
                raise BadRequest("read_forward takes a map")
            value, meta = await self.read(str(args["name"]), dict(args["args"]), str(args["mode"]),
                                          int(args.get("index", 0)), float(args.get("wait", 0.0)))
            return {"value": value, "index": meta.index, "known_leader": meta.known_leader,
                    "last_contact": meta.last_contact_ms}
        if method == "status":
            if not isinstance(args, dict):
                raise BadRequest("status takes a map")
            return await self.status(str(args.get("what")), args.get("args"))
        if method == "dc":  # from a client agent: {"dc", "method", "args"} for another datacenter
            if not isinstance(args, dict) or args.get("method") not in ("apply_forward", "read_forward", "status"):
                raise BadRequest("dc takes a map with a forwardable method")
            REQUEST_DC.set(str(args.get("dc", "")))
            return await self._on_request(str(args["method"]), args.get("args"))
        if method == "remove_self":
            if not raft.is_leader:
                raise NotLeader(raft.leader_id)
            raft.change_config(remove=str(args))
            return True
        raise BadRequest(f"unknown rpc method {method!r}")

    # ------------------------------------------------------------ operator views

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        """/v1/status/* and /v1/operator/raft/* (answered here, or by the leader for remove_peer)."""
        remote = self._dc_server()
        if remote:
            return await self.transport.request(remote, "status", {"what": what, "args": args or {}},
                                                timeout=RPC_HOLD_TIMEOUT * 2)
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
                return await self.transport.request(raft.leader_address(), "status",
                                                    {"what": what, "args": a}, timeout=RPC_HOLD_TIMEOUT)
            self.remove_peer(str(a.get("id", "")), str(a.get("address", "")))
            return True
        raise BadRequest(f"unknown status {what!r}")

    def leader_address(self) -> str:
        return self.raft.leader_address() if self.raft else ""

    def configuration(self) -> Configuration:
        if self.raft is None or self.raft.core is None:
            return Configuration()
        return self.raft.core.configuration

    def raft_configuration_json(self) -> dict[str, Any]:
        names = {m.tags.get("id"): m.name for m in self.members()}
        leader = self.raft.leader_id if self.raft else ""
        conf = self.configuration()
        return {
            "Servers": [
                {"ID": s.id, "Node": names.get(s.id, ""), "Address": s.address, "Leader": s.id == leader,
                 "ProtocolVersion": "3", "Voter": s.suffrage == 0}
                for s in conf.servers
            ],
            "Index": self.raft.core.commit_index if self.raft and self.raft.core else 0,
        }

    def remove_peer(self, server_id: str = "", address: str = "") -> None:
        assert self.raft is not None
        if not self.raft.is_leader:
            raise NotLeader(self.raft.leader_id)
        for s in self.configuration().servers:
            if (server_id and s.id == server_id) or (address and s.address == address):
                self.raft.change_config(remove=s.id)
                return
        # Consul answers this with a 500, not a 404
        raise Internal(f"address {address or server_id!r} was not found in the Raft configuration")

    async def leave(self) -> None:
        """A leaving server hands leadership over and asks to be removed from Raft."""
        raft = self.raft
        if raft is None or raft.core is None or len(raft.core.configuration.servers) <= 1:
            return
        if raft.is_leader:
            others = [s.id for s in raft.core.configuration.servers if s.id != self.node_id]
            with contextlib.suppress(Exception):
                raft.transfer_leadership(others[0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while loop.time() < deadline:
            addr = raft.leader_address()
            if addr and not raft.is_leader:
                with contextlib.suppress(Exception):
                    await self.transport.request(addr, "remove_self", self.node_id, timeout=3.0)
                    return
            await asyncio.sleep(0.1)

    def role(self) -> Role:
        return self.raft.core.role if self.raft and self.raft.core else Role.FOLLOWER


def server_from_member(m: Member, dc: str) -> Server | None:
    if m.status != MemberStatus.ALIVE:
        return None
    return bootstrap.server_of(m, dc)
