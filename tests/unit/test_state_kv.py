"""KV semantics of the state machine (Consul 1.7): set, cas, delete(-cas/-tree), keys, locks, txn, indexes."""

from __future__ import annotations

import msgpack
import pytest

from pyconsul.agent.state.commands import (
    KVCAS,
    KVDelete,
    KVDeleteCAS,
    KVDeleteTree,
    KVLock,
    KVSet,
    KVUnlock,
    SessionDestroy,
    TombstoneReap,
    Txn,
    TxnOp,
)
from pyconsul.agent.state.kv import MAX_VALUE_SIZE, kv_entry_json, txn_result_json
from pyconsul.agent.state.results import StateError, TxnResult
from tests.unit.test_state_support import Harness


def test_set_tracks_create_and_modify_index() -> None:
    h = Harness()
    assert h.do(KVSet("k", b"v1", 7)) is True
    e = h.store.kv_get("k")
    assert e is not None and (e.create_index, e.modify_index, e.lock_index, e.flags) == (1, 1, 0, 7)
    h.do(KVSet("other", b"x"))
    h.do(KVSet("k", b"v2"))
    e = h.store.kv_get("k")
    assert e is not None and (e.value, e.create_index, e.modify_index, e.flags) == (b"v2", 1, 3, 0)
    assert h.store.table_index("kvs") == 3 and h.store.last_changed == {"kvs"}


@pytest.mark.parametrize(
    ("exists", "cas_index", "expected"),
    [
        (False, 0, True),  # 0 = create only
        (True, 0, False),
        (False, 1, False),  # a non-zero index on an absent key fails
        (True, 1, True),  # matches ModifyIndex
        (True, 2, False),
    ],
)
def test_cas(exists: bool, cas_index: int, expected: bool) -> None:
    h = Harness()
    if exists:
        h.do(KVSet("k", b"old"))
    else:
        h.do(KVSet("elsewhere", b""))
    before = h.store.snapshot()
    assert h.do(KVCAS("k", b"new", 0, cas_index)) is expected
    if expected:
        e = h.store.kv_get("k")
        assert e is not None and e.value == b"new" and e.modify_index == 2
    else:
        assert h.store.snapshot() == before and h.store.last_changed == frozenset()


@pytest.mark.parametrize(
    ("exists", "cas_index", "expected", "gone"),
    [
        (False, 5, True, True),  # absent counts as deleted (Consul)
        (True, 1, True, True),
        (True, 9, False, False),
    ],
)
def test_delete_cas(exists: bool, cas_index: int, expected: bool, gone: bool) -> None:
    h = Harness()
    if exists:
        h.do(KVSet("k", b"v"))
    assert h.do(KVDeleteCAS("k", cas_index)) is expected
    assert (h.store.kv_get("k") is None) is gone


def test_delete_and_delete_tree() -> None:
    h = Harness()
    for key in ("a", "a/b", "a/c/d", "ab", "b"):
        h.do(KVSet(key, b"v"))
    assert h.do(KVDelete("missing")) is True and h.store.last_changed == frozenset()
    assert h.do(KVDeleteTree("a/")) is True
    assert [e.key for e in h.store.kv_list("")] == ["a", "ab", "b"]
    assert h.store.last_changed == {"kvs", "tombstones"}
    assert h.do(KVDelete("ab")) is True
    assert h.do(KVDeleteTree("")) is True
    assert h.store.kv_list("") == [] and h.store.table_index("kvs") == h.index


KEYS = ["a", "a/", "a/b", "a/c/d", "a/c/e", "ab", "b/x/y"]


