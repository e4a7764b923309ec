"""Deciding when and with whom a server bootstraps Raft (`-bootstrap-expect`, `-bootstrap`). Pure.

Consul's rule: a server with bootstrap_expect = N waits until it sees N servers of its own
datacenter in the LAN pool, all expecting the same N, then bootstraps Raft with exactly those
servers. Every server computes the same configuration from the same gossip view (sorted by
ID), so they agree without talking. A server that already has Raft state never bootstraps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.raft.messages import Configuration, Server


@dataclass(frozen=True, slots=True)
class Decision:
    configuration: Configuration | None
    reason: str  # why not (yet), for the log; "" when configuration is set


def server_of(m: Member, datacenter: str) -> Server | None:
    """A LAN member as a Raft server of our datacenter, or None."""
    t = m.tags
    if t.get("role") != "consul" or t.get("dc") != datacenter or not t.get("id"):
        return None
    try:
        port = int(t.get("port", "8300"))
    except ValueError:
        return None
    return Server(t["id"], f"{m.addr}:{port}")


def decide(members: Iterable[Member], datacenter: str, expect: int, bootstrap: bool, self_id: str) -> Decision:
    servers: dict[str, Server] = {}
    for m in members:
        if m.status != MemberStatus.ALIVE:
            continue
        s = server_of(m, datacenter)
        if s is None:
            continue
        if bootstrap and s.id != self_id and m.tags.get("bootstrap") == "1":
            return Decision(None, f"two servers in bootstrap mode: {m.name} too; refusing to bootstrap")
        if expect and m.tags.get("expect") not in (None, str(expect)) and s.id != self_id:
            theirs = m.tags.get("expect")
            return Decision(None, f"member {m.name} has a conflicting expect value {theirs} (ours {expect})")
        servers[s.id] = s
    if bootstrap:
        me = servers.get(self_id)
        return Decision(Configuration((me,)), "") if me else Decision(None, "our own server is not in the LAN view yet")
    if expect <= 0:
        return Decision(None, "bootstrap_expect not set: waiting to be joined to an existing cluster")
    if len(servers) < expect:
        return Decision(None, f"need {expect} servers, see {len(servers)}")
    return Decision(Configuration(tuple(servers[k] for k in sorted(servers))), "")
