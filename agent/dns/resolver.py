"""The DNS resolver core: one question plus a catalog view -> an answer (Consul 1.7's agent/dns.go semantics).

Pure: no sockets, no clock, no event loop. Time (`now`, the SOA serial) and randomness (`rng`, the shuffle of
service instances) are parameters. What the answer needs from the catalog is read through `View.get(key)`;
a view not loaded yet makes the resolver answer `Need(key)` and the shell (dns/views.py) fills it and asks
again. Records are plain tuples (owner, type, ttl, data); dns/codec.py turns them into wire format.

Names (`<domain>` is `domain` or `alt_domain`, matched case-insensitively):
  <node>.node[.<dc>].<domain>                      A/AAAA (the node's address), TXT (node meta)
  [<tag>.]<service>.service[.<dc>].<domain>        A/AAAA of healthy instances; SRV with A/AAAA additionals
  _<service>._<tag|tcp>[.service][.<dc>].<domain>  RFC 2782 (SRV; "tcp" means no tag)
  <query>.query[.<dc>].<domain>                    prepared query (by ID or name)
  <hex-ip>.addr[.<dc>].<domain>                    A (8 hex digits) or AAAA (32)
  <reverse-ip>.in-addr.arpa / ip6.arpa             PTR to the node(s) with that address
SOA and NS questions for any name in the domain answer the domain's SOA / NS records (as Consul does).
A name that does not parse, an unknown node, a service without healthy instances: NXDOMAIN with the SOA in
the authority section.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyconsul.agent.dns.config import DNSConfig

# Record types and classes (RFC 1035, 3596, 2782, 6891)
A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, OPT, AXFR, IXFR, ANY = 1, 2, 5, 6, 12, 16, 28, 33, 41, 252, 251, 255
CLASS_IN, CLASS_ANY = 1, 255
# Response codes
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
SUPPORTED_TYPES = frozenset({A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, ANY})

MAX_NS = 3  # nameservers listed for the domain (Consul's maxServersInNS... 3)
MAX_PLAIN_UDP_ANSWERS = 8  # Consul's maxUDPAnswerLimit: a non-EDNS UDP answer never lists more instances

RR = tuple[str, int, int, Any]  # (owner, rdtype, ttl, data); data: str, or a tuple for SRV/SOA, TXT: tuple of str
ViewKey = tuple[str, str, str]  # (kind, datacenter, name): ("service"|"node"|"nodes"|"query", dc, name)


@dataclass(frozen=True, slots=True)
class Instance:
    """One service instance as DNS needs it (from a /v1/health/service row)."""

    node: str
    node_address: str
    datacenter: str
    node_meta: tuple[tuple[str, str], ...]
    address: str  # the service's address, "" for the node's
    port: int
    tags: tuple[str, ...]
    status: str  # worst of its node's and its own checks: passing | warning | critical
    weight_passing: int = 1
    weight_warning: int = 1


@dataclass(frozen=True, slots=True)
class NodeRecord:
    node: str
    address: str
    datacenter: str
    meta: tuple[tuple[str, str], ...]


class Failed:
    """A view that could not be read (no leader, no path to the datacenter): the answer is SERVFAIL."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


MISSING: Any = object()  # View.get: not loaded yet


class View(Protocol):
    def get(self, key: ViewKey) -> Any:
        """service -> tuple[Instance, ...]; node -> NodeRecord | None; nodes -> tuple[NodeRecord, ...];
        query -> (tuple[Instance, ...], ttl seconds | None) | None; MISSING if not loaded; or a Failed."""


@dataclass(frozen=True, slots=True)
class Question:
    name: str  # as asked (case kept: answers echo it)
    qtype: int
    tcp: bool = False
    edns_size: int = 0  # 0: no EDNS0; else the client's advertised UDP payload size


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: int
    # (answers, additionals) per unit that size trimming drops as a whole (an instance: its SRV and its A)
    groups: tuple[tuple[tuple[RR, ...], tuple[RR, ...]], ...] = ()
    authority: tuple[RR, ...] = ()
    extra: tuple[RR, ...] = ()
    depends: tuple[ViewKey, ...] = ()  # the views it was computed from (a change drops cached copies)
    truncated: bool = False  # answers were dropped by udp_answer_limit (TC=1 with enable_truncate)


