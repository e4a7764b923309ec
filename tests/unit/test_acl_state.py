"""ACL tables through the state machine (agent/state/acl.py, commands 18, 19, 21), the leader's setup
(agent/acl/leader.py) and the TokenResolver (agent/acl/resolver.py) with fake lookups and a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from pyconsul.agent.acl import leader
from pyconsul.agent.acl.authz import ALLOW_ALL, DENY_ALL
from pyconsul.agent.acl.config import ACLConfig
from pyconsul.agent.acl.policy import DEFAULT_ALLOW
from pyconsul.agent.acl.resolver import TokenResolver
from pyconsul.agent.errors import NoLeader, PermissionDenied
from pyconsul.agent.server.acl_reads import QUERIES, resolve_local
from pyconsul.agent.state import acl as acl_state
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.acl_defs import (
    ANONYMOUS_ACCESSOR,
    GLOBAL_MANAGEMENT_ID,
    ACLPolicy,
    ACLPolicyLink,
    ACLToken,
)
from pyconsul.agent.state.results import StateError
from pyconsul.agent.state.store import StateStore


class Log:
    def __init__(self) -> None:
        self.st = StateStore()
        self.i = 0

    def apply(self, cmd: c.Command) -> Any:
        self.i += 1
        return self.st.apply(self.i, c.encode(cmd))


def setup(master: str = "") -> Log:
    log = Log()
    for cmd in leader.missing(log.st.tables, master, 1000.0):
        assert log.apply(cmd) is True
    assert leader.missing(log.st.tables, master, 1000.0) == []  # idempotent: nothing left to create
    return log


def policy(name: str, rules: str = "", pid: str = "") -> ACLPolicy:
    return ACLPolicy(id=pid or f"id-{name}", name=name, rules=rules)


def test_leader_setup_creates_the_builtin_policy_anonymous_and_master_tokens() -> None:
    log = setup(master="root")
    t = log.st.tables
    assert t.acl_policies[GLOBAL_MANAGEMENT_ID].name == "global-management"
    assert t.acl_tokens[ANONYMOUS_ACCESSOR].secret_id == "anonymous"
    root = acl_state.token_by_secret(t, "root")
    assert root is not None and [p.id for p in root.policies] == [GLOBAL_MANAGEMENT_ID]
    # the master token used the bootstrap: an HTTP bootstrap is now refused, naming the reset index
    done = t.index[acl_state.BOOTSTRAP_INDEX]
    err = log.apply(c.ACLBootstrap(ACLToken("a2", "s2")))
    assert err == StateError(f"ACL bootstrap no longer allowed (reset index: {done})")
    assert log.apply(c.ACLBootstrap(ACLToken("a2", "s2", policies=(ACLPolicyLink(GLOBAL_MANAGEMENT_ID),)),
                                    reset_index=done)) is True


def test_leader_loop_recreates_a_deleted_master_token_only_after_a_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rotation: the old master token is deleted while the leader still has it configured. The loop does
    not recreate it (only establishment and a restore look for it); the anonymous token it does repair."""
    monkeypatch.setattr(leader, "POLL", 0.001)
    log = setup(master="old")
    old = acl_state.token_by_secret(log.st.tables, "old")
    assert old is not None
    restores, passes = [0], [0]

    def tables() -> Any:
        passes[0] += 1
        return log.st.tables

    async def write(data: bytes) -> object:
        log.i += 1
        return log.st.apply(log.i, data)

    async def scenario() -> None:
        task = asyncio.create_task(leader.run(lambda: True, tables, write, lambda: "old", lambda: 1000.0,
                                              lambda: restores[0]))
        try:
            assert log.apply(c.ACLTokenApply("delete", ACLToken(old.accessor_id, ""))) is True
            assert log.apply(c.ACLTokenApply("delete", ACLToken(ANONYMOUS_ACCESSOR, ""))) is not True  # refused
            seen = passes[0]
            async with asyncio.timeout(10):
                while passes[0] < seen + 20:  # twenty passes of the loop
                    await asyncio.sleep(0.001)
            assert acl_state.token_by_secret(log.st.tables, "old") is None, "the deleted master came back"
            restores[0] += 1  # a snapshot restore: the master token is looked for again
            async with asyncio.timeout(10):
                while acl_state.token_by_secret(log.st.tables, "old") is None:
                    await asyncio.sleep(0.001)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())


