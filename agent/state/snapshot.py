"""Snapshot and restore of the whole state: every table, tombstones, lock delays, session deadlines and
table indexes.

Format (msgpack, bin type on): a map {"format": "pyconsul-state", "version": 1, <table>: [...]} with
records as field-name maps (wire.py) and keyed scalars as [key, value] pairs, everything sorted by
primary key, so two replicas in the same state produce byte-identical snapshots (tests compare
snapshots to compare states). Secondary indexes are rebuilt on restore, never stored.
Versioning: a reader refuses a newer version; fields added to records later need defaults.
`load` raises DecodeError on anything malformed; it does not touch a live store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyconsul.agent.state.acl_defs import ACLPolicy, ACLRole, ACLToken
from pyconsul.agent.state.commands import AutopilotConf
from pyconsul.agent.state.query_defs import PreparedQueryDef
from pyconsul.agent.state.tables import CoordinateEntry, HealthCheck, KVEntry, Node, ServiceNode, Session, Tables, nk
from pyconsul.agent.state.wire import (
    U64,
    DecodeError,
    from_wire,
    pack,
    pack_array_header,
    pack_map_header,
    to_wire,
    unpack,
)

FORMAT = "pyconsul-state"
VERSION = 1

_RECORDS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "kvs": (KVEntry, lambda e: e.key),
    "nodes": (Node, lambda n: nk(n.node)),
    "services": (ServiceNode, lambda s: (nk(s.node), nk(s.service_id))),
    "checks": (HealthCheck, lambda c: (nk(c.node), nk(c.check_id))),
    "sessions": (Session, lambda s: s.id),
    "coordinates": (CoordinateEntry, lambda c: (nk(c.node), c.segment)),  # added later: absent in older snapshots
    "prepared_queries": (PreparedQueryDef, lambda q: q.id),  # added later too
    "acl_tokens": (ACLToken, lambda tok: tok.accessor_id),  # added later too (issue 14)
    "acl_policies": (ACLPolicy, lambda p: p.id),
    "acl_roles": (ACLRole, lambda r: r.id),
    "autopilot": (AutopilotConf, lambda a: "config"),  # added later too: autopilot's settings (state/autopilot.py)
}
_PAIRS: dict[str, type] = {"tombstones": int, "lock_delays": float, "session_deadlines": float, "index": int}


def dump(t: Tables) -> bytes:
    return view(t)()


def view(t: Tables) -> Callable[[], bytes]:
    """A point-in-time capture of every table, and the function that serialises it.

    Capturing copies the dicts (records are frozen, so a shallow copy is a snapshot: O(entries), about
    10 ms per million on this machine); serialising (sorting, encoding: seconds for hundreds of MiB)
    reads only the copies, so it may run in another thread while the state machine goes on applying."""
    maps = {name: dict(t.maps[name]) for name in (*_RECORDS, *_PAIRS)}
    return lambda: _dump(maps)


def _dump(maps: dict[str, dict[Any, Any]]) -> bytes:
    """The same bytes as pack({"format": ..., "version": ..., <table>: [...], ...}), packed record by record:
    one packb call over hundreds of MiB would hold the GIL for as long (the event loop, in another thread,
    would stall); small calls let it run between them. Only the final join copies everything at once."""
    parts = [pack_map_header(2 + len(_RECORDS) + len(_PAIRS)), pack("format"), pack(FORMAT), pack("version"),
             pack(VERSION)]
    for name in _RECORDS:
        m = maps[name]
        parts += (pack(name), pack_array_header(len(m)))
        parts += [pack(to_wire(m[k])) for k in sorted(m)]
    for name in _PAIRS:
        m = maps[name]
        parts += (pack(name), pack_array_header(len(m)))
        parts += [pack([k, m[k]]) for k in sorted(m)]
    return b"".join(parts)


def load(data: bytes) -> Tables:
    obj = unpack(data)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise DecodeError("not a pyconsul state snapshot")
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise DecodeError(f"unsupported snapshot version {version!r}")
    t = Tables()
    for name, (cls, keyfn) in _RECORDS.items():
        for i, raw in enumerate(_list(obj, name)):
            record: Any = from_wire(cls, raw, f"{name}[{i}]")
            key = keyfn(record)
            if key in t.maps[name]:
                raise DecodeError(f"{name}: duplicate record {key!r}")
            t.put(name, key, record)
    for name, tp in _PAIRS.items():
        for i, pair in enumerate(_list(obj, name)):
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise DecodeError(f"{name}[{i}]: expected [str, number]")
            key, value = pair
            if key in t.maps[name]:
                raise DecodeError(f"{name}: duplicate key {key!r}")
            t.put(name, key, _number(tp, value, f"{name}[{i}]"))
    return t


def _list(obj: dict[str, Any], name: str) -> list[Any]:
    value = obj.get(name, [])
    if not isinstance(value, list):
        raise DecodeError(f"{name}: expected an array")
    return value


def _number(tp: type, value: Any, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"{where}: expected a number")
    if tp is int:
        if not isinstance(value, int) or not 0 <= value < U64:
            raise DecodeError(f"{where}: expected an unsigned int")
        return value
    if value != value or value in (float("inf"), float("-inf")):
        raise DecodeError(f"{where}: not a finite number")
    return float(value)
