"""A restore larger than one Raft entry is committed as consecutive Restore pieces (state/restore.py): the last
piece switches the state exactly as a one-entry Restore at its index would; the thread-side preparation (Spool)
and the plain apply agree; anything between the pieces abandons the restore; snapshots wait for its end."""

from __future__ import annotations

import pytest

from pyconsul.agent.server.server import StoreFSM
from pyconsul.agent.state import commands as c
from pyconsul.agent.state import restore
from pyconsul.agent.state.results import StateError
from pyconsul.agent.state.store import StateStore


def _state(n: int = 40) -> bytes:
    s = StateStore()
    for i in range(n):
        s.apply(i + 1, c.encode(c.KVSet(f"k/{i}", b"v" * 50)))
    return s.snapshot()


def _old() -> StateStore:
    s = StateStore()
    s.apply(1, c.encode(c.KVSet("old", b"x")))
    return s


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore, "PIECE", 300)


def test_pieces_switch_the_state_like_one_restore_entry() -> None:
    state = _state()
    parts = restore.encoded_pieces(state, "r1")
    assert len(parts) > 5
    whole = _old()
    assert whole.apply(100, c.encode(c.Restore(state))) is True
    plain = _old()
    for i, data in enumerate(parts[:-1]):
        assert plain.apply(100 - len(parts) + 1 + i, data) is True
        assert plain.restoring()
    assert plain.kv_get("old") is not None  # nothing switched before the last piece
    assert plain.apply(100, parts[-1]) is True and not plain.restoring()
    assert plain.snapshot() == whole.snapshot()  # same tables, same indexes (all = the last piece's index)
    assert plain.kv_get("old") is None and plain.kv_get("k/3") is not None


def test_prepared_on_the_spool_equals_the_plain_apply() -> None:
    state = _state()
    parts = restore.encoded_pieces(state, "r1")
    plain, fsm = _old(), StoreFSM()
    fsm.store = _old()
    prepared = [fsm.prepare(d) for d in parts]  # the worker thread runs ahead of the applies
    assert all(isinstance(p, restore.PieceMeta) for p in prepared)
    assert prepared[-1].result is not None and all(p.result is None for p in prepared[:-1])
    for i, (d, p) in enumerate(zip(parts, prepared, strict=True)):
        assert plain.apply(10 + i, d) is True
        assert fsm.apply_prepared(10 + i, d, p) is True
        assert fsm.snapshot_deferred() == (i < len(parts) - 1)
    assert fsm.store.snapshot() == plain.snapshot()
    assert fsm.spool.cur is None


def test_other_commands_between_pieces_apply_and_the_restore_replaces_them_at_its_last_piece() -> None:
    parts = restore.encoded_pieces(_state(), "r1")
    plain, fsm = _old(), StoreFSM()
    fsm.store = _old()
    entries = [*parts[:3], c.encode(c.KVSet("between", b"y")), *parts[3:]]
    for i, d in enumerate(entries):
        assert plain.apply(10 + i, d) is True
        assert fsm.apply_prepared(10 + i, d, fsm.prepare(d)) is True
        if i == 3:
            assert plain.kv_get("between") is not None and plain.restoring()  # applied to the state as it is
    assert plain.kv_get("between") is None and plain.kv_get("k/3") is not None  # then replaced
    assert fsm.store.snapshot() == plain.snapshot()


def test_the_abort_ends_a_restore_in_progress() -> None:
    parts = restore.encoded_pieces(_state(), "r1")
    fsm = StoreFSM()
    fsm.store = _old()
    for i, d in enumerate(parts[:3]):
        fsm.apply_prepared(10 + i, d, fsm.prepare(d))
    assert fsm.snapshot_deferred() and fsm.spool.cur is not None
    abort = c.encode(restore.abort())
    assert fsm.prepare(abort) is None  # nothing to prepare
    assert fsm.apply(13, abort) is True
    assert not fsm.snapshot_deferred() and fsm.spool.cur is None  # ended: the pieces' bytes are freed
    out = fsm.apply(14, parts[3])  # a late piece is refused and changes nothing
    assert isinstance(out, StateError) and "does not continue" in out.message
    assert fsm.store.kv_get("old") is not None
    assert fsm.apply(15, abort) is True and fsm.store.kv_get("old") is not None  # with nothing under way: no-op


