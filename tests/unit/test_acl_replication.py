"""ACL replication's pure core (agent/acl/replication.py): a primary's snapshot applied to a secondary through
`diff`'s commands makes the secondary hold the same policies, roles and global tokens, keeps its local tokens,
converges (a second diff is empty), and the loop records errors and retries; the replication read needs
acl:write (acl_enforce.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyconsul.agent.acl import leader, replication, rules
from pyconsul.agent.acl.authz import DENY_ALL, MANAGE_ALL
from pyconsul.agent.acl.policy import PolicyAuthorizer
from pyconsul.agent.errors import PermissionDenied
from pyconsul.agent.server.acl_enforce import filter_read
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.acl_defs import ANONYMOUS_ACCESSOR, ACLPolicy, ACLPolicyLink, ACLRole, ACLToken
from pyconsul.agent.state.store import StateStore


class Log:
    def __init__(self, master: str = "") -> None:
        self.st = StateStore()
        self.i = 0
        for cmd in leader.missing(self.st.tables, master, 1000.0):
            self.apply(cmd)

    def apply(self, cmd: c.Command) -> Any:
        self.i += 1
        res = self.st.apply(self.i, c.encode(cmd))
        assert res is True, (cmd, res)
        return res

    async def write(self, data: bytes) -> Any:
        self.i += 1
        res = self.st.apply(self.i, data)
        assert res is True, res
        return res


def tok(accessor: str, secret: str, *policies: str, local: bool = False, roles: tuple[str, ...] = ()) -> ACLToken:
    return ACLToken(accessor_id=accessor, secret_id=secret, policies=tuple(ACLPolicyLink(id=p) for p in policies),
                    local=local, hash=f"h-{accessor}", roles=tuple(ACLPolicyLink(id=r) for r in roles))


def test_diff_makes_the_secondary_hold_the_primary_and_converges() -> None:
    primary, secondary = Log(master="root"), Log()
    primary.apply(c.ACLPolicyApply("create", ACLPolicy(id="p1", name="app", rules='key_prefix "app/" '
                                                       '{ policy = "write" }', hash="x")))
    primary.apply(c.ACLRoleApply("create", ACLRole(id="r1", name="ops", policies=(ACLPolicyLink(id="p1"),))))
    primary.apply(c.ACLTokenApply("create", tok("a1", "s1", "p1", roles=("r1",))))
    primary.apply(c.ACLTokenApply("create", tok("a2", "s2", "p1", local=True)))  # stays in the primary
    # the secondary's own state: a stale global token, a policy the primary does not have, a local token
    secondary.apply(c.ACLPolicyApply("create", ACLPolicy(id="gone", name="gone")))
    secondary.apply(c.ACLTokenApply("create", tok("old", "s-old", "gone")))
    secondary.apply(c.ACLTokenApply("create", tok("mine", "s-mine", local=True)))

    snap = replication.snapshot(primary.st.tables, tokens=True)
    assert {t["accessor_id"] for t in snap["tokens"]} == {"a1", ANONYMOUS_ACCESSOR,
                                                          *(k for k, v in primary.st.tables.acl_tokens.items()
                                                            if v.secret_id == "root")}
    for cmd in replication.diff(secondary.st.tables, snap):
        secondary.apply(cmd)
    t = secondary.st.tables
    assert set(t.acl_policies) == set(primary.st.tables.acl_policies)
    assert t.acl_policies["p1"].rules == primary.st.tables.acl_policies["p1"].rules
    assert set(t.acl_roles) == {"r1"}
    assert t.acl_tokens["a1"].secret_id == "s1" and t.acl_tokens["a1"].roles == (ACLPolicyLink(id="r1"),)
    assert "old" not in t.acl_tokens and "a2" not in t.acl_tokens
    assert t.acl_tokens["mine"].local  # local tokens are never touched
    assert any(k.secret_id == "root" for k in t.acl_tokens.values())  # the primary's master token
    assert replication.diff(t, snap) == []  # converged

    # a change in the primary: an update, a deletion
    primary.apply(c.ACLPolicyApply("update", ACLPolicy(id="p1", name="app", rules='key "k" { policy = "read" }',
                                                       hash="y")))
    primary.apply(c.ACLTokenApply("delete", ACLToken(accessor_id="a1", secret_id="")))
    snap = replication.snapshot(primary.st.tables, tokens=True)
    cmds = replication.diff(t, snap)
    assert [(type(x).__name__, x.op) for x in cmds] == [("ACLPolicyApply", "update"), ("ACLTokenApply", "delete")]
    for cmd in cmds:
        secondary.apply(cmd)
    assert "a1" not in t.acl_tokens and t.acl_policies["p1"].hash == "y"
    assert replication.diff(t, snap) == []


def test_without_token_replication_tokens_are_left_alone() -> None:
    primary, secondary = Log(), Log()
    primary.apply(c.ACLPolicyApply("create", ACLPolicy(id="p1", name="app")))
    secondary.apply(c.ACLTokenApply("create", tok("x", "sx")))
    snap = replication.snapshot(primary.st.tables, tokens=False)
    assert "tokens" not in snap
    cmds = replication.diff(secondary.st.tables, snap)
    assert [type(x).__name__ for x in cmds] == ["ACLPolicyApply"]


def test_a_token_with_the_same_accessor_and_another_secret_is_replaced() -> None:
    primary, secondary = Log(), Log()
    primary.apply(c.ACLTokenApply("create", tok("a", "new-secret")))
    secondary.apply(c.ACLTokenApply("create", tok("a", "old-secret")))
    for cmd in replication.diff(secondary.st.tables, replication.snapshot(primary.st.tables, tokens=True)):
        secondary.apply(cmd)
    assert secondary.st.tables.acl_tokens["a"].secret_id == "new-secret"


def test_the_loop_replicates_while_leading_and_records_errors() -> None:
    primary, secondary = Log(), Log()
    primary.apply(c.ACLPolicyApply("create", ACLPolicy(id="p1", name="app")))
    calls: list[tuple[int, float]] = []
    fail = [True]

    async def read(index: int, wait: float, tokens: bool) -> tuple[Any, int]:
        calls.append((index, wait))
        if fail[0]:
            fail[0] = False
            raise PermissionDenied()
        if index:  # the blocking read at the primary: nothing changes any more
            await asyncio.sleep(3600)
        return replication.snapshot(primary.st.tables, tokens=tokens), 42

    r = replication.Replicator(primary="bj", tokens=True, is_leader=lambda: True,
                               tables=lambda: secondary.st.tables, read=read, write=secondary.write,
                               clock=lambda: 1_700_000_000.0)

    async def main() -> None:
        task = asyncio.create_task(r.run())
        for _ in range(200):
            if "p1" in secondary.st.tables.acl_policies and len(calls) >= 3:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert "p1" in secondary.st.tables.acl_policies
    assert calls[0] == (0, 0.0) and calls[1] == (0, 0.0) and calls[2] == (42, replication.WAIT)
    s = r.status.json()
    assert s["Enabled"] and s["Running"] and s["SourceDatacenter"] == "bj" and s["ReplicatedIndex"] == 42
    assert s["ReplicationType"] == "tokens" and s["LastSuccess"] == "2023-11-14T22:13:20Z"
    assert s["LastError"] == "2023-11-14T22:13:20Z" and s["LastErrorMessage"] == "Permission denied"


def test_the_replication_read_needs_acl_write() -> None:
    read_only = PolicyAuthorizer([rules.parse('acl = "read"')], DENY_ALL)
    assert read_only.acl_read()
    with pytest.raises(PermissionDenied):
        filter_read(read_only, replication.READ_NAME, {"policies": []})
    assert filter_read(MANAGE_ALL, replication.READ_NAME, {"policies": []}) == {"policies": []}
