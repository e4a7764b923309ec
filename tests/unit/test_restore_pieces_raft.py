"""A restore in pieces through real Raft nodes (in-process network, the state store's FSM): the pieces are
consecutive entries; no Raft snapshot falls inside a restore (snapshot_deferred), so a follower that was away and a
server restarted from its log both end in the leader's state."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyconsul.agent.raft.config import RaftConfig
from pyconsul.agent.server.server import StoreFSM
from pyconsul.agent.state import commands as c
from pyconsul.agent.state import restore
from pyconsul.agent.state.store import StateStore
from tests.unit import test_raft_node
from tests.unit.test_raft_node import Cluster, run, until

CFG = RaftConfig(heartbeat_timeout=0.3, election_timeout=0.3, leader_lease_timeout=0.15, heartbeat_interval=0.05,
                 snapshot_threshold=4, trailing_logs=2, max_append_entries=2)  # pieces arrive in many batches


def _state() -> bytes:
    s = StateStore()
    for i in range(60):
        s.apply(i + 1, c.encode(c.KVSet(f"restored/{i:03}", b"v" * 200)))
    return s.snapshot()


def test_pieces_commit_everywhere_without_a_snapshot_inside_and_replay_after_restarts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_raft_node, "KV", StoreFSM)
    monkeypatch.setattr(restore, "PIECE", 1000)
    state = _state()
    parts = restore.encoded_pieces(state, "r1")
    assert len(parts) > 10
    captured: list[bool] = []  # for each Raft snapshot: was a restore under way in the captured state?
    view = StoreFSM.snapshot_view

    def recording_view(self: StoreFSM) -> object:
        captured.append(self.store.restoring())
        return view(self)

    monkeypatch.setattr(StoreFSM, "snapshot_view", recording_view)

    async def body(cl: Cluster) -> None:
        lead = await cl.leader()
        fsms: dict[str, StoreFSM] = cl.fsms  # type: ignore[assignment]
        away = next(s for s in cl.ids if s != lead.id)
        await cl.nodes[away].stop()
        cl.net.cut.add(away)
        for i in range(6):
            await lead.apply(c.encode(c.KVSet(f"before/{i}", b"x")))
        assert lead.core is not None
        first = lead.core.last_index + 1
        # committed in two steps (nothing else proposes here, so the pieces stay consecutive): after the first
        # step the applied index passes the snapshot threshold in the middle of the restore
        results = await lead.apply_all(parts[:6])
        await until(lambda: all(fsms[s].store.restoring() for s in cl.ids if s != away), "half the pieces applied")
        results += await lead.apply_all(parts[6:])
        last = first + len(parts) - 1
        assert results == [True] * len(parts)
        assert lead.core.term_at(first) == lead.core.term_at(last)  # consecutive, in one term
        for i in range(6):  # cross the snapshot threshold again after the restore
            await lead.apply(c.encode(c.KVSet(f"after/{i}", b"y")))
        want = fsms[lead.id].store.snapshot()
        await until(lambda: all(fsms[s].store.snapshot() == want for s in cl.ids if s != away), "the others agree")
        store = fsms[lead.id].store
        assert store.kv_get("before/0") is None and store.kv_get("restored/007") is not None
        assert store.kv_get("after/5") is not None and store.table_index("nodes") == last  # all switched at `last`
        assert len(captured) >= 2 and not any(captured), captured  # snapshots before and after, none inside

        cl.net.cut.discard(away)  # the follower that missed it all catches up (snapshot and/or log)
        await cl.start(away, bootstrap=False)
        await until(lambda: fsms[away].store.snapshot() == want, "the returning follower agrees", 20)

        for sid in list(cl.ids):  # every server restarts from its own disk
            await cl.nodes[sid].stop()
        for sid in cl.ids:
            await cl.start(sid, bootstrap=False)
        await cl.leader()
        await until(lambda: all(fsms[s].store.snapshot() == want for s in cl.ids), "the same state after restarts",
                    20)

    run(tmp_path, body, config=CFG)
