"""What the HTTP layer may ask of the agent (http/server.py's AgentAPI), and nothing more.

The agent hands the HTTP app this narrow object instead of itself: gossip pools, the Raft view for
/v1/agent/self, the local config, and a `leave` callback. Each piece is passed in, so the facade can be
tested with fakes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from pyconsul.agent import __version__
from pyconsul.agent.acl.resolver import TokenResolver
from pyconsul.agent.config import AgentConfig
from pyconsul.agent.errors import BadRequest
from pyconsul.agent.gossip.coordinate import Coordinate
from pyconsul.agent.gossip.keyring import Keyring, decode_key
from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.http.api import member_json


class GossipPool(Protocol):
    """The part of agent.gossip.pool.Pool the facade uses."""

    def local_member(self) -> Member: ...
    def coordinate(self) -> Coordinate: ...

    def members(self) -> list[Member]: ...
    async def join(self, addrs: list[str], default_port: int) -> tuple[int, list[str]]: ...
    def force_leave(self, node: str, prune: bool = False) -> bool: ...
    def stats(self) -> dict[str, str]: ...
    async def key_operation(self, op: str, key: bytes | None) -> dict[str, Any]: ...

    @property
    def keyring(self) -> Keyring | None: ...  # None: gossip encryption is off


class ServerView(Protocol):
    """What /v1/agent/self shows of a server (ConsulServer implements it)."""

    def leader_address(self) -> str: ...
    def raft_stats(self) -> dict[str, str]: ...


class LocalView(Protocol):
    """What /v1/agent/self counts of the local services and checks (agent.local.manager.LocalAgent)."""

    def services(self) -> Mapping[str, Any]: ...
    def checks(self) -> Mapping[str, Any]: ...


class StatusBackend(Protocol):
    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any: ...


def force_leave(pools: Iterable[GossipPool | None], node: str, prune: bool) -> bool:
    """Force `node` into the left state in every pool that knows it; True if any did."""
    done = False
    for pool in pools:
        if pool is not None:
            done = pool.force_leave(node, prune) or done
    return done


class AgentFacade:
    """Implements agent.http.server.AgentAPI."""

    def __init__(self, cfg: AgentConfig, node_id: str, lan: GossipPool, wan: GossipPool | None,
                 server: ServerView | None, backend: StatusBackend | None,
                 leave: Callable[[], Awaitable[None]]) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.lan = lan
        self.wan = wan
        self.server = server
        self.backend = backend
        self._leave = leave
        self.local: LocalView | None = None  # the agent's services and checks (agent/local), for Stats.agent
        self.dns_stats: Callable[[], dict[str, str]] | None = None  # the DNS server's counters (agent/dns)
        self.http_stats: Callable[[], dict[str, str]] | None = None  # HTTP(S) connection counters (httpd ConnLimit)
        self.acl: TokenResolver | None = None  # ACL token resolution (agent/acl/resolver.py), set by the agent

    def _pool(self, wan: bool) -> GossipPool:
        if wan:
            if self.wan is None:  # Consul's text (its HTTP 500); the request's fault here, so a 400
                raise BadRequest("Must be a server to join WAN cluster")
            return self.wan
        return self.lan

    def members(self, wan: bool) -> list[Member]:
        return self._pool(wan).members() if (self.wan is not None or not wan) else []

    async def join(self, addr: str, wan: bool) -> tuple[int, list[str]]:
        port = self.cfg.ports.serf_wan if wan else self.cfg.ports.serf_lan
        return await self._pool(wan).join([addr], port)

    async def leave(self) -> None:
        await self._leave()

    def force_leave(self, node: str, prune: bool, wan: bool) -> bool:
        return force_leave((self.lan, self.wan), node, prune)

    async def list_datacenters(self) -> list[str]:
        """/v1/catalog/datacenters: servers know the WAN; a client agent asks a server (as Consul's do)."""
        if self.server is None and self.backend is not None:
            dcs = await self.backend.status("datacenters")
            return [str(d) for d in dcs]
        return self.datacenters()

    def datacenters(self) -> list[str]:
        dcs = {self.cfg.datacenter}
        if self.wan is not None:
            dcs |= {m.tags.get("dc", "") for m in self.wan.members() if m.tags.get("dc")}
        return sorted(dcs)

    def self_info(self) -> dict[str, Any]:
        cfg = self.cfg
        stats: dict[str, dict[str, str]] = {
            "agent": self._local_stats(),
            "build": {"prerelease": "", "revision": "pyconsul", "version": __version__},
            "consul": self._consul_stats(),
            "runtime": {
                "arch": os.uname().machine,
                "os": sys.platform,
                "version": f"python{sys.version.split()[0]}",
                "tasks": str(len(asyncio.all_tasks())),
                "cpu_count": str(os.cpu_count() or 1),
            },
            "serf_lan": self.lan.stats(),
        }
        if self.wan is not None:
            stats["serf_wan"] = self.wan.stats()
        if self.dns_stats is not None:
            stats["dns"] = self.dns_stats()
        if self.http_stats is not None:
            stats["http"] = self.http_stats()
        return {
            "Config": {
                "Datacenter": cfg.datacenter,
                "NodeName": cfg.node_name,
                "NodeID": self.node_id,
                "Server": cfg.server,
                "Revision": "pyconsul",
                "Version": __version__,
            },
            "DebugConfig": {
                "BindAddr": cfg.bind_addr,
                "ClientAddrs": cfg.client_addrs(),
                "DataDir": cfg.data_dir,
                "BootstrapExpect": cfg.bootstrap_expect,
                "SerfPortLAN": cfg.ports.serf_lan,
                "SerfPortWAN": cfg.ports.serf_wan,
                "HTTPPort": cfg.ports.http,
                "HTTPSPort": cfg.ports.https,
                "VerifyIncoming": cfg.tls.verify_incoming, "VerifyOutgoing": cfg.tls.verify_outgoing,
                "VerifyServerHostname": cfg.tls.verify_server_hostname,
                "EncryptKey": "hidden" if cfg.encrypt else "",
            },
            "Coord": self.lan.coordinate().to_json(),  # the LAN coordinate (Consul: of the default segment)
            "Member": member_json(self.lan.local_member()),
            "Stats": stats,
            "Meta": {},
        }

    def _local_stats(self) -> dict[str, str]:
        """Consul's Stats.agent: this agent's services and checks (TTL checks and interval checks counted apart)."""
        local = self.local
        if local is None:
            return {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "0"}
        checks = local.checks()
        ttls = sum(1 for c in checks.values() if c.type == "ttl")
        monitors = sum(1 for c in checks.values() if c.type in ("script", "http", "tcp", "alias"))
        return {"check_monitors": str(monitors), "check_ttls": str(ttls), "checks": str(len(checks)),
                "services": str(len(local.services()))}

    def _consul_stats(self) -> dict[str, str]:
        if self.server is None:
            alive = [m for m in self.lan.members() if m.status == MemberStatus.ALIVE]
            known = sum(1 for m in alive if m.tags.get("role") == "consul")
            return {"server": "false", "known_servers": str(known)}
        raft = self.server.raft_stats()
        out = {
            "server": "true",
            "leader": raft.pop("leader", "false"),
            "leader_addr": self.server.leader_address(),
            "bootstrap": str(self.cfg.bootstrap).lower(),
            "known_datacenters": str(len(self.datacenters())),
        }
        out.update(raft)
        return out

    async def keyring(self, op: str, key: str | None) -> list[dict[str, Any]]:
        """Consul's keyring operation: a serf key query on the WAN pool (servers) and the LAN
        pool; one entry per pool with key counts out of the nodes that answered."""
        raw = decode_key(key) if key is not None else None
        if raw is not None:
            self._check_key_change(op, raw)
        out: list[dict[str, Any]] = []
        for wan, pool in ((True, self.wan), (False, self.lan)):
            if pool is None:
                continue
            r = await pool.key_operation(op, raw)
            out.append({
                "WAN": wan,
                "Datacenter": self.cfg.datacenter,
                "Segment": "",
                "Keys": r["Keys"],
                "PrimaryKeys": r["PrimaryKeys"],
                "Messages": r["Messages"],
                "NumNodes": r["NumNodes"],
                "NumResp": r["NumResp"],
                "NumErr": r["NumErr"],
            })
        return out

    def _check_key_change(self, op: str, key: bytes) -> None:
        """Refuse (400) a change every node would refuse, as this agent's own keyrings show it, before the
        query: no encryption, use-key of a key not installed, remove-key of the primary key. What a query
        still reports as failed (a node that differs from this one) stays a 500 "N/M nodes reported failure"."""
        for pool in (self.wan, self.lan):
            ring = pool.keyring if pool is not None else None
            if pool is not None and ring is None:
                raise BadRequest("No keyring to modify (encryption not enabled)")
            if ring is not None and op == "use-key" and key not in ring.keys():  # noqa: SIM118 (a list)
                raise BadRequest("Requested key is not in the keyring")
            if ring is not None and op == "remove-key" and key == ring.primary():
                raise BadRequest("Removing the primary key is not allowed")
