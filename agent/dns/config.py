"""The DNS interface's settings: Consul 1.7's `domain`, `alt_domain`, `recursors` and `dns_config` keys.

Pure (no I/O): the agent's config embeds a DNSConfig; the resolver core reads it.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# Bounds (README "Limits"): what a single query may make the agent do.
MAX_UDP_ANSWER_LIMIT = 1000  # udp_answer_limit is capped here (Consul's maxUDPAnswerLimit is 8 for non-EDNS)
MAX_RECURSORS = 16
MAX_TCP_CONNECTIONS = 512  # concurrent DNS-over-TCP connections; further ones are closed at once
TCP_IDLE_TIMEOUT = 10.0  # seconds a DNS-over-TCP connection may stay idle (Consul/miekg: 8 s read timeout)
MAX_WATCHED_NAMES = 4096  # catalog views kept fresh by blocking queries (services + nodes, per datacenter)
WATCH_IDLE = 300.0  # a view nobody asked for in this many seconds stops being watched and is dropped
MAX_CACHED_ANSWERS = 20000  # wire answers kept for repeated identical queries (FIFO eviction)
MAX_PENDING_PER_NAME = 256  # queries waiting for one view's first fill; more get SERVFAIL
MAX_SLOW_QUERIES = 1024  # queries waiting for reads or recursors, all names; more get SERVFAIL


@dataclass(frozen=True)
class SOAConfig:
    """dns_config.soa: the SOA record of the domain (Consul's defaults)."""

    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    min_ttl: int = 0


@dataclass(frozen=True)
class DNSConfig:
    domain: str = "consul."
    alt_domain: str = ""
    recursors: tuple[str, ...] = ()
    allow_stale: bool = True
    max_stale: float = 87600 * 3600.0  # Consul 1.7: ten years, i.e. any staleness is accepted
    node_ttl: float = 0.0
    service_ttl: Mapping[str, float] = field(default_factory=dict)  # name (or "*") -> seconds
    udp_answer_limit: int = 3
    a_record_limit: int = 0  # 0: no limit
    enable_truncate: bool = False
    only_passing: bool = False
    enable_additional_node_meta_txt: bool = True
    soa: SOAConfig = field(default_factory=SOAConfig)
    recursor_timeout: float = 2.0

    def service_ttl_of(self, name: str) -> int:
        """Seconds of TTL for records of service `name`: its own entry, else the longest matching prefix
        entry ("web-*"; "*" matches every name), else 0."""
        ttl = self.service_ttl.get(name)
        if ttl is None:
            best = -1
            for key, value in self.service_ttl.items():
                if key.endswith("*") and name.startswith(key[:-1]) and len(key) > best:
                    best, ttl = len(key), value
        return int(ttl or 0)

    def validate(self) -> None:
        """Raise ValueError naming the key that is wrong."""
        for key, dom in (("domain", self.domain), ("alt_domain", self.alt_domain)):
            if dom and (not dom.endswith(".") or ".." in dom or len(dom) > 253):
                raise ValueError(f"{key}: not a domain name: {dom!r}")
        if not self.domain:
            raise ValueError("domain: must not be empty")
        if len(self.recursors) > MAX_RECURSORS:
            raise ValueError(f"recursors: at most {MAX_RECURSORS}")
        for r in self.recursors:
            parse_recursor(r)
        if not 1 <= self.udp_answer_limit <= MAX_UDP_ANSWER_LIMIT:
            raise ValueError(f"dns_config.udp_answer_limit: must be between 1 and {MAX_UDP_ANSWER_LIMIT}")
        if self.a_record_limit < 0:
            raise ValueError("dns_config.a_record_limit: must not be negative")
        for key, value in (("node_ttl", self.node_ttl), ("max_stale", self.max_stale),
                           *((f"service_ttl.{k}", v) for k, v in self.service_ttl.items())):
            if not (math.isfinite(value) and 0 <= value < 2**31):
                raise ValueError(f"dns_config.{key}: must be a duration of 0 or more")
        if not (math.isfinite(self.recursor_timeout) and 0 < self.recursor_timeout <= 60):
            raise ValueError("dns_config.recursor_timeout: must be between 0s and 60s")
        for key in ("refresh", "retry", "expire", "min_ttl"):
            if not 0 <= getattr(self.soa, key) < 2**31:
                raise ValueError(f"dns_config.soa.{key}: must be between 0 and 2^31-1")


def parse_recursor(value: str) -> tuple[str, int]:
    """"1.2.3.4", "1.2.3.4:5353", "[::1]:53" or "::1" -> (ip, port); ValueError otherwise."""
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"recursors: not an address: {value!r}")
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, p = value.partition(":")
        if not p.isdigit():
            raise ValueError(f"recursors: not an address: {value!r}")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"recursors: not an IP address: {value!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"recursors: bad port in {value!r}")
    return host, port


def normalize_domain(value: str) -> str:
    """Lower case, with the trailing dot (Consul's dns.Fqdn)."""
    value = value.strip().lower()
    return value if not value or value.endswith(".") else value + "."
