"""The server's parts and the agent's facade, each with fakes: the RPC method table, forwarding,
leader duties, blocking-query wake-ups, the HTTP facade and member snapshots."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import pytest

from pyconsul.agent import errors as e
from pyconsul.agent.config import AgentConfig
from pyconsul.agent.facade import AgentFacade, force_leave
from pyconsul.agent.gossip.coordinate import Coordinate, new_coordinate
from pyconsul.agent.gossip.pool import Pool
from pyconsul.agent.gossip.serf import Member, MemberEvent, MemberStatus
from pyconsul.agent.raft.messages import Configuration, Role, Server, SoftState
from pyconsul.agent.raft.node import RaftNode
from pyconsul.agent.raft.transport import Transport
from pyconsul.agent.rejoin import MemberSnapshots
from pyconsul.agent.server.common import REQUEST_DC, RPC_HOLD_TIMEOUT, ReadMeta
from pyconsul.agent.server.forwarding import Forwarder
from pyconsul.agent.server.leader import LeaderDuties
from pyconsul.agent.server.rpc import RPCMethods
from pyconsul.agent.server.server import ConsulServer, StoreFSM
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.results import TxnResult, reply_to_wire

# ---------------------------------------------------------------- the RPC method table


class FakeLocal:
    def __init__(self, leader: bool = True) -> None:
        self.is_leader = leader
        self.leader_id = "L" if not leader else "me"
        self.calls: list[tuple[str, Any]] = []

    async def apply_local(self, data: bytes) -> Any:
        self.calls.append(("apply_local", data))
        return True

    async def write(self, data: bytes) -> Any:
        self.calls.append(("write", data))
        return "session-id"

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, ReadMeta]:
        self.calls.append(("read", (name, args, mode, index, wait)))
        return {"v": 1}, ReadMeta(42, True, 7)

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        self.calls.append(("status", (what, args, REQUEST_DC.get())))
        return ["x"]

    def remove_server(self, server_id: str) -> None:
        self.calls.append(("remove_server", server_id))

    def acl_enabled(self) -> bool:
        return False

    async def authorizer(self) -> None:
        return None

    async def check_write(self, data: bytes) -> None:
        self.calls.append(("check_write", data))


def dispatch(local: FakeLocal, method: str, args: Any) -> Any:
    async def go() -> Any:
        return await RPCMethods(local).dispatch(method, args)

    return asyncio.run(go())


def test_rpc_table_names_every_method() -> None:
    assert set(RPCMethods(FakeLocal()).table) == {
        "apply", "read", "apply_forward", "read_forward", "status", "dc", "remove_self"}


@pytest.mark.parametrize(("method", "args", "expected", "call"), [
    ("apply", b"cmd", True, ("apply_local", b"cmd")),
    ("apply_forward", b"cmd", "session-id", ("write", b"cmd")),
    ("read", {"name": "kv.get", "args": {"key": "k"}, "mode": "consistent", "index": 3, "wait": 1.5},
     {"value": {"v": 1}, "index": 42}, ("read", ("kv.get", {"key": "k"}, "consistent", 3, 1.5))),
    ("read_forward", {"name": "kv.get", "args": {}}, {"value": {"v": 1}, "index": 42, "known_leader": True,
                                                      "last_contact": 7}, ("read", ("kv.get", {}, "default", 0, 0.0))),
    ("status", {"what": "peers"}, ["x"], ("status", ("peers", None, ""))),
    ("remove_self", "id9", True, ("remove_server", "id9")),
])
def test_rpc_dispatch(method: str, args: Any, expected: Any, call: tuple[str, Any]) -> None:
    local = FakeLocal()
    assert dispatch(local, method, args) == expected
    assert local.calls == [call]


@pytest.mark.parametrize(("method", "args"), [
    ("nope", None), ("apply", "not bytes"), ("apply_forward", {}), ("read", b"x"), ("read", {"name": 1}),
    ("status", []), ("dc", {"dc": "sh", "method": "apply"}), ("dc", "x"),
])
def test_rpc_rejects_bad_requests(method: str, args: Any) -> None:
    local = FakeLocal()
    with pytest.raises(e.BadRequest):
        dispatch(local, method, args)
    assert local.calls == []


@pytest.mark.parametrize("method", ["apply", "read", "remove_self"])
def test_leader_only_methods_answer_not_leader_with_the_leader(method: str) -> None:
    local = FakeLocal(leader=False)
    args = {"apply": b"x", "read": {"name": "kv.get", "args": {}}, "remove_self": "id"}[method]
    with pytest.raises(e.NotLeader) as exc:
        dispatch(local, method, args)
    assert exc.value.leader == "L" and local.calls == []


def test_dc_runs_the_inner_method_for_that_datacenter() -> None:
    local = FakeLocal()
    assert dispatch(local, "dc", {"dc": "sh", "method": "status", "args": {"what": "leader"}}) == ["x"]
    assert local.calls == [("status", ("leader", None, "sh"))]
    assert REQUEST_DC.get() == "", "the request's datacenter does not leak out of its context"


def test_apply_answers_typed_results_in_wire_form() -> None:
    class TxnLocal(FakeLocal):
        async def apply_local(self, data: bytes) -> Any:
            return TxnResult()

    assert dispatch(TxnLocal(), "apply", b"x") == reply_to_wire(TxnResult()) == {"txn": {"results": [], "errors": []}}


# ---------------------------------------------------------------- forwarding


class FakeTransport:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str, Any, float]] = []

    async def request(self, address: str, method: str, args: Any, timeout: float = 10.0) -> Any:
        self.sent.append((address, method, args, timeout))
        return self.answer


def _wan(name: str, dc: str, status: MemberStatus = MemberStatus.ALIVE) -> Member:
    return Member(name, "127.0.0.9", 8302, {"role": "consul", "dc": dc, "port": "8300"}, status)


def test_forwarder_writes_to_the_leader_or_through_a_server() -> None:
    t = FakeTransport(True)
    f = Forwarder(t, "bj")
    assert asyncio.run(f.write("a:1", b"x", to_leader=True)) is True
    assert asyncio.run(f.write("b:1", b"y", to_leader=False)) is True
    assert t.sent == [("a:1", "apply", b"x", RPC_HOLD_TIMEOUT), ("b:1", "apply_forward", b"y", RPC_HOLD_TIMEOUT * 2)]


def test_forwarder_read_meta() -> None:
    t = FakeTransport({"value": [1], "index": 9, "known_leader": False, "last_contact": 12})
    f = Forwarder(t, "bj")
    assert asyncio.run(f.read("b:1", "kv.list", {}, "stale", 3, 2.0, to_leader=False)) == ([1], ReadMeta(9, False, 12))
    assert t.sent[0][1] == "read_forward" and t.sent[0][3] == RPC_HOLD_TIMEOUT * 2 + 2.0
    _value, meta = asyncio.run(f.read("a:1", "kv.list", {}, "default", 0, 0.0, to_leader=True, last_contact_ms=5))
    assert t.sent[1][1] == "read" and meta.last_contact_ms == 5


def test_forwarder_picks_a_server_of_the_requested_datacenter() -> None:
    members = [_wan("s1.sh", "sh"), _wan("s2.sh", "sh", MemberStatus.FAILED), _wan("s3.bj", "bj"),
               _wan("s4.gz", "gz", MemberStatus.FAILED)]
    f = Forwarder(FakeTransport(None), "bj", lambda: members)

    def pick(dc: str) -> str:
        token = REQUEST_DC.set(dc)
        try:
            return f.dc_server()
        finally:
            REQUEST_DC.reset(token)

    assert pick("") == "" and pick("bj") == ""
    assert pick("sh") == "127.0.0.9:8300"
    with pytest.raises(e.DatacenterUnavailable):  # known, but no alive server: a server-side 500
        pick("gz")
    with pytest.raises(e.NoPathToDatacenter) as unknown:  # never seen: the client's error, a 400
        pick("nowhere")
    assert type(unknown.value) is e.NoPathToDatacenter


# ---------------------------------------------------------------- leader duties


class FakeRaft:
    def __init__(self) -> None:
        self.is_leader = True
        self.leader_id = "id1"
        self.changes: list[dict[str, Any]] = []

    def change_config(self, add: Any = None, remove: str | None = None) -> int:
        self.changes.append({"add": add, "remove": remove})
        return 1


def _lan(name: str, sid: str, status: MemberStatus, role: str = "consul") -> Member:
    return Member(name, f"127.0.0.{sid[-1]}", 8301, {"role": role, "dc": "bj", "id": sid, "port": "8300"}, status)


class FakeStore:
    def __init__(self, expired: list[str]) -> None:
        self.expired = expired

    def expired_sessions(self, now: float) -> list[str]:
        return self.expired


def _duties(members: list[Member], writes: list[Any], reject: set[str] | None = None,
            expired: list[str] | None = None) -> tuple[LeaderDuties, FakeRaft]:
    raft = FakeRaft()
    conf = Configuration((Server("id1", "127.0.0.1:8300"), Server("id2", "127.0.0.2:8300")))

    async def write(data: bytes) -> Any:
        cmd = c.decode(data)
        writes.append(cmd)
        if reject and getattr(cmd, "node", "") in reject:
            raise e.CommandRejected("Node name is reserved")
        return True

    store = FakeStore(expired or [])
    return LeaderDuties(raft, lambda: conf, "bj", "id1", lambda: members, lambda: store, write), raft


def test_leader_removes_a_server_that_left_at_once() -> None:
    duties, raft = _duties([], [])
    duties.on_lan_event(MemberEvent("member-leave", _lan("s2", "id2", MemberStatus.LEFT)))
    duties.on_lan_event(MemberEvent("member-leave", _lan("s9", "id9", MemberStatus.LEFT)))  # not in the config
    assert raft.changes == [{"add": None, "remove": "id2"}]
    raft.is_leader = False
    duties.on_lan_event(MemberEvent("member-leave", _lan("s2", "id2", MemberStatus.LEFT)))
    assert len(raft.changes) == 1, "only the leader changes the configuration"


def test_reconcile_registers_members_and_retries_rejected_ones() -> None:
    writes: list[Any] = []
    members = [_lan("s1", "id1", MemberStatus.ALIVE), _lan("c1", "id7", MemberStatus.ALIVE, role="node")]
    duties, _ = _duties(members, writes, reject={"c1"}, expired=["sess1"])
    asyncio.run(duties.one_pass(stable=True))
    assert [type(w).__name__ for w in writes] == ["Register", "Register"], "sessions expire on their own deadline"
    assert set(duties.reconciled) == {"s1"}, "a rejected registration is tried again on the next pass"
    writes.clear()
    asyncio.run(duties.reconcile_members())
    assert [getattr(w, "node", "") for w in writes] == ["c1"]


def test_a_follower_sleeps_until_it_leads_then_makes_a_pass_at_once() -> None:
    async def go() -> None:
        writes: list[Any] = []
        duties, raft = _duties([_lan("s1", "id1", MemberStatus.ALIVE)], writes)
        raft.is_leader = False
        waits: list[float | None] = []
        change = asyncio.Event()

        async def wait_change(timeout: float | None) -> None:
            waits.append(timeout)
            if timeout is None:
                await change.wait()
            else:
                await asyncio.sleep(3600)  # the leader's next pass: not reached in this test

        duties.wait_change = wait_change
        task = asyncio.get_running_loop().create_task(duties.run())
        await asyncio.sleep(0.01)
        assert waits == [None] and writes == [], "a follower waits for a change, without a timeout"
        raft.is_leader = True
        change.set()
        async with asyncio.timeout(5):
            while not writes:
                await asyncio.sleep(0.001)
        assert [type(w).__name__ for w in writes] == ["Register"] and waits[-1] == 1.0
        task.cancel()

    asyncio.run(go())


# ---------------------------------------------------------------- blocking queries wake without tasks


class _NoRaft:
    is_leader = True
    leader_id = "me"
    core = None


def _server() -> tuple[ConsulServer, StoreFSM]:
    fsm = StoreFSM()
    cfg = AgentConfig(server=True)
    server = ConsulServer(cfg, "me", lambda: [], cast(Transport, FakeTransport(None)), cast(RaftNode, _NoRaft()), fsm)
    fsm.on_apply = server.applied
    return server, fsm


def test_an_applied_entry_wakes_a_blocking_query_synchronously() -> None:
    async def go() -> None:
        server, fsm = _server()
        waiter = asyncio.get_running_loop().create_task(server.wait_for_change(10, "kv.get", {"key": "k"}, 30.0))
        await asyncio.sleep(0)  # let it block
        assert not waiter.done()
        fsm.apply(5, c.encode(c.KVSet("other", b"v")))  # index 5 <= 10: wakes, re-checks, blocks again
        await asyncio.sleep(0.01)
        assert not waiter.done()
        tasks_before = len(asyncio.all_tasks())
        fsm.apply(11, c.encode(c.KVSet("k", b"v")))
        assert len(asyncio.all_tasks()) == tasks_before, "applying an entry creates no task"
        async with asyncio.timeout(5):
            await waiter

    asyncio.run(go())


def test_a_blocking_query_times_out_at_its_wait() -> None:
    async def go() -> None:
        server, _ = _server()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await server.wait_for_change(10, "kv.get", {"key": "k"}, 0.05)
        assert loop.time() - t0 >= 0.05

    asyncio.run(go())


def test_a_write_waits_for_the_leader_change_not_a_poll() -> None:
    async def go() -> None:
        server, _ = _server()
        gen = server._leader_gen
        loop = asyncio.get_running_loop()
        waiting = loop.create_task(server._leader_changed_since(gen, loop.time() + 30))
        await asyncio.sleep(0)
        assert not waiting.done()
        server.leader_changed(SoftState("id2", Role.FOLLOWER, 3))
        async with asyncio.timeout(5):
            await waiting
        await server._leader_changed_since(gen, loop.time() + 30)  # already changed: returns at once

    asyncio.run(go())


class _FollowerRaft:
    is_leader = False
    leader_id = "L"
    core = None

    def leader_address(self) -> str:
        return "127.0.0.5:8300"


class _ScriptTransport:
    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.sent: list[str] = []

    async def request(self, address: str, method: str, args: Any, timeout: float = 10.0) -> Any:
        self.sent.append(method)
        out = self.outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out


def test_a_forwarded_write_retries_when_the_leader_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyconsul.agent.server.server as server_mod

    monkeypatch.setattr(server_mod, "RETRY_FALLBACK", 60.0)  # only the leader change may trigger the retry

    async def go() -> None:
        t = _ScriptTransport([e.NotLeader("L2"), reply_to_wire(True)])
        server = ConsulServer(AgentConfig(server=True), "me", lambda: [], cast(Transport, t),
                              cast(RaftNode, _FollowerRaft()), StoreFSM())
        write = asyncio.get_running_loop().create_task(server.write(b"cmd"))
        await asyncio.sleep(0.2)
        assert t.sent == ["apply"] and not write.done(), "no retry (no poll) before the leader changes"
        server.leader_changed(SoftState("L2", Role.FOLLOWER, 2))
        async with asyncio.timeout(5):
            assert await write is True
        assert t.sent == ["apply", "apply"]

    asyncio.run(go())


def test_a_rejected_command_is_not_retried() -> None:
    async def go() -> None:
        t = _ScriptTransport([e.CommandRejected("Missing node registration")])
        server = ConsulServer(AgentConfig(server=True), "me", lambda: [], cast(Transport, t),
                              cast(RaftNode, _FollowerRaft()), StoreFSM())
        with pytest.raises(e.CommandRejected, match="Missing node registration"):
            await server.write(b"cmd")
        assert t.sent == ["apply"]

    asyncio.run(go())


class _RaceRaft:
    """A server with no Raft state until a leader's AppendEntries arrives while it asks its peers."""

    bootstrapped = False
    core = None

    def __init__(self) -> None:
        self.state = False
        self.bootstrap_calls = 0

    def has_state(self) -> bool:
        return self.state

    def learn_address(self, server_id: str, address: str) -> None:
        pass

    def bootstrap(self, configuration: Configuration) -> None:
        self.bootstrap_calls += 1
        raise ValueError("cannot bootstrap a server that already has Raft state")


