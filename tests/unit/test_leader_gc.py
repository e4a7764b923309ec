"""The leader's tombstone reaper (server/leader.py + state/tombstone_gc.py) with fakes: enabled only while
leading, hinted on takeover and on every applied delete, proposes TombstoneReap when a bin is due, locally."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent.config import build_config
from pyconsul.agent.config_error import ConfigError
from pyconsul.agent.raft.messages import Configuration
from pyconsul.agent.server.leader import LeaderDuties
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.tombstone_gc import TombstoneGC


class _Raft:
    is_leader = True
    leader_id = "id1"

    def change_config(self, add: Any = None, remove: str | None = None) -> int:
        return 1


class _Store:
    def expired_sessions(self, now: float) -> list[str]:
        return []


def _duties(proposed: list[Any], clock: list[float]) -> LeaderDuties:
    async def forwarded(data: bytes) -> Any:
        raise AssertionError("a reap is never forwarded")

    async def local(data: bytes) -> Any:
        proposed.append(c.decode(data))
        return True

    return LeaderDuties(_Raft(), lambda: Configuration(), "bj", "id1", lambda: [], lambda: _Store(), forwarded,
                        clock=lambda: clock[0], gc=TombstoneGC(ttl=0.2, granularity=0.1), last_index=lambda: 7,
                        propose_local=local)


def test_the_reaper_proposes_after_ttl_only_while_leading() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        clock = [loop.time()]
        proposed: list[Any] = []
        duties = _duties(proposed, clock)
        duties.tombstones_changed(3)  # not leading yet: ignored
        assert duties.gc.next_deadline() == float("inf")
        task = loop.create_task(duties.tombstone_reaper())

        async def until_reaped(index: int) -> None:
            async with asyncio.timeout(5):
                while c.TombstoneReap(index) not in proposed:
                    clock[0] = loop.time()
                    await asyncio.sleep(0.01)

        duties.set_gc_leader(True)  # hints the last log index (a predecessor's tombstones)
        clock[0] = loop.time()
        duties.tombstones_changed(20)
        started = loop.time()
        await until_reaped(20)
        assert loop.time() - started >= 0.15, "nothing is reaped before ttl"
        assert proposed[-1] == c.TombstoneReap(20)
        assert all(isinstance(p, c.TombstoneReap) and p.index in (7, 20) for p in proposed)
        assert duties.reaped == len(proposed)

        n = len(proposed)
        duties.tombstones_changed(30)
        duties.set_gc_leader(False)  # lost leadership: pending bins are the next leader's business
        duties.tombstones_changed(31)
        await asyncio.sleep(0.4)
        assert len(proposed) == n and not duties.gc.bins
        task.cancel()

    asyncio.run(go())


def test_a_failed_reap_is_hinted_again() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        clock = [loop.time()]
        duties = _duties([], clock)

        async def fail(data: bytes) -> Any:
            raise TimeoutError

        duties.propose_local = fail
        duties.gc.set_enabled(True)
        await duties._reap(5)
        assert duties.reaped == 0 and list(duties.gc.bins.values()) == [5]

    asyncio.run(go())


@pytest.mark.parametrize(("conf", "error"), [
    ({"tombstone_ttl": "0s"}, "tombstone_ttl: must be a positive duration"),
    ({"tombstone_ttl_granularity": "-1s"}, "tombstone_ttl_granularity: must be a positive duration"),
    ({"tombstone_ttl": "10s", "tombstone_ttl_granularity": "1m"}, "must not be longer than tombstone_ttl"),
    ({"tombstone_ttl": "2s", "tombstone_ttl_granularity": "1s"}, ""),
    ({}, ""),
])
def test_tombstone_config(tmp_path: Path, conf: dict[str, Any], error: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data_dir": str(tmp_path), **conf}))
    if error:
        with pytest.raises(ConfigError, match=error):
            build_config({"config-file": [str(path)]})
        return
    cfg, _ = build_config({"config-file": [str(path)]})
    assert (cfg.tombstone_ttl, cfg.tombstone_ttl_granularity) == ((2.0, 1.0) if conf else (900.0, 30.0))


# ---------------------------------------------------------------- session expiry on deadlines


class _SessionStore:
    def __init__(self) -> None:
        self.deadlines: dict[str, float] = {}
        self.scans = 0

    def expired_sessions(self, now: float) -> list[str]:
        self.scans += 1
        return sorted(s for s, d in self.deadlines.items() if d <= now)

    def next_session_deadline(self) -> float | None:
        return min(self.deadlines.values(), default=None)


def test_sessions_expire_at_their_deadline_without_polling() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        store = _SessionStore()
        raft = _Raft()
        destroyed: list[tuple[str, float]] = []

        async def write(data: bytes) -> Any:
            cmd = c.decode(data)
            assert isinstance(cmd, c.SessionDestroy)
            destroyed.append((cmd.id, loop.time()))
            del store.deadlines[cmd.id]
            duties.sessions_changed()
            return True

        duties = LeaderDuties(raft, lambda: Configuration(), "bj", "id1", lambda: [], lambda: store, write,
                              wall=loop.time)
        now = loop.time()
        store.deadlines = {"s2": now + 0.4, "s1": now + 0.2}
        task = loop.create_task(duties.session_expiry())
        async with asyncio.timeout(5):
            while len(destroyed) < 2:
                await asyncio.sleep(0.01)
        assert [d[0] for d in destroyed] == ["s1", "s2"]
        assert destroyed[0][1] >= now + 0.2 and destroyed[1][1] >= now + 0.4, "never before the deadline"
        assert store.scans <= 4, f"woken at deadlines only, not polled ({store.scans} scans)"

        scans = store.scans
        for i in range(1000):  # a burst of creates: deadlines >= 20 s away
            store.deadlines[f"n{i}"] = loop.time() + 60
            duties.sessions_changed()
        await asyncio.sleep(0.1)
        assert store.scans == scans, "a burst of new sessions costs no scan now"

        raft.is_leader = False
        duties.leadership_changed()
        store.deadlines["old"] = loop.time() - 1
        await asyncio.sleep(0.05)
        assert "old" in store.deadlines, "a follower destroys nothing"
        raft.is_leader = True
        duties.leadership_changed()
        async with asyncio.timeout(5):
            while "old" in store.deadlines:
                await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(go())
