"""The composition root: the only place that builds sockets, stores and loops.

Start-up order (Consul's): data dir (node id, keyrings) -> LAN pool -> WAN pool (servers) ->
HTTP -> `-join`/`-join-wan` (fatal if none answers) -> snapshot rejoin and `-retry-join*` in
the background. Shutdown: SIGTERM/SIGINT leave gracefully or not according to
leave_on_terminate / skip_leave_on_interrupt; `leave` over HTTP always leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.config import AgentConfig
from agent.fsutil import atomic_write
from agent.gossip.keyring import Keyring, decode_key
from agent.gossip.pool import Pool
from agent.gossip.serf import Member, MemberEvent, MemberStatus, SerfConfig, SerfEffect
from agent.http.server import make_app, member_json
from agent.httpd.h1 import HTTPServer, serve
from agent.raft.transport import Transport
from agent.server.client import ClientBackend

if TYPE_CHECKING:
    from agent.server.server import ConsulServer

log = logging.getLogger("agent")

PROTOCOL = 2  # Consul protocol version we advertise (tag vsn)
SNAPSHOT_INTERVAL = 1.0


class StartupError(Exception):
    pass


def setup_logging(level: str) -> None:
    class _Fmt(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            ms = int(record.msecs)
            tz = time.strftime("%z", time.localtime(record.created))
            lvl = f"[{record.levelname.replace('WARNING', 'WARN')}]"
            msg = record.getMessage()
            if record.exc_info and logging.getLogger().isEnabledFor(logging.DEBUG):
                msg += "\n" + self.formatException(record.exc_info)
            return f"    {ts}.{ms:03d}{tz} {lvl:<7} {record.name}: {msg}"

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Fmt())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    levels = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
              "WARNING": logging.WARNING, "ERR": logging.ERROR, "ERROR": logging.ERROR}
    root.setLevel(levels.get(level.upper(), logging.INFO))


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir) if cfg.data_dir and not cfg.dev else None
        self.node_id = cfg.node_id or ""
        self.lan: Pool | None = None
        self.wan: Pool | None = None
        self.runner: HTTPServer | None = None
        self.lan_keyring: Keyring | None = None
        self.wan_keyring: Keyring | None = None
        self.stopped = asyncio.Event()
        self.left = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._snapshot_dirty = False
        self.started_at = time.time()
        self.server: ConsulServer | None = None
        self.backend: ConsulServer | ClientBackend | None = None
        self._client_transport: Transport | None = None
        self._dev_dir: str | None = None

    # ------------------------------------------------------------ data dir

    def _prepare_data_dir(self) -> None:
        if self.data_dir is None:
            self.node_id = self.node_id or str(uuid.uuid4())
            return
        (self.data_dir / "serf").mkdir(parents=True, exist_ok=True)
        id_file = self.data_dir / "node-id"
        if not self.node_id:
            if id_file.exists():
                self.node_id = id_file.read_text().strip()
            else:
                self.node_id = str(uuid.uuid4())
                atomic_write(id_file, self.node_id)
        elif not id_file.exists():
            atomic_write(id_file, self.node_id)

    def _load_keyring(self, name: str) -> Keyring | None:
        path = self.data_dir / "serf" / name if self.data_dir else None
        if path is not None and path.exists():
            if self.cfg.encrypt:
                log.warning("loaded keyring %s; ignoring the 'encrypt' key", path)
            return Keyring.load(str(path))
        if not self.cfg.encrypt:
            return None
        ring = Keyring(decode_key(self.cfg.encrypt))
        if path is not None:
            ring.save(str(path))
        return ring

    def _save_keyrings(self) -> None:
        if self.data_dir is None:
            return
        if self.lan_keyring is not None:
            self.lan_keyring.save(str(self.data_dir / "serf" / "local.keyring"))
        if self.wan_keyring is not None:
            self.wan_keyring.save(str(self.data_dir / "serf" / "remote.keyring"))

    # ------------------------------------------------------------ tags

    def _tags(self) -> dict[str, str]:
        cfg = self.cfg
        tags = {
            "dc": cfg.datacenter,
            "segment": "",
            "id": self.node_id,
            "vsn": str(PROTOCOL),
            "vsn_min": "2",
            "vsn_max": "3",
            "build": f"{__version__}:pyconsul",
        }
        if cfg.server:
            tags.update(
                role="consul",
                port=str(cfg.rpc_advertise()[1]),
                raft_vsn="3",
                wan_join_port=str(cfg.ports.serf_wan),
                acls="0",
                ft_fs="1",
                ft_si="1",
            )
            if cfg.bootstrap_expect:
                tags["expect"] = str(cfg.bootstrap_expect)
            if cfg.bootstrap or cfg.dev:
                tags["bootstrap"] = "1"
        else:
            tags["role"] = "node"
        return tags

    # ------------------------------------------------------------ lifecycle

    async def _start_pool(self, label: str, logger: str, name: str, port: int, advertise: str,
                          keyring: Keyring | None, reconnect_timeout: float) -> Pool:
        """One serf pool (LAN or WAN) bound to bind_addr:port, started; StartupError if it cannot bind."""
        cfg = self.cfg
        pool = Pool(
            label=label, logger=logger, name=name, bind=(cfg.bind_addr, port), advertise=(advertise, port),
            gossip=cfg.gossip_lan if label == "lan" else cfg.gossip_wan, tags=self._tags(), keyring=keyring,
            verify_incoming=cfg.encrypt_verify_incoming, verify_outgoing=cfg.encrypt_verify_outgoing,
            serf_config=SerfConfig(reconnect_timeout=reconnect_timeout),
            on_event=lambda e: self._on_event(label, e), on_keyring_change=self._save_keyrings,
        )
        try:
            await pool.start()
        except OSError as exc:
            raise StartupError(
                f"Failed to start {label.upper()} serf on {cfg.bind_addr}:{port}: {exc.strerror}") from None
        return pool

    async def start(self) -> None:
        cfg = self.cfg
        self._prepare_data_dir()
        self.lan_keyring = self._load_keyring("local.keyring")
        adv = cfg.advertise()
        role = "server" if cfg.server else "client"
        self.lan = await self._start_pool("lan", f"agent.{role}.serf.lan", cfg.node_name, cfg.ports.serf_lan, adv,
                                          self.lan_keyring, cfg.reconnect_timeout)
        if cfg.server:
            self.wan_keyring = self._load_keyring("remote.keyring")
            self.wan = await self._start_pool("wan", "agent.server.serf.wan", f"{cfg.node_name}.{cfg.datacenter}",
                                              cfg.ports.serf_wan, cfg.advertise_addr_wan or adv, self.wan_keyring,
                                              cfg.reconnect_timeout_wan)
        await self._start_backend()
        if cfg.ports.http > 0:
            app = make_app(self, self.backend, cfg.datacenter, cfg.node_name)
            try:
                self.runner = await serve(app, cfg.client_addrs(), cfg.ports.http)
            except OSError as exc:
                raise StartupError(
                    f"Failed to start HTTP server on {cfg.client_addr}:{cfg.ports.http}: {exc.strerror}"
                ) from None
            log.info("Started HTTP server: address=%s:%d network=tcp", cfg.client_addr, cfg.ports.http)
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
        asyncio.get_running_loop()
        self.spawn(self._rejoin_from_snapshot())
        if cfg.retry_join:
            self.spawn(
                self._retry_join(self.lan, cfg.retry_join, cfg.retry_interval, cfg.retry_max, cfg.ports.serf_lan, "LAN")
            )
        if cfg.retry_join_wan and self.wan is not None:
            self.spawn(self._retry_join(
                self.wan, cfg.retry_join_wan, cfg.retry_interval_wan, cfg.retry_max_wan, cfg.ports.serf_wan, "WAN"
            ))
        self.spawn(self._snapshot_loop())
        log.info("started: node=%s datacenter=%s server=%s", cfg.node_name, cfg.datacenter, cfg.server)

    async def _start_backend(self) -> None:
        """Servers run Raft and the store; clients forward to a server of their datacenter."""
        cfg = self.cfg
        assert self.lan is not None
        lan = self.lan
        if cfg.server:
            from agent.raft.storage import StorageCorrupt  # servers only: clients stay light
            from agent.server.server import ConsulServer

            if self.data_dir is None:
                import tempfile  # -dev only: keep it out of every other agent's memory

                self._dev_dir = tempfile.mkdtemp(prefix="pyconsul-dev-")
                data = Path(self._dev_dir)
            else:
                data = self.data_dir
            raft_cfg = cfg.raft_config()
            self.server = ConsulServer(cfg, self.node_id, data, lan.members, raft_cfg,
                                       force_leave=lambda name: self.force_leave(name, False, False),
                                       wan_members=self._wan_members)
            try:
                await self.server.start()
            except OSError as exc:
                raise StartupError(
                    f"Failed to start server RPC on {cfg.bind_addr}:{cfg.ports.server}: {exc.strerror}") from None
            except StorageCorrupt as exc:
                raise StartupError(f"Raft storage is corrupt, refusing to start: {exc}") from None
            self.backend = self.server
        else:
            self._client_transport = Transport(self.node_id, cfg.datacenter, (cfg.bind_addr, 0),
                                               lambda m: None, _no_requests)
            self.backend = ClientBackend(self._client_transport, lan.members, cfg.datacenter)

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
                log.error("max join %s retry exhausted, exiting", kind)
                self.stopped.set()
                return
            log.warning("Join %s failed: %s, retrying in %s", kind, "; ".join(errs), _fmt_dur(interval))
            await asyncio.sleep(interval)

    # ------------------------------------------------------------ snapshots (rejoin after restart)

    def _snapshot_path(self, label: str) -> Path | None:
        return self.data_dir / "serf" / f"{label}.snapshot.json" if self.data_dir else None

    def _on_event(self, label: str, e: SerfEffect) -> None:
        if isinstance(e, MemberEvent):
            self._snapshot_dirty = True
            if label == "lan" and self.server is not None:
                self.server.on_lan_event(e)
            if label == "lan" and e.kind in ("member-join", "member-update"):
                self._flood_join(e.member)

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
        self.spawn(self._wan_flood(f"{m.addr}:{port}", wan_name))

    async def _wan_flood(self, addr: str, name: str) -> None:
        assert self.wan is not None
        n, errs = await self.wan.join([addr], self.cfg.ports.serf_wan)
        if n:
            log.info("Flood joined WAN: server=%s address=%s", name, addr)
        else:
            log.debug("WAN flood join of %s failed: %s", name, "; ".join(errs))

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL)
            if self._snapshot_dirty and not self.left:
                self._snapshot_dirty = False
                self._write_snapshots(left=False)

    def _write_snapshots(self, left: bool) -> None:
        for label, pool in (("local", self.lan), ("remote", self.wan)):
            path = self._snapshot_path(label)
            if pool is None or path is None:
                continue
            alive = [f"{m.addr}:{m.port}" for m in pool.members()
                     if m.status == MemberStatus.ALIVE and m.name != pool.name]
            with contextlib.suppress(OSError):
                atomic_write(path, json.dumps({"alive": alive, "left": left}))

    async def _rejoin_from_snapshot(self) -> None:
        for label, pool, port in (("local", self.lan, self.cfg.ports.serf_lan),
                                  ("remote", self.wan, self.cfg.ports.serf_wan)):
            path = self._snapshot_path(label)
            if pool is None or path is None or not path.exists():
                continue
            try:
                snap = json.loads(path.read_text())
            except (OSError, ValueError):
                log.warning("ignoring unreadable snapshot %s", path)
                continue
            if snap.get("left") or not snap.get("alive"):
                continue
            n, _ = await pool.join(list(snap["alive"]), port)
            log.info("rejoined %d previous %s members from snapshot", n, label)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def leave(self) -> None:
        """Graceful leave of both pools; the agent then shuts down."""
        if self.left:
            return
        self.left = True
        log.info("Requesting shutdown after graceful leave")
        self._write_snapshots(left=True)
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

    # ------------------------------------------------------------ AgentAPI for HTTP

    def _pool(self, wan: bool) -> Pool:
        if wan:
            if self.wan is None:
                raise ValueError("WAN pool is only available on servers")
            return self.wan
        assert self.lan is not None
        return self.lan

    def members(self, wan: bool) -> list[Member]:
        return self._pool(wan).members() if (self.wan is not None or not wan) else []

    async def join(self, addr: str, wan: bool) -> tuple[int, list[str]]:
        port = self.cfg.ports.serf_wan if wan else self.cfg.ports.serf_lan
        return await self._pool(wan).join([addr], port)

    def force_leave(self, node: str, prune: bool, wan: bool) -> bool:
        done = False
        for pool in (self.lan, self.wan):
            if pool is not None:
                done = pool.force_leave(node, prune) or done
        return done

    def _wan_members(self) -> list[Member]:
        return self.wan.members() if self.wan is not None else []

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
        assert self.lan is not None
        stats: dict[str, dict[str, str]] = {
            "agent": {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "0"},
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
                "EncryptKey": "hidden" if cfg.encrypt else "",
            },
            "Member": member_json(self.lan.core.local_member()),
            "Stats": stats,
            "Meta": {},
        }

    def _consul_stats(self) -> dict[str, str]:
        assert self.lan is not None
        if self.server is None:
            alive = [m for m in self.lan.members() if m.status == MemberStatus.ALIVE]
            known = sum(1 for m in alive if m.tags.get("role") == "consul")
            return {"server": "false", "known_servers": str(known)}
        srv = self.server
        core = srv.raft.core if srv.raft is not None else None
        out = {
            "server": "true",
            "leader": str(srv.raft is not None and srv.raft.is_leader).lower(),
            "leader_addr": srv.leader_address(),
            "bootstrap": str(self.cfg.bootstrap).lower(),
            "known_datacenters": str(len(self.datacenters())),
        }
        if core is not None:
            out.update(
                raft_state=str(core.role),
                raft_term=str(core.term),
                raft_commit_index=str(core.commit_index),
                raft_applied_index=str(core.applied),
                raft_last_log_index=str(core.last_index),
                raft_num_peers=str(max(0, len(core.configuration.servers) - 1)),
            )
        return out

    async def keyring(self, op: str, key: str | None) -> list[dict[str, Any]]:
        """Consul's keyring operation: a serf key query on the WAN pool (servers) and the LAN
        pool; one entry per pool with key counts out of the nodes that answered."""
        raw = decode_key(key) if key is not None else None
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


async def _no_requests(method: str, args: Any) -> Any:
    raise ValueError("client agents serve no server RPC")


def _fmt_dur(seconds: float) -> str:
    return f"{seconds:g}s"


async def _main(cfg: AgentConfig) -> int:
    agent = Agent(cfg)
    loop = asyncio.get_running_loop()
    exit_code = 0

    def on_signal(sig: signal.Signals) -> None:
        graceful = (sig == signal.SIGTERM and cfg.effective_leave_on_terminate) or (
            sig == signal.SIGINT and not cfg.effective_skip_leave_on_interrupt
        )
        log.info("Caught signal: %s", sig.name)
        if graceful:
            agent.spawn(agent.leave())
        else:
            agent.stopped.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, lambda: log.info("Caught signal: SIGHUP (reload not supported yet)"))
    try:
        print("==> Starting pyconsul agent...", flush=True)
        await agent.start()
        print("==> Pyconsul agent running!", flush=True)
        _release_startup_memory()
        await agent.stopped.wait()
    except StartupError as exc:
        print(f"==> {exc}", file=sys.stderr, flush=True)
        exit_code = 1
    finally:
        await agent.shutdown()
    return exit_code


def _release_startup_memory() -> None:
    """Start-up (imports, config parsing, the first syncs) leaves freed heap that glibc keeps; hand it
    back to the kernel once (about 1 MiB of a ~22 MiB agent). Best effort: no glibc, no trim."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_agent(cfg: AgentConfig) -> int:
    setup_logging(cfg.log_level)
    return asyncio.run(_main(cfg))