def test_bootstrap_once() -> None:
    log = setup()
    assert log.apply(c.ACLBootstrap(ACLToken("a1", "s1"))) is True
    assert isinstance(log.apply(c.ACLBootstrap(ACLToken("a2", "s2"))), StateError)
    assert "a2" not in log.st.tables.acl_tokens


def test_policy_validation() -> None:
    log = setup()
    assert log.apply(c.ACLPolicyApply("create", policy("app"))) is True
    for bad, msg in [(policy("bad name"), "invalid Name"), (policy("APP", pid="other"), "already exists"),
                     (policy("x" * 129), "invalid Name"), (policy("app"), "already in use")]:
        err = log.apply(c.ACLPolicyApply("create", bad))
        assert isinstance(err, StateError) and msg in err.message
    gm = log.st.tables.acl_policies[GLOBAL_MANAGEMENT_ID]
    for change in (ACLPolicy(gm.id, "renamed", rules=gm.rules), ACLPolicy(gm.id, gm.name, rules="")):
        assert isinstance(log.apply(c.ACLPolicyApply("update", change)), StateError)
    assert log.apply(c.ACLPolicyApply("update", ACLPolicy(gm.id, gm.name, "new words", gm.rules))) is True
    err = log.apply(c.ACLPolicyApply("delete", ACLPolicy(GLOBAL_MANAGEMENT_ID, "")))
    assert err == StateError("Delete of builtin global-management policy not permitted")
    assert log.apply(c.ACLPolicyApply("update", policy("nope", pid="missing"))) is False
    created = log.st.tables.acl_policies["id-app"].create_index
    assert log.apply(c.ACLPolicyApply("update", policy("app2", pid="id-app"))) is True
    p = log.st.tables.acl_policies["id-app"]
    assert (p.name, p.create_index, p.modify_index) == ("app2", created, log.i)


def test_token_validation_links_and_indexes() -> None:
    log = setup()
    log.apply(c.ACLPolicyApply("create", policy("app", 'key_prefix "app/" { policy = "write" }')))
    before = log.st.table_index(acl_state.TOKENS)
    tok = ACLToken("acc", "sec", "d", (ACLPolicyLink(name="app"), ACLPolicyLink(id="id-app")))
    assert log.apply(c.ACLTokenApply("create", tok)) is True
    assert log.st.last_changed == frozenset({acl_state.TOKENS})
    assert log.st.table_index(acl_state.TOKENS) > before
    stored = log.st.tables.acl_tokens["acc"]
    assert stored.policies == (ACLPolicyLink(id="id-app"),)  # names resolved to IDs, duplicates dropped
    for bad, msg in [(ACLToken("acc", "x"), "AccessorID is already in use"),
                     (ACLToken("acc2", "sec"), "SecretID is already in use"),
                     (ACLToken("acc3", "s3", policies=(ACLPolicyLink(id="nope"),)), "No such ACL policy with ID"),
                     (ACLToken("acc3", "s3", policies=(ACLPolicyLink(name="nope"),)), "No such ACL policy with name")]:
        err = log.apply(c.ACLTokenApply("create", bad))
        assert isinstance(err, StateError) and msg in err.message
    assert isinstance(log.apply(c.ACLTokenApply("update", ACLToken("acc", "other"))), StateError)
    assert isinstance(log.apply(c.ACLTokenApply("update", ACLToken("acc", "sec", local=True))), StateError)
    assert log.apply(c.ACLTokenApply("update", ACLToken("acc", "sec", "new"))) is True
    assert log.st.tables.acl_tokens["acc"].create_index < log.st.tables.acl_tokens["acc"].modify_index
    err = log.apply(c.ACLTokenApply("delete", ACLToken(ANONYMOUS_ACCESSOR, "")))
    assert err == StateError("Delete operation not permitted on the anonymous token")
    assert log.apply(c.ACLTokenApply("delete", ACLToken("acc", ""))) is True
    assert log.apply(c.ACLTokenApply("delete", ACLToken("acc", ""))) is False
    assert acl_state.token_by_secret(log.st.tables, "sec") is None


