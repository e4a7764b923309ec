"""Agent configuration: presets, Consul JSON config files, command-line flags, validation.

Sources are merged like Consul: built-in defaults, then `-dev` defaults, then every config
file in the order given (a directory contributes its `*.json` and `*.hcl` files in lexical order), then
command-line flags, then `-hcl` fragments. A later source wins for scalar keys; list keys (`retry_join`,
...) append. HCL is read by agent/config_hcl.py into the shapes of the equivalent JSON; keys of features
not built yet (agent/config_schema.py) are type-checked, kept in `AgentConfig.ignored` and warned about.
Flags, JSON keys and Ansible role variables map one-to-one (`-bootstrap-expect` /
`bootstrap_expect` / `pyconsul_bootstrap_expect`).

Every `ConfigError` message is a single line; file errors read
`Error parsing <file>: <key>: <reason>`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pyconsul.agent.acl.config import KEYS as ACL_KEYS
from pyconsul.agent.acl.config import ACLConfig, ACLConfigError
from pyconsul.agent.config_error import ConfigError
from pyconsul.agent.config_schema import LATER_KEYS, Kind, unbuilt_warnings
from pyconsul.agent.dns.config import DNSConfig, SOAConfig, normalize_domain
from pyconsul.agent.flags import FlagSet, format_duration, parse_duration
from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.raft.config import RaftConfig
from pyconsul.agent.tlsutil import KEYS as TLS_KEYS
from pyconsul.agent.tlsutil import TLSConfig, TLSConfigError

if TYPE_CHECKING:
    from pyconsul.agent.server.autopilot import AutopilotConfig

_AUTOPILOT_FIELDS = ("autopilot_cleanup_dead_servers", "autopilot_last_contact_threshold",
                     "autopilot_max_trailing_logs", "autopilot_server_stabilization_time")

# Re-exported: the presets live beside their cores (pure modules), the agent's config embeds them.
__all__ = ["AgentConfig", "ConfigError", "GossipConfig", "Ports", "RaftConfig"]

HOUR = 3600.0
MIN_RECONNECT_TIMEOUT = 8 * HOUR  # Consul rejects shorter reconnect timeouts
_DC_RE = re.compile(r"^[a-z0-9_-]+$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERR", "ERROR")


@dataclass
class Ports:
    """Listening ports; -1 disables the DNS or HTTP server as in Consul."""

    dns: int = 8600
    http: int = 8500
    serf_lan: int = 8301
    serf_wan: int = 8302
    server: int = 8300
    https: int = -1  # the HTTP API over TLS (agent/tlsutil.py); -1: off, Consul's default


@dataclass
class AgentConfig:
    node_name: str = field(default_factory=lambda: os.uname().nodename)
    node_id: str | None = None
    datacenter: str = "dc1"
    data_dir: str | None = None
    server: bool = False
    bootstrap_expect: int = 0
    bootstrap: bool = False
    bind_addr: str = "0.0.0.0"
    advertise_addr: str | None = None
    advertise_addr_wan: str | None = None
    # Consul's advertise_addrs.rpc ("ip:port"): the server RPC address other servers dial, e.g. a
    # TCP proxy in front of our port (chaos/toxiproxy). Servers learn it through the "port" tag,
    # joined to our gossip address, as in Consul: only its port reaches the other servers.
    advertise_addr_rpc: str | None = None
    client_addr: str = "127.0.0.1"
    ports: Ports = field(default_factory=Ports)
    start_join: list[str] = field(default_factory=list)
    retry_join: list[str] = field(default_factory=list)
    retry_interval: float = 30.0
    retry_max: int = 0  # 0 = retry forever
    start_join_wan: list[str] = field(default_factory=list)
    retry_join_wan: list[str] = field(default_factory=list)
    retry_interval_wan: float = 30.0
    retry_max_wan: int = 0
    encrypt: str | None = None  # base64 gossip key
    encrypt_verify_incoming: bool = True
    encrypt_verify_outgoing: bool = True
    log_level: str = "INFO"
    dev: bool = False
    ui: bool = False
    reconnect_timeout: float = 72 * HOUR
    reconnect_timeout_wan: float = 72 * HOUR
    leave_on_terminate: bool | None = None  # None: False for servers, True for clients
    skip_leave_on_interrupt: bool | None = None  # None: True for servers, False for clients
    raft_multiplier: int = 5
    raft_profile: str = "consul"  # pyconsul extension: "consul" (timing x raft_multiplier) or "fast"
    autopilot_cleanup_dead_servers: bool = True  # Consul autopilot: remove dead servers when safe
    # Consul autopilot's stable server introduction (agent/server/autopilot.py): a joined server is a non-voter
    # until it has been healthy (heard from within the threshold, at most max_trailing_logs behind) this long
    autopilot_last_contact_threshold: float = 0.2
    autopilot_max_trailing_logs: int = 250
    autopilot_server_stabilization_time: float = 10.0
    raft_snapshot_threshold: int | None = None  # None: RaftConfig's (Consul's 16384)
    raft_trailing_logs: int | None = None  # None: RaftConfig's (Consul's 10240)
    # limits.rpc_max_conns_per_client: server RPC connections from one source IP (Consul's default 100; 0: no limit)
    rpc_max_conns_per_client: int = 100
    # limits.http_max_conns_per_client: HTTP(S) connections from one client IP (Consul 1.7.1+'s default 200; 0: no
    # limit); one beyond it is closed at accept (agent/httpd/h1.py ConnLimit)
    http_max_conns_per_client: int = 200
    # limits.https_handshake_timeout: an HTTPS connection's TLS handshake must finish this soon after accept
    # (Consul 1.7.1+'s default 5 s)
    https_handshake_timeout: float = 5.0
    # limits.rpc_handshake_timeout: on a server's RPC port with TLS on, the TLS handshake after the RPC_TLS byte
    # must finish this soon (Consul 1.7.1+'s default 5 s; agent/raft/rpctls.py); also bounds our dialled handshakes
    rpc_handshake_timeout: float = 5.0
    # pyconsul extensions (Consul has them only internally, as TombstoneTTL/TombstoneTTLGranularity): how long
    # the leader keeps a KV tombstone before it proposes a reap, and the width of the bins deletes are grouped in
    tombstone_ttl: float = 15 * 60.0
    tombstone_ttl_granularity: float = 30.0
    # Consul's network-coordinate sync (agent sendCoordinate): every agent sends its LAN coordinate to the
    # servers every max(sync_coordinate_interval_min, members / sync_coordinate_rate_target s) plus a random
    # stagger of up to that again; Consul's defaults (15 s, 64 updates/s across the cluster). Tests shorten them.
    sync_coordinate_interval_min: float = 15.0
    sync_coordinate_rate_target: int = 64
    # Test-only, WRONG on purpose (the chaos checkers' self-test): ?consistent reads served locally. No flag or
    # JSON key sets it; `pyconsul agent` turns it on when <data_dir>/TEST_STALE_READS exists (agent/cli/agent.py).
    debug_stale_reads: bool = False
    gossip_lan: GossipConfig = field(default_factory=GossipConfig.lan)
    gossip_wan: GossipConfig = field(default_factory=GossipConfig.wan)
    enable_debug: bool = False
    config_files: list[str] = field(default_factory=list)  # files actually loaded, in order
    # Services and checks from config files (`service`/`services`, `check`/`checks`): definitions as written,
    # validated by agent.local.definitions in validate(); registered at start and re-read by reload.
    services: list[dict[str, object]] = field(default_factory=list)
    checks: list[dict[str, object]] = field(default_factory=list)
    enable_script_checks: bool = False  # script checks from the HTTP API and config files (CVE-2018-19653)
    enable_local_script_checks: bool = False  # script checks from config files only
    # a check whose output changes but not its status is written to the catalog at most this often (Consul's 5m)
    check_update_interval: float = 300.0
    source_flags: dict[str, object] = field(default_factory=dict)  # the explicit flags, for reload
    pid_file: str | None = None  # written by `pyconsul agent` at start, removed on a clean exit
    # the DNS interface (agent/dns): domain, alt_domain, recursors, addresses.dns and the dns_config keys
    dns_config: DNSConfig = field(default_factory=DNSConfig)
    dns_addr: str | None = None  # addresses.dns: listen here instead of client_addr (space-separated list)
    # TLS: ca_file, cert_file, verify_* ... (top-level keys, agent/tlsutil.py); HTTPS at https_addr or client_addr
    tls: TLSConfig = field(default_factory=TLSConfig)
    https_addr: str | None = None  # addresses.https (space-separated list)
    # ACLs (agent/acl/config.py: the `acl { ... }` block)
    acl: ACLConfig = field(default_factory=ACLConfig)
    # the datacenter whose servers hold the authoritative ACL policies, roles and global tokens (Consul's
    # primary_datacenter; "" = this agent's datacenter): others forward ACL writes there and replicate from it
    primary_datacenter: str = ""
    # keys of features not built yet (config_schema.LATER_KEYS), type-checked and ignored (one warning per feature)
    ignored: dict[str, object] = field(default_factory=dict)

    def raft_config(self) -> RaftConfig:
        """-dev and performance.raft_profile = "fast" use RaftConfig.fast(); otherwise Consul's
        timing scaled by performance.raft_multiplier."""
        rc = RaftConfig.fast() if self.dev or self.raft_profile == "fast" else RaftConfig.consul(self.raft_multiplier)
        if self.raft_snapshot_threshold is not None:
            rc = replace(rc, snapshot_threshold=self.raft_snapshot_threshold)
        if self.raft_trailing_logs is not None:
            rc = replace(rc, trailing_logs=self.raft_trailing_logs)
        return rc

    def autopilot_config(self) -> AutopilotConfig:
        from pyconsul.agent.server.autopilot import AutopilotConfig
        return AutopilotConfig(self.autopilot_cleanup_dead_servers, self.autopilot_last_contact_threshold,
                               self.autopilot_max_trailing_logs, self.autopilot_server_stabilization_time)

    def rpc_advertise(self) -> tuple[str, int]:
        """(address, port) other servers dial for our server RPC: advertise_addrs.rpc, else the LAN
        advertise address and ports.server."""
        if self.advertise_addr_rpc:
            host, _, port = self.advertise_addr_rpc.rpartition(":")
            return host.strip("[]"), int(port)
        return self.advertise(), self.ports.server

    def client_addrs(self) -> list[str]:
        """client_addr may list several addresses separated by spaces, as in Consul ("10.0.0.5 127.0.0.1")."""
        return self.client_addr.split()

    @property
    def effective_leave_on_terminate(self) -> bool:
        return self.leave_on_terminate if self.leave_on_terminate is not None else not self.server

    @property
    def effective_skip_leave_on_interrupt(self) -> bool:
        return self.skip_leave_on_interrupt if self.skip_leave_on_interrupt is not None else self.server

    def advertise(self, interfaces: Callable[[], list[str]] | None = None) -> str:
        """The LAN address other agents reach us at: advertise_addr, else bind_addr, else (when
        bound to 0.0.0.0 or ::) the first private IPv4 address, the first non-loopback one, or
        127.0.0.1. `interfaces` lists candidate addresses (default: this host's, from
        `agent.netif.host_addresses`, which the shell side owns; IPv6 ones are skipped here
        because the gossip transport is IPv4)."""
        if self.advertise_addr:
            return self.advertise_addr
        if self.bind_addr not in ("0.0.0.0", "::", "[::]", ""):
            return self.bind_addr
        if interfaces is None:
            from pyconsul.agent.netif import host_addresses  # lazily: interface discovery is the shell's

            interfaces = host_addresses
        addrs = [a for a in map(ipaddress.ip_address, interfaces()) if a.version == 4]
        usable = [a for a in addrs if not a.is_loopback and not a.is_link_local and not a.is_unspecified]
        private = [a for a in usable if a.is_private]
        for group in (private, usable):
            if group:
                return str(group[0])
        return "127.0.0.1"

    def validate(self) -> list[str]:
        """Raise ConfigError on the first invalid field; return warnings (not errors)."""
        if not self.node_name:
            raise ConfigError("node_name: must not be empty")
        if len(self.node_name) > 128:
            raise ConfigError("node_name: must be at most 128 characters")
        if self.node_id is not None and not _UUID_RE.match(self.node_id):
            raise ConfigError(f"node_id: must be a UUID, got {_show(self.node_id)}")
        if not _DC_RE.match(self.datacenter):
            raise ConfigError(f"datacenter: {_show(self.datacenter)} must match [a-z0-9_-]+")
        if not self.dev and not self.data_dir:
            raise ConfigError("data_dir: must be specified")
        if self.bootstrap_expect < 0:
            raise ConfigError("bootstrap_expect: must not be negative")
        if self.bootstrap_expect and not self.server:
            raise ConfigError("bootstrap_expect requires server mode")
        if self.bootstrap_expect and self.bootstrap:
            raise ConfigError("bootstrap_expect and bootstrap are mutually exclusive")
        if self.bootstrap and not self.server:
            raise ConfigError("bootstrap requires server mode")
        try:
            self.acl.validate()
        except ACLConfigError as exc:
            raise ConfigError(str(exc)) from None
        for name in ("bind_addr", "advertise_addr", "advertise_addr_wan"):
            value = getattr(self, name)
            if value is not None and not _is_ip(value):
                raise ConfigError(f"{name}: not an IP address: {_show(value)}")
        if self.advertise_addr_rpc is not None:
            host, sep, port = self.advertise_addr_rpc.rpartition(":")
            if not sep or not _is_ip(host.strip("[]")) or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ConfigError(f"advertise_addrs.rpc: expected IP:PORT, got {_show(self.advertise_addr_rpc)}")
        if not self.client_addrs() or not all(_is_ip(a) for a in self.client_addrs()):
            raise ConfigError(f"client_addr: not an IP address or a space-separated list of them: "
                              f"{_show(self.client_addr)}")
        for f in fields(Ports):
            port = getattr(self.ports, f.name)
            disabled = port == -1 and f.name in ("dns", "http", "https")
            if not disabled and not 1 <= port <= 65535:
                raise ConfigError(f"ports.{f.name}: {port} is not a valid port")
        for name in ("retry_interval", "retry_interval_wan"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        for name in ("retry_max", "retry_max_wan"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must not be negative")
        if self.encrypt is not None:
            validate_key(self.encrypt)
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"log_level: unknown level {_show(self.log_level)}")
        for name in ("reconnect_timeout", "reconnect_timeout_wan"):
            if getattr(self, name) < MIN_RECONNECT_TIMEOUT:
                raise ConfigError(f"{name}: must be at least {format_duration(MIN_RECONNECT_TIMEOUT)}")
        if not 1 <= self.raft_multiplier <= 10:
            raise ConfigError("performance.raft_multiplier: must be between 1 and 10")
        if self.raft_snapshot_threshold is not None and self.raft_snapshot_threshold < 1:
            raise ConfigError("raft_snapshot_threshold: must be at least 1")
        if self.raft_trailing_logs is not None and self.raft_trailing_logs < 0:
            raise ConfigError("raft_trailing_logs: must not be negative")
        # Consul's defaults are within autopilot's bounds: only other values are checked, so that a client agent
        # with a default config never imports the server's autopilot module (tests/unit/test_lean_agent.py)
        if any(getattr(self, k) != getattr(AgentConfig, k) for k in _AUTOPILOT_FIELDS):
            try:
                self.autopilot_config().validate()
            except ValueError as exc:
                raise ConfigError(f"autopilot: {exc}") from None
        if self.rpc_max_conns_per_client < 0:
            raise ConfigError("limits.rpc_max_conns_per_client: must not be negative")
        if self.http_max_conns_per_client < 0:
            raise ConfigError("limits.http_max_conns_per_client: must not be negative")
        if not (math.isfinite(self.https_handshake_timeout) and self.https_handshake_timeout > 0):
            raise ConfigError("limits.https_handshake_timeout: must be a positive duration")
        if not (math.isfinite(self.rpc_handshake_timeout) and self.rpc_handshake_timeout > 0):
            raise ConfigError("limits.rpc_handshake_timeout: must be a positive duration")
        for name in ("tombstone_ttl", "tombstone_ttl_granularity"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: must be a positive duration")
        if self.tombstone_ttl_granularity > self.tombstone_ttl:
            raise ConfigError("tombstone_ttl_granularity: must not be longer than tombstone_ttl")
        if not (math.isfinite(self.sync_coordinate_interval_min) and self.sync_coordinate_interval_min >= 0.1):
            raise ConfigError("sync_coordinate_interval_min: must be a duration of at least 100ms")
        if self.sync_coordinate_rate_target < 1:
            raise ConfigError("sync_coordinate_rate_target: must be at least 1")
        if self.raft_profile not in ("consul", "fast"):
            got = _show(self.raft_profile)
            raise ConfigError(f'performance.raft_profile: must be "consul" or "fast", got {got}')
        try:
            self.dns_config.validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.dns_addr is not None and not all(_is_ip(a) for a in self.dns_addr.split()):
            raise ConfigError(f"addresses.dns: not an IP address or a space-separated list of them: "
                              f"{_show(self.dns_addr)}")
        self.gossip_lan.validate("gossip_lan.")
        self.gossip_wan.validate("gossip_wan.")
        if self.https_addr is not None and not all(_is_ip(a) for a in self.https_addr.split()):
            raise ConfigError(f"addresses.https: not an IP address or a space-separated list of them: "
                              f"{_show(self.https_addr)}")
        try:
            self.tls.validate()
        except TLSConfigError as exc:
            raise ConfigError(str(exc)) from None
        self._validate_definitions()
        return self._warnings()

    def _validate_definitions(self) -> None:
        """Config-file services and checks parse as the agent will load them (script checks need
        enable_script_checks or enable_local_script_checks); check_update_interval is not negative."""
        if not (math.isfinite(self.check_update_interval) and self.check_update_interval >= 0):
            raise ConfigError("check_update_interval: must be a duration of 0 or more")
        from pyconsul.agent.errors import BadRequest
        from pyconsul.agent.local.definitions import parse_check_definition, parse_service

        allow = self.enable_script_checks or self.enable_local_script_checks
        for key, defs, parse in (("services", self.services, parse_service),
                                 ("checks", self.checks, parse_check_definition)):
            for i, d in enumerate(defs):
                try:
                    parse(d, allow_script=allow)
                except BadRequest as exc:
                    raise ConfigError(f"{key}[{i}]: {exc}") from None

    def _warnings(self) -> list[str]:
        warnings: list[str] = []
        n = self.bootstrap_expect
        if n == 1:
            warnings.append("bootstrap_expect = 1 is the same as bootstrap mode: this server elects itself")
        elif n == 2:
            warnings.append("bootstrap_expect = 2: a cluster of 2 servers cannot tolerate any failure")
        elif n > 2 and n % 2 == 0:
            warnings.append(f"bootstrap_expect = {n}: an even number of servers adds no failure tolerance")
        if self.bootstrap and not self.dev:
            warnings.append("bootstrap mode enabled: enable it on one server only, and only when necessary")
        warnings.extend(self.tls.warnings(self.ports.https))
        warnings.extend(unbuilt_warnings(self.ignored))
        return warnings


def validate_key(key: str) -> bytes:
    """Decode a gossip encryption key; raise ConfigError unless it is base64 of 16, 24 or 32 bytes."""
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("encrypt: not valid base64") from None
    if len(raw) not in (16, 24, 32):
        raise ConfigError(f"encrypt: key must be 16, 24 or 32 bytes, got {len(raw)}")
    return raw


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- Consul JSON config keys

# Flat keys (dotted for nested objects) and the kind each value is coerced to.
KEYS: dict[str, Kind] = {
    "node_name": "str", "node_id": "str", "datacenter": "str", "data_dir": "str",
    "server": "bool", "bootstrap_expect": "int", "bootstrap": "bool",
    "bind_addr": "str", "advertise_addr": "str", "advertise_addr_wan": "str", "client_addr": "str",
    "ports.dns": "int", "ports.http": "int", "ports.serf_lan": "int", "ports.serf_wan": "int",
    "ports.server": "int", "ports.https": "int", "addresses.https": "str",
    "start_join": "list", "retry_join": "list", "retry_interval": "duration", "retry_max": "int",
    "start_join_wan": "list", "retry_join_wan": "list", "retry_interval_wan": "duration",
    "retry_max_wan": "int",
    "encrypt": "str", "encrypt_verify_incoming": "bool", "encrypt_verify_outgoing": "bool",
    "log_level": "str", "ui": "bool", "ui_config.enabled": "bool",
    "reconnect_timeout": "duration", "reconnect_timeout_wan": "duration",
    "leave_on_terminate": "bool", "skip_leave_on_interrupt": "bool",
    "performance.raft_multiplier": "int", "performance.raft_profile": "str", "enable_debug": "bool",
    "autopilot.cleanup_dead_servers": "bool", "autopilot.last_contact_threshold": "duration",
    "autopilot.max_trailing_logs": "int", "autopilot.server_stabilization_time": "duration",
    "raft_snapshot_threshold": "int", "raft_trailing_logs": "int",
    "advertise_addrs.rpc": "str", "tombstone_ttl": "duration", "tombstone_ttl_granularity": "duration",
    "limits.rpc_max_conns_per_client": "int", "limits.http_max_conns_per_client": "int",
    "limits.https_handshake_timeout": "duration", "limits.rpc_handshake_timeout": "duration", "pid_file": "str",
    "sync_coordinate_interval_min": "duration", "sync_coordinate_rate_target": "int",
    "enable_script_checks": "bool", "enable_local_script_checks": "bool", "check_update_interval": "duration",
    # the DNS interface (agent/dns; DNS_KEYS below land in AgentConfig.dns_config)
    "domain": "str", "alt_domain": "str", "recursors": "list", "addresses.dns": "str",
    "dns_config.allow_stale": "bool", "dns_config.max_stale": "duration", "dns_config.node_ttl": "duration",
    "dns_config.service_ttl": "object", "dns_config.enable_truncate": "bool", "dns_config.only_passing": "bool",
    "dns_config.recursor_timeout": "duration", "dns_config.udp_answer_limit": "int",
    "dns_config.a_record_limit": "int", "dns_config.enable_additional_node_meta_txt": "bool",
    "dns_config.soa.refresh": "int", "dns_config.soa.retry": "int", "dns_config.soa.expire": "int",
    "dns_config.soa.min_ttl": "int",
    # TLS (agent/tlsutil.py; they land in AgentConfig.tls)
    **TLS_KEYS,
    # ACLs (agent/acl/config.py; they land in AgentConfig.acl); replication from the primary (agent/acl/replication.py)
    **ACL_KEYS, "primary_datacenter": "str",
}
_GOSSIP_KEYS: dict[str, Kind] = {
    "probe_interval": "duration", "probe_timeout": "duration", "suspicion_mult": "int",
    "gossip_interval": "duration", "gossip_nodes": "int", "retransmit_mult": "int",
}
for _pool in ("gossip_lan", "gossip_wan"):
    KEYS.update({f"{_pool}.{k}": v for k, v in _GOSSIP_KEYS.items()})
# Every proper prefix of a dotted key is an object ("acl", "acl.tokens", ...).
_OBJECTS = frozenset(k.rsplit(".", n)[0] for k in [*KEYS, *LATER_KEYS] for n in range(1, k.count(".") + 1))
# Where a JSON key lands in AgentConfig when its name differs.
_ALIASES = {"ui_config.enabled": "ui", "performance.raft_multiplier": "raft_multiplier",
            "performance.raft_profile": "raft_profile",
            "autopilot.cleanup_dead_servers": "autopilot_cleanup_dead_servers",
            "autopilot.last_contact_threshold": "autopilot_last_contact_threshold",
            "autopilot.max_trailing_logs": "autopilot_max_trailing_logs",
            "autopilot.server_stabilization_time": "autopilot_server_stabilization_time",
            "advertise_addrs.rpc": "advertise_addr_rpc", "limits.rpc_max_conns_per_client": "rpc_max_conns_per_client",
            "limits.http_max_conns_per_client": "http_max_conns_per_client",
            "limits.https_handshake_timeout": "https_handshake_timeout",
            "limits.rpc_handshake_timeout": "rpc_handshake_timeout",
            "addresses.dns": "dns_addr", "addresses.https": "https_addr"}


class _BadValue(Exception):
    """Internal: why one value is wrong; wrapped with the file and key."""


def coerce(kind: Kind, value: object) -> object:
    """Convert a JSON value to `kind`; raise _BadValue("expected ..., got ...") if impossible.

    Like Consul's weakly typed decoding, numeric and boolean strings are accepted; durations
    are Go duration strings or numbers of seconds.
    """
    if kind == "str":
        if isinstance(value, str):
            return value
        raise _BadValue(f"expected a string, got {_show(value)}")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
            return int(value)
        raise _BadValue(f"expected an integer, got {_show(value)}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise _BadValue(f"expected a boolean, got {_show(value)}")
    if kind == "duration":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError:
                raise _BadValue(f"invalid duration {_show(value)}") from None
        raise _BadValue(f"expected a duration, got {_show(value)}")
    if kind == "map":
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return dict(value)
        raise _BadValue(f"expected an object of strings, got {_show(value)}")
    if kind == "object":
        if isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            return value
        raise _BadValue(f"expected an object, got {_show(value)}")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _BadValue(f"expected a list of strings, got {_show(value)}")


def parse_config_object(doc: Mapping[str, object]) -> dict[str, object]:
    """Turn one decoded JSON document into flat keys with coerced values (null = unset).

    Raises ConfigError("<key>: <reason>") without a file name.
    """
    out: dict[str, object] = {}
    _flatten(out, "", doc)
    return out


def _flatten(out: dict[str, object], prefix: str, doc: Mapping[str, object]) -> None:
    for sub, value in doc.items():
        key = prefix + sub
        if value is None:
            continue
        if key in _OBJECTS:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected an object, got {_show(value)}")
            _flatten(out, key + ".", value)
        else:
            _set_key(out, key, value)


# Service and check definitions: one object or a list of them, kept as written (agent.local.definitions validates
# them), always stored as a list, so `service` and `services` (and repeated HCL blocks) append.
_DEFINITIONS = {"service": "services", "services": "services", "check": "checks", "checks": "checks"}


def _set_definitions(out: dict[str, object], key: str, value: object) -> None:
    items = value if isinstance(value, list) else [value]
    defs = [dict(v) for v in items if isinstance(v, dict)]
    if len(defs) != len(items):
        raise ConfigError(f"{key}: expected an object or a list of objects, got {_show(value)}")
    prev = out.get(_DEFINITIONS[key])
    out[_DEFINITIONS[key]] = [*(prev if isinstance(prev, list) else []), *defs]


def _set_key(out: dict[str, object], key: str, value: object) -> None:
    if key in _DEFINITIONS:
        _set_definitions(out, key, value)
        return
    kind = KEYS.get(key)
    later = kind is None and key in LATER_KEYS
    if later:
        kind = LATER_KEYS[key]
    if kind is None:
        raise ConfigError(f"{key}: unknown configuration key")
    if value is None:
        return
    try:
        out[IGNORED_PREFIX + key if later else _ALIASES.get(key, key)] = coerce(kind, value)
    except _BadValue as exc:
        raise ConfigError(f"{key}: {exc}") from None


IGNORED_PREFIX = "ignored:"  # flat keys of features not built yet (from_flat puts them in AgentConfig.ignored)


def load_config_file(path: str | Path, fmt: str = "") -> dict[str, object]:
    """Read one Consul config file (JSON, or HCL when the name ends in `.hcl`; `fmt` "json" or "hcl",
    Consul's -config-format, decides for every file instead) into flat keys."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Error reading {name}: {(exc.strerror or str(exc)).lower()}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Error parsing {name}: file is not valid UTF-8") from None
    if fmt == "hcl" or (not fmt and name.endswith(".hcl")):
        return load_hcl(text, name)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"Error parsing {name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"Error parsing {name}: top level: expected an object, got {_show(doc)}")
    try:
        return parse_config_object(doc)
    except ConfigError as exc:
        raise ConfigError(f"Error parsing {name}: {exc}") from None


def load_hcl(text: str, name: str) -> dict[str, object]:
    """One HCL config file or `-hcl` fragment (`name` says which, in messages) into flat keys."""
    from pyconsul.agent.config_hcl import HCLError, parse_hcl  # lazy: python-hcl2 + lark weigh ~5 MiB

    try:
        doc = parse_hcl(text)
    except HCLError as exc:
        raise ConfigError(f"Error parsing {name}: {exc}") from None
    try:
        return parse_config_object(doc)
    except ConfigError as exc:
        raise ConfigError(f"Error parsing {name}: {exc}") from None


def load_config_dir(path: str | Path, fmt: str = "") -> list[tuple[str, dict[str, object]]]:
    """Load every `*.json` and `*.hcl` file of a directory in lexical order (with `fmt`: every file).

    Other files and subdirectories are ignored, as Consul does.
    """
    try:
        entries = sorted(p for p in Path(path).iterdir() if p.is_file())
    except OSError as exc:
        raise ConfigError(f"Error reading {path}: {(exc.strerror or str(exc)).lower()}") from None
    return [(str(p), load_config_file(p, fmt)) for p in entries if fmt or p.suffix in (".json", ".hcl")]


def load_sources(paths: Sequence[str], fmt: str = "") -> tuple[dict[str, object], list[str]]:
    """Load files and directories in order; return merged flat keys and the files loaded."""
    merged: dict[str, object] = {}
    loaded: list[str] = []
    for p in paths:
        items = load_config_dir(p, fmt) if Path(p).is_dir() else [(p, load_config_file(p, fmt))]
        for name, keys in items:
            merge(merged, keys)
            loaded.append(name)
    return merged, loaded


def merge(into: dict[str, object], later: Mapping[str, object]) -> None:
    """Merge `later` over `into` in place: scalars are replaced, lists append."""
    for key, value in later.items():
        prev = into.get(key)
        if isinstance(value, list) and isinstance(prev, list):
            into[key] = prev + value
        else:
            into[key] = list(value) if isinstance(value, list) else value


# ---------------------------------------------------------------- command-line flags

# Agent flag name -> flat config key (Consul's flag names).
FLAG_KEYS: dict[str, str] = {
    "node": "node_name", "node-id": "node_id", "datacenter": "datacenter", "data-dir": "data_dir",
    "server": "server", "bootstrap-expect": "bootstrap_expect", "bootstrap": "bootstrap",
    "bind": "bind_addr", "advertise": "advertise_addr", "advertise-wan": "advertise_addr_wan",
    "client": "client_addr",
    "dns-port": "ports.dns", "http-port": "ports.http", "serf-lan-port": "ports.serf_lan",
    "serf-wan-port": "ports.serf_wan", "server-port": "ports.server",
    "join": "start_join", "retry-join": "retry_join", "retry-interval": "retry_interval",
    "retry-max": "retry_max", "join-wan": "start_join_wan", "retry-join-wan": "retry_join_wan",
    "retry-interval-wan": "retry_interval_wan", "retry-max-wan": "retry_max_wan",
    "encrypt": "encrypt", "log-level": "log_level", "ui": "ui", "pid-file": "pid_file",
}
_FLAG_HELP: dict[str, str] = {
    "node": "Name of this node; unique within the datacenter.",
    "node-id": "UUID identifying this node (generated and persisted when omitted).",
    "datacenter": "Datacenter this agent belongs to.",
    "data-dir": "Directory for persistent agent state.",
    "server": "Run this agent as a server.",
    "bootstrap-expect": "Number of servers to wait for before bootstrapping the cluster.",
    "bootstrap": "Let this server elect itself without waiting for others.",
    "bind": "Address for cluster communication (gossip and server RPC).",
    "advertise": "Address advertised to other agents instead of the bind address.",
    "advertise-wan": "Address advertised on the WAN instead of the -advertise address.",
    "client": "Address of the client interfaces (HTTP, DNS).",
    "dns-port": "DNS server port (-1 disables).",
    "http-port": "HTTP API port (-1 disables).",
    "serf-lan-port": "LAN gossip port.",
    "serf-wan-port": "WAN gossip port.",
    "server-port": "Server RPC port.",
    "join": "Agent address to join at start-up; start-up fails if none answers. Repeatable.",
    "retry-join": "Agent address to join, retried until it succeeds. Repeatable.",
    "retry-interval": "Delay between join attempts.",
    "retry-max": "Maximum join attempts; 0 retries forever.",
    "join-wan": "Server address to join over the WAN at start-up. Repeatable.",
    "retry-join-wan": "Server address to join over the WAN, retried. Repeatable.",
    "retry-interval-wan": "Delay between WAN join attempts.",
    "retry-max-wan": "Maximum WAN join attempts; 0 retries forever.",
    "encrypt": "Base64 gossip encryption key.",
    "log-level": "Log level: trace, debug, info, warn or err.",
    "ui": "Serve the web UI.",
    "pid-file": "File to write the agent's PID to at start; removed on a clean exit.",
}


def agent_flagset() -> FlagSet:
    """The flags of `pyconsul agent`; -config-file and -config-dir share one ordered list."""
    fs = FlagSet("agent")
    for flag, key in FLAG_KEYS.items():
        kind, usage = KEYS[key], _FLAG_HELP[flag]
        if kind == "str":
            fs.string(flag, "", usage)
        elif kind == "int":
            fs.int(flag, 0, usage)
        elif kind == "bool":
            fs.bool(flag, False, usage)
        elif kind == "duration":
            fs.duration(flag, 0.0, usage)
        else:
            fs.string_list(flag, usage)
    fs.string_list("config-file", "Config file to load (JSON, or HCL if it ends in .hcl). Repeatable; later ones "
                   "win.", dest="config-file")
    fs.string_list("config-dir", "Directory whose *.json and *.hcl files are loaded in lexical order. Repeatable.",
                   dest="config-file")
    fs.string_list("hcl", "HCL config fragment, applied after the files and flags. Repeatable.")
    fs.string("config-format", "", "Format of every config file, json or hcl, whatever its name (default: by "
              "extension; a directory then contributes all its files).")
    fs.bool("dev", False, "Development mode: an in-memory single-server cluster on 127.0.0.1.")
    return fs


def _dev_defaults() -> dict[str, object]:
    return {"dev": True, "server": True, "bootstrap": True, "bind_addr": "127.0.0.1",
            "client_addr": "127.0.0.1", "ui": True}


def build_config(argv_flags: Mapping[str, object]) -> tuple[AgentConfig, list[str]]:
    """Turn explicitly given agent flags (FlagSet.parse(...).explicit) into a validated config.

    Order: defaults < -dev defaults < config files/dirs (in order) < flags < -hcl fragments. Returns
    the config and its warnings; raises ConfigError.
    """
    dev = bool(argv_flags.get("dev", False))
    flat: dict[str, object] = _dev_defaults() if dev else {}
    paths = argv_flags.get("config-file", [])
    assert isinstance(paths, list)
    fmt = str(argv_flags.get("config-format", ""))
    if fmt not in ("", "json", "hcl"):
        raise ConfigError(f'-config-format: must be "json" or "hcl", got {_show(fmt)}')
    from_files, loaded = load_sources([str(p) for p in paths], fmt)
    merge(flat, from_files)
    flag_keys: dict[str, object] = {}
    for flag, value in argv_flags.items():
        if flag in FLAG_KEYS:
            flag_keys[FLAG_KEYS[flag]] = value
        elif flag not in ("dev", "config-file", "hcl", "config-format"):
            raise ConfigError(f"-{flag}: not an agent flag")
    merge(flat, flag_keys)
    fragments = argv_flags.get("hcl", [])
    assert isinstance(fragments, list)
    for i, fragment in enumerate(fragments):
        merge(flat, load_hcl(str(fragment), f"-hcl fragment {i + 1}"))
    notes: list[str] = []
    expect = flat.get("bootstrap_expect")
    if dev and isinstance(expect, int) and expect > 0:
        # Consul turns bootstrap_expect = 1 into bootstrap mode, which -dev already is; more is an error there too.
        if expect != 1:
            raise ConfigError(f"bootstrap_expect = {expect} is not allowed in dev mode (a single server)")
        del flat["bootstrap_expect"]
        notes.append("bootstrap_expect = 1 in -dev mode: the dev server bootstraps itself anyway")
    cfg = from_flat(flat)
    cfg.config_files = loaded
    cfg.source_flags = dict(argv_flags)
    return cfg, notes + cfg.validate()


def from_flat(flat: Mapping[str, object]) -> AgentConfig:
    """Build an AgentConfig from merged flat keys (no validation beyond types)."""
    cfg = AgentConfig()
    gossip: dict[str, dict[str, object]] = {"gossip_lan": {}, "gossip_wan": {}}
    dns: dict[str, object] = {}
    for key, value in flat.items():
        if key.startswith(IGNORED_PREFIX):
            cfg.ignored[key.removeprefix(IGNORED_PREFIX)] = value
            continue
        group, _, sub = key.partition(".")
        if group == "dns_config" or key in ("domain", "alt_domain", "recursors"):
            dns[sub if group == "dns_config" else key] = value
            continue
        if key in TLS_KEYS:
            setattr(cfg.tls, key, value)
        elif key in ACL_KEYS:
            cfg.acl.set_key(key, value)
        elif group == "ports":
            setattr(cfg.ports, sub, value)
        elif group in gossip:
            gossip[group][sub] = value
        else:
            setattr(cfg, key, value)
    cfg.datacenter = cfg.datacenter.lower()
    cfg.primary_datacenter = cfg.primary_datacenter.lower()  # datacenter names compare lower-case
    cfg.dns_config = dns_config_from(dns)
    base_lan = GossipConfig.local() if cfg.dev else GossipConfig.lan()
    cfg.gossip_lan = replace(base_lan, **gossip["gossip_lan"])  # type: ignore[arg-type]
    cfg.gossip_wan = replace(GossipConfig.wan(), **gossip["gossip_wan"])  # type: ignore[arg-type]
    return cfg


def dns_config_from(keys: Mapping[str, object]) -> DNSConfig:
    """DNSConfig from the flat DNS keys (without their "dns_config." prefix); a bad service_ttl is a ConfigError."""
    soa = {k.removeprefix("soa."): v for k, v in keys.items() if k.startswith("soa.")}
    other: dict[str, object] = {k: v for k, v in keys.items() if not k.startswith("soa.")}
    for key in ("domain", "alt_domain"):
        if key in other:
            other[key] = normalize_domain(str(other[key]))
    if "recursors" in other:
        other["recursors"] = tuple(other["recursors"])  # type: ignore[arg-type]
    ttls = other.pop("service_ttl", None)
    if ttls is not None:
        if not isinstance(ttls, dict):
            raise ConfigError("dns_config.service_ttl: expected an object of durations")
        parsed: dict[str, float] = {}
        for name, value in ttls.items():
            try:
                parsed[str(name).lower()] = float(coerce("duration", value))  # type: ignore[arg-type]
            except _BadValue as exc:
                raise ConfigError(f"dns_config.service_ttl.{name}: {exc}") from None
        other["service_ttl"] = parsed
    return replace(DNSConfig(), soa=replace(SOAConfig(), **soa), **other)  # type: ignore[arg-type]


def validate_paths(paths: Sequence[str]) -> tuple[AgentConfig, list[str]]:
    """What `pyconsul validate` checks: the files alone, with no flags."""
    return build_config({"config-file": list(paths)})
