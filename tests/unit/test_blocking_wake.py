"""Blocked queries wake only for the index names they depend on (server.wait_for_change + queries.watch_names):
an unrelated apply does not even re-run the blocked query's index; a related one ends it at once; a restored
store wakes everything; nothing is left registered afterwards."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from pyconsul.agent.config import AgentConfig
from pyconsul.agent.raft.node import RaftNode
from pyconsul.agent.raft.transport import Transport
from pyconsul.agent.server import queries
from pyconsul.agent.server.server import ConsulServer, StoreFSM
from pyconsul.agent.state import commands as c
from tests.harness import until


class _NoRaft:
    is_leader = True
    leader_id = "me"
    core = None


class _NoTransport:
    async def request(self, address: str, method: str, args: Any, timeout: float = 10.0) -> Any:
        raise AssertionError("no RPC expected")


def _server() -> tuple[ConsulServer, StoreFSM]:
    fsm = StoreFSM()
    server = ConsulServer(AgentConfig(server=True), "me", lambda: [], cast(Transport, _NoTransport()),
                          cast(RaftNode, _NoRaft()), fsm)
    fsm.on_apply = server.applied
    return server, fsm


class Applier:
    def __init__(self, fsm: StoreFSM) -> None:
        self.fsm = fsm
        self.index = 0

    def __call__(self, cmd: c.Command) -> Any:
        self.index += 1
        return self.fsm.apply(self.index, c.encode(cmd))

    def service(self, node: str, sid: str, name: str, status: str = "passing") -> None:
        assert self(c.Register(node, "10.0.0.1", service=c.ServiceDef(id=sid, service=name),
                               checks=(c.CheckDef(check_id="chk:" + sid, status=status, service_id=sid),),
                               now=0.0)) is True


def count_index_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = queries.index_of

    def counting(store: Any, name: str, args: dict[str, Any]) -> int:
        calls.append(name)
        return real(store, name, args)

    monkeypatch.setattr(queries, "index_of", counting)
    return calls


@pytest.mark.parametrize(("name", "args"), [
    ("health.service", {"name": "web"}),
    ("catalog.service", {"name": "web"}),
    ("health.checks", {"name": "web"}),
])
def test_unrelated_applies_do_not_wake_a_service_watch(monkeypatch: pytest.MonkeyPatch, name: str,
                                                       args: dict[str, Any]) -> None:
    async def go() -> None:
        server, fsm = _server()
        apply = Applier(fsm)
        apply.service("n1", "web1", "web")
        apply.service("n2", "db1", "db")
        calls = count_index_calls(monkeypatch)
        at = queries.index_of(server.store, name, args)
        calls.clear()
        waiter = asyncio.get_running_loop().create_task(server.wait_for_change(at, name, args, 30.0))
        await until(lambda: server._watchers, 5, "the query to block")
        assert calls == [name] and not waiter.done()
        apply(c.KVSet("k", b"v"))  # KV
        apply.service("n2", "db1", "db", status="critical")  # another service's check
        apply.service("n3", "cache1", "cache")  # another node
        apply(c.Deregister("n3", now=0.0))
        apply(c.SessionCreate("s1", "n1", now=0.0))
        # a negative check: a woken waiter re-checks within a loop iteration or two; 10 ms gives it many
        await asyncio.sleep(0.01)
        assert calls == [name] and not waiter.done()  # never re-checked
        apply.service("n1", "web1", "web", status="critical")
        async with asyncio.timeout(5):
            await waiter
        assert server._watchers == {}

    asyncio.run(go())


def test_a_kv_watch_sleeps_through_catalog_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        server, fsm = _server()
        apply = Applier(fsm)
        apply(c.KVSet("k", b"v"))
        calls = count_index_calls(monkeypatch)
        at = queries.index_of(server.store, "kv.get", {"key": "k"})
        waiter = asyncio.get_running_loop().create_task(server.wait_for_change(at, "kv.get", {"key": "k"}, 30.0))
        await until(lambda: server._watchers, 5, "the query to block")
        n = len(calls)
        apply.service("n1", "web1", "web")
        await asyncio.sleep(0.01)  # a negative check (as above): a catalog write must not re-check a KV watch
        assert len(calls) == n and not waiter.done()
        apply(c.KVSet("other", b"v"))  # same table: re-checked, still blocked (its key did not change)
        await until(lambda: len(calls) > n, 5, "the KV watch to re-check")
        assert len(calls) == n + 1 and not waiter.done()
        apply(c.KVSet("k", b"w"))
        async with asyncio.timeout(5):
            await waiter

    asyncio.run(go())


def test_a_missing_service_falls_back_to_the_tables_and_follows_its_first_instance() -> None:
    async def go() -> None:
        server, fsm = _server()
        apply = Applier(fsm)
        apply.service("n1", "db1", "db")
        assert queries.watch_names(server.store, "health.service", {"name": "web"}) == {
            "service.web", "service_last_extinction", "nodes", "services", "checks"}
        at = queries.index_of(server.store, "health.service", {"name": "web"})
        waiter = asyncio.get_running_loop().create_task(
            server.wait_for_change(at, "health.service", {"name": "web"}, 30.0))
        await until(lambda: server._watchers, 5, "the query to block")
        apply.service("n2", "web1", "web")
        async with asyncio.timeout(5):
            await waiter
        assert queries.watch_names(server.store, "health.service", {"name": "web"}) == {"service.web"}

    asyncio.run(go())


def test_a_restored_store_wakes_every_watch_and_timeouts_unregister() -> None:
    async def go() -> None:
        server, fsm = _server()
        apply = Applier(fsm)
        apply.service("n1", "web1", "web")
        snap = fsm.snapshot()
        apply.service("n1", "web1", "web", status="critical")
        at = queries.index_of(server.store, "health.service", {"name": "web"})
        loop = asyncio.get_running_loop()
        waiters = [loop.create_task(server.wait_for_change(at + 100, q, a, 30.0)) for q, a in (
            ("health.service", {"name": "web"}), ("kv.get", {"key": "k"}), ("session.list", {}))]
        short = loop.create_task(server.wait_for_change(at + 100, "catalog.nodes", {}, 0.05))
        await until(lambda: set(server._watchers) >= {"service.web", "kvs", "sessions", "nodes"}, 5,
                    "the four queries to block", interval=0)  # `short` times out after 50 ms
        calls = count_index_calls(pytest.MonkeyPatch())
        fsm.restore(snap)  # a new store object: every blocked query re-checks
        await until(lambda: len(calls) >= 4, 5, "every blocked query to re-check")
        assert sorted(calls) == sorted(["health.service", "kv.get", "session.list", "catalog.nodes"])
        async with asyncio.timeout(5):
            await short
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        assert server._watchers == {}

    asyncio.run(go())


def test_the_last_instance_going_wakes_a_watch() -> None:
    async def go() -> None:
        server, fsm = _server()
        apply = Applier(fsm)
        apply.service("n1", "web1", "web")
        at = queries.index_of(server.store, "health.service", {"name": "web"})
        waiter = asyncio.get_running_loop().create_task(
            server.wait_for_change(at, "health.service", {"name": "web"}, 30.0))
        await until(lambda: server._watchers, 5, "the query to block")
        apply(c.Deregister("n1", service_id="web1", now=0.0))
        async with asyncio.timeout(5):
            await waiter
        assert queries.index_of(server.store, "health.service", {"name": "web"}) > at

    asyncio.run(go())
