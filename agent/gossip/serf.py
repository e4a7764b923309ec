"""serf membership on top of the memberlist core, wire-compatible with HashiCorp serf. Pure.

serf adds to memberlist: member statuses (alive, leaving, left, failed), Lamport clocks that
order join/leave intents, tags carried in node meta, a push/pull user state, reaping of
failed and left members, reconnect attempts, and user events / queries (deduplicated and
re-gossiped; internal `_serf_*` queries go to the shell, which answers keyring queries). What of queries
holds no serf state (their effects, filters, default timeout) is in query.py, as serf's query.go.

Invariant: a member's `status_ltime` only grows; an intent with an LTime not greater than it
is stale and ignored (serf's handleNode*Intent rules).
"""

from __future__ import annotations

import random
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from pyconsul.agent.gossip import codec
from pyconsul.agent.gossip.broadcast import BroadcastQueue
from pyconsul.agent.gossip.codec import DecodeError
from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.coordinate import (
    Client,
    Coordinate,
    InvalidCoordinate,
    decode_ack_payload,
    encode_ack_payload,
)
from pyconsul.agent.gossip.membership import (
    Addr,
    Effect,
    Membership,
    NodeEvent,
    NodeInfo,
    PingComplete,
    PushPullWith,
    SendPacket,
    Stats,
    TcpPing,
    UserMessage,
)
from pyconsul.agent.gossip.messages import (
    QUERY_FLAG_ACK,
    QUERY_FLAG_NO_BROADCAST,
    Ack,
    NodeState,
    Ping,
    PushPull,
    SerfJoin,
    SerfLeave,
    SerfPushPull,
    SerfQuery,
    SerfQueryResponse,
    SerfUserEvent,
    User,
)
from pyconsul.agent.gossip.query import (
    QUERY_TIMEOUT_MULT,
    PendingQuery,
    QueryComplete,
    QueryReceived,
    default_timeout,
    filters_match,
)


class MemberStatus(IntEnum):
    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class SerfConfig:
    reap_interval: float = 15.0  # how often failed/left members are checked for reaping
    reconnect_interval: float = 30.0  # how often we try to rejoin a failed member
    reconnect_timeout: float = 72 * 3600.0  # failed members are reaped after this (Consul: 72h)
    tombstone_timeout: float = 24 * 3600.0  # left members are reaped after this
    recent_intent_timeout: float = 300.0  # intents about unknown nodes are kept this long
    event_buffer: int = 512  # user events remembered for deduplication
    query_buffer: int = 512  # queries remembered for deduplication
    broadcast_timeout: float = 5.0  # how long leave waits for its broadcast
    disable_coordinates: bool = False  # serf DisableCoordinates: no coordinate on acks, none learned
    user_event_size_limit: int = 512  # serf: bytes of an encoded user event message (config default)


USER_EVENT_SANE_LIMIT = 9 * 1024  # serf: name + payload may never exceed this, whatever the config says


@dataclass(slots=True)
class Member:
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: MemberStatus
    vsn: tuple[int, ...] = ()
    status_ltime: int = 0
    leave_time: float = 0.0

    def snapshot(self) -> Member:
        return Member(self.name, self.addr, self.port, dict(self.tags), self.status, self.vsn, self.status_ltime,
                      self.leave_time)


@dataclass(frozen=True, slots=True)
class MemberEvent:
    kind: Literal["member-join", "member-leave", "member-failed", "member-update", "member-reap"]
    member: Member


@dataclass(frozen=True, slots=True)
class JoinAttempt:
    """Ask the shell to push/pull-join these addresses (serf reconnect)."""

    addrs: tuple[Addr, ...]


@dataclass(frozen=True, slots=True)
class UserEventReceived:
    name: str
    payload: bytes
    ltime: int


SerfEffect = Effect | MemberEvent | JoinAttempt | UserEventReceived | QueryReceived | QueryComplete


@dataclass(frozen=True, slots=True)
class QueryStarted:
    """What `start_query` returns: the key of the pending query, its deadline, and the effects to perform."""

    key: tuple[int, int]
    deadline: float
    effects: list[SerfEffect]


@dataclass(slots=True)
class SerfStats:
    bad_serf_messages: int = 0
    unknown_serf_messages: int = 0
    queries_answered: int = 0
    user_events: int = 0
    counters: dict[str, int] = field(default_factory=dict)


