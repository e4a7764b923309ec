"""A seeded, virtual-time network for the pure gossip cores.

Every node is a `Serf` core; packets are delivered through a heap of timed events with
configurable latency, loss and cuts; push/pull and TCP pings complete instantly when the
link is up. The same seed gives the same run, event for event.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.membership import PushPullWith, SendPacket, TcpPing
from pyconsul.agent.gossip.serf import JoinAttempt, MemberStatus, Serf, SerfConfig, SerfEffect

Addr = tuple[str, int]


@dataclass
class SimNode:
    name: str
    addr: Addr
    serf: Serf
    alive: bool = True
    stalled_until: float = 0.0
    inbox: list[tuple[bytes, Addr]] = field(default_factory=list)


class SimNet:
    def __init__(
        self,
        seed: int,
        gossip: GossipConfig | None = None,
        *,
        latency: float = 0.001,
        jitter: float = 0.0005,
        loss: float = 0.0,
        serf_config: SerfConfig | None = None,
        start: float = 0.0,
    ) -> None:
        """`start` is the virtual clock's origin: a real shell's clock (the event loop's) never starts
        at 0, so a core that mistakes 0 for "now" shows up only with start > 0."""
        self.serf_config = serf_config
        self.rng = random.Random(seed)
        self.gossip = gossip or GossipConfig.lan()
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.now = start
        self.nodes: dict[str, SimNode] = {}
        self.by_addr: dict[Addr, SimNode] = {}
        self.cuts: set[frozenset[str]] = set()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake: dict[str, float] = {}
        self.packets = 0
        self.observers: list[Callable[[str, SerfEffect], None]] = []  # (node name, effect), as performed

    # ------------------------------------------------------------ topology

    def add_node(self, name: str, tags: dict[str, str] | None = None) -> SimNode:
        i = len(self.nodes) + 1
        addr = (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 8301)
        serf = Serf(self.gossip, name, addr[0], addr[1], tags or {"role": "node"},
                    random.Random(self.rng.getrandbits(64)), self.now, config=self.serf_config)
        node = SimNode(name, addr, serf)
        self.nodes[name] = node
        self.by_addr[addr] = node
        self._perform(node, serf.initial_effects())
        self._schedule_tick(node)
        return node

    def join(self, name: str, other: str) -> bool:
        a, b = self.nodes[name], self.nodes[other]
        ok = self._push_pull(a, b.addr, join=True)
        if ok:
            self._perform(a, a.serf.joined(1, self.now))
        return ok

    def cut(self, a: str, b: str) -> None:
        self.cuts.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cuts.clear()

    def crash(self, name: str) -> None:
        self.nodes[name].alive = False

    def stall(self, name: str, duration: float) -> None:
        """The node processes nothing for `duration` (a GC pause / CPU starvation)."""
        self.nodes[name].stalled_until = self.now + duration

    def _link_up(self, a: SimNode, b: SimNode) -> bool:
        return a.alive and b.alive and frozenset((a.name, b.name)) not in self.cuts

    # ------------------------------------------------------------ events

    def _at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), fn))

    def _schedule_tick(self, node: SimNode) -> None:
        t = max(node.serf.next_deadline(), self.now + 0.001)
        if self._wake.get(node.name, float("inf")) <= t and self._wake.get(node.name, 0) > self.now:
            return
        self._wake[node.name] = t
        self._at(t, lambda: self._tick(node, t))

    def _tick(self, node: SimNode, t: float) -> None:
        if self._wake.get(node.name) != t:
            return
        self._wake.pop(node.name, None)
        if not node.alive:
            return
        if self.now < node.stalled_until:
            self._wake[node.name] = node.stalled_until
            self._at(node.stalled_until, lambda: self._tick(node, node.stalled_until))
            return
        self._flush_inbox(node)
        self._perform(node, node.serf.tick(self.now))
        self._schedule_tick(node)

    def _flush_inbox(self, node: SimNode) -> None:
        inbox, node.inbox = node.inbox, []
        for data, src in inbox:
            self._perform(node, node.serf.handle_packet(data, src, self.now))

    def _deliver(self, dst: SimNode, data: bytes, src: Addr) -> None:
        if not dst.alive:
            return
        if self.now < dst.stalled_until:
            dst.inbox.append((data, src))
            return
        self._perform(dst, dst.serf.handle_packet(data, src, self.now))
        self._schedule_tick(dst)

    def _perform(self, node: SimNode, effects: list[SerfEffect]) -> None:
        for e in effects:
            for observe in self.observers:
                observe(node.name, e)
            if isinstance(e, SendPacket):
                self.packets += 1
                dst = self.by_addr.get(e.addr)
                if dst is None or not self._link_up(node, dst) or self.rng.random() < self.loss:
                    continue
                delay = self.latency + self.rng.uniform(0, self.jitter)
                data, src = e.data, node.addr
                self._at(self.now + delay, lambda d=dst, b=data, s=src: self._deliver(d, b, s))  # type: ignore[misc]
            elif isinstance(e, PushPullWith):
                self._push_pull(node, e.addr, e.join)
            elif isinstance(e, TcpPing):
                dst = self.by_addr.get(e.addr)
                ok = dst is not None and self._link_up(node, dst) and self.now >= dst.stalled_until
                self._perform(node, node.serf.tcp_ping_result(e.seq, ok, self.now))
            elif isinstance(e, JoinAttempt):
                for a in e.addrs:
                    self._push_pull(node, a, join=True)

    def _push_pull(self, node: SimNode, addr: Addr, join: bool) -> bool:
        dst = self.by_addr.get(addr)
        if dst is None or not self._link_up(node, dst) or self.now < dst.stalled_until:
            return False
        mine = node.serf.local_push_pull(join)
        theirs = dst.serf.local_push_pull(join)
        self._perform(dst, dst.serf.merge_remote(mine, self.now))
        self._perform(node, node.serf.merge_remote(theirs, self.now))
        self._schedule_tick(dst)
        self._schedule_tick(node)
        return True

    def run_until(self, t: float, stop: Callable[[], bool] | None = None, check_every: float = 0.1) -> bool:
        """Advance virtual time to t; if `stop` is given, return True as soon as it holds."""
        next_check = self.now
        while self._heap and self._heap[0][0] <= t:
            when, _, fn = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            fn()
            if stop is not None and self.now >= next_check:
                next_check = self.now + check_every
                if stop():
                    return True
        self.now = max(self.now, t)
        return stop() if stop is not None else False

    # ------------------------------------------------------------ observations

    def status(self, observer: str, member: str) -> MemberStatus | None:
        m = self.nodes[observer].serf.members.get(member)
        return m.status if m else None

    def alive_fraction(self) -> float:
        """Fraction of (live observer, live member) pairs in which the member is seen alive."""
        live = [n for n in self.nodes.values() if n.alive]
        total = len(live) * len(live)
        seen = sum(
            1 for o in live for m in live
            if (st := o.serf.members.get(m.name)) is not None and st.status == MemberStatus.ALIVE
        )
        return seen / total if total else 1.0


def seed_converged(net: SimNet) -> None:
    """Give every node the full, quiet membership at once (what a long-converged pool looks
    like), without the join storm: merge a complete push/pull state, then drop the queued
    re-broadcasts and events that merging produced."""
    from pyconsul.agent.gossip.codec import ip_to_bytes
    from pyconsul.agent.gossip.messages import PushNodeState, PushPull

    states = []
    for n in net.nodes.values():
        me = n.serf.ml.local
        states.append(PushNodeState(me.name, ip_to_bytes(me.addr), me.port, me.meta, me.incarnation, me.state, me.vsn))
    pp = PushPull(False, tuple(states), b"")
    for n in net.nodes.values():
        n.serf.merge_remote(pp, net.now)
        n.serf.ml.broadcasts.reset()
        n.serf.ml.broadcasts.finished.clear()
        n.serf.broadcasts.reset()


def seen_alive_by(net: SimNet, member: str) -> float:
    """Fraction of live nodes (other than member) that see member alive."""
    live = [n for n in net.nodes.values() if n.alive and n.name != member]
    seen = sum(1 for o in live if (m := o.serf.members.get(member)) is not None and m.status == MemberStatus.ALIVE)
    return seen / len(live) if live else 1.0


def seen_failed_by(net: SimNet, member: str) -> float:
    live = [n for n in net.nodes.values() if n.alive and n.name != member]
    seen = sum(1 for o in live if (m := o.serf.members.get(member)) is not None and m.status == MemberStatus.FAILED)
    return seen / len(live) if live else 1.0