def test_a_new_restore_replaces_one_in_progress_and_gaps_are_refused() -> None:
    state = _state()
    a, b = restore.encoded_pieces(state, "a"), restore.encoded_pieces(state, "b")
    s = _old()
    s.apply(1, a[0])
    s.apply(2, a[1])
    bad = s.apply(3, a[3])  # a gap
    assert isinstance(bad, StateError) and not s.restoring()
    for i, d in enumerate(b):
        assert s.apply(10 + i, d) is True
    assert s.kv_get("old") is None and not s.restoring()


def test_a_restore_of_a_bad_state_is_refused_at_its_last_piece() -> None:
    parts = restore.encoded_pieces(b"\x81\xa6format\xa3bad" + b"z" * 1000, "r")
    for prepare in (False, True):
        fsm = StoreFSM()
        fsm.store = _old()
        results = [fsm.apply_prepared(5 + i, d, fsm.prepare(d)) if prepare else fsm.apply(5 + i, d)
                   for i, d in enumerate(parts)]
        assert all(r is True for r in results[:-1])
        assert isinstance(results[-1], StateError) and "invalid snapshot" in results[-1].message
        assert fsm.store.kv_get("old") is not None and not fsm.snapshot_deferred()


@pytest.mark.parametrize("piece", [
    c.Restore(b"ab", id="", offset=0, total=2),  # a total without an id
    c.Restore(b"ab", id="r", offset=0, total=1),  # beyond its total
    c.Restore(b"", id="r", offset=0, total=5),  # empty
    c.Restore(b"ab", id="r", offset=0, total=restore.MAX_TOTAL + 1),
])
def test_malformed_pieces_are_refused(piece: c.Restore) -> None:
    s = _old()
    out = s.apply(3, c.encode(piece))
    assert isinstance(out, StateError) and not s.restoring() and s.kv_get("old") is not None


def test_installing_a_snapshot_resets_the_spool() -> None:
    parts = restore.encoded_pieces(_state(), "r1")
    fsm = StoreFSM()
    fsm.prepare(parts[0])
    assert fsm.spool.cur is not None
    fsm.prepare_restore(_state(3))
    assert fsm.spool.cur is None


def test_an_undecodable_entry_between_pieces_abandons_the_restore_prepared_or_not() -> None:
    parts = restore.encoded_pieces(_state(), "r1")
    junk = bytes((0x92, int(c.CommandType.RESTORE))) + b"\xc1"  # looks like a Restore, does not decode
    for prepare in (False, True):
        fsm = StoreFSM()
        for i, d in enumerate([*parts[:2], junk, *parts[2:]]):
            out = fsm.apply_prepared(i + 1, d, fsm.prepare(d)) if prepare else fsm.apply(i + 1, d)
            if i == 2:
                assert isinstance(out, StateError) and not fsm.snapshot_deferred()
        assert fsm.store.kv_get("k/1") is None and not fsm.snapshot_deferred() and fsm.spool.cur is None


@pytest.mark.parametrize("restoring", [True, False])
def test_a_new_leader_aborts_a_restore_its_predecessor_left_half_way(restoring: bool) -> None:
    import asyncio
    from typing import Any

    from pyconsul.agent.gossip.serf import Member, MemberStatus
    from pyconsul.agent.raft.messages import Configuration
    from pyconsul.agent.server.leader import LeaderDuties

    writes: list[Any] = []

    async def write(data: bytes) -> Any:
        writes.append(c.decode(data))
        return True

    class Store:
        def restoring(self) -> bool:
            return restoring

        def expired_sessions(self, now: float) -> list[str]:
            return []

        def next_session_deadline(self) -> float | None:
            return None

    class Raft:
        is_leader, leader_id = True, "id1"

        def change_config(self, add: Any = None, remove: str | None = None) -> int:
            return 1

    me = Member("s1", "127.0.0.1", 8301, {"role": "consul", "dc": "bj", "id": "id1", "port": "8300"},
                MemberStatus.ALIVE)
    duties = LeaderDuties(Raft(), lambda: Configuration(), "bj", "id1", lambda: [me], lambda: Store(), write)
    asyncio.run(duties.establish(duties.term()))
    assert isinstance(writes[0], c.Register)  # after a write of its own: every earlier entry is applied
    assert (restore.abort() in writes) == restoring