@pytest.mark.parametrize(
    ("prefix", "separator", "expected"),
    [
        ("", "", KEYS),
        ("", "/", ["a", "a/", "ab", "b/"]),
        ("a/", "/", ["a/", "a/b", "a/c/"]),
        ("a/c/", "/", ["a/c/d", "a/c/e"]),
        ("a", "", ["a", "a/", "a/b", "a/c/d", "a/c/e", "ab"]),
        ("b", "/", ["b/"]),
        ("zzz", "/", []),
        ("", "c/", ["a", "a/", "a/b", "a/c/", "ab", "b/x/y"]),
    ],
)
def test_keys_with_separator(prefix: str, separator: str, expected: list[str]) -> None:
    h = Harness()
    for key in reversed(KEYS):
        h.do(KVSet(key, b""))
    assert h.store.kv_keys(prefix, separator) == expected


def test_kv_index_of_reads() -> None:
    h = Harness()
    h.do(KVSet("app/a", b""))  # 1
    h.do(KVSet("app/b", b""))  # 2
    h.do(KVSet("other", b""))  # 3
    assert h.store.kv_index("app/") == 2  # max ModifyIndex under the prefix
    assert h.store.kv_index("") == 3
    assert h.store.kv_index("app/a", recurse=False) == 1  # one key: its own ModifyIndex (Consul's KVS.Get)
    assert h.store.kv_index("nothing/") == 3 and h.store.kv_index("nothing", recurse=False) == 3  # the table's
    h.do(KVDelete("app/b"))  # 4: a tombstone keeps the prefix's index moving
    assert h.store.kv_index("app/") == 4 and h.store.kv_index("app/b", recurse=False) == 4
    h.do(KVDeleteTree("app/"))  # 5
    assert h.store.kv_index("app/") == 5
    h.do(TombstoneReap(5))  # 6: reaped; empty prefix falls back to the table index
    assert h.store.kv_index("app/") == 5 and h.store.table_index("tombstones") == 5


def test_lock_lifecycle() -> None:
    h = Harness()
    h.node()
    h.session("s1")
    h.session("s2")
    assert h.do(KVLock("lk", b"me", session="s1", now=1.0)) is True
    e = h.store.kv_get("lk")
    assert e is not None and (e.session, e.lock_index, e.value) == ("s1", 1, b"me")
    assert kv_entry_json(e)["Session"] == "s1"
    assert h.do(KVLock("lk", b"again", session="s1", now=1.0)) is True  # holder re-acquires: same LockIndex
    assert h.store.kv_get("lk").lock_index == 1  # type: ignore[union-attr]
    assert h.do(KVLock("lk", b"", session="s2", now=1.0)) is False
    assert h.do(KVUnlock("lk", b"", session="s2")) is False  # release by another session fails
    assert h.do(KVSet("lk", b"plain")) is True  # a plain set keeps the holder
    assert h.store.kv_get("lk").session == "s1"  # type: ignore[union-attr]
    assert h.do(KVUnlock("lk", b"bye", session="s1")) is True
    e = h.store.kv_get("lk")
    assert e is not None and (e.session, e.lock_index, e.value) == ("", 1, b"bye")
    assert "Session" not in kv_entry_json(e)
    assert h.do(KVLock("lk", b"", session="s2", now=1.0)) is True
    assert h.store.kv_get("lk").lock_index == 2  # type: ignore[union-attr]
    assert h.do(KVUnlock("absent", b"", session="s2")) is False


@pytest.mark.parametrize(
    ("session", "message"),
    [("", "missing session"), ("nope", 'invalid session "nope"')],
)
def test_lock_needs_a_live_session(session: str, message: str) -> None:
    h = Harness()
    before = h.store.snapshot()
    assert h.do(KVLock("k", b"", session=session, now=0.0)) == StateError(message)
    assert h.store.snapshot() == before


@pytest.mark.parametrize(("lock_at", "expected"), [(100.0, False), (114.9, False), (115.0, True), (200.0, True)])
def test_lock_delay_uses_stamped_now(lock_at: float, expected: bool) -> None:
    h = Harness()
    h.node()
    h.session("s1", lock_delay_seconds=15.0)
    h.session("s2")
    assert h.do(KVLock("k", b"", session="s1", now=50.0)) is True
    h.do(SessionDestroy("s1", now=100.0))  # invalidation: released, and refused until 115
    assert h.store.kv_get("k").session == ""  # type: ignore[union-attr]
    assert h.do(KVLock("k", b"", session="s2", now=lock_at)) is expected


