"""StateStore: the replicated state machine of a Consul server (KV, catalog, sessions) and its read API.

Apply contract (Raft §5.3: every replica applies the same committed entries in the same order):
- `apply(index, data)` takes a committed entry's Raft index and encoded command (commands.py), and
  returns the command's result. It never raises: garbage, an invalid command or even a bug in a
  handler yields StateError and leaves the state exactly as it was (the journal is rolled back), so
  all replicas still agree. A Txn with errors returns TxnResult(errors=...) and is rolled back too.
- Deterministic: the outcome depends only on the state, `index` and `data` (time is inside the
  commands, see commands.py). Indexes must increase from one apply to the next (Raft's job).
- Single-threaded: the caller (raft/node.py) serialises apply, reads and snapshot. The one exception is
  `prepare(data)`: pure and thread-safe, it does the expensive part of a Restore (decoding the whole
  state) on a worker thread; `apply_prepared(index, prepared)` then only swaps the tables in, with the
  same result as apply(index, data).

Blocking queries (the asyncio layer's contract, no I/O here):
- After each apply, `last_changed` is the set of index names that apply moved ("kvs", "tombstones",
  "nodes", "services", "checks", "sessions", "service.<lowercased name>", "service_last_extinction");
  empty when nothing changed (including failures and SessionRenew). Wake the waiters watching those.
- A woken (or timed-out) waiter re-runs its read and compares the read's index with its ?index=;
  each read documents its index (kv_index, table_index(...), service_index). `changed_since(i)` is the
  poll alternative: names whose index is > i.
- Index 0 means "never written"; Consul clamps a returned X-Consul-Index to at least 1.

Sessions' time: the leader stamps `now` into KVLock, Txn, Register, Deregister and the session
commands. It should poll `expired_sessions(now)` (or sleep until `next_session_deadline()`) and
propose SessionDestroy(id, now=...) for each expired id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pyconsul.agent.state import acl as acl_state
from pyconsul.agent.state import autopilot as autopilot_state
from pyconsul.agent.state import catalog, catalog_reads, coordinates, kv, prepared_queries, restore, sessions, snapshot
from pyconsul.agent.state.catalog_reads import Keep, Tags
from pyconsul.agent.state.commands import (
    KVCAS,
    ACLBootstrap,
    ACLPolicyApply,
    ACLRoleApply,
    ACLTokenApply,
    AutopilotConf,
    AutopilotSet,
    Command,
    Coord,
    CoordinateBatchUpdate,
    Deregister,
    KVDelete,
    KVDeleteCAS,
    KVDeleteTree,
    KVLock,
    KVSet,
    KVUnlock,
    PreparedQueryApply,
    Register,
    Restore,
    SessionCreate,
    SessionDestroy,
    SessionRenew,
    TombstoneReap,
    Txn,
    TxnOp,
    decode,
    is_restore,
)
from pyconsul.agent.state.kv import kv_entry_json, txn_result_json
from pyconsul.agent.state.results import StateError, StateFailure, TxnError, TxnResult
from pyconsul.agent.state.sessions import session_json
from pyconsul.agent.state.tables import KVEntry, Session, Tables
from pyconsul.agent.state.wire import DecodeError

T = TypeVar("T")

__all__ = ["KVEntry", "StateError", "StateStore", "TxnError", "TxnResult", "kv_entry_json",
           "session_json", "txn_result_json"]


def _register(t: Tables, i: int, c: Register) -> bool:
    catalog.register(t, i, c)
    return True


def _deregister(t: Tables, i: int, c: Deregister) -> bool:
    catalog.deregister(t, i, c)
    coordinates.drop_node(t, i, c.node)  # only if the node itself is gone
    return True


def _kv_set(t: Tables, i: int, c: KVSet) -> bool:
    kv.set_entry(t, i, c.key, c.value, c.flags)
    return True


def _kv_delete(t: Tables, i: int, c: KVDelete) -> bool:
    kv.kv_delete(t, i, c.key)
    return True


def _kv_delete_tree(t: Tables, i: int, c: KVDeleteTree) -> bool:
    kv.kv_delete_tree(t, i, c.prefix)
    return True


def _session_destroy(t: Tables, i: int, c: SessionDestroy) -> bool:
    sessions.destroy(t, i, c.id, c.now)
    return True


def _reap(t: Tables, i: int, c: TombstoneReap) -> bool:
    kv.reap_tombstones(t, c.index)
    return True


# One handler per command type: (tables, raft index, command) -> result; StateFailure aborts.
_HANDLERS: dict[type, Callable[[Tables, int, Any], Any]] = {
    KVSet: _kv_set,
    KVCAS: lambda t, i, c: kv.kv_cas(t, i, c.key, c.value, c.flags, c.index) is not None,
    KVDelete: _kv_delete,
    KVDeleteCAS: lambda t, i, c: kv.kv_delete_cas(t, i, c.key, c.index),
    KVDeleteTree: _kv_delete_tree,
    KVLock: lambda t, i, c: kv.kv_lock(t, i, c.key, c.value, c.flags, c.session, c.now) is not None,
    KVUnlock: lambda t, i, c: kv.kv_unlock(t, i, c.key, c.value, c.flags, c.session) is not None,
    Txn: lambda t, i, c: kv.apply_txn(t, i, c.ops, c.now),
    Register: _register,
    Deregister: _deregister,
    SessionCreate: sessions.create,
    SessionDestroy: _session_destroy,
    SessionRenew: lambda t, i, c: sessions.renew(t, c.id, c.now),
    TombstoneReap: _reap,
    CoordinateBatchUpdate: coordinates.apply_batch,
    PreparedQueryApply: prepared_queries.apply,
    ACLTokenApply: acl_state.apply_token,
    ACLPolicyApply: acl_state.apply_policy,
    ACLRoleApply: acl_state.apply_role,
    ACLBootstrap: acl_state.apply_bootstrap,
    AutopilotSet: autopilot_state.apply,
}


_TABLES = ("kvs", "tombstones", "nodes", "services", "checks", "sessions", "coordinates", prepared_queries.INDEX,
           acl_state.TOKENS, acl_state.POLICIES, acl_state.ROLES, autopilot_state.INDEX)


class StateStore:
    def __init__(self, tables: Tables | None = None) -> None:
        self._t = tables if tables is not None else Tables()
        self.last_changed: frozenset[str] = frozenset()
        self._restoring: restore.Pending | None = None  # a restore in pieces under way (state/restore.py)
        self.abandoned = ""  # the id of a restore in pieces the last apply abandoned, else ""

    # ------------------------------------------------------------ writes

    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed entry. See the module docstring for the contract and results:
        KVSet/KVDelete/KVDeleteTree/Register/Deregister/SessionDestroy/TombstoneReap -> True;
        KVCAS/KVDeleteCAS/KVLock/KVUnlock -> bool; Txn -> TxnResult; SessionCreate -> id (str);
        SessionRenew -> Session | None; rejected or undecodable -> StateError."""
        self.last_changed = frozenset()
        if isinstance(index, bool) or not isinstance(index, int) or index <= 0:
            return StateError(f"bad raft index {index!r}", True)
        try:
            cmd = decode(data)
        except DecodeError as exc:
            self._abandon()  # ends a restore in progress (state/restore.py), as apply_prepared does
            return StateError(f"undecodable command: {exc}")
        return self._apply_decoded(index, cmd)

    def _apply_decoded(self, index: int, cmd: Command) -> Any:
        """Private on purpose: replicas only ever see decoded bytes (an int `now` in a command object
        would become a float on the wire and make this replica's snapshot differ)."""
        if isinstance(cmd, Restore):
            if restore.is_abort(cmd):
                self._abandon()
                return True
            if restore.is_piece(cmd):
                return self._restore_piece(index, restore.meta_of(cmd), cmd.state)
            self._abandon()
            return self._restore(index, cmd)
        self.abandoned = ""  # other commands leave a restore in progress as it is (state/restore.py)
        t = self._t
        handler = _HANDLERS.get(type(cmd))
        if handler is None:
            return StateError(f"not a state command: {type(cmd).__name__}")
        t.begin()
        try:
            result = handler(t, index, cmd)
        except StateFailure as exc:
            t.rollback()
            return StateError(str(exc))
        except Exception as exc:  # a bug; roll back so that every replica stays identical
            t.rollback()
            return StateError(f"internal error applying {type(cmd).__name__}: {type(exc).__name__}: {exc}", True)
        if isinstance(result, TxnResult) and result.errors:
            t.rollback()
            return result
        t.commit()
        self.last_changed = frozenset(t.changed)
        return result

    @staticmethod
    def prepare(data: bytes, spool: restore.Spool | None = None) -> Tables | StateError | restore.PieceMeta | None:
        """Thread-safe and pure: for a Restore command, its decoded tables (or the StateError that applying it
        gives); None for any other command (nothing to prepare). A restore piece goes to `spool` (the pieces
        in log order, on one thread; None: not prepared), which decodes the state with the last one."""
        if not is_restore(data):
            return None
        try:
            cmd = decode(data)
        except DecodeError as exc:
            return StateError(f"undecodable command: {exc}")
        if not isinstance(cmd, Restore) or restore.is_abort(cmd):
            return None
        if restore.is_piece(cmd):
            return spool.add(cmd) if spool is not None else None
        return StateStore._load_restore(cmd)

    def apply_prepared(self, index: int, data: bytes, prepared: Tables | StateError | None) -> Any:
        """apply(index, data) given prepare(data)'s result: the same outcome, only the cheap swap."""
        if prepared is None:
            return self.apply(index, data)
        self.last_changed = frozenset()
        if isinstance(index, bool) or not isinstance(index, int) or index <= 0:
            return StateError(f"bad raft index {index!r}", True)
        if isinstance(prepared, restore.PieceMeta):
            return self._restore_piece(index, prepared, None)
        self._abandon()
        if isinstance(prepared, StateError):
            return prepared
        return self._swap_in(index, prepared)

    def restoring(self) -> bool:
        """A restore in pieces is under way: the state must not be snapshotted now (state/restore.py)."""
        return self._restoring is not None

    def _abandon(self) -> None:
        cur, self._restoring = self._restoring, None
        self.abandoned = cur.id if cur is not None else ""

    def _restore_piece(self, index: int, p: restore.PieceMeta, data: bytes | None) -> Any:
        """One piece of a restore (state/restore.py). `data`: the piece's bytes when nothing was prepared (this
        store then decodes the state itself); else `p.result` carries the prepared state on the last piece."""
        self.abandoned = ""
        cur, err = restore.step(self._restoring, p, data)
        if err or cur is None:
            self._restoring = None
            return StateError(f"invalid restore: {err}")
        if not cur.complete:
            self._restoring = cur
            return True
        self._restoring = None
        t = restore.finish(cur, p)
        return t if isinstance(t, StateError) else self._swap_in(index, t)

    @staticmethod
    def _load_restore(cmd: Restore) -> Tables | StateError:
        try:
            return snapshot.load(cmd.state)
        except DecodeError as exc:
            return StateError(f"invalid snapshot: {exc}")

    def _restore(self, index: int, cmd: Restore) -> Any:
        t = self._load_restore(cmd)
        return t if isinstance(t, StateError) else self._swap_in(index, t)

    def _swap_in(self, index: int, t: Tables) -> Any:
        """Swap in the snapshot's tables. Every table index (the old ones and the snapshot's) becomes
        `index`, so X-Consul-Index keeps growing and every blocking query wakes and re-reads."""
        for name in set(self._t.index) | set(t.index) | set(_TABLES):
            t.index[name] = index
        self._t = t
        self.last_changed = frozenset(t.index)
        return True

    def txn_read(self, ops: Iterable[TxnOp]) -> TxnResult:
        """A read-only /v1/txn (only get, get-tree, check-* verbs) answered locally, without Raft."""
        ops = tuple(ops)
        bad = [TxnError(i, f"verb {kv.quote(op.verb)} is not allowed in a read-only transaction")
               for i, op in enumerate(ops) if op.verb not in kv.READ_VERBS]
        if bad:
            return TxnResult((), tuple(bad))
        return kv.apply_txn(self._t, 0, ops, 0.0)

    # ------------------------------------------------------------ indexes and watches

    def table_index(self, *names: str) -> int:
        """Max index of the named tables (or any index name listed in the module docstring)."""
        return self._t.max_index(*names)

    def max_index(self) -> int:
        """The highest Raft index recorded by any table (0 when empty). Not necessarily the last applied
        entry (a failed or no-op command records nothing); Raft tracks that."""
        return max(self._t.index.values(), default=0)

    def changed_since(self, index: int) -> frozenset[str]:
        return frozenset(name for name, i in self._t.index.items() if i > index)

    def autopilot_config(self) -> AutopilotConf | None:
        """Autopilot's settings (state/autopilot.py); None until the leader seeded them. Index: "autopilot-config"."""
        return autopilot_state.get(self._t)

    # ------------------------------------------------------------ KV reads

    def kv_get(self, key: str) -> KVEntry | None:
        """GET /v1/kv/<key>. Index: kv_index(key, recurse=False)."""
        return self._t.kvs.get(key)

    def kv_list(self, prefix: str) -> list[KVEntry]:
        """GET ?recurse, in key order. Index: kv_index(prefix)."""
        return kv.kv_list(self._t, prefix)

    def kv_keys(self, prefix: str, separator: str = "") -> list[str]:
        """GET ?keys[&separator=]. Index: kv_index(prefix)."""
        return kv.kv_keys(self._t, prefix, separator)

    def kv_index(self, prefix: str = "", recurse: bool = True) -> int:
        return kv.kv_index(self._t, prefix, recurse)

    def tombstone_count(self) -> int:
        """How many KV tombstones are kept (the leader's GC reaps them after tombstone_ttl)."""
        return len(self._t.tombstones)

    # ------------------------------------------------------------ catalog and health reads

    # Selections (tags, node_meta, keep) and each read's index: see catalog_reads.py.

    def nodes(self, node_meta: Mapping[str, str] | None = None, keep: Keep = None) -> list[dict[str, Any]]:
        return catalog_reads.nodes(self._t, node_meta, keep)

    def services(self, node_meta: Mapping[str, str] | None = None, keep: Keep = None) -> dict[str, list[str]]:
        return catalog_reads.services(self._t, node_meta, keep)

    def service_nodes(self, name: str, tag: Tags = None, node_meta: Mapping[str, str] | None = None,
                      keep: Keep = None) -> list[dict[str, Any]]:
        return catalog_reads.service_nodes(self._t, name, tag, node_meta, keep)

    def node_services(self, node: str, keep: Keep = None) -> dict[str, Any] | None:
        return catalog_reads.node_services(self._t, node, keep)

    def node_service_list(self, node: str, keep: Keep = None) -> dict[str, Any]:
        return catalog_reads.node_service_list(self._t, node, keep)

    def health_checks(self, *, node: str | None = None, service: str | None = None,
                      state: str | None = None, node_meta: Mapping[str, str] | None = None,
                      keep: Keep = None) -> list[dict[str, Any]]:
        return catalog_reads.health_checks(self._t, node=node, service=service, state=state,
                                           node_meta=node_meta, keep=keep)

    def health_service_nodes(self, name: str, tag: Tags = None, passing_only: bool = False,
                             node_meta: Mapping[str, str] | None = None, keep: Keep = None) -> list[dict[str, Any]]:
        return catalog_reads.health_service_nodes(self._t, name, tag, passing_only, node_meta, keep)

    def service_index(self, name: str, checks: bool = False) -> int:
        return catalog_reads.service_index(self._t, name, checks)

    def sort_near(self, items: list[T], node_of: Callable[[T], str], near: str) -> list[T]:
        """?near=<node>: `items` by estimated RTT from that node to each item's node (coordinates.py)."""
        return coordinates.sort_by_distance(self._t, items, node_of, near)

    # ------------------------------------------------------------ coordinate reads (index: "coordinates")

    def coordinates(self, node: str | None = None, segment: str | None = None) -> list[dict[str, Any]]:
        """/v1/coordinate/nodes (node None) or /v1/coordinate/node/<node>: [{Node, Segment, Coord}]."""
        return coordinates.list_json(self._t, node, segment)

    def node_coordinate(self, node: str, segment: str = "") -> Coord | None:
        """A node's network coordinate, for ?near= sorting (with agent.gossip.coordinate.distance)."""
        return coordinates.node_coordinate(self._t, node, segment)

    # ------------------------------------------------------------ prepared queries (index: "prepared-queries")

    @property
    def tables(self) -> Tables:
        """The tables, for the pure read modules (state/prepared_queries.py); read-only by contract."""
        return self._t

    # ------------------------------------------------------------ session reads (index: "sessions")

    def session_info(self, session_id: str) -> dict[str, Any] | None:
        session = self._t.sessions.get(session_id)
        return session_json(session) if session is not None else None

    def session_list(self) -> list[dict[str, Any]]:
        return [session_json(s) for s in sessions.session_list(self._t)]

    def node_sessions(self, node: str) -> list[dict[str, Any]]:
        return [session_json(s) for s in sessions.node_sessions(self._t, node)]

    def session(self, session_id: str) -> Session | None:
        return self._t.sessions.get(session_id)

    def expired_sessions(self, now: float) -> list[str]:
        """TTL sessions whose deadline (now at create/renew + 2 × TTL) is <= now, sorted."""
        return sessions.expired(self._t, now)

    def next_session_deadline(self) -> float | None:
        return min(self._t.session_deadlines.values(), default=None)

    # ------------------------------------------------------------ snapshot

    def snapshot(self) -> bytes:
        """Complete, deterministic, versioned (snapshot.py). Equal states give equal bytes."""
        return snapshot.dump(self._t)

    def snapshot_view(self) -> Callable[[], bytes]:
        """Capture the state now (cheap); the returned function serialises that capture (expensive, and
        safe to run in another thread while applies go on). Same bytes as snapshot() at capture time."""
        return snapshot.view(self._t)

    @classmethod
    def restore(cls, data: bytes) -> StateStore:
        """A new store from snapshot bytes; raises DecodeError (ValueError) on a bad snapshot. The decoding
        (snapshot.load, thread-safe) may run elsewhere: StateStore(snapshot.load(data)) is the same."""
        return cls(snapshot.load(data))
