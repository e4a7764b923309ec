"""KV table: writes (set, cas, delete, delete-cas, delete-tree, lock, unlock, txn), reads, Consul JSON.

Index rules (Consul 1.7 semantics):
- Every write of a key sets its ModifyIndex to the Raft index; CreateIndex is set when the key is
  created and kept afterwards. LockIndex is kept by plain writes and grows by 1 on each successful
  acquire by a new holder (re-acquiring by the holder keeps it). Session is the current lock holder:
  plain set/cas keep it, lock sets it, unlock and session invalidation clear it.
- A write bumps table "kvs". Deleting a key, or a non-empty tree under a non-empty prefix, also leaves
  a tombstone (key or prefix -> index) and bumps "tombstones", so a recursive blocking read of a
  prefix sees deletions (kv_index). Deleting something absent changes nothing and bumps nothing.
- Lock-delay: when a session is invalidated its keys are refused to acquirers until `now + delay`
  (sessions.py records it); the check uses the acquiring command's stamped `now`.
Functions here raise StateFailure to abort the whole command; the store rolls back.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pyconsul.agent.state.commands import TxnOp
from pyconsul.agent.state.results import StateFailure, TxnError, TxnResult
from pyconsul.agent.state.tables import KVEntry, Tables

MAX_VALUE_SIZE = 512 * 1024  # bytes; Consul's kv_max_value_size default
READ_VERBS = frozenset({"get", "get-tree", "check-index", "check-session", "check-not-exists"})


def quote(s: str) -> str:
    """Double-quoted like Go's %q, for error texts that clients may match."""
    return json.dumps(s, ensure_ascii=False)


# ---------------------------------------------------------------- writes


def set_entry(t: Tables, idx: int, key: str, value: bytes, flags: int, *,
              session: str | None = None, lock_index: int | None = None) -> KVEntry:
    """Write key at idx. session None keeps the holder; lock_index None keeps LockIndex."""
    if not key:
        raise StateFailure("Missing key name")
    if len(value) > MAX_VALUE_SIZE:
        raise StateFailure(f"Value for key {quote(key)} is too large ({len(value)} > {MAX_VALUE_SIZE} bytes)")
    old = t.kvs.get(key)
    entry = KVEntry(
        key=key, value=value, flags=flags,
        create_index=old.create_index if old else idx,
        modify_index=idx,
        lock_index=lock_index if lock_index is not None else (old.lock_index if old else 0),
        session=session if session is not None else (old.session if old else ""),
    )
    t.put("kvs", key, entry)
    t.bump("kvs", idx)
    return entry


def kv_cas(t: Tables, idx: int, key: str, value: bytes, flags: int, index: int) -> KVEntry | None:
    """index 0: create only if absent; else write only if ModifyIndex == index. None = not done."""
    old = t.kvs.get(key)
    if (index == 0 and old is not None) or (index != 0 and (old is None or old.modify_index != index)):
        return None
    return set_entry(t, idx, key, value, flags)


def kv_delete(t: Tables, idx: int, key: str) -> bool:
    """Delete one key; False (and no index change) if it did not exist."""
    if key not in t.kvs:
        return False
    t.put("tombstones", key, idx)
    t.bump("tombstones", idx)
    t.delete("kvs", key)
    t.bump("kvs", idx)
    return True


def kv_delete_cas(t: Tables, idx: int, key: str, index: int) -> bool:
    """Delete if ModifyIndex == index. An absent key counts as success (Consul)."""
    old = t.kvs.get(key)
    if old is None:
        return True
    if old.modify_index != index:
        return False
    return kv_delete(t, idx, key)


def kv_delete_tree(t: Tables, idx: int, prefix: str) -> None:
    keys = t.kv_prefix(prefix)
    if not keys:
        return
    for key in keys:
        t.delete("kvs", key)
    if prefix:  # one tombstone for the tree; deleting everything needs none (the table index covers it)
        t.put("tombstones", prefix, idx)
        t.bump("tombstones", idx)
    t.bump("kvs", idx)


