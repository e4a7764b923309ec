"""Decoding proportional to the state runs off the event loop (issue 11): the driver (node.py, `_prepare`) lets an
FSM prepare heavy entries -- a Restore, a received snapshot -- on a worker thread, and only swaps the result in on
the loop, in apply order. Also: the state store's prepared apply is the same as its plain apply."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent.raft.config import RaftConfig
from pyconsul.agent.state import commands as c
from pyconsul.agent.state import snapshot
from pyconsul.agent.state.store import StateStore
from pyconsul.agent.state.tables import KVEntry, Tables
from tests.unit import test_raft_node
from tests.unit.test_raft_node import KV, Cluster, run, until

SLOW = 0.6  # seconds a heavy entry takes to prepare: 2 x the election timeout below


class HeavyKV(KV):
    """Entries starting with b"heavy:" are slow to decode; where that ran is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared_on: list[str] = []

    def heavy(self, data: bytes) -> bool:
        return data.startswith(b"heavy:")

    def prepare(self, data: bytes) -> Any:
        self.prepared_on.append(threading.current_thread().name)
        time.sleep(SLOW)  # a blocking decode: the loop must go on meanwhile
        return data.removeprefix(b"heavy:").upper()

    def apply_prepared(self, index: int, data: bytes, prepared: Any) -> Any:
        return self.apply(index, prepared)


def test_a_heavy_entry_is_prepared_off_the_loop_and_applied_in_order(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = RaftConfig(heartbeat_timeout=0.3, election_timeout=0.3, leader_lease_timeout=0.15, heartbeat_interval=0.05)
    monkeypatch.setattr(test_raft_node, "KV", HeavyKV)  # the cluster's servers get FSMs that know heavy entries

    async def body(cl: Cluster) -> None:
        lead = await cl.leader()
        term = lead.core.term if lead.core else 0
        before = await lead.apply(b"a=1")
        t0 = time.monotonic()
        heavy = await lead.apply(b"heavy:b=2", timeout=10)
        after = await lead.apply(b"c=3", timeout=10)
        assert time.monotonic() - t0 >= SLOW * 0.9 and before < heavy < after
        for sid in cl.ids:
            await until(lambda sid=sid: cl.fsms[sid].d.get("c") == b"3", f"{sid} applied everything", 10)
            fsm = cl.fsms[sid]
            assert isinstance(fsm, HeavyKV)
            assert fsm.d["B"] == b"2" and fsm.applied == sorted(fsm.applied)
            assert fsm.prepared_on and all(n.startswith("raft-prepare") for n in fsm.prepared_on)
        # the loops kept heartbeating while every server was busy preparing for 2 election timeouts
        assert lead.is_leader and lead.core is not None and lead.core.term == term

    run(tmp_path, body, config=cfg)


def test_the_store_applies_a_prepared_restore_as_it_applies_the_command(tmp_path: Path) -> None:
    t = Tables()
    for i in range(50):
        t.put("kvs", f"k{i}", KVEntry(f"k{i}", b"v", 0, 3, 3))
    t.bump("kvs", 3)
    cmd = c.encode(c.Restore(snapshot.dump(t)))
    assert c.is_restore(cmd) and not c.is_restore(c.encode(c.KVSet("x", b"y")))
    prepared = StateStore.prepare(cmd)
    assert isinstance(prepared, Tables)
    a, b = StateStore(), StateStore()
    assert a.apply(9, cmd) == b.apply_prepared(9, cmd, prepared) is True
    assert a.snapshot() == b.snapshot() and a.last_changed == b.last_changed
    bad = c.encode(c.Restore(b"not a state"))
    assert repr(a.apply(10, bad)) == repr(b.apply_prepared(10, bad, StateStore.prepare(bad)))
    assert a.snapshot() == b.snapshot()
    assert StateStore.prepare(c.encode(c.KVSet("x", b"y"))) is None