def test_reads_json_and_snapshot() -> None:
    log = setup()
    log.apply(c.ACLPolicyApply("create", policy("app", 'key "a" { policy = "read" }')))
    log.apply(c.ACLTokenApply("create", ACLToken("acc", "sec", "d", (ACLPolicyLink(id="id-app"),), create_time=1.5)))
    got = resolve_local(log.st, "sec")
    assert got is not None and got["token"]["Policies"] == [{"ID": "id-app", "Name": "app"}]
    assert got["token"]["CreateTime"] == "1970-01-01T00:00:01.5Z"
    assert [p["Rules"] for p in got["policies"]] == ['key "a" { policy = "read" }']
    # a deleted policy drops out of its tokens' links
    log.apply(c.ACLPolicyApply("delete", ACLPolicy("id-app", "")))
    assert "Policies" not in QUERIES["acl.token_read"][0](log.st, {"accessor": "acc"})
    listed = QUERIES["acl.token_list"][0](log.st, {})
    assert {t["AccessorID"] for t in listed} == {ANONYMOUS_ACCESSOR, "acc"}
    assert all(t["Legacy"] is False for t in listed)
    stubs = QUERIES["acl.policy_list"][0](log.st, {})
    assert [p["Name"] for p in stubs] == ["global-management"] and "Rules" not in stubs[0]
    restored = StateStore.restore(log.st.snapshot())
    assert restored.snapshot() == log.st.snapshot()
    assert acl_state.token_by_secret(restored.tables, "sec") is not None


# ---------------------------------------------------------------- the resolver


class FakeLookup:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.calls = 0
        self.down = False

    async def __call__(self, secret: str) -> dict[str, Any] | None:
        self.calls += 1
        if self.down:
            raise NoLeader()
        return resolve_local(self.log.st, secret)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def world(**cfg: Any) -> tuple[Log, FakeLookup, TokenResolver, list[float]]:
    log = setup()
    log.apply(c.ACLPolicyApply("create", policy("app", 'key_prefix "app/" { policy = "write" }')))
    log.apply(c.ACLTokenApply("create", ACLToken("acc", "sec", policies=(ACLPolicyLink(name="app"),))))
    now = [0.0]
    lookup = FakeLookup(log)
    conf = ACLConfig(enabled=True, default_policy="deny", token_ttl=30.0, **cfg)
    return log, lookup, TokenResolver(conf, lookup, caching=True, clock=lambda: now[0]), now


def test_resolver_disabled_allows_everything() -> None:
    r = TokenResolver(ACLConfig(), FakeLookup(Log()))
    assert not r.enabled() and run(r.resolve("anything")) is ALLOW_ALL


def test_resolver_tokens_anonymous_default_and_unknown() -> None:
    _, _, r, _ = world()
    a = run(r.resolve("sec"))
    assert a.key_write("app/x") and not a.key_write("b")
    anon = run(r.resolve(None))
    assert not anon.key_read("app/x")
    with pytest.raises(PermissionDenied, match="ACL not found"):
        run(r.resolve("nope"))
    r.cfg.default = "sec"  # acl.tokens.default stands in for a request without a token
    assert run(r.resolve("")).key_write("app/x")
    assert r.agent_token() == "sec"


def test_resolver_caches_for_token_ttl_then_sees_a_deletion() -> None:
    log, lookup, r, now = world()
    run(r.resolve("sec"))
    run(r.resolve("sec"))
    assert lookup.calls == 1
    log.apply(c.ACLTokenApply("delete", ACLToken("acc", "")))
    now[0] = 29.0
    assert run(r.resolve("sec")).key_write("app/x")  # still cached
    now[0] = 30.5
    with pytest.raises(PermissionDenied):
        run(r.resolve("sec"))


@pytest.mark.parametrize(("down_policy", "cached", "expect_write"), [
    ("extend-cache", True, True), ("extend-cache", False, False), ("async-cache", True, True),
    ("allow", False, True), ("deny", True, False),
])
def test_down_policy(down_policy: str, cached: bool, expect_write: bool) -> None:
    _, lookup, r, now = world(down_policy=down_policy)
    if cached:
        run(r.resolve("sec"))
    now[0] = 100.0
    lookup.down = True
    a = run(r.resolve("sec"))
    assert a.key_write("app/x") is expect_write
    if down_policy == "allow":
        assert a is DEFAULT_ALLOW
    if down_policy == "deny" or (down_policy == "extend-cache" and not cached):
        assert a is DENY_ALL


def test_agent_master_token_is_local() -> None:
    _, lookup, r, _ = world(agent_master="am")
    r._node = "n1"
    a = run(r.resolve("am"))
    assert a.agent_write("n1") and not a.agent_write("n2") and a.node_read("x") and not a.key_read("k")
    assert lookup.calls == 0


def test_compiled_authorizers_are_reused() -> None:
    _, _, r, now = world()
    first = run(r.resolve("sec"))
    now[0] = 100.0
    assert run(r.resolve("sec")) is first  # same policy versions: the same compiled authorizer