def lock_check(t: Tables, key: str, session: str, now: float) -> str:
    """"" if `session` may acquire key now, else "delay" or "held". Raises on a bad session."""
    expiry = t.lock_delays.get(key)
    if expiry is not None and expiry > now:
        return "delay"
    if not session:
        raise StateFailure("missing session")
    if session not in t.sessions:
        raise StateFailure(f"invalid session {quote(session)}")
    old = t.kvs.get(key)
    if old is not None and old.session and old.session != session:
        return "held"
    return ""


def kv_lock(t: Tables, idx: int, key: str, value: bytes, flags: int, session: str, now: float) -> KVEntry | None:
    """Acquire: None if refused (held by another session, or lock-delay)."""
    if lock_check(t, key, session, now):
        return None
    old = t.kvs.get(key)
    if old is None:
        lock_index = 1
    elif old.session == session:
        lock_index = old.lock_index
    else:
        lock_index = old.lock_index + 1
    return set_entry(t, idx, key, value, flags, session=session, lock_index=lock_index)


def kv_unlock(t: Tables, idx: int, key: str, value: bytes, flags: int, session: str) -> KVEntry | None:
    """Release: None if the key is absent or not held by `session`. Writes value and flags too."""
    if not session:
        raise StateFailure("missing session")
    old = t.kvs.get(key)
    if old is None or old.session != session:
        return None
    return set_entry(t, idx, key, value, flags, session="")


def reap_tombstones(t: Tables, index: int) -> int:
    """Drop tombstones left at or below `index` (the leader's GC decides which index is old enough that no
    blocking query can still need them: see tombstone_gc.py). Returns how many went."""
    gone = [k for k, i in t.tombstones.items() if i <= index]
    for key in gone:
        t.delete("tombstones", key)
    return len(gone)


# ---------------------------------------------------------------- txn


def apply_txn(t: Tables, idx: int, ops: tuple[TxnOp, ...], now: float) -> TxnResult:
    """Run every op (later ops see earlier ones), collecting all errors; the caller rolls back if any."""
    results: list[KVEntry] = []
    errors: list[TxnError] = []
    for i, op in enumerate(ops):
        try:
            results.extend(_txn_op(t, idx, op, now))
        except StateFailure as exc:
            errors.append(TxnError(i, str(exc)))
    if errors:
        return TxnResult((), tuple(errors))
    return TxnResult(tuple(results), ())


def _blank(entry: KVEntry) -> KVEntry:
    return KVEntry(entry.key, b"", entry.flags, entry.create_index, entry.modify_index, entry.lock_index,
                   entry.session)


