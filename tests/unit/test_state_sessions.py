"""Sessions (Consul 1.7): create validation, TTL deadlines from stamped time, invalidation, lock release."""

from __future__ import annotations

import pytest

from pyconsul.agent.state.commands import (
    CheckDef,
    Deregister,
    KVLock,
    Register,
    SessionCreate,
    SessionDestroy,
    SessionRenew,
)
from pyconsul.agent.state.results import StateError
from pyconsul.agent.state.tables import Session
from tests.unit.test_state_support import Harness


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": ""}, "Missing session ID"),
        ({"node": "ghost"}, "Missing node registration"),
        ({"checks": ("nope",)}, "Missing check 'nope' registration"),
        ({"checks": ("bad",)}, "Check 'bad' is in critical state"),
        ({"behavior": "explode"}, "Invalid session behavior: explode"),
        ({"ttl_seconds": 5.0}, "Invalid Session TTL '5s', must be between [10s=24h0m0s]"),
        ({"ttl_seconds": 86401.0}, "Invalid Session TTL '24h0m1s', must be between [10s=24h0m0s]"),
        ({"lock_delay_seconds": -1.0}, "LockDelay must not be negative"),
    ],
)
def test_create_validation(kwargs: dict[str, object], message: str) -> None:
    h = Harness()
    h.node()
    h.do(Register("n1", "10.0.0.1", checks=(CheckDef(name="bad", status="critical"),), now=0.0))
    args: dict[str, object] = {"id": "s1", "node": "n1", "checks": ("serfHealth",)} | kwargs
    before = h.store.snapshot()
    assert h.do(SessionCreate(now=0.0, **args)) == StateError(message)  # type: ignore[arg-type]
    assert h.store.snapshot() == before


def test_create_info_and_json() -> None:
    h = Harness()
    h.node()
    assert h.session("s1", name="lock", ttl_seconds=30.0, lock_delay_seconds=5.0, behavior="delete") == "s1"
    assert h.store.last_changed == {"sessions"}
    assert h.store.session_info("s1") == {
        "ID": "s1", "Name": "lock", "Node": "n1", "Checks": ["serfHealth"], "NodeChecks": ["serfHealth"],
        "ServiceChecks": None, "LockDelay": 5_000_000_000, "Behavior": "delete", "TTL": "30s",
        "CreateIndex": 2, "ModifyIndex": 2}
    assert h.session("s1") == StateError('Session ID "s1" already exists')
    assert h.do(SessionCreate("s2", "N1", now=0.0)) == "s2"  # node names match case-insensitively
    assert [s["ID"] for s in h.store.node_sessions("n1")] == ["s1", "s2"]
    assert [s["ID"] for s in h.store.session_list()] == ["s1", "s2"]
    assert h.store.session_info("s2")["TTL"] == ""  # type: ignore[index]
    assert h.store.session_info("zz") is None


def test_ttl_expiry_and_renew_follow_stamped_time() -> None:
    h = Harness()
    h.node()
    h.session("s1", ttl_seconds=10.0, now=100.0)  # deadline 100 + 2 × 10
    h.session("s2", now=100.0)  # no TTL: never expires
    assert h.store.expired_sessions(119.9) == []
    assert h.store.expired_sessions(120.0) == ["s1"]
    assert h.store.next_session_deadline() == 120.0
    renewed = h.do(SessionRenew("s1", now=115.0))
    assert isinstance(renewed, Session) and renewed.id == "s1"
    assert h.store.last_changed == frozenset()  # a renew wakes no blocking query
    assert h.store.expired_sessions(134.9) == [] and h.store.expired_sessions(135.0) == ["s1"]
    assert h.do(SessionRenew("ghost", now=115.0)) is None


def test_expiry_releases_locks_via_the_leader_loop() -> None:
    h = Harness()
    h.node()
    h.session("s1", ttl_seconds=10.0, now=0.0)
    assert h.do(KVLock("leader", b"me", session="s1", now=1.0)) is True
    for sid in h.store.expired_sessions(25.0):  # what the leader does on its timer
        assert h.do(SessionDestroy(sid, now=25.0)) is True
    e = h.store.kv_get("leader")
    assert e is not None and (e.session, e.lock_index, e.value) == ("", 1, b"me")
    assert h.store.session_info("s1") is None and h.store.expired_sessions(1e9) == []


@pytest.mark.parametrize(("behavior", "kept"), [("release", True), ("delete", False)])
def test_invalidation_behavior(behavior: str, kept: bool) -> None:
    h = Harness()
    h.node()
    h.session("s1", behavior=behavior)
    h.do(KVLock("a", b"1", session="s1", now=0.0))
    h.do(KVLock("b", b"2", session="s1", now=0.0))
    h.do(SessionDestroy("s1", now=0.0))
    assert (h.store.kv_get("a") is not None) is kept and (h.store.kv_get("b") is not None) is kept
    assert h.store.last_changed >= {"sessions", "kvs"}


@pytest.mark.parametrize(
    "invalidate",
    [
        Register("n1", "10.0.0.1", checks=(CheckDef(name="serfHealth", status="critical"),), now=10.0),
        Deregister("n1", check_id="serfHealth", now=10.0),
        Deregister("n1", now=10.0),
    ],
    ids=["check-critical", "check-deregistered", "node-deregistered"],
)
def test_check_and_node_changes_invalidate_sessions(invalidate: Register | Deregister) -> None:
    h = Harness()
    h.node()
    h.session("s1", lock_delay_seconds=15.0)
    h.session("s2")
    h.do(KVLock("k", b"", session="s1", now=0.0))
    h.do(invalidate)
    assert h.store.session_info("s1") is None
    assert h.store.kv_get("k").session == ""  # type: ignore[union-attr]
    h.do(Register("n1", "10.0.0.1", checks=(CheckDef(name="serfHealth", status="passing"),), now=11.0))
    h.session("s3", now=11.0)
    assert h.do(KVLock("k", b"", session="s3", now=24.9)) is False  # lock delay from the stamped now
    assert h.do(KVLock("k", b"", session="s3", now=25.0)) is True


def test_lock_delay_is_capped_at_60s() -> None:
    h = Harness()
    h.node()
    h.session("s1", lock_delay_seconds=600.0)
    h.session("s2")
    h.do(KVLock("k", b"", session="s1", now=0.0))
    h.do(SessionDestroy("s1", now=0.0))
    assert h.do(KVLock("k", b"", session="s2", now=59.0)) is False
    assert h.do(KVLock("k", b"", session="s2", now=60.0)) is True


def test_destroy_of_unknown_session_is_a_no_op() -> None:
    h = Harness()
    before = h.store.snapshot()
    assert h.do(SessionDestroy("ghost", now=0.0)) is True
    assert h.store.snapshot() == before