class Serf:
    def __init__(
        self,
        gossip: GossipConfig,
        name: str,
        addr: str,
        port: int,
        tags: dict[str, str],
        rng: random.Random,
        now: float,
        *,
        config: SerfConfig | None = None,
        encryption_overhead: int = 0,
    ) -> None:
        self.cfg = config or SerfConfig()
        self.name = name
        self.rng = rng
        self.tags = dict(tags)
        self.clock = 1
        self.event_clock = 1
        self.query_clock = 1
        self.members: dict[str, Member] = {}
        self.intents: dict[str, tuple[Literal["join", "leave"], int, float]] = {}
        self.broadcasts = BroadcastQueue(gossip.retransmit_mult)
        self.event_broadcasts = BroadcastQueue(gossip.retransmit_mult)
        self.seen_events: OrderedDict[tuple[int, str, bytes], None] = OrderedDict()
        self.seen_queries: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.pending: dict[tuple[int, int], PendingQuery] = {}
        self.gossip = gossip
        self.stats = SerfStats()
        self.leaving = False
        self.leave_token: int | None = None
        self.next_reap = now + self.cfg.reap_interval
        self.next_reconnect = now + self.cfg.reconnect_interval
        self.out: list[SerfEffect] = []
        # Vivaldi coordinates (serf's ping delegate): our coordinate rides on our acks, a peer's on its acks
        # to our probes; a separate generator seeded from the name keeps the shared `rng` sequence as it was
        self.coords = Client(rng=random.Random(zlib.crc32(name.encode("utf-8", "surrogateescape"))))
        self.coord_cache: dict[str, Coordinate] = {name: self.coords.coord}  # serf seeds it with its own
        self._ack_payload = b""
        self.ml = Membership(
            gossip, name, addr, port, codec.encode_tags(tags), rng, now,
            encryption_overhead=encryption_overhead, user_broadcasts=self._user_broadcasts,
            user_broadcasts_pending=lambda: len(self.broadcasts) > 0 or len(self.event_broadcasts) > 0,
            ack_payload=None if self.cfg.disable_coordinates else self._coord_payload,
        )
        self._absorb(self.ml.initial_effects(), now)

    def initial_effects(self) -> list[SerfEffect]:
        """What construction produced (our own member-join): the shell performs it once, first."""
        return self._take()

    # ------------------------------------------------------------ queries

    def member_list(self) -> list[Member]:
        return [m.snapshot() for m in sorted(self.members.values(), key=lambda m: m.name)]

    def local_member(self) -> Member:
        return self.members[self.name].snapshot()

    def num_alive(self) -> int:
        return sum(1 for m in self.members.values() if m.status == MemberStatus.ALIVE)

    def next_deadline(self) -> float:
        return min(self.ml.next_deadline(), self.next_reap, self.next_reconnect)

    def leave_done(self) -> bool:
        return self.ml.leave_done()

    def intent_broadcast_done(self) -> bool:
        return self.leave_token is None or self.leave_token in self.broadcasts.finished

    def memberlist_stats(self) -> Stats:
        """The memberlist layer's counters (read-only for the shell)."""
        return self.ml.stats

    def health_score(self) -> int:
        """Lifeguard local health (0 = healthy); probes wait up to (score + 1) x probe_interval."""
        return self.ml.awareness.score

    def stream_ping(self, ping: Ping) -> Ack | None:
        """A ping received over TCP: the ack to write back, or None if it is not for us."""
        return self.ml.stream_ping(ping)

    def coordinate(self) -> Coordinate:
        """Our own network coordinate (serf GetCoordinate)."""
        return self.coords.coord

    def cached_coordinate(self, name: str) -> Coordinate | None:
        """The last coordinate a member sent us on an ack (ours too, once we have updated)."""
        return self.coord_cache.get(name)

    def _coord_payload(self) -> bytes:
        if not self._ack_payload:
            self._ack_payload = encode_ack_payload(self.coords.coord)
        return self._ack_payload

    def _on_ping_complete(self, e: PingComplete) -> None:
        """serf pingDelegate.NotifyPingComplete: learn the peer's coordinate and the RTT; a payload that is
        not a valid coordinate is refused and counted (coords.stats.rejected), never applied."""
        if self.cfg.disable_coordinates:
            return
        try:
            other = decode_ack_payload(e.payload, self.coords.cfg.dimensionality)
        except InvalidCoordinate:
            self.coords.stats.rejected += 1
            return
        try:
            mine = self.coords.update(e.node, other, e.rtt)
        except InvalidCoordinate:
            return
        self._ack_payload = b""
        self.coord_cache[e.node] = other
        self.coord_cache[self.name] = mine

    # ------------------------------------------------------------ inputs from the shell

    def _take(self) -> list[SerfEffect]:
        out, self.out = self.out, []
        return out

    def handle_packet(self, buf: bytes, src: Addr, now: float) -> list[SerfEffect]:
        self._absorb(self.ml.handle_packet(buf, src, now), now)
        return self._take()

    def tick(self, now: float) -> list[SerfEffect]:
        self._absorb(self.ml.tick(now), now)
        if now >= self.next_reap:
            self.next_reap = now + self.cfg.reap_interval
            self._reap(now)
        if now >= self.next_reconnect:
            self.next_reconnect = now + self.cfg.reconnect_interval
            self._reconnect()
        return self._take()

    def tcp_ping_result(self, seq: int, ok: bool, now: float) -> list[SerfEffect]:
        self._absorb(self.ml.tcp_ping_result(seq, ok, now), now)
        return self._take()

    def local_push_pull(self, join: bool) -> PushPull:
        """What we send in a push/pull exchange: memberlist nodes + serf state."""
        pp = SerfPushPull(
            ltime=self.clock,
            status_ltimes={n: m.status_ltime for n, m in self.members.items()},
            left_members=tuple(n for n, m in self.members.items() if m.status == MemberStatus.LEFT),
            event_ltime=self.event_clock,
            events=(),
            query_ltime=self.query_clock,
        )
        return PushPull(join, tuple(self.ml.local_state()), codec.encode_serf(pp))

    def merge_remote(self, pp: PushPull, now: float) -> list[SerfEffect]:
        self._absorb(self.ml.merge_remote_state(pp.nodes, now), now)
        if pp.user_state:
            try:
                msg = codec.decode_serf(pp.user_state)
            except DecodeError:
                self.stats.bad_serf_messages += 1
                return self._take()
            if isinstance(msg, SerfPushPull):
                self._merge_serf_state(msg, now)
        return self._take()

    def joined(self, contacted: int, now: float) -> list[SerfEffect]:
        """After the shell's join contacted >= 1 node: announce our join intent."""
        if contacted > 0:
            self._broadcast_join(self.clock, now)
        return self._take()

    # ------------------------------------------------------------ local operations

    def leave(self, now: float) -> list[SerfEffect]:
        """Graceful leave, step 1: the leave intent. The shell waits for
        `intent_broadcast_done()` (or a timeout), then calls `leave_memberlist`."""
        if self.leaving:
            return []
        self.leaving = True
        msg = SerfLeave(self.clock, self.name)
        self.clock += 1
        self._on_leave_intent(msg, now)
        if any(m.status == MemberStatus.ALIVE for n, m in self.members.items() if n != self.name):
            self.leave_token = 1
            self.broadcasts.queue(codec.encode_serf(msg), notify=self.leave_token)
        return self._take()

    def leave_memberlist(self, now: float) -> list[SerfEffect]:
        self._absorb(self.ml.leave(now), now)
        return self._take()

    def force_leave(self, node: str, prune: bool, now: float) -> tuple[bool, list[SerfEffect]]:
        """Mark a failed member left (serf RemoveFailedNode): (False, []) if the member is unknown,
        else (True, effects)."""
        m = self.members.get(node)
        if m is None:
            return False, []
        msg = SerfLeave(self.clock, node, prune)
        self.clock += 1
        if self._on_leave_intent(msg, now):
            self.broadcasts.queue(codec.encode_serf(msg))
        if prune and m.status in (MemberStatus.LEFT, MemberStatus.FAILED):
            self._erase(m)
        return True, self._take()

    def set_tags(self, tags: dict[str, str], now: float) -> list[SerfEffect]:
        self.tags = dict(tags)
        self._absorb(self.ml.set_meta(codec.encode_tags(tags), now), now)
        return self._take()

    def user_event_error(self, name: str, payload: bytes) -> str:
        """Why serf would refuse this user event ("" if it would not): name + payload above the sane
        limit, or the encoded message above user_event_size_limit (serf's messages)."""
        size = len(name.encode("utf-8", "surrogateescape")) + len(payload)
        limit = self.cfg.user_event_size_limit
        if size > limit:
            return f"user event exceeds configured limit of {limit} bytes before encoding"
        if size > USER_EVENT_SANE_LIMIT:
            return f"user event exceeds sane limit of {USER_EVENT_SANE_LIMIT} bytes before encoding"
        encoded = len(codec.encode_serf(SerfUserEvent(self.event_clock, name, payload)))
        if encoded > limit:
            return f"encoded user event exceeds configured limit of {limit} bytes after encoding"
        return ""

    def user_event(self, name: str, payload: bytes) -> list[SerfEffect]:
        """Fire a user event: gossiped to every member; we receive it too (UserEventReceived).
        ValueError (serf's message) if `user_event_error` refuses it."""
        why = self.user_event_error(name, payload)
        if why:
            raise ValueError(why)
        msg = SerfUserEvent(self.event_clock, name, payload)
        self.event_clock += 1
        self._on_user_event(msg)
        self.event_broadcasts.queue(codec.encode_serf(msg))
        return self._take()

    # ------------------------------------------------------------ memberlist events

    def _absorb(self, effects: list[Effect], now: float) -> None:
        for e in effects:
            if isinstance(e, NodeEvent):
                self._on_node_event(e, now)
            elif isinstance(e, UserMessage):
                self._on_user_message(e.payload, now)
            elif isinstance(e, PingComplete):
                self._on_ping_complete(e)
            else:
                self.out.append(e)

    def _on_node_event(self, ev: NodeEvent, now: float) -> None:
        n = ev.node
        if ev.kind == "join":
            self._node_join(n)
        elif ev.kind == "leave":
            self._node_leave(n, now)
        else:
            m = self.members.get(n.name)
            if m is not None:
                m.addr, m.port, m.tags, m.vsn = n.addr, n.port, codec.decode_tags(n.meta), n.vsn
                self.out.append(MemberEvent("member-update", m.snapshot()))

    def _node_join(self, n: NodeInfo) -> None:
        m = self.members.get(n.name)
        tags = _safe_tags(n.meta)
        if m is None:
            m = Member(n.name, n.addr, n.port, tags, MemberStatus.ALIVE, n.vsn)
            intent = self.intents.pop(n.name, None)
            if intent is not None:
                kind, ltime, _ = intent
                m.status_ltime = ltime
                if kind == "leave":
                    m.status = MemberStatus.LEAVING
            self.members[n.name] = m
        else:
            m.status = MemberStatus.ALIVE
            m.leave_time = 0.0
            m.addr, m.port, m.tags, m.vsn = n.addr, n.port, tags, n.vsn
        self.out.append(MemberEvent("member-join", m.snapshot()))

    def _node_leave(self, n: NodeInfo, now: float) -> None:
        m = self.members.get(n.name)
        if m is None:
            return
        if m.status == MemberStatus.LEAVING or n.state == NodeState.LEFT:
            # a memberlist graceful leave is authoritative even if serf's intent was lost
            m.status = MemberStatus.LEFT
            kind: Literal["member-leave", "member-failed"] = "member-leave"
        elif m.status == MemberStatus.ALIVE:
            m.status = MemberStatus.FAILED
            kind = "member-failed"
        else:
            return
        m.leave_time = now
        self.out.append(MemberEvent(kind, m.snapshot()))
        self._check_queries()

    # ------------------------------------------------------------ serf messages

    def _on_user_message(self, payload: bytes, now: float) -> None:
        try:
            msg = codec.decode_serf(payload)
        except DecodeError as exc:
            if isinstance(exc, codec.UnknownMessageType):
                self.stats.unknown_serf_messages += 1
            else:
                self.stats.bad_serf_messages += 1
            return
        rebroadcast = False
        queue = self.broadcasts
        if isinstance(msg, SerfLeave):
            rebroadcast = self._on_leave_intent(msg, now)
        elif isinstance(msg, SerfJoin):
            rebroadcast = self._on_join_intent(msg, now)
        elif isinstance(msg, SerfUserEvent):
            rebroadcast = self._on_user_event(msg)
            queue = self.event_broadcasts
        elif isinstance(msg, SerfQuery):
            rebroadcast = self._on_query(msg)
            queue = self.event_broadcasts
        elif isinstance(msg, SerfQueryResponse):
            self._on_query_response(msg, now)
        if rebroadcast:
            queue.queue(payload)

    def _on_join_intent(self, msg: SerfJoin, now: float) -> bool:
        self.clock = max(self.clock, msg.ltime + 1)
        m = self.members.get(msg.node)
        if m is None:
            return self._upsert_intent(msg.node, "join", msg.ltime, now)
        if msg.ltime <= m.status_ltime:
            return False
        m.status_ltime = msg.ltime
        if m.status == MemberStatus.LEAVING:
            m.status = MemberStatus.ALIVE
        return True

    def _on_leave_intent(self, msg: SerfLeave, now: float) -> bool:
        self.clock = max(self.clock, msg.ltime + 1)
        m = self.members.get(msg.node)
        if m is None:
            return self._upsert_intent(msg.node, "leave", msg.ltime, now)
        if msg.ltime <= m.status_ltime:
            return False
        if msg.node == self.name and not self.leaving:
            self._broadcast_join(self.clock, now)  # refute an old leave intent about us
            return False
        m.status_ltime = msg.ltime
        if m.status == MemberStatus.ALIVE:
            m.status = MemberStatus.LEAVING
        elif m.status == MemberStatus.FAILED:
            m.status = MemberStatus.LEFT
            self.out.append(MemberEvent("member-leave", m.snapshot()))
        if msg.prune and m.status in (MemberStatus.LEFT, MemberStatus.FAILED):
            self._erase(m)
        return True

    def _upsert_intent(self, node: str, kind: Literal["join", "leave"], ltime: int, now: float) -> bool:
        cur = self.intents.get(node)
        if cur is None or ltime > cur[1]:
            self.intents[node] = (kind, ltime, now)
            return True
        return False

    def _broadcast_join(self, ltime: int, now: float) -> None:
        msg = SerfJoin(ltime, self.name)
        self.clock = max(self.clock, ltime + 1)
        self._on_join_intent(msg, now)
        self.broadcasts.queue(codec.encode_serf(msg))

    def _on_user_event(self, msg: SerfUserEvent) -> bool:
        self.event_clock = max(self.event_clock, msg.ltime + 1)
        key = (msg.ltime, msg.name, msg.payload)
        if key in self.seen_events:
            return False
        self.seen_events[key] = None
        while len(self.seen_events) > self.cfg.event_buffer:
            self.seen_events.popitem(last=False)
        self.stats.user_events += 1
        self.out.append(UserEventReceived(msg.name, msg.payload, msg.ltime))
        return True

    def _on_query(self, q: SerfQuery) -> bool:
        self.query_clock = max(self.query_clock, q.ltime + 1)
        key = (q.ltime, q.id)
        if key in self.seen_queries:
            return False
        self.seen_queries[key] = None
        while len(self.seen_queries) > self.cfg.query_buffer:
            self.seen_queries.popitem(last=False)
        matches = filters_match(q.filters, self.name, self.tags)
        if matches and q.name.startswith("_serf_"):
            self.out.append(QueryReceived(q))
        if q.flags & QUERY_FLAG_ACK and q.addr and matches:
            try:
                dest = (codec.ip_from_bytes(q.addr), q.port)
            except DecodeError:
                dest = None
            if dest is not None:
                ack = SerfQueryResponse(q.ltime, q.id, self.name, QUERY_FLAG_ACK)
                self.out.append(SendPacket(dest, codec.encode(User(codec.encode_serf(ack)))))
                self.stats.queries_answered += 1
        return not q.flags & QUERY_FLAG_NO_BROADCAST

    def _on_query_response(self, r: SerfQueryResponse, now: float) -> None:
        pq = self.pending.get((r.ltime, r.id))
        if pq is None or now > pq.deadline:
            return
        if r.flags & QUERY_FLAG_ACK:
            pq.acks.add(r.from_)
        elif r.from_ not in pq.responses:
            pq.responses[r.from_] = r.payload
            self._check_queries()

    def _check_queries(self) -> None:
        """Emit QueryComplete once a pending query has a response from every alive member (checked
        when a response arrives and when a member leaves or fails)."""
        alive = self.num_alive()
        for key, pq in self.pending.items():
            if not pq.complete and len(pq.responses) >= alive:
                pq.complete = True
                self.out.append(QueryComplete(key))

    def default_query_timeout(self) -> float:
        return default_timeout(self.gossip.gossip_interval, len(self.ml.nodes))

    def start_query(self, name: str, payload: bytes, now: float, timeout: float | None = None) -> QueryStarted:
        """Start a query to every member (including us); responses collect until `finish_query`.
        QueryComplete(key) follows once every alive member has answered."""
        me = self.ml.local
        timeout = timeout if timeout is not None else self.default_query_timeout()
        q = SerfQuery(
            self.query_clock, self.rng.getrandbits(32), codec.ip_to_bytes(me.addr), me.port, self.name, (), 0, 0,
            int(timeout * 1e9), name, payload,
        )
        self.query_clock += 1
        key = (q.ltime, q.id)
        self.pending[key] = PendingQuery(now + timeout)
        self._on_query(q)
        self.event_broadcasts.queue(codec.encode_serf(q))
        return QueryStarted(key, now + timeout, self._take())

    def finish_query(self, key: tuple[int, int]) -> PendingQuery | None:
        """Stop collecting responses to a query we started; its responses so far (None if unknown)."""
        return self.pending.pop(key, None)

    def respond(self, q: SerfQuery, payload: bytes, now: float) -> list[SerfEffect]:
        """Answer a query we received: straight to the asker over UDP (or locally)."""
        resp = SerfQueryResponse(q.ltime, q.id, self.name, 0, payload)
        if q.source_node == self.name and (q.ltime, q.id) in self.pending:
            self._on_query_response(resp, now)
        else:
            try:
                dest = (codec.ip_from_bytes(q.addr), q.port)
            except DecodeError:
                return self._take()
            self.out.append(SendPacket(dest, codec.encode(User(codec.encode_serf(resp)))))
        return self._take()

    def _merge_serf_state(self, pp: SerfPushPull, now: float) -> None:
        """Intents about members we do not know yet are stamped `now`: they live recent_intent_timeout
        from when we learned them (a stamp of 0 would have them reaped at the next reap)."""
        if pp.ltime > 0:
            self.clock = max(self.clock, pp.ltime)
        if pp.event_ltime > 0:
            self.event_clock = max(self.event_clock, pp.event_ltime)
        if pp.query_ltime > 0:
            self.query_clock = max(self.query_clock, pp.query_ltime)
        left = set(pp.left_members)
        for name in pp.left_members:
            self._on_leave_intent(SerfLeave(pp.status_ltimes.get(name, 0) + 1, name), now)
        for name, ltime in pp.status_ltimes.items():
            if name not in left:
                self._on_join_intent(SerfJoin(ltime, name), now)
        for ev in pp.events:
            for rec in ev.events:
                self._on_user_event(SerfUserEvent(ev.ltime, rec.name, rec.payload))

    def _user_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        n = len(self.ml.nodes)
        msgs = self.broadcasts.get(overhead, limit, n)
        used = sum(len(m) + overhead for m in msgs)
        msgs.extend(self.event_broadcasts.get(overhead, limit - used, n))
        return msgs

    # ------------------------------------------------------------ reaping and reconnect

    def _reap(self, now: float) -> None:
        for m in list(self.members.values()):
            limit = {MemberStatus.FAILED: self.cfg.reconnect_timeout, MemberStatus.LEFT: self.cfg.tombstone_timeout}
            if m.status in limit and now - m.leave_time > limit[m.status]:
                self._erase(m)
        for node, (_, _, t) in list(self.intents.items()):
            if now - t > self.cfg.recent_intent_timeout:
                del self.intents[node]

    def _erase(self, m: Member) -> None:
        self.members.pop(m.name, None)
        self.coord_cache.pop(m.name, None)
        self.coords.forget(m.name)
        self.out.append(MemberEvent("member-reap", m.snapshot()))

    def _reconnect(self) -> None:
        failed = [m for m in self.members.values() if m.status == MemberStatus.FAILED]
        if not failed:
            return
        alive = max(1, self.num_alive() - 1)
        if self.rng.random() > len(failed) / alive:
            return
        m = self.rng.choice(failed)
        self.out.append(JoinAttempt(((m.addr, m.port),)))


def _safe_tags(meta: bytes) -> dict[str, str]:
    try:
        return codec.decode_tags(meta)
    except DecodeError:
        return {}


__all__ = [
    "QUERY_TIMEOUT_MULT",
    "JoinAttempt",
    "Member",
    "MemberEvent",
    "MemberStatus",
    "PendingQuery",
    "PushPullWith",
    "QueryComplete",
    "QueryReceived",
    "QueryStarted",
    "SendPacket",
    "Serf",
    "SerfConfig",
    "SerfEffect",
    "TcpPing",
    "UserEventReceived",
]
