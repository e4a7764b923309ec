"""The composition root: the only place that builds sockets, stores and loops.

It builds the gossip pools, the HTTP server, and for servers the Raft storage, transport and node,
the state machine and the ConsulServer, and wires them to each other (`_build_server`); everything
else receives what it needs. The HTTP layer gets a narrow facade (facade.py), not the agent. The
concerns around it have their own modules: datadir.py (node ID, keyrings), tags.py (what we advertise),
rejoin.py (member snapshots), process.py (signals, exit codes).

Start-up order (Consul's): data dir (node id, keyrings) -> LAN pool -> WAN pool (servers) -> server
(RPC, Raft) -> HTTP -> `-join`/`-join-wan` (fatal if none answers) -> snapshot rejoin and
`-retry-join*` in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyconsul.agent import datadir
from pyconsul.agent.acl.resolver import TokenResolver
from pyconsul.agent.checks.runner import CheckRunner
from pyconsul.agent.config import AgentConfig, ConfigError
from pyconsul.agent.events import AgentEvents
from pyconsul.agent.facade import AgentFacade, force_leave
from pyconsul.agent.gossip.keyring import Keyring
from pyconsul.agent.gossip.pool import Pool
from pyconsul.agent.gossip.serf import Member, MemberEvent, MemberStatus, SerfConfig, SerfEffect, UserEventReceived
from pyconsul.agent.http.authz import configure as configure_acl
from pyconsul.agent.http.server import make_app
from pyconsul.agent.httpd.h1 import ConnLimit, HTTPServer, serve
from pyconsul.agent.httpd.web import Application
from pyconsul.agent.local import ae
from pyconsul.agent.local.manager import DEREGISTER_MIN, REAP_INTERVAL, LocalAgent, catalog_alias_query
from pyconsul.agent.local.sync import AntiEntropy, NodeInfo
from pyconsul.agent.process import StartupError, run_until_stopped, setup_logging
from pyconsul.agent.raft.rpctls import RpcTLS
from pyconsul.agent.raft.transport import RpcLimits, Transport
from pyconsul.agent.rejoin import MemberSnapshots, Pools
from pyconsul.agent.server.client import ClientBackend
from pyconsul.agent.supervise import Supervisor
from pyconsul.agent.tags import agent_tags
from pyconsul.agent.tlsutil import TLSConfigError, load_ssl, switchable

if TYPE_CHECKING:
    from pyconsul.agent.acl.config import ACLConfig
    from pyconsul.agent.dns.server import DNSServer
    from pyconsul.agent.server.server import ConsulServer

log = logging.getLogger("agent")

__all__ = ["Agent", "StartupError", "run_agent"]


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir) if cfg.data_dir and not cfg.dev else None
        self.node_id = cfg.node_id or ""
        self.lan: Pool | None = None
        self.wan: Pool | None = None
        self.runner: HTTPServer | None = None
        self.https: HTTPServer | None = None  # ports.https
        self.https_ctx: Any = None  # its switchable ssl context (tlsutil.switchable): a reload points it elsewhere
        self.http_app: Application | None = None  # the /v1 API (its router: tests/unit/test_openapi_routes.py)
        # limits.http_max_conns_per_client, one count for the HTTP and HTTPS listeners together (as Consul)
        self.http_limit = ConnLimit(cfg.http_max_conns_per_client)
        self.lan_keyring: Keyring | None = None
        self.wan_keyring: Keyring | None = None
        self.stopped = asyncio.Event()
        self.fatal = ""  # why the agent stopped on its own (the process then exits 1)
        self.left = False
        self.supervisor = Supervisor(self._fatal)  # every long-lived task, supervised in one place
        self._tasks: set[asyncio.Task[None]] = set()
        self.snapshots = MemberSnapshots(self.data_dir)
        self.started_at = time.time()
        self.server: ConsulServer | None = None
        self.backend: ConsulServer | ClientBackend | None = None
        self.facade: AgentFacade | None = None
        self._client_transport: Transport | None = None
        self._dev_dir: str | None = None
        self.events: AgentEvents | None = None  # user events (agent/events.py)
        self.local: LocalAgent | None = None  # this agent's services and checks (agent/local)
        self.anti_entropy: AntiEntropy | None = None
        self.check_runner: CheckRunner | None = None
        self.dns: DNSServer | None = None  # the DNS interface (agent/dns), when ports.dns > 0
        self.acl: TokenResolver | None = None  # ACL token resolution (agent/acl), built with the backend

    def _pools(self) -> Pools:
        return (("local", self.lan, self.cfg.ports.serf_lan), ("remote", self.wan, self.cfg.ports.serf_wan))

    def _save_keyrings(self) -> None:
        datadir.save_keyrings(self.data_dir, self.lan_keyring, self.wan_keyring)

    # ------------------------------------------------------------ lifecycle

    async def _start_pool(self, label: str, logger: str, name: str, port: int, advertise: str,
                          keyring: Keyring | None, reconnect_timeout: float) -> Pool:
        """One serf pool (LAN or WAN) bound to bind_addr:port, started; StartupError if it cannot bind."""
        cfg = self.cfg
        pool = Pool(
            label=label, logger=logger, name=name, bind=(cfg.bind_addr, port), advertise=(advertise, port),
            gossip=cfg.gossip_lan if label == "lan" else cfg.gossip_wan, tags=agent_tags(cfg, self.node_id),
            keyring=keyring, verify_incoming=cfg.encrypt_verify_incoming,
            verify_outgoing=cfg.encrypt_verify_outgoing, serf_config=SerfConfig(reconnect_timeout=reconnect_timeout),
            on_event=lambda e: self._on_event(label, e), on_keyring_change=self._save_keyrings,
            on_failed=lambda exc: self._pool_failed(label, exc),
        )
        try:
            await pool.start()
        except OSError as exc:
            raise StartupError(
                f"Failed to start {label.upper()} serf on {cfg.bind_addr}:{port}: {exc.strerror}") from None
        return pool

    async def start(self) -> None:
        cfg = self.cfg
        self.node_id = datadir.prepare(self.data_dir, self.node_id)
        self.lan_keyring = datadir.load_keyring(self.data_dir, datadir.LAN_KEYRING, cfg.encrypt)
        adv = cfg.advertise()
        role = "server" if cfg.server else "client"
        self.lan = await self._start_pool("lan", f"agent.{role}.serf.lan", cfg.node_name, cfg.ports.serf_lan, adv,
                                          self.lan_keyring, cfg.reconnect_timeout)
        if cfg.server:
            self.wan_keyring = datadir.load_keyring(self.data_dir, datadir.WAN_KEYRING, cfg.encrypt)
            self.wan = await self._start_pool("wan", "agent.server.serf.wan", f"{cfg.node_name}.{cfg.datacenter}",
                                              cfg.ports.serf_wan, cfg.advertise_addr_wan or adv, self.wan_keyring,
                                              cfg.reconnect_timeout_wan)
        await self._start_backend()
        self.acl = self._start_acl()
        self._start_events_and_coordinates()
        self._start_local()
        self.facade = AgentFacade(cfg, self.node_id, self.lan, self.wan, self.server, self.backend, self.leave)
        self.facade.local = self.local
        self.facade.http_stats = self.http_limit.stats
        self.facade.acl = self.acl
        if cfg.ports.http > 0 or cfg.ports.https > 0:
            app = make_app(self.facade, self.backend, cfg.datacenter, cfg.node_name, local=self.local,
                           reload=self.reload, acl_resolver=self.acl)
            configure_acl(app, self.acl if cfg.acl.enabled else None, cfg.node_name, self.local)
            self._add_event_coordinate_routes(app)
            self.http_app = app
        if cfg.ports.https > 0 and cfg.tls.cert_file:  # the same API over TLS (agent/tlsutil.py)
            self.https = await self._start_https(app)
        if cfg.ports.http > 0:
            try:
                self.runner = await serve(app, cfg.client_addrs(), cfg.ports.http, limit=self.http_limit)
            except OSError as exc:
                raise StartupError(
                    f"Failed to start HTTP server on {cfg.client_addr}:{cfg.ports.http}: {exc.strerror}"
                ) from None
            log.info("Started HTTP server: address=%s:%d network=tcp", cfg.client_addr, cfg.ports.http)
        if cfg.ports.dns > 0:
            await self._start_dns()
        if cfg.start_join:
            n, errs = await self.lan.join(list(cfg.start_join), cfg.ports.serf_lan)
            if n == 0:
                raise StartupError(f"Failed to join {', '.join(cfg.start_join)}: {'; '.join(errs)}")
            log.info("(LAN) joined: number_of_nodes=%d", n)
        if cfg.start_join_wan and self.wan is not None:
            n, errs = await self.wan.join(list(cfg.start_join_wan), cfg.ports.serf_wan)
            if n == 0:
                raise StartupError(f"Failed to join WAN {', '.join(cfg.start_join_wan)}: {'; '.join(errs)}")
            log.info("(WAN) joined: number_of_nodes=%d", n)
        self.spawn(self.snapshots.rejoin(self._pools()), "rejoin")
        lan, wan = self.lan, self.wan
        if cfg.retry_join:
            self.spawn(lambda: self._retry_join(lan, cfg.retry_join, cfg.retry_interval, cfg.retry_max,
                                                cfg.ports.serf_lan, "LAN"), "retry-join", restart=True)
        if cfg.retry_join_wan and wan is not None:
            self.spawn(lambda: self._retry_join(wan, cfg.retry_join_wan, cfg.retry_interval_wan, cfg.retry_max_wan,
                                                cfg.ports.serf_wan, "WAN"), "retry-join-wan", restart=True)
        self.spawn(lambda: self.snapshots.run(self._pools(), lambda: self.left), "member-snapshots", restart=True)
        log.info("started: node=%s datacenter=%s server=%s", cfg.node_name, cfg.datacenter, cfg.server)

    async def _start_backend(self) -> None:
        """Servers run Raft and the store; clients forward to a server of their datacenter."""
        cfg = self.cfg
        assert self.lan is not None
        if cfg.server:
            from pyconsul.agent.raft.storage import StorageCorrupt  # servers only: clients stay light

            if self.data_dir is None:
                import tempfile  # -dev only: keep it out of every other agent's memory

                self._dev_dir = tempfile.mkdtemp(prefix="pyconsul-dev-")
                data = Path(self._dev_dir)
            else:
                data = self.data_dir
            try:
                self.server = self._build_server(data, self.lan)
                await self.server.start()
            except OSError as exc:
                raise StartupError(
                    f"Failed to start server RPC on {cfg.bind_addr}:{cfg.ports.server}: {exc.strerror}") from None
            except StorageCorrupt as exc:
                raise StartupError(f"Raft storage is corrupt, refusing to start: {exc}") from None
            self.backend = self.server
        else:
            self._client_transport = Transport(self.node_id, cfg.datacenter, (cfg.bind_addr, 0),  # requests only
                                               tls=self._rpc_tls(), supervisor=self.supervisor)
            self.backend = ClientBackend(self._client_transport, self.lan.members, cfg.datacenter)

    def _rpc_tls(self) -> RpcTLS | None:
        """TLS for server RPC (agent/raft/rpctls.py), or None when nothing asks for it (ssl then stays unloaded)."""
        cfg = self.cfg
        try:
            return RpcTLS.from_config(cfg.tls, cfg.datacenter, cfg.dns_config.domain, cfg.rpc_handshake_timeout)
        except TLSConfigError as exc:
            raise StartupError(f"Failed to set up TLS for server RPC: {exc}") from None

    def _start_local(self) -> None:
        """The local services and checks (persisted ones, then the config files'), anti-entropy and reaping."""
        cfg = self.cfg
        assert self.lan is not None and self.backend is not None
        # PYCONSUL_TEST_REAP_INTERVAL (test-only, like PYCONSUL_TEST_AE_INTERVAL below): seconds between reaps of
        # services critical for too long, and the least deregister_critical_service_after (Consul's 30 s and 1 min).
        reap = float(os.environ.get("PYCONSUL_TEST_REAP_INTERVAL", "") or 0)
        self.local = LocalAgent(cfg.node_name, data_dir=self.data_dir, enable_script_checks=cfg.enable_script_checks,
                                enable_local_script_checks=cfg.enable_local_script_checks,
                                check_update_interval=cfg.check_update_interval,
                                reap_interval=reap if reap > 0 else REAP_INTERVAL,
                                deregister_min=reap if reap > 0 else DEREGISTER_MIN)
        self.check_runner = CheckRunner(self.local, node_name=cfg.node_name, local_health=self.local.alias_health,
                                        remote_health=catalog_alias_query(self.backend), supervisor=self.supervisor)
        self.local.runner = self.check_runner
        self.local.load(cfg.services, cfg.checks)  # checks added here start with the runner
        self.check_runner.start()
        adv = cfg.advertise()
        node = NodeInfo(cfg.node_name, adv, self.node_id, cfg.datacenter, {"lan": adv, "wan": adv},
                        {"consul-network-segment": ""})  # as the leader's reconcile registers the node
        lan = self.lan
        # PYCONSUL_TEST_AE_INTERVAL (test-only, like supervise.py's hook): the full-sync base interval in seconds,
        # so a test sees a catalog edit repaired without waiting Consul's minute.
        interval = float(os.environ.get("PYCONSUL_TEST_AE_INTERVAL", "") or ae.SYNC_INTERVAL)
        self.anti_entropy = AntiEntropy(self.local.state, self.backend, node,
                                        lambda: sum(1 for m in lan.members() if m.status == MemberStatus.ALIVE),
                                        interval=interval)
        self.local.sync = self.anti_entropy
        self.spawn(self.anti_entropy.run, "anti-entropy", restart=True)
        self.spawn(self.local.reap_loop, "check-reaper", restart=True)

    async def reload(self) -> None:
        """SIGHUP and PUT /v1/agent/reload: re-read the config files; apply the log level and the diff of
        services and checks. A config that does not load changes nothing (the error is raised)."""
        from pyconsul.agent.config import build_config
        from pyconsul.agent.errors import Internal

        log.info("Reloading configuration...")
        try:
            new, _ = await asyncio.to_thread(build_config, self.cfg.source_flags)
        except ConfigError as exc:
            log.error("Failed to reload configs: %s", exc)
            raise Internal(f"Failed to reload configs: {exc}") from None
        try:  # the new TLS files are read now: if they do not load, nothing changes (agent/tlsreload.py)
            if new.tls.enabled():
                load_ssl()  # here, on the loop: it hands the module to asyncio's
            apply_tls = await asyncio.to_thread(self._prepare_tls, new)
        except TLSConfigError as exc:
            log.error("Failed to reload configs: %s", exc)
            raise Internal(f"Failed to reload configs: {exc}") from None
        setup_logging(new.log_level)
        self.cfg.log_level = new.log_level
        if self.local is not None:
            n_services, n_checks = await self.local.reload(new.services, new.checks,
                                                     enable_script_checks=new.enable_script_checks,
                                                     enable_local_script_checks=new.enable_local_script_checks)
            log.info("Reloaded: services changed=%d checks changed=%d", n_services, n_checks)
        self.cfg.services, self.cfg.checks = new.services, new.checks
        if self.acl is not None and new.acl.enabled == self.cfg.acl.enabled:
            self._reload_acl_tokens(new.acl)
        if new.http_max_conns_per_client != self.http_limit.max_per_ip:  # as Consul's reload (open ones stay)
            self.http_limit.max_per_ip = self.cfg.http_max_conns_per_client = new.http_max_conns_per_client
            log.info("Reloaded limits.http_max_conns_per_client=%d", new.http_max_conns_per_client)
        if self.dns is not None and new.dns_config != self.cfg.dns_config:
            self.dns.reload(new.dns_config)  # Consul reloads dns_config, domains and recursors too
            self.cfg.dns_config = new.dns_config
            log.info("Reloaded DNS settings")
        if apply_tls is not None:
            apply_tls()
            self.cfg.tls = new.tls
            log.info("Reloaded TLS settings (for new connections)")

    def _prepare_tls(self, new: AgentConfig) -> Callable[[], list[str]] | None:
        """The TLS contexts of a reloaded config, built (its files read: in a worker thread), ready to switch to;
        None when neither the old nor the new config has TLS (ssl stays unloaded)."""
        if not (new.tls.enabled() or self.cfg.tls.enabled()):
            return None
        from pyconsul.agent import tlsreload

        transport = self.server.transport if self.server is not None else self._client_transport
        return tlsreload.prepare(new.tls, https=self.https_ctx, transport=transport, serving=self.server is not None,
                                 datacenter=self.cfg.datacenter, domain=self.cfg.dns_config.domain,
                                 handshake_timeout=self.cfg.rpc_handshake_timeout)

    def _reload_acl_tokens(self, new: ACLConfig) -> None:
        """acl.tokens.* from the reloaded files (Consul's reload does the same); tokens set through
        PUT /v1/agent/token/* and persisted (acl.enable_token_persistence) still take precedence. The master
        token is read by the leader at its next establishment or restore (acl/leader.py)."""
        from pyconsul.agent.acl.config import TOKEN_KINDS
        from pyconsul.agent.http.acl import load_tokens

        changed = [k for k in TOKEN_KINDS if getattr(new, k) != getattr(self.cfg.acl, k)]
        for kind in changed:
            setattr(self.cfg.acl, kind, getattr(new, kind))
        if self.cfg.acl.enable_token_persistence and self.data_dir is not None and self.acl is not None:
            load_tokens(self.data_dir, self.acl)
        if changed:
            log.info("Reloaded ACL tokens: %s", ", ".join(changed))

    def _start_events_and_coordinates(self) -> None:
        """User events (fired into the LAN pool, taken from it) and the periodic coordinate sync."""
        from pyconsul.agent.netcoords import CoordinateBatcher, CoordinateSync

        cfg = self.cfg
        lan, backend = self.lan, self.backend
        assert lan is not None and backend is not None
        self.events = AgentEvents(cfg.node_name, lan.user_event, self._local_services)
        if self.server is not None:
            self.server.status_hooks["event_fire"] = self._remote_event_fire
            self.server.status_hooks["coordinate_datacenters"] = lambda args: self._coordinate_datacenters()
            server = self.server
            batcher = CoordinateBatcher(server, lambda addr, args: server.forward.status(
                addr, "coordinate_update", args, to_leader=True))
            server.status_hooks["coordinate_update"] = batcher.update
            self.spawn(batcher.run, "coordinate-batcher", restart=True)
        sync = CoordinateSync(cfg.node_name, lan.coordinate, lambda: len(lan.members()), backend,
                              cfg.sync_coordinate_interval_min, cfg.sync_coordinate_rate_target)
        self.spawn(sync.run, "coordinate-sync", restart=True)

    def _local_services(self) -> list[tuple[str, tuple[str, ...]]]:
        """Event service/tag filters: this agent's local services as (ID, tags), as Consul matches them."""
        local = getattr(self, "local", None)  # agent/local's LocalAgent, when this agent has one
        if local is None:
            return []
        return [(s.id, tuple(s.tags)) for s in local.state.services().values()]

    def _remote_event_fire(self, args: dict[str, Any]) -> bool:
        """A user event fired in another datacenter for ours (?dc=): into our LAN pool."""
        from pyconsul.agent.errors import BadRequest

        name, payload = args.get("name"), args.get("payload", b"")
        if not isinstance(name, str) or not isinstance(payload, bytes) or self.lan is None:
            raise BadRequest("event_fire takes a name and a payload")
        try:
            self.lan.user_event(name, payload)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return True

    def _coordinate_datacenters(self) -> list[dict[str, Any]]:
        from pyconsul.agent.netcoords import datacenter_maps

        wan = self.wan
        if wan is None:
            return datacenter_maps([], lambda name: None, self.cfg.datacenter)
        return datacenter_maps(wan.members(), wan.cached_coordinate, self.cfg.datacenter)

    def _start_acl(self) -> TokenResolver:
        """The token resolver (agent/acl/resolver.py): servers read their own state, clients ask a server (cached
        acl.token_ttl, acl.down_policy when none answers). Wired into the server (enforcement), the client
        backend (the agent token its own requests carry) and, by start(), the HTTP app. A server also runs the
        leader's ACL setup (the builtin policy, the anonymous and master tokens)."""
        cfg = self.cfg
        server, backend = self.server, self.backend
        primary = cfg.primary_datacenter or cfg.datacenter
        secondary = cfg.acl.enabled and primary != cfg.datacenter
        if server is not None:
            from pyconsul.agent.server.acl_reads import resolve_local  # servers only: it loads the state store

            async def lookup(secret: str) -> dict[str, Any] | None:
                found = resolve_local(server.store, secret)
                if found is None and secondary:  # not replicated (yet, or at all): the primary knows it
                    from pyconsul.agent.acl import replication as acl_replication  # secondary DCs only

                    found = await acl_replication.resolve_remote(server, primary, secret)
                return found
        else:
            assert backend is not None

            async def lookup(secret: str) -> dict[str, Any] | None:
                value, _ = await backend.read("acl.resolve", {"secret": secret}, "stale")
                if value is None and secondary:  # not replicated (yet, or at all): the primary knows it
                    from pyconsul.agent.acl import replication as acl_replication  # secondary DCs only

                    return await acl_replication.resolve_remote(backend, primary, secret)
                return value if isinstance(value, dict) else None
        resolver = TokenResolver(cfg.acl, lookup, node_name=cfg.node_name, caching=server is None,
                                 data_dir=str(self.data_dir) if self.data_dir else None)
        resolver.datacenter, resolver.primary_datacenter = cfg.datacenter, primary
        if cfg.acl.enabled and cfg.acl.enable_token_persistence and self.data_dir is not None:
            from pyconsul.agent.http.acl import load_tokens  # the ACL system's HTTP side: only with ACLs

            load_tokens(self.data_dir, resolver)
        if isinstance(backend, ClientBackend):
            backend.agent_token = resolver.agent_token
        if server is not None:
            from pyconsul.agent.acl import leader as acl_leader

            server.acl = resolver
            def master() -> str:  # read when looked for: a reload changes it
                return "" if secondary else cfg.acl.master  # a secondary's master token comes from the primary

            if cfg.acl.enabled:
                server.leader.establish_hooks.append(
                    lambda propose: acl_leader.establish(lambda: server.store.tables, propose, master, time.time))
                self.spawn(lambda: acl_leader.run(lambda: server.is_leader, lambda: server.store.tables, server.write,
                                                  master, time.time, lambda: server.fsm.restores),
                           "acl-leader", restart=True)
            if secondary:  # policies, roles (and global tokens) come from the primary (acl/replication.py)
                from pyconsul.agent.acl import replication as acl_replication

                replicator = acl_replication.for_server(server, primary, cfg.acl)
                resolver.replication_status = replicator.status.json
                self.spawn(replicator.run, "acl-replication", restart=True)
        return resolver

    def _add_event_coordinate_routes(self, app: Any) -> None:
        """/v1/event/*, /v1/coordinate/* and /v1/query/* (agent/http/event.py, coordinate.py, query.py)."""
        from pyconsul.agent.http import coordinate as coordinate_routes
        from pyconsul.agent.http import event as event_routes
        from pyconsul.agent.http import query as query_routes

        assert self.events is not None and self.backend is not None
        backend = self.backend
        event_routes.register(app, self.events, backend, self.cfg.datacenter)
        coordinate_routes.register(app, backend, self._datacenter_maps)
        # /v1/query: prepared queries; failover ranks datacenters by the same WAN coordinates (http/query.py)
        query_routes.register(app, backend, self._datacenter_maps, self.cfg.datacenter, self.cfg.node_name)

    async def _start_https(self, app: Application) -> HTTPServer:
        cfg = self.cfg
        try:
            ctx = self.https_ctx = switchable(cfg.tls.https_server_context())  # reloadable (agent/tlsreload.py)
        except TLSConfigError as exc:
            raise StartupError(f"Failed to start HTTPS server: {exc}") from None
        addrs = cfg.https_addr.split() if cfg.https_addr else cfg.client_addrs()
        try:
            server = await serve(app, addrs, cfg.ports.https, ssl=ctx, limit=self.http_limit,
                                 handshake_timeout=cfg.https_handshake_timeout)
        except OSError as exc:
            raise StartupError(f"Failed to start HTTPS server on {' '.join(addrs)}:{cfg.ports.https}: "
                               f"{exc.strerror}") from None
        log.info("Started HTTPS server: address=%s:%d network=tcp verify_incoming=%s", " ".join(addrs),
                 cfg.ports.https, cfg.tls.incoming_https_verified())
        return server

    async def _start_dns(self) -> None:
        """The DNS interface on ports.dns at addresses.dns (else the client addresses), UDP and TCP."""
        from pyconsul.agent.dns.server import DNSServer
        from pyconsul.agent.dns.views import Views

        cfg = self.cfg
        backend: Any = self.backend
        assert backend is not None and self.facade is not None
        acl = self.acl
        if acl is not None and acl.enabled():  # DNS reads as acl.tokens.default (Consul), enforced by the servers
            from pyconsul.agent.server.acl_enforce import WithToken

            backend = WithToken(backend, acl.default_token)
        dns = DNSServer(cfg.dns_config, cfg.datacenter,
                        lambda changed: Views(backend, cfg.dns_config, cfg.datacenter, self.supervisor, changed,
                                              self._dns_prepared_query))
        addrs = cfg.dns_addr.split() if cfg.dns_addr else cfg.client_addrs()
        try:
            await dns.start(addrs, cfg.ports.dns)
        except OSError as exc:
            raise StartupError(f"Failed to start DNS server on {' '.join(addrs)}:{cfg.ports.dns}: "
                               f"{exc.strerror}") from None
        self.dns = dns
        self.facade.dns_stats = dns.info
        log.info("Started DNS server: address=%s:%d network=udp+tcp", " ".join(addrs), cfg.ports.dns)

    async def _dns_prepared_query(self, dc: str, name: str) -> tuple[tuple[Any, ...], float | None] | None:
        """<name>.query[.<dc>].<domain>: execute the prepared query (with its failover) as this agent's node."""
        from pyconsul.agent.dns.resolver import instances_from_health
        from pyconsul.agent.flags import parse_duration
        from pyconsul.agent.server import prepared_query

        assert self.backend is not None
        result, _ = await prepared_query.execute(self.backend, self._datacenter_maps, self.cfg.datacenter, name,
                                                 agent_node=self.cfg.node_name)
        ttl_text = (result.get("DNS") or {}).get("TTL") or ""
        try:
            ttl = parse_duration(ttl_text) if ttl_text else None
        except ValueError:
            ttl = None
        return instances_from_health(result.get("Nodes") or []), ttl

    async def _datacenter_maps(self) -> list[dict[str, Any]]:
        """The WAN coordinate maps of every datacenter (GET /v1/coordinate/datacenters), for that route and for
        prepared-query failover (HTTP and DNS): a server's own, a client agent's from a server."""
        if self.server is not None:
            return self._coordinate_datacenters()
        assert self.backend is not None
        out: list[dict[str, Any]] = await self.backend.status("coordinate_datacenters")
        return out

    def _build_server(self, data: Path, lan: Pool) -> ConsulServer:
        """A server's parts -- Raft storage (opened here), server-RPC transport, Raft node, state
        machine -- built and wired to each other and to the ConsulServer that runs them."""
        from pyconsul.agent.raft.node import RaftNode
        from pyconsul.agent.raft.storage import RaftStorage
        from pyconsul.agent.server.server import ConsulServer, StoreFSM

        cfg = self.cfg
        fsm = StoreFSM()
        transport = Transport(self.node_id, cfg.datacenter, (cfg.bind_addr, cfg.ports.server),
                              limits=RpcLimits(max_conns_per_client=cfg.rpc_max_conns_per_client), tls=self._rpc_tls(),
                              supervisor=self.supervisor)
        storage = RaftStorage.open(data / "raft")
        raft = RaftNode(self.node_id, cfg.raft_config(), storage, fsm, transport, rng=random.Random())
        server = ConsulServer(cfg, self.node_id, lan.members, transport, raft, fsm,
                              force_leave=lambda name: force_leave((self.lan, self.wan), name, False),
                              wan_members=self._wan_members, supervisor=self.supervisor)
        fsm.on_apply = server.applied
        raft.on_leader_change = server.leader_changed
        raft.on_failed = self._raft_failed
        transport.on_message = raft.deliver
        transport.on_peer_lost = raft.peer_lost
        transport.on_request = server.rpc.dispatch
        return server

    def _fatal(self, reason: str) -> None:
        """The agent cannot go on (a critical task failed): stop; the process exits 1 with `reason`."""
        if not self.fatal:
            self.fatal = reason
        log.error("%s; shutting down", reason)
        self.stopped.set()

    def _raft_failed(self, exc: BaseException) -> None:
        """The Raft loop stopped (a failed disk write, a bug): this server cannot go on; stop the agent."""
        self.supervisor.failed("raft", exc, critical=True)

    def _pool_failed(self, label: str, exc: BaseException) -> None:
        """A gossip pool's timer (its core's loop) failed: membership would silently freeze; stop the agent."""
        self.supervisor.failed(f"gossip-{label}", exc, critical=True)

    def _wan_members(self) -> list[Member]:
        return self.wan.members() if self.wan is not None else []

    async def _retry_join(self, pool: Pool, addrs: list[str], interval: float, max_attempts: int, port: int,
                          kind: str) -> None:
        attempt = 0
        while True:
            attempt += 1
            n, errs = await pool.join(list(addrs), port)
            if n:
                log.info("Join %s completed. Synced with %d initial agents", kind, n)
                return
            if max_attempts and attempt >= max_attempts:
                self._fatal(f"max join {kind} retry exhausted, exiting")  # Consul exits 1 here too
                return
            log.warning("Join %s failed: %s, retrying in %s", kind, "; ".join(errs), f"{interval:g}s")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------ membership events

    def _on_event(self, label: str, e: SerfEffect) -> None:
        if isinstance(e, UserEventReceived):
            if label == "lan" and self.events is not None:
                self.events.receive(e.name, e.payload, e.ltime)
            return
        if isinstance(e, MemberEvent):
            self.snapshots.mark_dirty()
            if label == "lan" and self.server is not None:
                self.server.on_lan_event(e)
            if label == "lan" and e.kind in ("member-join", "member-update"):
                self._flood_join(e.member)
            if (label == "lan" and e.kind == "member-join" and e.member.tags.get("role") == "consul"
                    and self.anti_entropy is not None):
                self.anti_entropy.trigger_full()  # Consul: a server appeared, sync with the catalog soon

    def _flood_join(self, m: Member) -> None:
        """Consul's WAN flood join: a server of our datacenter seen on the LAN is joined to
        the WAN pool too, so `join -wan` to any one server reaches all of them."""
        if self.wan is None or m.tags.get("role") != "consul" or m.tags.get("dc") != self.cfg.datacenter:
            return
        wan_name = f"{m.name}.{self.cfg.datacenter}"
        if m.name == self.cfg.node_name or wan_name in {x.name for x in self.wan.members()
                                                         if x.status == MemberStatus.ALIVE}:
            return
        try:
            port = int(m.tags.get("wan_join_port", str(self.cfg.ports.serf_wan)))
        except ValueError:
            return
        self.spawn(self._wan_flood(f"{m.addr}:{port}", wan_name), "wan-flood-join")

    async def _wan_flood(self, addr: str, name: str) -> None:
        assert self.wan is not None
        n, errs = await self.wan.join([addr], self.cfg.ports.serf_wan)
        if n:
            log.info("Flood joined WAN: server=%s address=%s", name, addr)
        else:
            log.debug("WAN flood join of %s failed: %s", name, "; ".join(errs))

    # ------------------------------------------------------------ tasks, leave, shutdown

    def spawn(self, work: Coroutine[Any, Any, None] | Callable[[], Coroutine[Any, Any, None]], name: str,
              *, critical: bool = False, restart: bool = False) -> None:
        """A supervised agent task (supervise.py); cancelled at shutdown."""
        task = self.supervisor.spawn(name, work, critical=critical, restart=restart)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def leave(self) -> None:
        """Graceful leave of both pools; the agent then shuts down."""
        if self.left:
            return
        self.left = True
        log.info("Requesting shutdown after graceful leave")
        self.snapshots.write(self._pools(), left=True)
        if self.server is not None:
            await self.server.leave()
        pools = [p for p in (self.lan, self.wan) if p is not None]
        await asyncio.gather(*(p.leave() for p in pools))
        log.info("Graceful leave complete")
        asyncio.get_running_loop().call_later(0.05, self.stopped.set)

    async def shutdown(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.runner is not None:
            await self.runner.close()
        if self.https is not None:
            await self.https.close()
        if self.dns is not None:
            await self.dns.close()
        if self.check_runner is not None:
            await self.check_runner.close()
        if self.local is not None:
            self.local.close()
        if self.server is not None:
            await self.server.stop()
        if self._client_transport is not None:
            await self._client_transport.stop()
        for p in (self.wan, self.lan):
            if p is not None:
                await p.stop()
        if self._dev_dir is not None:
            import shutil

            shutil.rmtree(self._dev_dir, ignore_errors=True)
        log.info("shutdown complete")


async def _main(cfg: AgentConfig) -> int:
    return await run_until_stopped(Agent(cfg), cfg)


def run_agent(cfg: AgentConfig) -> int:
    setup_logging(cfg.log_level)
    return asyncio.run(_main(cfg))
