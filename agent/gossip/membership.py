"""SWIM membership with Lifeguard, wire-compatible with HashiCorp memberlist. Pure core.

Inputs are decoded messages, push/pull states and results of stream operations, each with
`now` (seconds, any monotonic origin); outputs are effects the shell must perform
(`SendPacket`, `PushPullWith`, `TcpPing`) and events for the layer above (`NodeEvent`,
`UserMessage`). No sockets, clocks or threads here: `random.Random` is injected.

Contract for the shell: call `tick(now)` no later than `next_deadline()`; deliver every
decoded packet with `handle_packet`; perform effects in the order returned.

Protocol notes (SWIM §4, Lifeguard §IV, memberlist state.go behaviour):
- one probe at a time, round-robin over a shuffled list; direct ping, then after
  probe_timeout indirect pings through `indirect_checks` peers (with nacks when they speak
  protocol >= 4) and a TCP ping fallback (peers >= 3); no ack by the end of the (awareness
  scaled) probe interval -> suspect.
- a suspicion expires into dead; independent confirmations shorten it (Lifeguard §IV-B).
- incarnation numbers order alive/suspect/dead about one node; a node refutes accusations
  about itself with a higher incarnation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pyconsul.agent.gossip import codec
from pyconsul.agent.gossip.awareness import Awareness
from pyconsul.agent.gossip.broadcast import BroadcastQueue
from pyconsul.agent.gossip.codec import DecodeError, Oversized
from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.messages import (
    DELEGATE_VSN,
    PROTOCOL_VSN,
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    Message,
    Nack,
    NodeState,
    Ping,
    PushNodeState,
    Suspect,
    User,
)
from pyconsul.agent.gossip.suspicion import Suspicion, suspicion_timeout
from pyconsul.agent.records import shared_repr

Addr = tuple[str, int]

COMPOUND_HEADER_OVERHEAD = 2
COMPOUND_OVERHEAD = 2
USER_MSG_OVERHEAD = 1
PUSH_PULL_SCALE_THRESHOLD = 32


# ---------------------------------------------------------------- effects


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SendPacket:
    """Send `data` (plaintext; the shell encrypts) as one UDP packet to addr."""

    addr: Addr
    data: bytes


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class PushPullWith:
    """Open a stream to addr, exchange states, then call `merge_remote_state`."""

    addr: Addr
    node: str
    join: bool


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class TcpPing:
    """Send the encoded ping over a stream and report `tcp_ping_result(seq, ok)` by deadline."""

    addr: Addr
    node: str
    seq: int
    data: bytes
    deadline: float


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class NodeEvent:
    kind: Literal["join", "leave", "update"]
    node: NodeInfo


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class UserMessage:
    payload: bytes


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class PingComplete:
    """A direct ping of a probe was acked within probe_timeout (memberlist's NotifyPingComplete): the
    round trip in seconds and the ack's payload (serf: our peer's network coordinate)."""

    node: str
    rtt: float
    payload: bytes


Effect = SendPacket | PushPullWith | TcpPing | NodeEvent | UserMessage | PingComplete


# ---------------------------------------------------------------- node state


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class NodeInfo:
    name: str
    addr: str
    port: int
    meta: bytes
    state: NodeState
    vsn: tuple[int, ...]

    @property
    def pmax(self) -> int:
        return self.vsn[1] if len(self.vsn) > 1 else 0


@shared_repr
@dataclass(slots=True, repr=False)
class _Node:
    name: str
    addr: str
    port: int
    meta: bytes
    incarnation: int
    state: NodeState
    state_change: float
    vsn: tuple[int, ...] = ()

    @property
    def pmax(self) -> int:
        return self.vsn[1] if len(self.vsn) > 1 else 0

    def dead_or_left(self) -> bool:
        return self.state in (NodeState.DEAD, NodeState.LEFT)

    def info(self) -> NodeInfo:
        return NodeInfo(self.name, self.addr, self.port, self.meta, self.state, self.vsn)


@shared_repr
@dataclass(slots=True, repr=False)
class _Probe:
    seq: int
    node: str
    sent: float
    direct_deadline: float
    end: float
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    tcp_pending: bool = False
    tcp_ok: bool = False


@shared_repr
@dataclass(slots=True, repr=False)
class _Relay:
    """An indirect ping we forward: ack on local seq -> Ack(orig seq) to the requester."""

    orig_seq: int
    reply_to: Addr
    expires: float
    nack: bool


@shared_repr
@dataclass(slots=True, repr=False)
class Stats:
    packets_in: int = 0
    packets_out: int = 0
    decode_errors: int = 0
    oversized: int = 0  # packets past a decode limit (decompressed size, compound parts, nesting)
    last_oversized: str = ""  # why the latest of those was dropped (the shell logs it, rate-limited)
    wrong_node_pings: int = 0
    address_conflicts: int = 0
    refutes: int = 0
    suspects: int = 0
    deaths: int = 0
    probes: int = 0
    probe_failures: int = 0
    counters: dict[str, int] = field(default_factory=dict)


class Membership:
    """The memberlist state machine of one pool member."""

    def __init__(
        self,
        config: GossipConfig,
        name: str,
        addr: str,
        port: int,
        meta: bytes,
        rng: random.Random,
        now: float,
        *,
        delegate_vsn: tuple[int, int, int] = DELEGATE_VSN,
        encryption_overhead: int = 0,
        user_broadcasts: Callable[[int, int], list[bytes]] | None = None,
        user_broadcasts_pending: Callable[[], bool] | None = None,
        ack_payload: Callable[[], bytes] | None = None,
    ) -> None:
        self.cfg = config
        self.ack_payload = ack_payload  # what our acks to direct pings carry (memberlist's PingDelegate)
        self.name = name
        self.rng = rng
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.broadcasts = BroadcastQueue(config.retransmit_mult)
        self.encryption_overhead = encryption_overhead
        self.user_broadcasts = user_broadcasts
        self.user_broadcasts_pending = user_broadcasts_pending
        self.stats = Stats()
        self.nodes: list[_Node] = []
        self.node_map: dict[str, _Node] = {}
        self.suspicions: dict[str, Suspicion] = {}
        self.probe_index = 0
        self.probe: _Probe | None = None
        self.relays: dict[int, _Relay] = {}
        self.seq = 0
        self.incarnation = 0
        self.left = False
        self.leave_token: int | None = None
        self.out: list[Effect] = []
        self.next_probe = now + rng.uniform(0, config.probe_interval)
        self.next_gossip = now + rng.uniform(0, config.gossip_interval)
        self.next_push_pull = now + rng.uniform(0, config.push_pull_interval)
        vsn = (*PROTOCOL_VSN, *delegate_vsn)
        self.incarnation += 1
        self._alive_node(Alive(self.incarnation, name, codec.ip_to_bytes(addr), port, meta, vsn), now, bootstrap=True)

    # ------------------------------------------------------------ queries

    @property
    def local(self) -> _Node:
        return self.node_map[self.name]

    def members(self) -> list[NodeInfo]:
        return [n.info() for n in self.nodes]

    def get(self, name: str) -> NodeInfo | None:
        n = self.node_map.get(name)
        return n.info() if n else None

    def num_nodes(self) -> int:
        return len(self.nodes)

    def alive_count(self) -> int:
        return sum(1 for n in self.nodes if n.state in (NodeState.ALIVE, NodeState.SUSPECT))

    def next_deadline(self) -> float:
        """When `tick` next has work. Never a time `tick` would leave unchanged: while a probe runs, the
        next probe waits for it (its awareness-scaled end may pass next_probe), a probe waiting for
        its TCP fallback ends at most probe_timeout after its end, and a node that left probes no more."""
        ds = [self.next_push_pull]
        if self._has_broadcasts():
            ds.append(self.next_gossip)
        p = self.probe
        if p is not None:
            if not p.indirect_sent:
                ds.append(p.direct_deadline)
            else:
                ds.append(p.end + self.cfg.probe_timeout if p.tcp_pending else p.end)
        elif not self.left:
            ds.append(self.next_probe)
        ds.extend(s.deadline for s in self.suspicions.values())
        ds.extend(r.expires for r in self.relays.values())
        return min(ds)

    def leave_done(self) -> bool:
        """After leave(): true once our dead-self broadcast has been sent enough times."""
        return self.leave_token is None or self.leave_token in self.broadcasts.finished

    # ------------------------------------------------------------ inputs

    def initial_effects(self) -> list[Effect]:
        """What construction produced (a join event about ourselves): the caller takes it once, first."""
        return self._take()

    def _take(self) -> list[Effect]:
        out, self.out = self.out, []
        return out

    def handle_packet(self, buf: bytes, src: Addr, now: float) -> list[Effect]:
        """A decrypted UDP payload from src. Malformed input is counted and dropped."""
        self._observe(now)
        self.stats.packets_in += 1
        try:
            msgs = codec.decode_packet(buf)
        except Oversized as exc:
            self.stats.oversized += 1
            self.stats.last_oversized = str(exc)
            return []
        except DecodeError:
            self.stats.decode_errors += 1
            return []
        for msg in msgs:
            self._handle_message(msg, src, now)
        return self._take()

    def handle_message(self, msg: Message, src: Addr, now: float) -> list[Effect]:
        """One decoded message from src (what `handle_packet` does for each message of a packet)."""
        self._observe(now)
        self._handle_message(msg, src, now)
        return self._take()

    def _handle_message(self, msg: Message, src: Addr, now: float) -> None:
        if isinstance(msg, Ping):
            self._on_ping(msg, src)
        elif isinstance(msg, IndirectPing):
            self._on_indirect_ping(msg, src, now)
        elif isinstance(msg, Ack):
            self._on_ack(msg, now)
        elif isinstance(msg, Nack):
            if self.probe is not None and self.probe.seq == msg.seq_no:
                self.probe.nacks += 1
        elif isinstance(msg, Suspect):
            self._suspect_node(msg, now)
        elif isinstance(msg, Alive):
            self._alive_node(msg, now)
        elif isinstance(msg, Dead):
            self._dead_node(msg, now)
        elif isinstance(msg, User):
            if msg.payload:
                self.out.append(UserMessage(msg.payload))
        elif isinstance(msg, ErrResp):
            pass

    def stream_ping(self, ping: Ping) -> Ack | None:
        """A ping received over TCP: the ack to write back, or None if it is not for us."""
        if ping.node and ping.node != self.name:
            self.stats.wrong_node_pings += 1
            return None
        return Ack(ping.seq_no)

    def tcp_ping_result(self, seq: int, ok: bool, now: float) -> list[Effect]:
        self._observe(now)
        if self.probe is not None and self.probe.seq == seq:
            self.probe.tcp_pending = False
            self.probe.tcp_ok = ok
        return self._take()

    # ------------------------------------------------------------ push / pull

    def local_state(self) -> list[PushNodeState]:
        return [
            PushNodeState(n.name, codec.ip_to_bytes(n.addr), n.port, n.meta, n.incarnation, n.state, n.vsn)
            for n in self.nodes
        ]

    def merge_remote_state(self, remote: tuple[PushNodeState, ...] | list[PushNodeState], now: float) -> list[Effect]:
        self._observe(now)
        for r in remote:
            if r.state == NodeState.ALIVE:
                self._alive_node(Alive(r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn), now)
            elif r.state == NodeState.LEFT:
                self._dead_node(Dead(r.incarnation, r.name, r.name), now)
            else:  # dead or suspect: treat as suspect, let our own probes decide
                self._suspect_node(Suspect(r.incarnation, r.name, self.name), now)
        return self._take()

    # ------------------------------------------------------------ local operations

    def set_meta(self, meta: bytes, now: float) -> list[Effect]:
        self._observe(now)
        me = self.local
        self.incarnation += 1
        alive = Alive(self.incarnation, self.name, codec.ip_to_bytes(me.addr), me.port, meta, me.vsn)
        self._alive_node(alive, now, bootstrap=True)
        return self._take()

    def leave(self, now: float) -> list[Effect]:
        """Graceful leave: broadcast dead-about-self (From == Node means left)."""
        self._observe(now)
        if self.left:
            return []
        self.left = True
        me = self.local
        self.leave_token = 1
        self._dead_node(Dead(me.incarnation, self.name, self.name), now)
        if not any(n.state in (NodeState.ALIVE, NodeState.SUSPECT) for n in self.nodes if n.name != self.name):
            self.broadcasts.finished.append(self.leave_token)
        return self._take()

    # ------------------------------------------------------------ timers

    def tick(self, now: float) -> list[Effect]:
        self._observe(now)
        for node_name, s in list(self.suspicions.items()):
            if now >= s.deadline:
                del self.suspicions[node_name]
                st = self.node_map.get(node_name)
                if st is not None and st.state == NodeState.SUSPECT:
                    self._dead_node(Dead(st.incarnation, st.name, self.name), now)
        for seq, r in list(self.relays.items()):
            if now >= r.expires:
                del self.relays[seq]
                if r.nack:
                    self._send(r.reply_to, codec.encode(Nack(r.orig_seq)))
        if self.probe is not None:
            self._advance_probe(now)
        if self.probe is None and now >= self.next_probe and not self.left:
            self._start_probe(now)
        if now >= self.next_gossip:  # (_observe has moved it past now if nothing is queued)
            self.next_gossip = now + self.cfg.gossip_interval
            self._gossip(now)
        if now >= self.next_push_pull:
            self.next_push_pull = now + self._push_pull_interval()
            self._push_pull()
        return self._take()

    def _push_pull_interval(self) -> float:
        n = len(self.nodes)
        if n <= PUSH_PULL_SCALE_THRESHOLD:
            return self.cfg.push_pull_interval
        mult = math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1.0
        return mult * self.cfg.push_pull_interval

    # ------------------------------------------------------------ probing (SWIM §4.1)

    def _start_probe(self, now: float) -> None:
        node = self._next_probe_target(now)
        interval = self.awareness.scale(self.cfg.probe_interval)
        # memberlist's probe ticker keeps its period: local-health awareness stretches how long this
        # probe waits for acks (`interval`), not how often probes start (a new one waits for this one)
        self.next_probe = now + self.cfg.probe_interval
        if node is None:
            return
        self.seq += 1
        seq = self.seq
        self.stats.probes += 1
        self.probe = _Probe(seq, node.name, now, now + self.cfg.probe_timeout, now + interval)
        ping = codec.encode(self._ping(seq, node.name))
        if node.state == NodeState.ALIVE:
            self._send_with_piggyback((node.addr, node.port), ping)
        else:
            sus = codec.encode(Suspect(node.incarnation, node.name, self.name))
            self._raw_send((node.addr, node.port), codec.make_compound([ping, sus]), node.pmax)

    def _ping(self, seq: int, target: str) -> Ping:
        me = self.local
        return Ping(seq, target, codec.ip_to_bytes(me.addr), me.port, self.name)

    def _next_probe_target(self, now: float) -> _Node | None:
        checked = 0
        while checked < len(self.nodes):
            if self.probe_index >= len(self.nodes):
                self._reset_nodes(now)
                self.probe_index = 0
                checked += 1
                continue
            node = self.nodes[self.probe_index]
            self.probe_index += 1
            if node.name == self.name or node.dead_or_left():
                checked += 1
                continue
            return node
        return None

    def _reset_nodes(self, now: float) -> None:
        """Forget nodes dead for longer than gossip_to_the_dead_time; reshuffle the probe order."""
        keep = []
        for n in self.nodes:
            if n.dead_or_left() and now - n.state_change > self.cfg.gossip_to_the_dead_time and n.name != self.name:
                del self.node_map[n.name]
            else:
                keep.append(n)
        self.nodes = keep
        self.rng.shuffle(self.nodes)

    def _advance_probe(self, now: float) -> None:
        p = self.probe
        assert p is not None
        node = self.node_map.get(p.node)
        if node is None:
            self.probe = None
            return
        if not p.indirect_sent:
            if now < p.direct_deadline:
                return
            p.indirect_sent = True
            self._send_indirect(p, node, now)
            return
        if now < p.end or (p.tcp_pending and now < p.end + self.cfg.probe_timeout):
            return
        self.probe = None
        if p.tcp_ok:
            return
        self.stats.probe_failures += 1
        if p.expected_nacks > 0:
            delta = max(0, p.expected_nacks - p.nacks)
        else:
            delta = 1
        self.awareness.apply_delta(delta)
        self._suspect_node(Suspect(node.incarnation, node.name, self.name), now)

    def _send_indirect(self, p: _Probe, node: _Node, now: float) -> None:
        peers = self._k_random(
            self.cfg.indirect_checks,
            lambda n: n.name in (self.name, node.name) or n.state != NodeState.ALIVE,
        )
        me = self.local
        for peer in peers:
            nack = peer.pmax >= 4
            if nack:
                p.expected_nacks += 1
            ind = IndirectPing(
                p.seq, codec.ip_to_bytes(node.addr), node.port, node.name, nack,
                codec.ip_to_bytes(me.addr), me.port, self.name,
            )
            self._send_with_piggyback((peer.addr, peer.port), codec.encode(ind))
        if node.pmax >= 3:
            p.tcp_pending = True
            ping = codec.encode(self._ping(p.seq, node.name))
            self.out.append(TcpPing((node.addr, node.port), node.name, p.seq, ping, p.end))

    def _on_ping(self, p: Ping, src: Addr) -> None:
        if p.node and p.node != self.name:
            self.stats.wrong_node_pings += 1
            return
        dest = self._reply_addr(p.source_addr, p.source_port, src)
        payload = self.ack_payload() if self.ack_payload is not None else b""
        self._send_with_piggyback(dest, codec.encode(Ack(p.seq_no, payload)))

    def _reply_addr(self, raw: bytes, port: int, src: Addr) -> Addr:
        if raw and port:
            try:
                return (codec.ip_from_bytes(raw), port)
            except DecodeError:
                pass
        return src

    def _on_indirect_ping(self, ind: IndirectPing, src: Addr, now: float) -> None:
        try:
            target = (codec.ip_from_bytes(ind.target), ind.port)
        except DecodeError:
            self.stats.decode_errors += 1
            return
        self.seq += 1
        self.relays[self.seq] = _Relay(
            ind.seq_no, self._reply_addr(ind.source_addr, ind.source_port, src), now + self.cfg.probe_timeout, ind.nack
        )
        self._send_with_piggyback(target, codec.encode(self._ping(self.seq, ind.node)))

    def _on_ack(self, ack: Ack, now: float) -> None:
        relay = self.relays.pop(ack.seq_no, None)
        if relay is not None:
            self._send(relay.reply_to, codec.encode(Ack(relay.orig_seq)))
            return
        p = self.probe
        if p is not None and p.seq == ack.seq_no:
            self.probe = None
            if not p.indirect_sent:
                self.awareness.apply_delta(-1)
                if ack.payload:  # only a direct ack measures the round trip (memberlist probeNode)
                    self.out.append(PingComplete(p.node, max(0.0, now - p.sent), ack.payload))

    # ------------------------------------------------------------ gossip dissemination

    def _gossip(self, now: float) -> None:
        def exclude(n: _Node) -> bool:
            if n.name == self.name:
                return True
            if n.state in (NodeState.ALIVE, NodeState.SUSPECT):
                return False
            if n.state == NodeState.DEAD:
                return now - n.state_change > self.cfg.gossip_to_the_dead_time
            return True

        avail = self.cfg.udp_buffer_size - COMPOUND_HEADER_OVERHEAD - self.encryption_overhead
        for node in self._k_random(self.cfg.gossip_nodes, exclude):
            msgs = self._get_broadcasts(COMPOUND_OVERHEAD, avail)
            if not msgs:
                return
            if len(msgs) == 1:
                self._raw_send((node.addr, node.port), msgs[0], node.pmax)
            else:
                for i in range(0, len(msgs), 255):
                    self._raw_send((node.addr, node.port), codec.make_compound(msgs[i : i + 255]), node.pmax)

    def _push_pull(self) -> None:
        peers = self._k_random(1, lambda n: n.name == self.name or n.state != NodeState.ALIVE)
        if peers:
            self.out.append(PushPullWith((peers[0].addr, peers[0].port), peers[0].name, False))

    def _k_random(self, k: int, exclude: Callable[[_Node], bool]) -> list[_Node]:
        """Up to k distinct random nodes not excluded (memberlist kRandomNodes: for large
        pools, random probing with at most 3n tries instead of a full scan)."""
        n = len(self.nodes)
        if n < 3 * k:
            cands = [x for x in self.nodes if not exclude(x)]
            self.rng.shuffle(cands)
            return cands[:k]
        out: list[_Node] = []
        for _ in range(3 * n):
            if len(out) >= k:
                break
            x = self.nodes[self.rng.randrange(n)]
            if not exclude(x) and x not in out:
                out.append(x)
        return out

    def _observe(self, now: float) -> None:
        """Called first by every input. Gossip rounds with nothing to send are skipped without a wake-up
        (next_deadline ignores next_gossip while the queues are empty): keep next_gossip on its
        grid past `now`, so a rumour that arrives after an idle spell goes out at the next round, as
        with memberlist's ticker, not at once. (A broadcast the serf layer queues by itself between
        inputs -- a query, a user event, a leave intent -- finds next_gossip behind and goes out at
        the next tick, which the shell schedules at once.)"""
        if now >= self.next_gossip and not self._has_broadcasts():
            interval = self.cfg.gossip_interval
            self.next_gossip += (math.floor((now - self.next_gossip) / interval) + 1) * interval

    def _has_broadcasts(self) -> bool:
        return len(self.broadcasts) > 0 or (self.user_broadcasts_pending is not None and self.user_broadcasts_pending())

    def _get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        msgs = self.broadcasts.get(overhead, limit, len(self.nodes))
        if self.user_broadcasts is not None:
            used = sum(len(m) + overhead for m in msgs)
            for um in self.user_broadcasts(overhead + USER_MSG_OVERHEAD, limit - used):
                msgs.append(codec.encode(User(um)))
        return msgs

    # ------------------------------------------------------------ sending

    def _send_with_piggyback(self, addr: Addr, msg: bytes) -> None:
        avail = self.cfg.udp_buffer_size - len(msg) - COMPOUND_HEADER_OVERHEAD - self.encryption_overhead
        extra = self._get_broadcasts(COMPOUND_OVERHEAD, avail)
        pmax = self._pmax_of(addr)
        if not extra:
            self._raw_send(addr, msg, pmax)
        else:
            self._raw_send(addr, codec.make_compound([msg, *extra[:254]]), pmax)

    def _send(self, addr: Addr, msg: bytes) -> None:
        self._raw_send(addr, msg, self._pmax_of(addr))

    def _pmax_of(self, addr: Addr) -> int:
        for n in self.nodes:
            if n.addr == addr[0] and n.port == addr[1]:
                return n.pmax
        return 0

    def _raw_send(self, addr: Addr, msg: bytes, pmax: int) -> None:
        if pmax >= 5:
            msg = codec.add_crc(msg)
        self.stats.packets_out += 1
        self.out.append(SendPacket(addr, msg))

    def _broadcast(self, node: str, msg: bytes, notify: int | None = None) -> None:
        self.broadcasts.queue(msg, name=node, notify=notify)

    # ------------------------------------------------------------ state transitions

    def _refute(self, me: _Node, accused_inc: int) -> None:
        """Lifeguard: being accused means we may be the slow one -> awareness +1."""
        self.incarnation += 1
        if accused_inc >= self.incarnation:
            self.incarnation = accused_inc + 1
        me.incarnation = self.incarnation
        self.awareness.apply_delta(1)
        self.stats.refutes += 1
        a = Alive(me.incarnation, me.name, codec.ip_to_bytes(me.addr), me.port, me.meta, me.vsn)
        self._broadcast(me.name, codec.encode(a))

    def _alive_node(self, a: Alive, now: float, bootstrap: bool = False) -> None:
        if self.left and a.node == self.name and not bootstrap:
            return
        if len(a.vsn) >= 3 and (a.vsn[0] == 0 or a.vsn[1] == 0 or a.vsn[0] > a.vsn[1]):
            return
        try:
            ip = codec.ip_from_bytes(a.addr)
        except DecodeError:
            self.stats.decode_errors += 1
            return
        state = self.node_map.get(a.node)
        updates_node = False
        if state is None:
            state = _Node(a.node, ip, a.port, a.meta, 0, NodeState.DEAD, now, a.vsn if len(a.vsn) > 5 else ())
            self.node_map[a.node] = state
            pos = self.rng.randrange(len(self.nodes) + 1)
            self.nodes.insert(pos, state)
            if pos < self.probe_index:
                self.probe_index += 1
        elif state.addr != ip or state.port != a.port:
            reclaim = self.cfg.dead_node_reclaim_time > 0 and now - state.state_change > self.cfg.dead_node_reclaim_time
            if state.state == NodeState.LEFT or (state.state == NodeState.DEAD and reclaim):
                updates_node = True
            else:
                self.stats.address_conflicts += 1
                return
        is_local = state.name == self.name
        if a.incarnation <= state.incarnation and not is_local and not updates_node:
            return
        if a.incarnation < state.incarnation and is_local:
            return
        self.suspicions.pop(a.node, None)
        old_state, old_meta = state.state, state.meta
        if not bootstrap and is_local:
            if a.incarnation == state.incarnation and a.meta == state.meta and tuple(a.vsn) == state.vsn:
                return
            self._refute(state, a.incarnation)
            return
        self._broadcast(a.node, codec.encode(a))
        if len(a.vsn) >= 6:
            state.vsn = tuple(a.vsn[:6])
        state.incarnation = a.incarnation
        state.meta = a.meta
        state.addr = ip
        state.port = a.port
        if state.state != NodeState.ALIVE:
            state.state = NodeState.ALIVE
            state.state_change = now
        if old_state in (NodeState.DEAD, NodeState.LEFT):
            self.out.append(NodeEvent("join", state.info()))
        elif old_meta != state.meta:
            self.out.append(NodeEvent("update", state.info()))

    def _suspect_node(self, s: Suspect, now: float) -> None:
        state = self.node_map.get(s.node)
        if state is None or s.incarnation < state.incarnation:
            return
        timer = self.suspicions.get(s.node)
        if timer is not None:
            if timer.confirm(s.from_):
                self._broadcast(s.node, codec.encode(s))
            return
        if state.state != NodeState.ALIVE:
            return
        if state.name == self.name:
            if not self.left:
                self._refute(state, s.incarnation)
            return
        self._broadcast(s.node, codec.encode(s))
        self.stats.suspects += 1
        state.incarnation = s.incarnation
        state.state = NodeState.SUSPECT
        state.state_change = now
        n = len(self.nodes)
        k = self.cfg.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        lo = suspicion_timeout(self.cfg.suspicion_mult, n, self.cfg.probe_interval)
        hi = self.cfg.suspicion_max_timeout_mult * lo
        self.suspicions[s.node] = Suspicion(s.from_, k, lo, hi, now)

    def _dead_node(self, d: Dead, now: float) -> None:
        state = self.node_map.get(d.node)
        if state is None or d.incarnation < state.incarnation:
            return
        self.suspicions.pop(d.node, None)
        if state.dead_or_left():
            return
        if state.name == self.name:
            if not self.left:
                self._refute(state, d.incarnation)
                return
            self._broadcast(d.node, codec.encode(d), notify=self.leave_token)
        else:
            self._broadcast(d.node, codec.encode(d))
        self.stats.deaths += 1
        state.incarnation = d.incarnation
        state.state = NodeState.LEFT if d.node == d.from_ else NodeState.DEAD
        state.state_change = now
        self.out.append(NodeEvent("leave", state.info()))
        if state.state == NodeState.DEAD and state.name != self.name:
            # A failure is news every member needs: send it now, in an extra gossip round, instead of
            # waiting up to gossip_interval for the next one (memberlist waits). Each member does this
            # once per death it learns, so it costs at most gossip_nodes packets per member per death,
            # and the dead node's retransmit budget is spent the same way as by the scheduled rounds.
            self._gossip(now)


