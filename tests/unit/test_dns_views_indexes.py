"""The DNS views keep a cached service whose per-service index did not move when the catalog changes
(agent/dns/views.py `_changed`: one batched `health.service_indexes` read per detector wake-up), and drop
the ones whose index moved; a check answered by a lagging server drops everything."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyconsul.agent.dns import resolver as r
from pyconsul.agent.dns import views as v
from pyconsul.agent.dns.config import DNSConfig
from pyconsul.agent.server.common import ReadMeta
from pyconsul.agent.supervise import Supervisor


def row(name: str, status: str = "passing") -> dict[str, Any]:
    return {"Node": {"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1"},
            "Service": {"Service": name, "Port": 80}, "Checks": [{"Status": status}]}


class IndexedBackend:
    """A catalog of services each with its own index; `write(name)` moves the raft index and that
    service's index (like a check write on it), waking the detectors."""

    def __init__(self) -> None:
        self.index = 10
        self.services: dict[str, tuple[int, str]] = {"web": (5, "passing"), "db": (6, "passing")}
        self.reads: list[tuple[str, Any]] = []
        self.moved = asyncio.Event()
        self.lagging = False  # health.service_indexes answered by a server behind the detectors

    def write(self, name: str, status: str) -> None:
        self.index += 1
        self.services[name] = (self.index, status)
        self.moved.set()
        self.moved = asyncio.Event()

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, ReadMeta]:
        if name == "health.service":
            self.reads.append((name, args["name"]))
            idx, status = self.services[args["name"]]
            return [row(args["name"], status)], ReadMeta(idx, True, 0)
        if name == "health.service_indexes":
            self.reads.append((name, tuple(args["names"])))
            if self.lagging:
                return {n: 1 for n in args["names"]}, ReadMeta(1, True, 0)
            return {n: self.services[n][0] for n in args["names"]}, ReadMeta(self.index, True, 0)
        if index and index >= self.index:
            await asyncio.wait_for(self.moved.wait(), wait)
        return [], ReadMeta(self.index, True, 0)


async def settle() -> None:
    """Run every task that is ready (no timing: the fake backend does no I/O, so each detector wake-up and read
    is ready within a few loop iterations; 30 covers the longest chain here)."""
    for _ in range(30):
        await asyncio.sleep(0)


WEB: r.ViewKey = ("service", "dc1", "web")
DB: r.ViewKey = ("service", "dc1", "db")


async def cached(views: v.Views, *keys: r.ViewKey) -> None:
    for _ in range(3):  # the detectors' first reads drop what was filled before them
        for k in keys:
            if views.get(k) is r.MISSING:
                await views.fill(k)
        await settle()
    assert all(views.get(k) is not r.MISSING for k in keys)


def test_an_unrelated_change_keeps_a_view_and_a_related_one_drops_it() -> None:
    async def main() -> None:
        backend, changed = IndexedBackend(), list[r.ViewKey]()
        views = v.Views(backend, DNSConfig(), "dc1", Supervisor(lambda reason: None), changed.append)
        await cached(views, WEB, DB)
        changed.clear()
        backend.reads.clear()
        backend.write("db", "critical")  # a check on db: web's data is unchanged
        await settle()
        assert views.get(WEB) is not r.MISSING and WEB not in changed
        assert views.get(DB) is r.MISSING and DB in changed
        assert ("health.service", "web") not in backend.reads
        checks = [a for n, a in backend.reads if n == "health.service_indexes"]
        # one batched read per detector wake-up (this fake wakes all three), of the names cached then
        assert checks and checks[0] == ("db", "web") and all(set(a) <= {"db", "web"} for a in checks)
        assert views.stats["kept"] >= 1
        changed.clear()
        backend.write("web", "critical")  # a check on web going critical drops web's answers
        await settle()
        assert views.get(WEB) is r.MISSING and WEB in changed
        got = await views.fill(WEB)
        assert [i.status for i in got] == ["critical"]
        await views.close()

    asyncio.run(main())


def test_a_check_answered_by_a_lagging_server_drops_everything() -> None:
    async def main() -> None:
        backend, changed = IndexedBackend(), list[r.ViewKey]()
        views = v.Views(backend, DNSConfig(), "dc1", Supervisor(lambda reason: None), changed.append)
        await cached(views, WEB, DB)
        changed.clear()
        backend.lagging = True
        backend.write("db", "critical")
        await settle()
        assert views.get(WEB) is r.MISSING and views.get(DB) is r.MISSING
        assert WEB in changed and DB in changed
        await views.close()

    asyncio.run(main())


def test_the_service_indexes_read_matches_health_service_and_is_bounded() -> None:
    from pyconsul.agent.errors import BadRequest
    from pyconsul.agent.server import queries
    from pyconsul.agent.state.commands import CheckDef, Register, ServiceDef
    from tests.unit.test_state_support import Harness

    def reg(h: Harness, node: str, sid: str, name: str, status: str) -> None:
        h.do(Register(node, "10.0.0." + node[-1], service=ServiceDef(id=sid, service=name, port=80),
                      checks=(CheckDef(check_id="svc:" + sid, name=sid, status=status, service_id=sid),),
                      now=0.0))

    h = Harness()
    reg(h, "n1", "web1", "web", "passing")
    reg(h, "n2", "db1", "db", "passing")

    def indexes(*names: str) -> Any:
        return queries.run(h.store, "health.service_indexes", {"names": list(names)})

    def own(name: str) -> int:
        return queries.index_of(h.store, "health.service", {"name": name})

    before = indexes("web", "db", "nope")
    assert before == {"web": own("web"), "db": own("db"), "nope": own("nope")}
    reg(h, "n2", "db1", "db", "critical")  # a check on db
    after = indexes("web", "db")
    assert after["web"] == before["web"] and after["db"] != before["db"] and after["db"] == own("db")
    for bad in ({"names": "web"}, {"names": [1]}, {"names": ["x"] * (queries.MAX_INDEX_NAMES + 1)}):
        with pytest.raises(BadRequest):
            queries.run(h.store, "health.service_indexes", bad)
