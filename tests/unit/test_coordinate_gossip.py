"""Coordinates ride on probes: serf cores on a simulated network with known one-way delays learn each
other's coordinates from acks and estimate the RTTs (pure cores, virtual clock)."""

from __future__ import annotations

import heapq
import random

import pytest

from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.coordinate import encode_ack_payload, new_coordinate
from pyconsul.agent.gossip.membership import PingComplete, PushPullWith, SendPacket
from pyconsul.agent.gossip.serf import Serf, SerfConfig, SerfEffect

DELAY = {("a", "b"): 0.010, ("a", "c"): 0.025, ("b", "c"): 0.020}  # one-way seconds


def _delay(x: str, y: str) -> float:
    return DELAY.get((x, y)) or DELAY[(y, x)]


class Net:
    def __init__(self, names: list[str], cfg: SerfConfig | None = None) -> None:
        self.now = 0.0
        self.cores = {n: Serf(GossipConfig.lan(), n, f"127.0.0.{i + 1}", 8301, {}, random.Random(i), 0.0, config=cfg)
                      for i, n in enumerate(names)}
        self.by_addr = {(f"127.0.0.{i + 1}", 8301): n for i, n in enumerate(names)}
        self.queue: list[tuple[float, int, str, bytes, tuple[str, int]]] = []
        self.seq = 0
        for n, core in self.cores.items():
            self.perform(n, core.initial_effects())
        first = names[0]
        for n in names[1:]:  # everyone joins the first (a push/pull each way)
            self.perform(n, self.cores[n].merge_remote(self.cores[first].local_push_pull(True), 0.0))
            self.perform(first, self.cores[first].merge_remote(self.cores[n].local_push_pull(True), 0.0))

    def perform(self, src: str, effects: list[SerfEffect]) -> None:
        for e in effects:
            if isinstance(e, SendPacket) and e.addr in self.by_addr:
                dst = self.by_addr[e.addr]
                self.seq += 1
                src_addr = next(a for a, n in self.by_addr.items() if n == src)
                heapq.heappush(self.queue, (self.now + _delay(src, dst), self.seq, dst, e.data, src_addr))
            elif isinstance(e, PushPullWith):
                dst = self.by_addr.get(e.addr)
                if dst is not None:
                    self.perform(src, self.cores[src].merge_remote(self.cores[dst].local_push_pull(False), self.now))

    def run(self, until: float) -> None:
        while True:
            nxt = min(c.next_deadline() for c in self.cores.values())
            at_q = self.queue[0][0] if self.queue else float("inf")
            t = min(nxt, at_q)
            if t > until:
                return
            self.now = max(self.now, t)
            if at_q <= nxt:
                _, _, dst, data, src_addr = heapq.heappop(self.queue)
                self.perform(dst, self.cores[dst].handle_packet(data, src_addr, self.now))
            else:
                for n, c in self.cores.items():
                    if c.next_deadline() <= self.now:
                        self.perform(n, c.tick(self.now))


def test_cores_learn_coordinates_from_acks() -> None:
    net = Net(["a", "b", "c"])
    net.run(120.0)
    a, b, c = (net.cores[n] for n in "abc")
    for core in (a, b, c):
        assert core.coords.stats.updates > 20 and core.coords.stats.rejected == 0
        assert set(core.coord_cache) == {"a", "b", "c"}
    for (x, y), d in DELAY.items():
        est = net.cores[x].coordinate().distance(net.cores[y].coordinate())
        assert est == pytest.approx(2 * d, rel=0.35), (x, y, est)


def test_disabled_coordinates_send_no_payload_and_learn_nothing() -> None:
    net = Net(["a", "b"], SerfConfig(disable_coordinates=True))
    net.run(20.0)
    for core in net.cores.values():
        assert core.coords.stats.updates == 0 and list(core.coord_cache) == [core.name]  # its own, as serf
        assert core.coordinate() == new_coordinate()


def test_bad_ack_payload_is_counted_not_applied() -> None:
    core = Net(["a", "b"]).cores["a"]
    before = core.coordinate()
    huge = encode_ack_payload(new_coordinate()).replace(b"\xcb\x00\x00\x00\x00\x00\x00\x00\x00",
                                                        b"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00", 1)  # +inf
    payloads = [b"\x01\xc1", b"\x02" + encode_ack_payload(new_coordinate())[1:], b"\x01\x90", huge]
    for payload in payloads:
        core._on_ping_complete(PingComplete("b", 0.01, payload))
    assert core.coords.stats.rejected == len(payloads)
    assert core.coordinate() == before and "b" not in core.coord_cache