def _txn_op(t: Tables, idx: int, op: TxnOp, now: float) -> list[KVEntry]:
    verb, key, q = op.verb, op.key, quote(op.key)
    entry: KVEntry | None = None
    if verb == "set":
        entry = set_entry(t, idx, key, op.value, op.flags)
    elif verb == "cas":
        entry = kv_cas(t, idx, key, op.value, op.flags, op.index)
        if entry is None:
            raise StateFailure(f"failed to set key {q}, index is stale")
    elif verb == "lock":
        refused = lock_check(t, key, op.session, now)
        if refused == "delay":
            raise StateFailure(f"failed to lock key {q} due to lock delay")
        entry = kv_lock(t, idx, key, op.value, op.flags, op.session, now)
        if entry is None:
            raise StateFailure(f"failed to lock key {q}, lock is already held")
    elif verb == "unlock":
        entry = kv_unlock(t, idx, key, op.value, op.flags, op.session)
        if entry is None:
            raise StateFailure(f"failed to unlock key {q}, lock isn't held, or is held by another session")
    elif verb == "get":
        entry = t.kvs.get(key)
        if entry is None:
            raise StateFailure(f"key {q} doesn't exist")
        return [entry]
    elif verb == "get-tree":
        return kv_list(t, key)
    elif verb == "check-index":
        entry = t.kvs.get(key)
        if entry is None:
            raise StateFailure(f"failed to check index, key {q} doesn't exist")
        if entry.modify_index != op.index:
            raise StateFailure(f"failed index check for key {q}, current modify index {entry.modify_index} != "
                               f"{op.index}")
    elif verb == "check-session":
        entry = t.kvs.get(key)
        if entry is None:
            raise StateFailure(f"failed to check session, key {q} doesn't exist")
        if entry.session != op.session:
            raise StateFailure(f"failed session check for key {q}, current session {quote(entry.session)} != "
                               f"{quote(op.session)}")
    elif verb == "check-not-exists":
        if key in t.kvs:
            raise StateFailure(f"key {q} exists")
    elif verb == "delete":
        kv_delete(t, idx, key)
    elif verb == "delete-tree":
        kv_delete_tree(t, idx, key)
    elif verb == "delete-cas":
        if not kv_delete_cas(t, idx, key, op.index):
            raise StateFailure(f"failed to delete key {q}, index is stale")
    else:
        raise StateFailure(f"unknown KV verb {quote(verb)}")
    return [_blank(entry)] if entry is not None else []


# ---------------------------------------------------------------- reads


def kv_list(t: Tables, prefix: str) -> list[KVEntry]:
    return [t.kvs[k] for k in t.kv_prefix(prefix)]


def kv_keys(t: Tables, prefix: str, separator: str = "") -> list[str]:
    """Consul's ?keys&separator=: keys under prefix; with a separator, everything after the first
    separator following the prefix is folded into one "directory" entry ending in the separator."""
    out: list[str] = []
    for key in t.kv_prefix(prefix):
        if separator:
            cut = key.find(separator, len(prefix))
            if cut >= 0:
                key = key[: cut + len(separator)]
                if out and out[-1] == key:
                    continue
        out.append(key)
    return out


def kv_index(t: Tables, prefix: str = "", recurse: bool = True) -> int:
    """X-Consul-Index of a KV read (Consul 1.7 KVS.Get / KVS.List).
    Single key (recurse False): the key's ModifyIndex while it exists, so a blocking read of one key
    returns only when that key changes; an absent key: max of tables kvs and tombstones (a delete moves
    it past the key's last ModifyIndex).
    Recursive/keys read of a non-empty prefix: max ModifyIndex under it and of tombstones under it;
    when that is 0 (nothing there, nothing deleted), or the prefix is "", the table index."""
    table = t.max_index("kvs", "tombstones")
    if not recurse:
        entry = t.kvs.get(prefix)
        return entry.modify_index if entry is not None else table
    if not prefix:
        return table
    sub = max((t.kvs[k].modify_index for k in t.kv_prefix(prefix)), default=0)
    sub = max(sub, max((t.tombstones[k] for k in t.tombstone_prefix(prefix)), default=0))
    return sub or table


def kv_entry_json(entry: KVEntry) -> dict[str, Any]:
    """Consul's DirEntry JSON. Value is base64, or null when empty; Session only while locked."""
    out: dict[str, Any] = {
        "LockIndex": entry.lock_index,
        "Key": entry.key,
        "Flags": entry.flags,
        "Value": base64.b64encode(entry.value).decode("ascii") if entry.value else None,
    }
    if entry.session:
        out["Session"] = entry.session
    out["CreateIndex"] = entry.create_index
    out["ModifyIndex"] = entry.modify_index
    return out


def txn_result_json(result: TxnResult) -> dict[str, Any]:
    """Body of a /v1/txn response (HTTP 200 when ok, 409 when rolled back)."""
    if result.errors:
        return {"Results": None, "Errors": [{"OpIndex": e.op_index, "What": e.what} for e in result.errors]}
    return {"Results": [{"KV": kv_entry_json(e)} for e in result.results], "Errors": None}
