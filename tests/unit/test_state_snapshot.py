"""Replication properties: determinism, snapshot/restore equivalence, rollback of failures, invariants;
and the command codec (round trips, fuzzed decoding)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyconsul.agent.state import commands
from pyconsul.agent.state.commands import (
    CheckDef,
    KVLock,
    KVSet,
    Register,
    ServiceDef,
    SessionCreate,
    Txn,
    TxnOp,
    decode,
    encode,
)
from pyconsul.agent.state.results import StateError, TxnResult
from pyconsul.agent.state.store import StateStore
from pyconsul.agent.state.tables import Tables, nk
from pyconsul.agent.state.wire import DecodeError
from tests.unit.test_state_support import COMMANDS, ENTRIES, Harness


def run(store: StateStore, entries: list[bytes], first_index: int = 1) -> list[Any]:
    return [store.apply(first_index + i, data) for i, data in enumerate(entries)]


def check_invariants(store: StateStore) -> None:
    t: Tables = store._t
    for e in t.kvs.values():  # a lock is only ever held by a live session
        assert not e.session or e.session in t.sessions
    for (node, _), s in t.services.items():
        assert node in t.nodes and nk(s.node) == node
    for (node, _), c in t.checks.items():
        assert node in t.nodes
        assert not c.service_id or (node, nk(c.service_id)) in t.services
    for session in t.sessions.values():
        assert nk(session.node) in t.nodes
    assert set(t.session_deadlines) <= set(t.sessions)
    assert t.kv_sorted == sorted(t.kvs)
    # derived indexes equal a rebuild from the records
    rebuilt = StateStore.restore(store.snapshot())._t
    for name in ("kv_by_session", "nodes_by_id", "services_by_node", "services_by_name", "checks_by_node",
                 "sessions_by_node"):
        assert getattr(t, name).by == getattr(rebuilt, name).by, name


@settings(max_examples=200, deadline=None)
@given(ENTRIES)
def test_replicas_applying_the_same_log_agree(entries: list[bytes]) -> None:
    a, b = StateStore(), StateStore()
    assert run(a, entries) == run(b, entries)
    assert a.snapshot() == b.snapshot()
    check_invariants(a)


@settings(max_examples=200, deadline=None)
@given(ENTRIES, st.data())
def test_snapshot_restore_then_apply_equals_applying_everything(entries: list[bytes], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(entries)))
    full = StateStore()
    results = run(full, entries)
    part = StateStore()
    run(part, entries[:cut])
    restored = StateStore.restore(part.snapshot())
    assert restored.snapshot() == part.snapshot()
    assert run(restored, entries[cut:], cut + 1) == results[cut:]
    assert restored.snapshot() == full.snapshot()
    assert restored.kv_keys("", "/") == full.kv_keys("", "/") and restored.nodes() == full.nodes()


@settings(max_examples=200, deadline=None)
@given(ENTRIES)
def test_failed_applies_change_nothing(entries: list[bytes]) -> None:
    store = StateStore()
    for i, data in enumerate(entries, 1):
        before = store.snapshot()
        result = store.apply(i, data)
        if isinstance(result, StateError) or (isinstance(result, TxnResult) and not result.ok):
            assert store.snapshot() == before and store.last_changed == frozenset()
        elif store.last_changed == frozenset():  # only renew deadlines and reaped tombstones move no index
            quiet = commands.SessionRenew | commands.TombstoneReap
            assert store.snapshot() == before or isinstance(decode(data), quiet)


def test_snapshot_round_trip_of_a_populated_store() -> None:
    h = Harness()
    h.do(Register("n1", "10.0.0.1", id="id-1", tagged_addresses={"lan": "10.0.0.1"}, node_meta={"a": "b"},
                  service=ServiceDef(service="web", tags=("x",), meta={"m": "1"}, port=80),
                  checks=(CheckDef(name="serfHealth", status="passing"),), now=1.0))
    h.do(SessionCreate("s1", "n1", ttl_seconds=10.0, checks=("serfHealth",), now=1.0))
    h.do(KVLock("k", b"\x00\xff", 5, "s1", now=2.0))
    h.do(Txn((TxnOp("set", "t/1", b"1"), TxnOp("delete", "t/1")), now=3.0))
    data = h.store.snapshot()
    restored = StateStore.restore(data)
    assert restored.snapshot() == data
    assert restored.kv_get("k") == h.store.kv_get("k")
    assert restored.kv_index("t/") == h.store.kv_index("t/") == 4
    assert restored.expired_sessions(21.0) == ["s1"]
    assert restored.service_nodes("web") == h.store.service_nodes("web")
    assert restored.table_index("kvs", "nodes", "sessions") == h.index == restored.max_index()
    assert restored.changed_since(3) == {"kvs", "tombstones"} and StateStore().max_index() == 0


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x93",
        msgpack.packb([1, 2]),
        msgpack.packb({"format": "other", "version": 1}),
        msgpack.packb({"format": "pyconsul-state", "version": 99}),
        msgpack.packb({"format": "pyconsul-state", "version": 1, "kvs": {}}),
        msgpack.packb({"format": "pyconsul-state", "version": 1, "kvs": [{"key": 1}]}),
        msgpack.packb({"format": "pyconsul-state", "version": 1, "kvs": [{"key": "a"}, {"key": "a"}]}),
        msgpack.packb({"format": "pyconsul-state", "version": 1, "index": [["kvs", -1]]}),
        msgpack.packb({"format": "pyconsul-state", "version": 1, "lock_delays": [["k", "soon"]]}),
        msgpack.packb({"format": "pyconsul-state", "version": 1, "nodes": [{"node": "n", "meta": {"a": 1}}]}),
    ],
)
def test_bad_snapshots_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        StateStore.restore(data)


def test_empty_store_snapshot_is_stable() -> None:
    assert StateStore().snapshot() == StateStore.restore(StateStore().snapshot()).snapshot()


# ---------------------------------------------------------------- command codec


@settings(max_examples=300)
@given(COMMANDS)
def test_command_round_trip(cmd: commands.Command) -> None:
    data = encode(cmd)
    assert decode(data) == cmd
    assert encode(decode(data)) == data  # deterministic bytes


def test_command_type_numbers_are_frozen() -> None:
    # Append-only: these numbers are in every persisted log. Never change one; add new ones at the end.
    assert {t.name: t.value for t in commands.CommandType} == {
        "KV_SET": 1, "KV_CAS": 2, "KV_DELETE": 3, "KV_DELETE_CAS": 4, "KV_DELETE_TREE": 5, "KV_LOCK": 6,
        "KV_UNLOCK": 7, "TXN": 8, "REGISTER": 9, "DEREGISTER": 10, "SESSION_CREATE": 11,
        "SESSION_DESTROY": 12, "SESSION_RENEW": 13, "TOMBSTONE_REAP": 14, "RESTORE": 15,
        "COORDINATE_BATCH_UPDATE": 16, "PREPARED_QUERY": 17, "ACL_TOKEN": 18, "ACL_POLICY": 19, "ACL_ROLE": 20,
        "ACL_BOOTSTRAP": 21, "AUTOPILOT": 22}
    assert msgpack.unpackb(encode(KVSet("k", b"v", 1))) == [1, {"key": "k", "value": b"v", "flags": 1}]


def test_now_must_be_stamped() -> None:
    with pytest.raises(TypeError):
        KVLock("k", b"", 0, "s")  # type: ignore[call-arg]


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    data = msgpack.packb([1, {"key": "k", "value": b"v", "flags": 0, "added_later": [1, 2]}], use_bin_type=True)
    assert decode(data) == KVSet("k", b"v", 0)


MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.integers(0, 20), MSGPACK_VALUES)
def test_decode_of_arbitrary_msgpack_raises_only_decode_error(tag: int, body: Any) -> None:
    data = msgpack.packb([tag, body], use_bin_type=True)
    try:
        decode(data)
    except DecodeError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_decode_of_random_bytes_raises_only_decode_error(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


@settings(max_examples=100, deadline=None)
@given(ENTRIES, st.data())
def test_a_snapshot_view_is_the_state_at_capture_time(entries: list[bytes], data: st.DataObject) -> None:
    """Raft and GET /v1/snapshot serialise a capture in another thread while applies go on: the bytes must be
    the state when it was captured, whatever is applied between capture and serialisation."""
    cut = data.draw(st.integers(0, len(entries)))
    store = StateStore()
    for i, e in enumerate(entries[:cut], 1):
        store.apply(i, e)
    expected = store.snapshot()
    serialise = store.snapshot_view()
    for i, e in enumerate(entries[cut:], cut + 1):
        store.apply(i, e)
    assert serialise() == expected
