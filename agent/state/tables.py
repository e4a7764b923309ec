"""The state store's tables: immutable records in dicts, secondary indexes, raft indexes, an undo journal.

Contracts:
- Records are frozen dataclasses; a change replaces the record. Readers may keep references.
- Every mutation goes through `put`/`delete` (journaled while a command is being applied) and every
  table-index update through `bump`. `rollback()` undoes everything since `begin()`, so a command that
  fails half-way leaves no trace (all-or-nothing, like Consul's memdb transactions).
- Secondary indexes (sorted KV keys, keys by lock session, nodes by ID, services/checks/sessions by
  node, services by name) are derived inside `_raw_put`/`_raw_del`; they are never journaled or snapshotted.
- Node names, service IDs and names, and check IDs are matched case-insensitively (Consul's memdb
  indexes lowercase them); records keep the spelling they were registered with.
- Table indexes (`index`): "kvs", "tombstones", "nodes", "services", "checks", "sessions", "coordinates",
  "prepared-queries" (Consul's name; the table itself is `prepared_queries`, state/prepared_queries.py),
  "acl-tokens", "acl-policies", "acl-roles", "acl-token-bootstrap" (state/acl.py), "autopilot-config"
  (state/autopilot.py), plus
  "service.<name>" (lowercased) per service name and "service_last_extinction". A name's value is the
  Raft index of the last apply that changed it. `changed` collects the names bumped since `begin()`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from pyconsul.agent.state.acl_defs import ACLPolicy, ACLRole, ACLToken
from pyconsul.agent.state.commands import AutopilotConf, CheckDefinition, Coord, ServiceAddress
from pyconsul.agent.state.query_defs import PreparedQueryDef


@dataclass(frozen=True, slots=True)
class KVEntry:
    key: str
    value: bytes = b""
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str = ""  # the lock holder; "" = unlocked


@dataclass(frozen=True, slots=True)
class Node:
    node: str
    id: str = ""
    address: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class ServiceNode:
    node: str  # the node name as registered
    service_id: str
    service_name: str
    tags: tuple[str, ...] = ()
    address: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    port: int = 0
    create_index: int = 0
    modify_index: int = 0
    tagged_addresses: dict[str, ServiceAddress] = field(default_factory=dict)
    weights_passing: int = 1
    weights_warning: int = 1
    enable_tag_override: bool = False


@dataclass(frozen=True, slots=True)
class HealthCheck:
    node: str
    check_id: str
    name: str = ""
    status: str = "critical"
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    create_index: int = 0
    modify_index: int = 0
    type: str = ""
    definition: CheckDefinition = field(default_factory=CheckDefinition)


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    node: str
    name: str = ""
    checks: tuple[str, ...] = ()
    lock_delay: float = 15.0  # seconds
    behavior: str = "release"
    ttl: float = 0.0  # seconds; 0 = no TTL
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class CoordinateEntry:
    node: str  # as the update named it
    segment: str = ""
    coord: Coord = field(default_factory=Coord)


def nk(name: str) -> str:
    """The case-folded key of a node name, service ID/name or check ID."""
    return name.lower()


def service_index_name(name: str) -> str:
    return "service." + nk(name)


SERVICE_EXTINCTION = "service_last_extinction"
TABLES = ("kvs", "tombstones", "nodes", "services", "checks", "sessions")

_MISSING: Any = object()


class _Multi:
    """secondary key -> set of primary keys."""

    __slots__ = ("by",)

    def __init__(self) -> None:
        self.by: dict[Hashable, set[Any]] = {}

    def add(self, skey: Hashable, pk: Any) -> None:
        self.by.setdefault(skey, set()).add(pk)

    def remove(self, skey: Hashable, pk: Any) -> None:
        keys = self.by.get(skey)
        if keys is not None:
            keys.discard(pk)
            if not keys:
                del self.by[skey]

    def get(self, skey: Hashable) -> list[Any]:
        """Primary keys for skey, sorted (deterministic iteration order)."""
        return sorted(self.by.get(skey, ()))


class Tables:
    def __init__(self) -> None:
        self.kvs: dict[str, KVEntry] = {}
        self.tombstones: dict[str, int] = {}  # key or deleted-tree prefix -> raft index of the delete
        self.lock_delays: dict[str, float] = {}  # key -> `now` until which acquires are refused
        self.nodes: dict[str, Node] = {}  # nk(node) ->
        self.services: dict[tuple[str, str], ServiceNode] = {}  # (nk(node), nk(service_id)) ->
        self.checks: dict[tuple[str, str], HealthCheck] = {}  # (nk(node), nk(check_id)) ->
        self.sessions: dict[str, Session] = {}  # id ->
        self.session_deadlines: dict[str, float] = {}  # id -> `now` after which a TTL session expires
        self.coordinates: dict[tuple[str, str], CoordinateEntry] = {}  # (nk(node), segment) ->
        self.prepared_queries: dict[str, PreparedQueryDef] = {}  # id ->
        self.acl_tokens: dict[str, ACLToken] = {}  # accessor id -> (state/acl.py)
        self.acl_policies: dict[str, ACLPolicy] = {}  # policy id ->
        self.acl_roles: dict[str, ACLRole] = {}  # role id ->
        self.autopilot: dict[str, AutopilotConf] = {}  # "config" -> autopilot's settings (state/autopilot.py)
        self.index: dict[str, int] = {}
        self.maps: dict[str, dict[Any, Any]] = {
            "kvs": self.kvs, "tombstones": self.tombstones, "lock_delays": self.lock_delays,
            "nodes": self.nodes, "services": self.services, "checks": self.checks,
            "sessions": self.sessions, "session_deadlines": self.session_deadlines, "index": self.index,
            "coordinates": self.coordinates, "prepared_queries": self.prepared_queries,
            "acl_tokens": self.acl_tokens, "acl_policies": self.acl_policies, "acl_roles": self.acl_roles,
            "autopilot": self.autopilot,
        }
        # derived
        self.kv_sorted: list[str] = []
        # tombstone keys in order, for prefix reads; None after a deletion (a reap removes thousands at
        # once: rebuilding once beats deleting from the middle of a list each time), rebuilt on next use
        self._tomb_sorted: list[str] | None = []
        self.kv_by_session = _Multi()
        self.nodes_by_id = _Multi()
        self.services_by_node = _Multi()
        self.services_by_name = _Multi()
        self.checks_by_node = _Multi()
        self.sessions_by_node = _Multi()
        self.queries_by_name = _Multi()  # lowercased name -> query ids (at most one: names are unique)
        self.queries_by_session = _Multi()
        self.acl_tokens_by_secret = _Multi()  # secret -> accessor (at most one: secrets are unique)
        self.acl_policies_by_name = _Multi()  # lowercased name -> policy id (at most one)
        self.acl_roles_by_name = _Multi()  # lowercased name -> role id (at most one)
        self._derived: dict[str, list[tuple[_Multi, Callable[[Any], Hashable | None]]]] = {
            "kvs": [(self.kv_by_session, lambda e: e.session or None)],
            "nodes": [(self.nodes_by_id, lambda n: nk(n.id) or None)],
            "services": [(self.services_by_node, lambda s: nk(s.node)),
                         (self.services_by_name, lambda s: nk(s.service_name))],
            "checks": [(self.checks_by_node, lambda c: nk(c.node))],
            "sessions": [(self.sessions_by_node, lambda s: nk(s.node))],
            "prepared_queries": [(self.queries_by_name, lambda q: q.name.lower() if q.name else None),
                                 (self.queries_by_session, lambda q: q.session or None)],
            "acl_tokens": [(self.acl_tokens_by_secret, lambda tok: tok.secret_id)],
            "acl_policies": [(self.acl_policies_by_name, lambda p: p.name.lower())],
            "acl_roles": [(self.acl_roles_by_name, lambda r: r.name.lower())],
        }
        self._journal: list[tuple[str, Any, Any]] | None = None
        self.changed: set[str] = set()

    # ------------------------------------------------------------ journal

    def begin(self) -> None:
        self._journal = []
        self.changed = set()

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        journal, self._journal = self._journal or [], None
        for name, key, old in reversed(journal):
            if old is _MISSING:
                self._raw_del(name, key)
            else:
                self._raw_put(name, key, old)
        self.changed = set()

    # ------------------------------------------------------------ mutation

    def put(self, name: str, key: Any, value: Any) -> None:
        if self._journal is not None:
            self._journal.append((name, key, self.maps[name].get(key, _MISSING)))
        self._raw_put(name, key, value)

    def delete(self, name: str, key: Any) -> None:
        m = self.maps[name]
        if key not in m:
            return
        if self._journal is not None:
            self._journal.append((name, key, m[key]))
        self._raw_del(name, key)

    def bump(self, name: str, idx: int) -> None:
        """Record that `name` changed at Raft index idx."""
        self.put("index", name, idx)
        self.changed.add(name)

    def _raw_put(self, name: str, key: Any, value: Any) -> None:
        m = self.maps[name]
        old = m.get(key, _MISSING)
        derived = self._derived.get(name, ())
        if old is not _MISSING:
            for multi, fn in derived:
                skey = fn(old)
                if skey is not None:
                    multi.remove(skey, key)
        elif name == "kvs":
            bisect.insort(self.kv_sorted, key)
        elif name == "tombstones" and self._tomb_sorted is not None:
            bisect.insort(self._tomb_sorted, key)
        m[key] = value
        for multi, fn in derived:
            skey = fn(value)
            if skey is not None:
                multi.add(skey, key)

    def _raw_del(self, name: str, key: Any) -> None:
        m = self.maps[name]
        old = m.pop(key, _MISSING)
        if old is _MISSING:
            return
        for multi, fn in self._derived.get(name, ()):
            skey = fn(old)
            if skey is not None:
                multi.remove(skey, key)
        if name == "kvs":
            i = bisect.bisect_left(self.kv_sorted, key)
            del self.kv_sorted[i]
        elif name == "tombstones":
            self._tomb_sorted = None

    # ------------------------------------------------------------ reads

    def kv_prefix(self, prefix: str) -> list[str]:
        """Keys starting with prefix, in byte (code point) order."""
        return _with_prefix(self.kv_sorted, prefix)

    def tombstone_prefix(self, prefix: str) -> list[str]:
        """Tombstone keys starting with prefix, in order: O(log n + matches), not a scan of all tombstones."""
        if self._tomb_sorted is None:
            self._tomb_sorted = sorted(self.tombstones)
        return _with_prefix(self._tomb_sorted, prefix)

    def max_index(self, *names: str) -> int:
        return max((self.index.get(n, 0) for n in names), default=0)


def _with_prefix(keys: list[str], prefix: str) -> list[str]:
    """The run of sorted `keys` that start with `prefix`."""
    i = bisect.bisect_left(keys, prefix)
    out: list[str] = []
    while i < len(keys) and keys[i].startswith(prefix):
        out.append(keys[i])
        i += 1
    return out
