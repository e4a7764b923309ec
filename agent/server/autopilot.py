"""What the leader does about the servers of its datacenter (Consul's leader.go + autopilot). Pure.

- **Add**: an alive server of our datacenter that is not in the Raft configuration is added as a
  voter, one change at a time (Raft thesis §4.1) -- a replacement or a newly joined server.
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

from collections.abc import Iterable
from dataclasses import dataclass

from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.raft.messages import Configuration, Server
from pyconsul.agent.server.bootstrap import server_of


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
            add = s
    base = Plan(add=add, remove_left=tuple(sorted(left)))
    if not cleanup_dead_servers or not (failed or stale):
        return base
    peers = sum(1 for s in conf.servers if s.suffrage == 0)
    removals = len(failed) + len(stale)
    if removals < peers // 2:
        return Plan(add, base.remove_left, tuple(failed), tuple(sorted(stale)))
    why = f"Failed to remove dead servers: too many dead servers: {removals}/{peers}"
    return Plan(add, base.remove_left, warning=why)
