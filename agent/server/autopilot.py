"""What the leader does about the servers of its datacenter (Consul's leader.go + autopilot). Pure.

- **Add**: an alive server of our datacenter that is not in the Raft configuration is added as a
  NON-VOTER, one change at a time (Raft thesis §4.1) -- a replacement or a newly joined server (Consul
  1.7, raft protocol 3: joinConsulServer's AddNonvoter). The servers of the initial bootstrap
  (bootstrap_expect / -bootstrap) are voters from the first entry on (bootstrap.py).
- **Promote** (autopilot's stable server introduction): a non-voter becomes a voter once it has been
  healthy (`is_healthy`) for server_stabilization_time without a break (`update_health` keeps when
  each server last changed between healthy and unhealthy). A server the leader cannot replicate to --
  e.g. one whose RPC TLS is refused -- never answers, so it stays a non-voter and never counts in the
  quorum.
- **Left servers** still in the configuration (their leave event was missed, e.g. during an
  election) are removed, unconditionally, as Consul's reconcile does.
- **Dead-server cleanup** (autopilot `cleanup_dead_servers`, default on): servers whose LAN member is
  `failed` are force-left (they then show as `left`, and the leave event removes them from Raft), and
  "stale" Raft servers with no LAN member at all are removed directly. As in Consul, only when the
  removals touch a minority: `removals < peers // 2`. So with three servers one dead server stays
  until a replacement joins (four peers, 1 < 2): the cluster never shrinks itself below a quorum's
  safety margin because of a transient failure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pyconsul.agent.flags import format_duration, parse_duration
from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.raft.messages import Configuration, Server, Suffrage
from pyconsul.agent.server.bootstrap import server_of
from pyconsul.agent.state.commands import AutopilotConf

# Bounds of the settings (config file and PUT /v1/operator/autopilot/configuration; README "Limits").
MAX_LAST_CONTACT_THRESHOLD = 3600.0  # seconds; > 0
MAX_STABILIZATION_TIME = 3600.0  # seconds; >= 0
MAX_TRAILING_LOGS = 2**63 - 1  # >= 0 (Consul's is a uint64; capped at a signed 64-bit integer)


@dataclass(frozen=True, slots=True)
class AutopilotConfig:
    """Consul's autopilot settings (agent config `autopilot { ... }`; Consul's defaults). `create_index` and
    `modify_index` are the Raft indexes of the state's settings when they were made and last changed (for
    ?cas=; state/autopilot.py), 0 for the config file's settings not yet in the state."""

    cleanup_dead_servers: bool = True
    last_contact_threshold: float = 0.2  # a server is healthy only if the leader heard from it this recently
    max_trailing_logs: int = 250  # ... and it is at most this many entries behind the leader's last index
    server_stabilization_time: float = 10.0  # healthy this long without a break before a non-voter is promoted
    create_index: int = 0
    modify_index: int = 0

    def validate(self) -> None:
        """ValueError naming the setting that is out of its bounds."""
        t = self.last_contact_threshold
        if not (math.isfinite(t) and 0 < t <= MAX_LAST_CONTACT_THRESHOLD):
            raise ValueError(f"LastContactThreshold must be more than 0s and at most "
                             f"{format_duration(MAX_LAST_CONTACT_THRESHOLD)}, got {format_duration(t)}")
        t = self.server_stabilization_time
        if not (math.isfinite(t) and 0 <= t <= MAX_STABILIZATION_TIME):
            raise ValueError(f"ServerStabilizationTime must be between 0s and "
                             f"{format_duration(MAX_STABILIZATION_TIME)}, got {format_duration(t)}")
        if not 0 <= self.max_trailing_logs <= MAX_TRAILING_LOGS:
            raise ValueError(f"MaxTrailingLogs must be between 0 and {MAX_TRAILING_LOGS}, got {self.max_trailing_logs}")

    def to_json(self) -> dict[str, Any]:
        """Consul 1.7's api.AutopilotConfiguration (the enterprise-only settings at their zero values)."""
        return {"CleanupDeadServers": self.cleanup_dead_servers,
                "LastContactThreshold": format_duration(self.last_contact_threshold),
                "MaxTrailingLogs": self.max_trailing_logs, "MinQuorum": 0,
                "ServerStabilizationTime": format_duration(self.server_stabilization_time),
                "RedundancyZoneTag": "", "DisableUpgradeMigration": False, "UpgradeVersionTag": "",
                "CreateIndex": self.create_index, "ModifyIndex": self.modify_index}


