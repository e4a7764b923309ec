"""The DNS catalog views (agent/dns/views.py) against a fake backend: shared fills, change detection, reads
that overlap a change, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyconsul.agent.dns import resolver as r
from pyconsul.agent.dns import views as v
from pyconsul.agent.dns.config import DNSConfig
from pyconsul.agent.errors import NoLeader
from pyconsul.agent.server.common import ReadMeta
from pyconsul.agent.supervise import Supervisor
from tests.harness import until

ROW = {"Node": {"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1"},
       "Service": {"Service": "web", "Port": 80}, "Checks": [{"Status": "passing"}]}


class FakeBackend:
    """health.service answers `rows`; the detectors' reads block until `change()` moves the index."""

    def __init__(self) -> None:
        self.index = 10
        self.rows: list[dict[str, Any]] = [ROW]
        self.reads: list[str] = []
        self.moved = asyncio.Event()
        self.fail = False
        self.gate: asyncio.Event | None = None  # when set, health.service reads wait for it

    def change(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.index += 1
        self.moved.set()
        self.moved = asyncio.Event()

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, ReadMeta]:
        self.reads.append(name)
        if name == "health.service":
            rows = self.rows
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                raise NoLeader()
            return rows, ReadMeta(self.index, True, 0)
        if index and index >= self.index:
            await asyncio.wait_for(self.moved.wait(), wait)
        return [], ReadMeta(self.index, True, 0)


async def settle() -> None:
    """Run every task that is ready (no timing: the fake backend does no I/O, so each step of a fill or a detector
    is ready within a few loop iterations; 20 covers the longest chain here)."""
    for _ in range(20):
        await asyncio.sleep(0)


KEY: r.ViewKey = ("service", "dc1", "web")


def make(backend: FakeBackend, changed: list[r.ViewKey]) -> v.Views:
    return v.Views(backend, DNSConfig(), "dc1", Supervisor(lambda reason: None), changed.append)


@pytest.mark.parametrize("concurrent", [1, 5])
def test_concurrent_misses_share_one_read(concurrent: int) -> None:
    async def main() -> None:
        backend, changed = FakeBackend(), list[r.ViewKey]()
        views = make(backend, changed)
        futs = [views.fill(KEY) for _ in range(concurrent)]
        values = await asyncio.gather(*futs)
        assert all(x == r.instances_from_health([ROW]) for x in values)
        await settle()
        # one read for all the waiting questions; a second when the detectors' first reads overlapped it
        assert backend.reads.count("health.service") in (1, 2)
        await views.close()

    asyncio.run(main())


def test_a_detected_change_drops_the_entry() -> None:
    async def main() -> None:
        backend, changed = FakeBackend(), list[r.ViewKey]()
        views = make(backend, changed)
        await views.fill(KEY)
        await settle()
        if views.get(KEY) is r.MISSING:  # the detectors' first read dropped it (a change may have been missed)
            await views.fill(KEY)
            await settle()
        assert views.get(KEY) is not r.MISSING
        changed.clear()
        backend.change([])
        await settle()
        assert views.get(KEY) is r.MISSING and KEY in changed
        assert await views.fill(KEY) == ()
        assert views.stats["changes"] >= 1
        await views.close()

    asyncio.run(main())


def test_a_read_overlapping_a_change_reads_again() -> None:
    async def main() -> None:
        backend, changed = FakeBackend(), list[r.ViewKey]()
        views = make(backend, changed)
        await views.fill(KEY)
        await settle()
        if views.get(KEY) is r.MISSING:  # as above
            await views.fill(KEY)
        await settle()
        backend.gate = asyncio.Event()
        backend.change(backend.rows)  # drops the entry
        await settle()
        fut = views.fill(KEY)  # reads the old rows ...
        await settle()
        backend.change([])  # ... while a change lands
        await settle()
        backend.gate.set()
        assert await fut == ()  # the read that overlapped it was done again
        await views.close()

    asyncio.run(main())


def test_failed_read_is_failed_then_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "FAILED_RETRY", 0.0)

    async def main() -> None:
        backend, changed = FakeBackend(), list[r.ViewKey]()
        views = make(backend, changed)
        backend.fail = True
        got = await views.fill(KEY)
        assert isinstance(got, r.Failed) and "leader" in got.reason.lower()
        await until(lambda: views.get(KEY) is r.MISSING, 5, "FAILED_RETRY to pass")  # retried on the next question
        backend.fail = False
        assert await views.fill(KEY) == r.instances_from_health([ROW])
        await views.close()

    asyncio.run(main())


def test_views_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "MAX_WATCHED_NAMES", 3)

    async def main() -> None:
        backend, changed = FakeBackend(), list[r.ViewKey]()
        views = make(backend, changed)
        for i in range(5):
            await views.fill(("service", "dc1", f"s{i}"))
        assert len(views.entries) <= 3 and views.stats["evicted"] + views.stats["dropped"] >= 2
        assert ("service", "dc1", "s0") in changed
        await views.close()

    asyncio.run(main())