def test_bootstrap_stands_down_when_a_leader_reaches_it_while_it_asks_its_peers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in CI: the peers check found no cluster, then the first leader's AppendEntries gave this server a
    term, and bootstrapping raised; under supervision that stopped the agent. Now it joins that cluster."""
    import pyconsul.agent.server.server as server_mod
    from pyconsul.agent.server.bootstrap import Decision

    conf = Configuration((Server("me", "127.0.0.1:8300"), Server("L", "127.0.0.2:8300")))
    monkeypatch.setattr(server_mod.bootstrap, "decide", lambda *a: Decision(conf, ""))
    raft = _RaceRaft()

    async def peers_exist(self: ConsulServer, c: Configuration) -> bool:
        raft.state = True  # the leader's first message arrived during this round trip
        return False

    monkeypatch.setattr(ConsulServer, "_peers_exist", peers_exist)

    async def go() -> None:
        server = ConsulServer(AgentConfig(server=True, bootstrap_expect=2), "me", lambda: [],
                              cast(Transport, FakeTransport(None)), cast(RaftNode, raft), StoreFSM())
        async with asyncio.timeout(5):
            await server._bootstrap_loop()

    asyncio.run(go())
    assert raft.bootstrap_calls == 0


# ---------------------------------------------------------------- the HTTP facade


class FakePool:
    def __init__(self, members: list[Member], knows: set[str] | None = None) -> None:
        self._members = members
        self.knows = knows or set()
        self.forced: list[tuple[str, bool]] = []
        self.joined: list[tuple[list[str], int]] = []

    def members(self) -> list[Member]:
        return self._members

    async def join(self, addrs: list[str], default_port: int) -> tuple[int, list[str]]:
        self.joined.append((addrs, default_port))
        return 1, []

    def force_leave(self, node: str, prune: bool = False) -> bool:
        self.forced.append((node, prune))
        return node in self.knows

    def stats(self) -> dict[str, str]:
        return {"members": str(len(self._members))}

    async def key_operation(self, op: str, key: bytes | None) -> dict[str, Any]:
        return {"Keys": {}, "PrimaryKeys": {}, "Messages": {}, "NumNodes": 1, "NumResp": 1, "NumErr": 0}

    def local_member(self) -> Member:
        return self._members[0]

    def coordinate(self) -> Coordinate:
        return new_coordinate()


class FakeBackend:
    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        return ["bj", "sh"] if what == "datacenters" else None


class FakeServerView:
    def leader_address(self) -> str:
        return "127.0.0.1:8300"

    def raft_stats(self) -> dict[str, str]:
        return {"leader": "true", "raft_term": "4"}


def _facade(server: bool) -> tuple[AgentFacade, FakePool, FakePool | None, list[str]]:
    lan = FakePool([_lan("s1", "id1", MemberStatus.ALIVE), _lan("c1", "id7", MemberStatus.ALIVE, "node")], {"c1"})
    wan = FakePool([_wan("s1.bj", "bj"), _wan("s1.sh", "sh")], {"s1.sh"}) if server else None
    left: list[str] = []

    async def leave() -> None:
        left.append("left")

    f = AgentFacade(AgentConfig(server=server, datacenter="bj"), "id1", lan, wan,
                    FakeServerView() if server else None, FakeBackend(), leave)
    return f, lan, wan, left


async def _self_info(f: AgentFacade) -> dict[str, Any]:
    return f.self_info()  # runs on the loop (it counts the loop's tasks)


def test_facade_on_a_client() -> None:
    f, lan, _, left = _facade(server=False)
    assert f.members(wan=True) == [] and len(f.members(wan=False)) == 2
    assert asyncio.run(f.list_datacenters()) == ["bj", "sh"], "a client asks a server"
    info = asyncio.run(_self_info(f))
    assert info["Stats"]["consul"] == {"server": "false", "known_servers": "1"}
    assert info["Coord"] == new_coordinate().to_json()  # the agent's LAN coordinate, as Consul's "Coord"
    assert asyncio.run(f.join("10.0.0.1", wan=False)) == (1, []) and lan.joined == [(["10.0.0.1"], 8301)]
    with pytest.raises(e.BadRequest, match=r"^Must be a server to join WAN cluster$"):  # Consul: a 500
        asyncio.run(f.join("10.0.0.1", wan=True))
    asyncio.run(f.leave())
    assert left == ["left"]
    assert [r["WAN"] for r in asyncio.run(f.keyring("list-keys", None))] == [False]


def test_facade_on_a_server() -> None:
    f, lan, wan, _ = _facade(server=True)
    assert wan is not None
    assert asyncio.run(f.list_datacenters()) == ["bj", "sh"] == f.datacenters()
    consul = asyncio.run(_self_info(f))["Stats"]["consul"]
    assert consul["server"] == "true" and consul["leader"] == "true" and consul["raft_term"] == "4"
    assert consul["leader_addr"] == "127.0.0.1:8300"
    assert f.force_leave("s1.sh", prune=True, wan=True) is True
    assert lan.forced == [("s1.sh", True)] and wan.forced == [("s1.sh", True)], "every pool is asked"
    assert [r["WAN"] for r in asyncio.run(f.keyring("list-keys", None))] == [True, False]


def test_force_leave_reports_whether_any_pool_knew_the_node() -> None:
    a, b = FakePool([], {"x"}), FakePool([], set())
    assert force_leave((a, None, b), "x", False) is True
    assert force_leave((b,), "x", False) is False


# ---------------------------------------------------------------- member snapshots (rejoin)


def test_member_snapshots_write_and_rejoin(tmp_path: Path) -> None:
    (tmp_path / "serf").mkdir()
    me, peer = _lan("me", "id1", MemberStatus.ALIVE), _lan("s2", "id2", MemberStatus.ALIVE)
    gone = _lan("s3", "id3", MemberStatus.FAILED)

    class SnapPool(FakePool):
        name = "me"

    pool = SnapPool([me, peer, gone])
    snaps = MemberSnapshots(tmp_path)
    pools = (("local", cast(Pool, pool), 8301), ("remote", None, 8302))
    snaps.write(pools, left=False)
    assert json.loads((tmp_path / "serf" / "local.snapshot.json").read_text()) == {
        "alive": ["127.0.0.2:8301"], "left": False}
    asyncio.run(snaps.rejoin(pools))
    assert pool.joined == [(["127.0.0.2:8301"], 8301)]
    snaps.write(pools, left=True)
    asyncio.run(snaps.rejoin(pools))
    assert len(pool.joined) == 1, "a node that left does not rejoin"


# ---------------------------------------------------------------- process: an agent that stops itself exits 1


class _FakeAgent:
    def __init__(self, fail: bool) -> None:
        self.stopped = asyncio.Event()
        self.fatal = ""
        self.fail = fail
        self.shut = False

    async def start(self) -> None:
        if self.fail:
            from pyconsul.agent.agent import Agent

            a = Agent(AgentConfig())
            a._raft_failed(OSError(5, "Input/output error"))  # what the composition root wires to raft.on_failed
            assert a.stopped.is_set()
            self.fatal = a.fatal
        self.stopped.set()

    async def leave(self) -> None:
        pass

    async def shutdown(self) -> None:
        self.shut = True

    def spawn(self, coro: Any, name: str, *, critical: bool = False) -> None:
        coro.close()


@pytest.mark.parametrize(("fail", "code"), [(False, 0), (True, 1)])
def test_exit_code(fail: bool, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    from pyconsul.agent.process import run_until_stopped

    agent = _FakeAgent(fail)
    assert asyncio.run(run_until_stopped(agent, AgentConfig())) == code
    assert agent.shut, "shutdown runs in every case"
    err = capsys.readouterr().err
    assert ("raft failed: OSError" in err) is fail