def to_state(cfg: AutopilotConfig) -> AutopilotConf:
    """The settings as the replicated state keeps them (state/autopilot.py; the indexes are the state's)."""
    return AutopilotConf(cfg.cleanup_dead_servers, cfg.last_contact_threshold, cfg.max_trailing_logs,
                         cfg.server_stabilization_time)


def from_state(conf: AutopilotConf) -> AutopilotConfig:
    return AutopilotConfig(conf.cleanup_dead_servers, conf.last_contact_threshold, conf.max_trailing_logs,
                           conf.server_stabilization_time, conf.create_index, conf.modify_index)


def _duration(v: object, name: str) -> float:
    """A duration in a PUT body: a Go duration string, or a number of nanoseconds (Go's JSON of a Duration)."""
    if isinstance(v, str):
        try:
            return parse_duration(v)
        except ValueError:
            raise ValueError(f"Error parsing autopilot config: {name}: invalid duration {v!r}") from None
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v) / 1e9
    raise ValueError(f"Error parsing autopilot config: {name}: expected a duration, got {type(v).__name__}")


def _given(b: Mapping[str, object], key: str, name: str, default: float) -> float:
    return _duration(b[key], name) if key in b else default


def config_from_json(body: object, base: AutopilotConfig) -> AutopilotConfig:
    """The settings of a PUT body (Consul's api.AutopilotConfiguration; keys case-insensitive as Go's JSON
    decoding) over `base`. A key left out keeps its value in `base`: Consul 1.7 would set it to its zero value
    (a 0s LastContactThreshold: no server is ever healthy), yet clients such as py-consul send only the keys
    they change. The enterprise-only keys are ignored. ValueError with the message for a 400."""
    if not isinstance(body, Mapping):
        raise ValueError("Error parsing autopilot config: the body must be a JSON object")
    b = {str(k).lower(): v for k, v in body.items()}
    cleanup = b.get("cleanupdeadservers", base.cleanup_dead_servers)
    if not isinstance(cleanup, bool):
        raise ValueError("Error parsing autopilot config: CleanupDeadServers must be a boolean")
    trailing = b.get("maxtrailinglogs", base.max_trailing_logs)
    if isinstance(trailing, float) and trailing.is_integer():
        trailing = int(trailing)
    if not isinstance(trailing, int) or isinstance(trailing, bool):
        raise ValueError("Error parsing autopilot config: MaxTrailingLogs must be an integer")
    out = replace(base, cleanup_dead_servers=cleanup,
                  last_contact_threshold=_given(b, "lastcontactthreshold", "LastContactThreshold",
                                                base.last_contact_threshold),
                  max_trailing_logs=trailing,
                  server_stabilization_time=_given(b, "serverstabilizationtime", "ServerStabilizationTime",
                                                   base.server_stabilization_time))
    out.validate()
    return out


@dataclass(frozen=True, slots=True)
class ServerStats:
    """What the leader knows of one server of its Raft configuration, at `now` (the leader's clock).
    `last_contact`: seconds since the leader last heard from it (0 for the leader; math.inf: never in this
    term). `last_term`: the term of the last entry known to be in its log (the one at its match index)."""

    id: str
    name: str
    address: str
    serf_status: str  # "alive", "failed", "left", "none" (no LAN member)
    version: str
    leader: bool
    voter: bool
    last_contact: float
    last_term: int
    last_index: int


@dataclass(frozen=True, slots=True)
class ServerHealth:
    stats: ServerStats
    healthy: bool
    stable_since: float  # leader's clock: when `healthy` last changed (or when this leader first looked)