@dataclass(frozen=True, slots=True)
class Need:
    key: ViewKey


@dataclass(frozen=True, slots=True)
class Recurse:
    """The name is outside our domains and recursors are configured: forward the query."""


Result = Answer | Need | Recurse


@dataclass
class _Ctx:
    q: Question
    cfg: DNSConfig
    local_dc: str
    domain: str  # the domain the name was asked in (domain or alt_domain), for names we generate
    view: View
    now: float
    rng: random.Random
    depends: list[ViewKey] = field(default_factory=list)


class _NeedView(Exception):
    def __init__(self, key: ViewKey) -> None:
        self.key = key


def resolve(q: Question, view: View, cfg: DNSConfig, local_dc: str, now: float, rng: random.Random) -> Result:
    """Answer question `q` from `view`. `now` (Unix seconds) is the SOA serial; `rng` shuffles instances."""
    name = q.name.lower()
    if not name.endswith("."):
        name += "."
    domain = ""
    for d in (cfg.domain, cfg.alt_domain):
        if d and (name == d or name.endswith("." + d)):
            domain = d
            break
    ctx = _Ctx(q, cfg, local_dc, domain or cfg.domain, view, now, rng)
    try:
        if not domain:
            if name.endswith(".in-addr.arpa.") or name.endswith(".ip6.arpa."):
                return _ptr(ctx, name)
            return Recurse() if cfg.recursors else Answer(REFUSED)
        if q.qtype in (SOA, NS):
            ns, glue = _nameservers(ctx)
            if q.qtype == SOA:
                return _answer(ctx, NOERROR, [((_soa(ctx),), ())], authority=ns, extra=glue)
            return _answer(ctx, NOERROR, [((r,), ()) for r in ns], extra=glue)
        if q.qtype in (AXFR, IXFR):
            return Answer(NOTIMP)
        labels = name[: len(name) - len(domain)].rstrip(".")
        return _dispatch(ctx, labels.split(".") if labels else [])
    except _NeedView as need:
        return Need(need.key)


def _get(ctx: _Ctx, key: ViewKey) -> Any:
    value = ctx.view.get(key)
    if value is MISSING:
        raise _NeedView(key)
    ctx.depends.append(key)
    return value


def _answer(ctx: _Ctx, rcode: int, groups: Sequence[tuple[tuple[RR, ...], tuple[RR, ...]]] = (),
            authority: Sequence[RR] = (), extra: Sequence[RR] = (), truncated: bool = False) -> Answer:
    return Answer(rcode, tuple(groups), tuple(authority), tuple(extra), tuple(dict.fromkeys(ctx.depends)),
                  truncated)


def _nxdomain(ctx: _Ctx) -> Answer:
    return _answer(ctx, NXDOMAIN, authority=[_soa(ctx)])


def _empty(ctx: _Ctx) -> Answer:
    return _answer(ctx, NOERROR, authority=[_soa(ctx)])


def _soa(ctx: _Ctx) -> RR:
    s = ctx.cfg.soa
    d = ctx.domain
    serial = int(ctx.now) & 0xFFFFFFFF
    return (d, SOA, s.min_ttl, ("ns." + d, "hostmaster." + d, serial, s.refresh, s.retry, s.expire, s.min_ttl))


def _node_ttl(ctx: _Ctx) -> int:
    return int(ctx.cfg.node_ttl)


def _fqdn_node(ctx: _Ctx, node: str, dc: str) -> str:
    return f"{node}.node.{dc}.{ctx.domain}".lower()


def _nameservers(ctx: _Ctx) -> tuple[list[RR], list[RR]]:
    """NS records for the domain: up to MAX_NS healthy servers ("consul" service), with their addresses as glue."""
    instances = _get(ctx, ("service", ctx.local_dc, "consul"))
    if isinstance(instances, Failed):
        return [], []
    ns: list[RR] = []
    glue: list[RR] = []
    for inst in _healthy(ctx, instances):
        if len(ns) >= MAX_NS or not _valid_label(inst.node):
            continue
        target = _fqdn_node(ctx, inst.node, inst.datacenter)
        ns.append((ctx.domain, NS, _node_ttl(ctx), target))
        glue.extend(_addr_records(target, inst.node_address, ANY, _node_ttl(ctx)))
    return ns, glue