def test_value_size_limit() -> None:
    h = Harness()
    assert h.do(KVSet("big", b"x" * MAX_VALUE_SIZE)) is True
    result = h.do(KVSet("big", b"x" * (MAX_VALUE_SIZE + 1)))
    assert isinstance(result, StateError) and "too large" in result.message
    assert len(h.store.kv_get("big").value) == MAX_VALUE_SIZE  # type: ignore[union-attr]


def test_txn_success_results() -> None:
    h = Harness()
    h.do(KVSet("c", b"cv"))  # 1
    ops = (
        TxnOp("set", "a", b"av", flags=3),
        TxnOp("get", "a"),
        TxnOp("check-not-exists", "zz"),
        TxnOp("get-tree", ""),
        TxnOp("check-index", "c", index=1),
        TxnOp("delete", "c"),
    )
    r = h.do(Txn(ops, now=0.0))
    assert isinstance(r, TxnResult) and r.ok
    assert [(e.key, e.value) for e in r.results] == [
        ("a", b""), ("a", b"av"), ("a", b"av"), ("c", b"cv"), ("c", b"")]  # get and get-tree keep values
    body = txn_result_json(r)
    assert body["Errors"] is None and body["Results"][0]["KV"]["Value"] is None
    assert body["Results"][0]["KV"] == {"LockIndex": 0, "Key": "a", "Flags": 3, "Value": None,
                                        "CreateIndex": 2, "ModifyIndex": 2}
    assert h.store.kv_get("c") is None and h.store.kv_get("a") is not None


@pytest.mark.parametrize(
    ("op", "what"),
    [
        (TxnOp("cas", "k", b"", index=99), 'failed to set key "k", index is stale'),
        (TxnOp("cas", "k", b"", index=0), 'failed to set key "k", index is stale'),
        (TxnOp("delete-cas", "k", index=99), 'failed to delete key "k", index is stale'),
        (TxnOp("get", "nope"), "key \"nope\" doesn't exist"),
        (TxnOp("check-index", "k", index=7), 'failed index check for key "k", current modify index 1 != 7'),
        (TxnOp("check-index", "nope", index=1), "failed to check index, key \"nope\" doesn't exist"),
        (TxnOp("check-session", "k", session="s"), 'failed session check for key "k", current session "" != "s"'),
        (TxnOp("check-session", "nope"), "failed to check session, key \"nope\" doesn't exist"),
        (TxnOp("check-not-exists", "k"), 'key "k" exists'),
        (TxnOp("lock", "k", session="ghost"), 'invalid session "ghost"'),
        (TxnOp("unlock", "k", session="ghost"),
         "failed to unlock key \"k\", lock isn't held, or is held by another session"),
        (TxnOp("frob", "k"), 'unknown KV verb "frob"'),
    ],
)
def test_txn_is_all_or_nothing(op: TxnOp, what: str) -> None:
    h = Harness()
    h.do(KVSet("k", b"v"))
    before = h.store.snapshot()
    r = h.do(Txn((TxnOp("set", "new", b"1"), op, TxnOp("delete-tree", "")), now=0.0))
    assert isinstance(r, TxnResult) and not r.ok
    assert [(e.op_index, e.what) for e in r.errors] == [(1, what)]
    assert txn_result_json(r) == {"Results": None, "Errors": [{"OpIndex": 1, "What": what}]}
    assert h.store.snapshot() == before and h.store.last_changed == frozenset()


def test_txn_reports_every_failing_op_and_later_ops_see_earlier_ones() -> None:
    h = Harness()
    r = h.do(Txn((TxnOp("set", "a", b"1"), TxnOp("check-index", "a", index=1), TxnOp("get", "x"),
                  TxnOp("cas", "a", b"", index=5)), now=0.0))
    assert [e.op_index for e in r.errors] == [2, 3]  # op 1 saw op 0's write at index 1


