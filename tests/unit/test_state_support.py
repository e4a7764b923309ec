"""Shared helpers for the state machine tests (no tests here): a store driven through encoded entries."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from pyconsul.agent.state.commands import (
    KVCAS,
    AutopilotConf,
    AutopilotSet,
    CheckDef,
    Command,
    Deregister,
    KVDelete,
    KVDeleteCAS,
    KVDeleteTree,
    KVLock,
    KVSet,
    KVUnlock,
    Register,
    ServiceDef,
    SessionCreate,
    SessionDestroy,
    SessionRenew,
    TombstoneReap,
    Txn,
    TxnOp,
    encode,
)
from pyconsul.agent.state.store import StateStore


class Harness:
    """Applies commands the way raft/node.py does: encoded, with increasing Raft indexes."""

    def __init__(self) -> None:
        self.store = StateStore()
        self.index = 0

    def do(self, cmd: Command) -> Any:
        self.index += 1
        return self.store.apply(self.index, encode(cmd))

    def raw(self, data: bytes) -> Any:
        self.index += 1
        return self.store.apply(self.index, data)

    def node(self, name: str = "n1", *, status: str = "passing", now: float = 0.0,
             service: ServiceDef | None = None) -> Any:
        """Register a node with a serfHealth check (sessions' default check)."""
        return self.do(Register(name, "10.0.0.1", service=service,
                                checks=(CheckDef(name="serfHealth", status=status),), now=now))

    def session(self, sid: str = "s1", node: str = "n1", *, now: float = 0.0, **kw: Any) -> Any:
        kw.setdefault("checks", ("serfHealth",))
        return self.do(SessionCreate(sid, node, now=now, **kw))


# ---------------------------------------------------------------- hypothesis strategies over a small world
# Few keys, sessions, nodes and IDs so that generated commands collide and exercise every rule.

KEYS = st.sampled_from(["a", "a/b", "a/c", "b", "b/x"])
SESSIONS = st.sampled_from(["s1", "s2", "s3"])
NODES = st.sampled_from(["n1", "n2", "N1"])
VALUES = st.binary(max_size=6)
INDEXES = st.integers(0, 30)
NOWS = st.floats(0, 300, allow_nan=False)
CHECK_IDS = st.sampled_from(["serfHealth", "c1"])
VERBS = st.sampled_from(["set", "cas", "lock", "unlock", "get", "get-tree", "check-index", "check-session",
                         "check-not-exists", "delete", "delete-tree", "delete-cas", "bogus"])

TXN_OPS = st.builds(TxnOp, verb=VERBS, key=KEYS, value=VALUES, flags=st.integers(0, 3), index=INDEXES,
                    session=SESSIONS)
SERVICES = st.builds(ServiceDef, id=st.sampled_from(["", "web1", "db1"]), service=st.sampled_from(["web", "db", ""]),
                     tags=st.lists(st.sampled_from(["x", "y"]), max_size=2).map(tuple), port=st.integers(0, 3),
                     meta=st.dictionaries(st.sampled_from(["k"]), st.sampled_from(["1", "2"])))
CHECKS = st.builds(CheckDef, name=CHECK_IDS, status=st.sampled_from(["passing", "warning", "critical", ""]),
                   service_id=st.sampled_from(["", "", "web1"]), output=st.sampled_from(["", "out"]))

COMMANDS: st.SearchStrategy[Command] = st.one_of(
    st.builds(KVSet, KEYS, VALUES, st.integers(0, 3)),
    st.builds(KVCAS, KEYS, VALUES, st.integers(0, 3), INDEXES),
    st.builds(KVDelete, KEYS),
    st.builds(KVDeleteCAS, KEYS, INDEXES),
    st.builds(KVDeleteTree, st.sampled_from(["", "a", "a/", "b"])),
    st.builds(KVLock, KEYS, VALUES, st.just(0), SESSIONS, now=NOWS),
    st.builds(KVUnlock, KEYS, VALUES, st.just(0), SESSIONS),
    st.builds(Txn, st.lists(TXN_OPS, max_size=4).map(tuple), now=NOWS),
    st.builds(Register, NODES, st.sampled_from(["10.0.0.1", "10.0.0.2", ""]),
              id=st.sampled_from(["", "id-1", "id-2"]), service=st.none() | SERVICES,
              checks=st.lists(CHECKS, max_size=2).map(tuple), now=NOWS),
    st.builds(Deregister, NODES, service_id=st.sampled_from(["", "web1", "db"]),
              check_id=st.sampled_from(["", "c1", "serfHealth"]), now=NOWS),
    st.builds(SessionCreate, SESSIONS, NODES, ttl_seconds=st.sampled_from([0.0, 10.0, 5.0]),
              lock_delay_seconds=st.sampled_from([0.0, 15.0]), behavior=st.sampled_from(["release", "delete"]),
              checks=st.lists(CHECK_IDS, max_size=2).map(tuple), now=NOWS),
    st.builds(SessionDestroy, SESSIONS, now=NOWS),
    st.builds(SessionRenew, SESSIONS, now=NOWS),
    st.builds(TombstoneReap, INDEXES),
    st.builds(AutopilotSet, st.builds(AutopilotConf, st.booleans(), st.sampled_from([0.2, 1.0]), st.integers(0, 300),
                                      st.sampled_from([0.0, 10.0])),
              cas=st.booleans(), index=INDEXES, seed=st.booleans()),
)
# A world where sessions can exist: two nodes with passing checks and two live sessions.
PRELUDE = [encode(c) for c in (
    Register("n1", "10.0.0.1", id="id-1", service=ServiceDef(id="web1", service="web"),
             checks=(CheckDef(name="serfHealth", status="passing"), CheckDef(name="c1", status="passing")), now=0.0),
    Register("n2", "10.0.0.2", checks=(CheckDef(name="serfHealth", status="passing"),), now=0.0),
    SessionCreate("s1", "n1", ttl_seconds=10.0, lock_delay_seconds=15.0, checks=("serfHealth", "c1"), now=0.0),
    SessionCreate("s2", "n2", behavior="delete", now=0.0),
)]
# Entries as Raft delivers them: the prelude, then mostly valid commands and some garbage.
ENTRIES = st.lists(st.one_of(COMMANDS.map(encode), COMMANDS.map(encode), st.binary(max_size=6)),
                   max_size=40).map(lambda rest: PRELUDE + rest)