def is_healthy(s: ServerStats, term: int, last_index: int, cfg: AutopilotConfig) -> bool:
    """Consul's ServerHealth.IsHealthy: alive in the LAN pool, heard from within last_contact_threshold, on
    the leader's term, and at most max_trailing_logs behind the leader's last index."""
    if s.serf_status != "alive" or not 0 <= s.last_contact <= cfg.last_contact_threshold:
        return False
    if s.last_term != term:
        return False
    return not (last_index > cfg.max_trailing_logs and s.last_index < last_index - cfg.max_trailing_logs)


def update_health(prev: Mapping[str, ServerHealth], stats: Iterable[ServerStats], term: int, last_index: int,
                  now: float, cfg: AutopilotConfig) -> dict[str, ServerHealth]:
    """The health of every server now; `stable_since` carries over while `healthy` did not change."""
    out: dict[str, ServerHealth] = {}
    for s in stats:
        healthy = is_healthy(s, term, last_index, cfg)
        before = prev.get(s.id)
        since = before.stable_since if before is not None and before.healthy == healthy else now
        out[s.id] = ServerHealth(s, healthy, since)
    return out


def is_stable(h: ServerHealth | None, now: float, cfg: AutopilotConfig) -> bool:
    """Consul's IsStable: healthy, and for at least server_stabilization_time."""
    return h is not None and h.healthy and now - h.stable_since >= cfg.server_stabilization_time


def promotion(conf: Configuration, health: Mapping[str, ServerHealth], now: float,
              cfg: AutopilotConfig) -> Server | None:
    """The first (by ID) non-voter that is stable, as a voter: the next promotion (one change at a time)."""
    for s in sorted(conf.servers, key=lambda s: s.id):
        if s.suffrage == Suffrage.NONVOTER and is_stable(health.get(s.id), now, cfg):
            return Server(s.id, s.address, Suffrage.VOTER)
    return None


def failure_tolerance(health: Iterable[ServerHealth]) -> int:
    """How many healthy voters beyond a quorum of the voters (Consul's FailureTolerance; 0 at best)."""
    hs = [h for h in health if h.stats.voter]
    healthy = sum(1 for h in hs if h.healthy)
    need = len(hs) // 2 + 1
    return max(0, healthy - need)


@dataclass(frozen=True, slots=True)
class Plan:
    add: Server | None = None
    remove_left: tuple[str, ...] = ()  # Raft server ids whose member left gracefully
    force_leave: tuple[str, ...] = ()  # member names of failed servers (cleanup)
    remove_stale: tuple[str, ...] = ()  # Raft server ids with no LAN member at all (cleanup)
    warning: str = ""  # why dead servers were left alone


def plan(conf: Configuration, members: Iterable[Member], datacenter: str, self_id: str,
         cleanup_dead_servers: bool = True) -> Plan:
    in_conf = {s.id for s in conf.servers}
    stale = set(in_conf) - {self_id}
    failed: list[str] = []
    left: list[str] = []
    add: Server | None = None
    for m in sorted(members, key=lambda m: m.name):
        s = server_of(m, datacenter)
        if s is None:
            continue
        stale.discard(s.id)
        if m.status == MemberStatus.FAILED:
            failed.append(m.name)
        elif m.status == MemberStatus.LEFT and s.id in in_conf and s.id != self_id:
            left.append(s.id)
        elif m.status == MemberStatus.ALIVE and s.id not in in_conf and add is None:
            add = Server(s.id, s.address, Suffrage.NONVOTER)  # promoted once stable (promotion())
    base = Plan(add=add, remove_left=tuple(sorted(left)))
    if not cleanup_dead_servers or not (failed or stale):
        return base
    peers = sum(1 for s in conf.servers if s.suffrage == 0)
    removals = len(failed) + len(stale)
    if removals < peers // 2:
        return Plan(add, base.remove_left, tuple(failed), tuple(sorted(stale)))
    why = f"Failed to remove dead servers: too many dead servers: {removals}/{peers}"
    return Plan(add, base.remove_left, warning=why)