def test_txn_lock_delay_and_read_only_txn() -> None:
    h = Harness()
    h.node()
    h.session("s1", lock_delay_seconds=10.0)
    h.session("s2")
    h.do(KVLock("k", b"", session="s1", now=0.0))
    h.do(SessionDestroy("s1", now=5.0))
    r = h.do(Txn((TxnOp("lock", "k", session="s2"),), now=6.0))
    assert r.errors[0].what == 'failed to lock key "k" due to lock delay'
    assert h.do(Txn((TxnOp("lock", "k", session="s2"),), now=15.0)).ok
    read = h.store.txn_read([TxnOp("get", "k"), TxnOp("check-session", "k", session="s2")])
    assert read.ok and len(read.results) == 2
    assert not h.store.txn_read([TxnOp("set", "k", b"")]).ok


GARBAGE = [
    b"",
    b"\xc1",
    b"not msgpack at all",
    msgpack.packb([99, {}]),
    msgpack.packb([1]),
    msgpack.packb({"key": "a"}),
    msgpack.packb([1, {}]),  # KVSet without key
    msgpack.packb([1, {"key": 5}]),
    msgpack.packb([1, {"key": "a", "flags": -1}]),
    msgpack.packb([1, {"key": "a", "flags": True}]),
    msgpack.packb([1, {"key": "a", "value": "a str, not bytes"}], use_bin_type=True),
    msgpack.packb([6, {"key": "a", "session": "s"}]),  # KVLock without the required now
    msgpack.packb([8, {"ops": [{"verb": "set"}], "now": 1.0}]),  # TxnOp without key
    msgpack.packb([True, {"key": "a"}]),
]


@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_is_an_error_result_without_state_change(data: bytes) -> None:
    h = Harness()
    h.do(KVSet("k", b"v"))
    before = h.store.snapshot()
    result = h.raw(data)
    assert isinstance(result, StateError) and not result
    assert h.store.snapshot() == before and h.store.last_changed == frozenset()


def test_bad_raft_index_is_an_error() -> None:
    assert isinstance(Harness().store.apply(0, b""), StateError)


def test_kv_entry_json_shape() -> None:
    h = Harness()
    h.do(KVSet("k", b"hello", 42))
    assert kv_entry_json(h.store.kv_get("k")) == {  # type: ignore[arg-type]
        "LockIndex": 0, "Key": "k", "Flags": 42, "Value": "aGVsbG8=", "CreateIndex": 1, "ModifyIndex": 1}
    h.do(KVSet("e", b""))
    assert kv_entry_json(h.store.kv_get("e"))["Value"] is None  # type: ignore[arg-type]


def test_tombstones_reaped_below_an_index_and_prefix_reads_use_their_order() -> None:
    h = Harness()
    for i in range(200):
        h.do(KVSet(f"t/{i:03}", b""))
    h.do(KVSet("keep/x", b""))  # 201
    for i in range(200):
        h.do(KVDelete(f"t/{i:03}"))  # 202..401
    assert len(h.store._t.tombstones) == 200
    assert h.store.kv_index("keep/") == 201  # unrelated tombstones do not move another prefix
    assert h.store.kv_index("t/0") == 301 and h.store.kv_index("t/") == 401
    h.do(TombstoneReap(301))
    assert len(h.store._t.tombstones) == 100
    assert h.store.kv_index("t/0") == 401  # its tombstones are reaped: the table index
    assert h.store.kv_index("t/10") == 311 and h.store.kv_index("t/") == 401
    h.do(KVDelete("keep/x"))  # a new tombstone after a reap is still found by prefix
    assert h.store.kv_index("keep/") == h.store.table_index("tombstones")
    h.do(TombstoneReap(10**9))
    assert h.store._t.tombstones == {}