def _valid_label(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_" for c in name) and len(name) <= 63


def _dispatch(ctx: _Ctx, labels: list[str]) -> Answer:
    dc = ""
    if ctx.q.qtype == SRV and labels and labels[-1].startswith("_"):
        labels = [*labels, "service"]
    for _ in range(2):  # the last label is a kind, or a datacenter followed by the kind (parsed once)
        n = len(labels)
        if n == 0:
            return _nxdomain(ctx)
        kind = labels[-1]
        if kind == "service":
            if n == 1:
                return _nxdomain(ctx)
            if n == 3 and labels[0].startswith("_") and labels[1].startswith("_"):
                tag = labels[1][1:]
                return _service(ctx, dc or ctx.local_dc, labels[0][1:], "" if tag == "tcp" else tag)
            return _service(ctx, dc or ctx.local_dc, labels[n - 2], ".".join(labels[: n - 2]))
        if kind == "node":
            if n == 1:
                return _nxdomain(ctx)
            return _node(ctx, dc or ctx.local_dc, ".".join(labels[:-1]))
        if kind == "query":
            if n == 1:
                return _nxdomain(ctx)
            parts = labels[:-1]
            if len(parts) >= 2 and parts[0].startswith("_") and parts[-1].startswith("_"):
                return _query(ctx, dc or ctx.local_dc, ".".join(parts[:-1])[1:])  # RFC 2782: _<query>._tcp
            return _query(ctx, dc or ctx.local_dc, ".".join(parts))
        if kind == "addr":
            return _addr(ctx, labels[0]) if n == 2 else _nxdomain(ctx)
        if dc:
            return _nxdomain(ctx)
        dc, labels = kind, labels[:-1]
        if ctx.q.qtype == SRV and labels and labels[-1].startswith("_"):
            labels = [*labels, "service"]
    return _nxdomain(ctx)


def _healthy(ctx: _Ctx, instances: Sequence[Instance]) -> list[Instance]:
    """Critical instances never answer; warning ones not with only_passing (Consul's Filter(onlyPassing))."""
    if ctx.cfg.only_passing:
        return [i for i in instances if i.status == "passing"]
    return [i for i in instances if i.status != "critical"]


def _addr_records(owner: str, address: str, qtype: int, ttl: int) -> list[RR]:
    """A or AAAA for an IP address, as `qtype` asks (ANY: whichever it is); a hostname gives a CNAME."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return [(owner, CNAME, ttl, address.rstrip(".") + ".")] if address and qtype in (A, AAAA, ANY, CNAME) else []
    if ip.version == 4 and qtype in (A, ANY):
        return [(owner, A, ttl, str(ip))]
    if ip.version == 6 and qtype in (AAAA, ANY):
        return [(owner, AAAA, ttl, str(ip))]
    return []


def _meta_txt(owner: str, meta: Sequence[tuple[str, str]], ttl: int) -> list[RR]:
    """Node meta as TXT records: RFC 1464 "key=value" (key escaped), or the bare value for keys starting
    with "rfc1035-" (Consul's makeTXTRecordFromNodeMeta)."""
    return [(owner, TXT, ttl, (v if k.lower().startswith("rfc1035-") else rfc1464(k, v),)) for k, v in meta]


def rfc1464(key: str, value: str) -> str:
    """RFC 1464 attribute=value: "`" and "=" in the key, and its leading and trailing spaces, are quoted
    with "`"; "`" in the value is doubled."""
    key = key.replace("`", "``").replace("=", "`=")
    stripped = key.lstrip(" ")
    key = "` " * (len(key) - len(stripped)) + stripped
    stripped = key.rstrip(" ")
    key = stripped + "` " * (len(key) - len(stripped))
    return key + "=" + value.replace("`", "``")


def _instances(ctx: _Ctx, dc: str, name: str, tag: str) -> list[Instance] | Failed:
    got = _get(ctx, ("service", dc, name.lower()))
    if isinstance(got, Failed):
        return got
    out = _healthy(ctx, got)
    if tag:
        t = tag.lower()
        out = [i for i in out if any(x.lower() == t for x in i.tags)]
    ctx.rng.shuffle(out)
    return out


def _service(ctx: _Ctx, dc: str, name: str, tag: str) -> Answer:
    instances = _instances(ctx, dc, name, tag)
    if isinstance(instances, Failed):
        return _answer(ctx, SERVFAIL)
    if not instances:
        return _nxdomain(ctx)
    return _instance_records(ctx, instances, ctx.cfg.service_ttl_of(name.lower()))


def _instance_records(ctx: _Ctx, instances: Sequence[Instance], ttl: int) -> Answer:
    q = ctx.q
    groups: list[tuple[tuple[RR, ...], tuple[RR, ...]]] = []
    if q.qtype == SRV:
        handled: set[tuple[str, str, int]] = set()
        for inst in instances:
            key = (inst.node, inst.address, inst.port)  # one service on one port of a node: one record
            if key not in handled:
                handled.add(key)
                groups.append(_srv_group(ctx, inst, ttl))
    else:
        seen: set[str] = set()
        for inst in instances:
            addr = inst.address or inst.node_address
            if addr in seen:  # one service on several ports of a node: one record
                continue
            seen.add(addr)
            records = _addr_records(q.name, addr, q.qtype, ttl)
            if records:
                groups.append((tuple(records), ()))
    limit = ctx.cfg.a_record_limit
    if limit and q.qtype in (A, AAAA, ANY) and len(groups) > limit:
        groups = groups[:limit]
    truncated = False
    if not q.tcp and not q.edns_size:  # a plain 512-byte UDP answer: at most udp_answer_limit instances
        cap = min(ctx.cfg.udp_answer_limit, MAX_PLAIN_UDP_ANSWERS)
        if len(groups) > cap:
            groups, truncated = groups[:cap], True
    if not groups:
        return _empty(ctx)
    return _answer(ctx, NOERROR, groups, truncated=truncated)


def _srv_group(ctx: _Ctx, inst: Instance, ttl: int) -> tuple[tuple[RR, ...], tuple[RR, ...]]:
    q = ctx.q
    weight = inst.weight_warning if inst.status == "warning" else inst.weight_passing
    extra: list[RR] = []
    node_target = _fqdn_node(ctx, inst.node, inst.datacenter)
    if inst.address:  # the service's own address: an IP as <hex>.addr.<dc>, a hostname as itself
        try:
            ip = ipaddress.ip_address(inst.address)
        except ValueError:
            target = inst.address.rstrip(".") + "."
        else:
            target = f"{ip.packed.hex()}.addr.{inst.datacenter}.{ctx.domain}"
            extra.extend(_addr_records(target, inst.address, ANY, ttl))
    else:
        target = node_target
        extra.extend(_addr_records(target, inst.node_address, ANY, ttl))
    if ctx.cfg.enable_additional_node_meta_txt:
        extra.extend(_meta_txt(node_target, inst.node_meta, ttl))
    srv: RR = (q.name, SRV, ttl, (1, max(0, min(weight, 65535)), inst.port, target))
    return (srv,), tuple(extra)


def _node(ctx: _Ctx, dc: str, name: str) -> Answer:
    got = _get(ctx, ("node", dc, name.lower()))
    if isinstance(got, Failed):
        return _answer(ctx, SERVFAIL)
    if got is None:
        return _nxdomain(ctx)
    node: NodeRecord = got
    ttl = _node_ttl(ctx)
    q = ctx.q
    answers = _addr_records(q.name, node.address, q.qtype, ttl)
    extra: list[RR] = []
    if q.qtype in (TXT, ANY):
        answers.extend(_meta_txt(q.name, node.meta, ttl))
    elif ctx.cfg.enable_additional_node_meta_txt and answers:
        extra.extend(_meta_txt(q.name, node.meta, ttl))
    if not answers:
        return _empty(ctx)
    return _answer(ctx, NOERROR, [((r,), ()) for r in answers], extra=extra)


def _query(ctx: _Ctx, dc: str, name: str) -> Answer:
    got = _get(ctx, ("query", dc, name.lower()))
    if isinstance(got, Failed):
        return _answer(ctx, SERVFAIL)
    if got is None:
        return _nxdomain(ctx)
    instances, ttl = got
    out = _healthy(ctx, instances)
    ctx.rng.shuffle(out)
    if not out:
        return _nxdomain(ctx)
    return _instance_records(ctx, out, int(ttl) if ttl is not None else ctx.cfg.service_ttl_of(name.lower()))


def _addr(ctx: _Ctx, label: str) -> Answer:
    try:
        raw = bytes.fromhex(label)
    except ValueError:
        return _nxdomain(ctx)
    if len(raw) not in (4, 16):
        return _nxdomain(ctx)
    ip = ipaddress.ip_address(raw)
    records = _addr_records(ctx.q.name, str(ip), ctx.q.qtype, _node_ttl(ctx))
    if not records:
        return _empty(ctx)
    return _answer(ctx, NOERROR, [((r,), ()) for r in records])


def reverse_to_ip(name: str) -> str | None:
    """"4.3.2.1.in-addr.arpa." -> "1.2.3.4"; nibble-form ip6.arpa -> the IPv6 address; else None."""
    labels = name.lower().rstrip(".").split(".")
    try:
        if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34 and all(len(x) == 1 for x in labels[:32]):
            return str(ipaddress.IPv6Address(bytes.fromhex("".join(reversed(labels[:32])))))
    except ValueError:
        return None
    return None


def _ptr(ctx: _Ctx, name: str) -> Result:
    """Reverse lookups: nodes of the local datacenter with that address (Consul's handlePtr); other
    addresses go to the recursors, or NXDOMAIN."""
    ip = reverse_to_ip(name)
    if ip is None or ctx.q.qtype not in (PTR, ANY):
        return Recurse() if ctx.cfg.recursors else _answer(ctx, NXDOMAIN)
    nodes = _get(ctx, ("nodes", ctx.local_dc, ""))
    if isinstance(nodes, Failed):
        return _answer(ctx, SERVFAIL)
    groups = [(((ctx.q.name, PTR, _node_ttl(ctx), _fqdn_node(ctx, n.node, n.datacenter)),), ())
              for n in nodes if n.address == ip]
    if not groups:
        return Recurse() if ctx.cfg.recursors else _answer(ctx, NXDOMAIN, authority=[_soa(ctx)])
    return _answer(ctx, NOERROR, groups)


# ---------------------------------------------------------------- catalog rows -> view values


def _status(checks: Sequence[Mapping[str, Any]]) -> str:
    worst = "passing"
    for c in checks:
        s = c.get("Status")
        if s == "critical":
            return "critical"
        if s == "warning" or (s != "passing" and s is not None):
            worst = "warning" if s == "warning" else "critical"
            if worst == "critical":
                return worst
    return worst


def instances_from_health(rows: Sequence[Mapping[str, Any]]) -> tuple[Instance, ...]:
    """/v1/health/service rows ({Node, Service, Checks}) -> Instances."""
    out = []
    for r in rows:
        node, svc = r.get("Node") or {}, r.get("Service") or {}
        weights = svc.get("Weights") or {}
        out.append(Instance(
            node=str(node.get("Node", "")), node_address=str(node.get("Address", "")),
            datacenter=str(node.get("Datacenter", "")),
            node_meta=tuple(sorted((str(k), str(v)) for k, v in (node.get("Meta") or {}).items())),
            address=str(svc.get("Address", "") or ""), port=int(svc.get("Port", 0) or 0),
            tags=tuple(str(t) for t in svc.get("Tags") or ()), status=_status(r.get("Checks") or ()),
            weight_passing=int(weights.get("Passing", 1)), weight_warning=int(weights.get("Warning", 1)),
        ))
    return tuple(out)


def node_from_json(node: Mapping[str, Any] | None) -> NodeRecord | None:
    if not node:
        return None
    return NodeRecord(str(node.get("Node", "")), str(node.get("Address", "")), str(node.get("Datacenter", "")),
                      tuple(sorted((str(k), str(v)) for k, v in (node.get("Meta") or {}).items())))
