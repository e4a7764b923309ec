"""Tunables of one gossip pool, with memberlist's presets and the reason beside each default.

Pure: imported by the gossip core (`membership`, `serf`), so it must not import the agent's
config loader, the network or the clock (tests/unit/test_import_rule.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pyconsul.agent.config_error import ConfigError


@dataclass(frozen=True)
class GossipConfig:
    """Tunables of one gossip pool (memberlist semantics). Durations are float seconds."""

    probe_interval: float
    probe_timeout: float
    indirect_checks: int
    suspicion_mult: int
    suspicion_max_timeout_mult: int
    gossip_interval: float
    gossip_nodes: int
    gossip_to_the_dead_time: float
    retransmit_mult: int
    push_pull_interval: float
    awareness_max_multiplier: int
    udp_buffer_size: int
    tcp_timeout: float
    dead_node_reclaim_time: float

    @classmethod
    def lan(cls) -> GossipConfig:
        """memberlist's DefaultLANConfig: a LAN where round trips are well under 100 ms."""
        return cls(
            probe_interval=1.0,  # one failure-detection round per second per node (SWIM §4)
            probe_timeout=0.5,  # comfortably above a LAN RTT (the 99th percentile is far below)
            indirect_checks=3,  # three helpers rule out a lossy path between prober and target
            suspicion_mult=4,  # suspicion lasts mult * log10(N) probe intervals (Lifeguard §IV-B)
            suspicion_max_timeout_mult=6,  # without confirmations a suspicion may last 6x the minimum
            gossip_interval=0.2,  # piggyback rumours five times a second
            gossip_nodes=3,  # fan-out per round; rumours reach N nodes in O(log N) rounds
            gossip_to_the_dead_time=30.0,  # keep telling a dead node for a while so it can refute
            retransmit_mult=4,  # each rumour is sent mult * log10(N+1) times
            push_pull_interval=30.0,  # full-state anti-entropy over TCP repairs lost rumours
            awareness_max_multiplier=8,  # Lifeguard local health may slow probing down to 8x
            udp_buffer_size=1400,  # fits an Ethernet MTU after IP/UDP headers; avoids fragmentation
            tcp_timeout=10.0,  # bound on a push/pull or TCP fallback ping exchange
            dead_node_reclaim_time=0.0,  # a dead node's name is never reclaimed by another address
        )

    @classmethod
    def wan(cls) -> GossipConfig:
        """memberlist's DefaultWANConfig: derived from `lan()` for links between datacenters."""
        return replace(
            cls.lan(),
            probe_interval=5.0,  # WAN round trips and loss are larger; probe less often
            probe_timeout=3.0,  # allow for an intercontinental round trip
            suspicion_mult=6,  # be slower to declare a remote server dead
            gossip_interval=0.5,  # gossip less often ...
            gossip_nodes=4,  # ... but to one more node
            gossip_to_the_dead_time=60.0,  # matches the longer failure detection
            push_pull_interval=60.0,  # full syncs are costlier across datacenters
            tcp_timeout=30.0,  # TCP over a WAN may need several retransmissions
        )

    @classmethod
    def local(cls) -> GossipConfig:
        """memberlist's DefaultLocalConfig: derived from `lan()` for loopback (dev mode, tests)."""
        return replace(
            cls.lan(),
            probe_interval=1.0,  # unchanged: failure detection speed is not the goal on loopback
            probe_timeout=0.2,  # loopback RTT is microseconds
            indirect_checks=1,  # there is no path diversity on one host
            suspicion_mult=3,  # converge faster
            retransmit_mult=2,  # loopback loses (almost) nothing
            gossip_interval=0.1,  # cheap on loopback; converge faster
            gossip_to_the_dead_time=15.0,  # matches the shorter suspicion
            push_pull_interval=15.0,  # cheap on loopback
            tcp_timeout=1.0,  # a loopback connection never takes longer
        )

    def validate(self, prefix: str = "") -> None:
        """Raise ConfigError naming the first invalid field (prefixed, e.g. `gossip_lan.`)."""
        for name in ("probe_interval", "probe_timeout", "gossip_interval", "push_pull_interval",
                     "tcp_timeout", "gossip_to_the_dead_time"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{prefix}{name}: must be positive")
        for name in ("indirect_checks", "suspicion_mult", "suspicion_max_timeout_mult", "gossip_nodes",
                     "retransmit_mult", "awareness_max_multiplier"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{prefix}{name}: must be at least 1")
        if self.probe_timeout > self.probe_interval:
            raise ConfigError(f"{prefix}probe_timeout: must not exceed probe_interval")
        if self.udp_buffer_size < 512:
            raise ConfigError(f"{prefix}udp_buffer_size: must be at least 512")
        if self.dead_node_reclaim_time < 0:
            raise ConfigError(f"{prefix}dead_node_reclaim_time: must not be negative")

