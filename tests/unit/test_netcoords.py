"""The agent-level coordinate pieces (agent/netcoords.py) with fakes: the leader's batching, forwarding from
followers, the rate limit, validation, the sync's interval, the WAN view."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from pyconsul.agent.errors import BadRequest, NoLeader, Unavailable
from pyconsul.agent.gossip.coordinate import Coordinate, new_coordinate
from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.netcoords import (
    BATCH_SIZE,
    MAX_BATCHES,
    CoordinateBatcher,
    CoordinateSync,
    datacenter_maps,
    rate_scaled_interval,
    update_args,
)
from pyconsul.agent.state.commands import CoordinateBatchUpdate, decode


class FakeServer:
    def __init__(self, leader: bool, leader_addr: str = "10.0.0.1:8300") -> None:
        self._leader = leader
        self.addr = leader_addr
        self.writes: list[CoordinateBatchUpdate] = []

    @property
    def is_leader(self) -> bool:
        return self._leader

    def leader_address(self) -> str:
        return self.addr

    async def write(self, data: bytes) -> Any:
        cmd = decode(data)
        assert isinstance(cmd, CoordinateBatchUpdate)
        self.writes.append(cmd)
        return True


def _args(node: str) -> dict[str, Any]:
    return update_args(node, new_coordinate())


def test_leader_queues_latest_per_node_and_commits_in_batches() -> None:
    async def run() -> FakeServer:
        srv = FakeServer(True)
        b = CoordinateBatcher(srv, lambda addr, args: None)
        for i in range(BATCH_SIZE + 10):
            assert await b.update(_args(f"n{i}"))
        moved = update_args("n0", Coordinate((0.1,) * 8, 0.5, 0.0, 1e-5))
        await b.update(moved)  # the same node again: replaces, no new slot
        await b.flush()
        return srv

    srv = asyncio.run(run())
    assert [len(w.updates) for w in srv.writes] == [BATCH_SIZE, 10]
    first = {u.node: u for w in srv.writes for u in w.updates}
    assert first["n0"].coord.vec == (0.1,) * 8


def test_follower_forwards_and_no_leader_fails() -> None:
    async def run() -> list[tuple[str, dict[str, Any]]]:
        sent: list[tuple[str, dict[str, Any]]] = []

        async def forward(addr: str, args: dict[str, Any]) -> bool:
            sent.append((addr, args))
            return True

        b = CoordinateBatcher(FakeServer(False), forward)
        assert await b.update(_args("c1"))
        assert b.pending == {}
        with pytest.raises(NoLeader):
            await CoordinateBatcher(FakeServer(False, ""), forward).update(_args("c1"))
        return sent

    sent = asyncio.run(run())
    assert sent == [("10.0.0.1:8300", _args("c1"))]


def test_rate_limit_and_bad_updates() -> None:
    async def run() -> None:
        b = CoordinateBatcher(FakeServer(True), lambda addr, args: None)
        for i in range(BATCH_SIZE * MAX_BATCHES):
            await b.update(_args(f"n{i}"))
        with pytest.raises(Unavailable, match="rate limit"):
            await b.update(_args("one-too-many"))
        await b.update(_args("n3"))  # an update for a waiting node still replaces it
        for bad in ({"node": "", "coord": new_coordinate().to_json()}, {"node": "x", "coord": {"Vec": [0.0]}},
                    {"node": "x" * 300, "coord": new_coordinate().to_json()}, [1, 2],
                    {"node": "x", "segment": 5, "coord": new_coordinate().to_json()}):
            with pytest.raises(BadRequest):
                await b.update(bad)  # type: ignore[arg-type]

    asyncio.run(run())


def test_sync_interval_scales_with_cluster_size() -> None:
    assert rate_scaled_interval(64, 15.0, 10) == 15.0
    assert rate_scaled_interval(64, 15.0, 6400) == 100.0
    s = CoordinateSync("n", new_coordinate, lambda: 6400, None, 15.0, 64, random.Random(1))  # type: ignore[arg-type]
    assert all(100.0 <= s.next_interval() <= 200.0 for _ in range(100))


def test_datacenter_maps() -> None:
    def m(name: str, dc: str, status: MemberStatus = MemberStatus.ALIVE, role: str = "consul") -> Member:
        return Member(name, "10.0.0.1", 8302, {"dc": dc, "role": role}, status)

    c = Coordinate((0.01,) * 8, 0.3, 0.0, 1e-5)
    members = [m("b.sh", "sh"), m("a.sh", "sh"), m("x.bj", "bj", MemberStatus.FAILED), m("y.bj", "bj"),
               m("z.eu", "eu")]
    out = datacenter_maps(members, lambda name: None if name == "z.eu" else c, "bj")
    assert [d["Datacenter"] for d in out] == ["bj", "eu", "sh"]
    assert [x["Node"] for x in out[2]["Coordinates"]] == ["a", "b"]
    assert [x["Node"] for x in out[0]["Coordinates"]] == ["y"]
    assert out[1]["Coordinates"] == [] and out[0]["AreaID"] == "wan"
    assert out[2]["Coordinates"][0]["Coord"]["Vec"] == [0.01] * 8


def test_batcher_loop_commits_after_the_period_and_idles() -> None:
    async def run() -> tuple[int, int]:
        srv = FakeServer(True)
        b = CoordinateBatcher(srv, lambda addr, args: None, period=0.05)
        task = asyncio.get_running_loop().create_task(b.run())
        await asyncio.sleep(0.12)  # a negative check: two idle periods (0.05 s) pass without a write
        idle_writes = len(srv.writes)
        await b.update(_args("n1"))
        for _ in range(100):
            if srv.writes:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        return idle_writes, len(srv.writes)

    assert asyncio.run(run()) == (0, 1)
