"""The pure parts of the nemeses: partition grudges (table-driven), the NFQUEUE codec, the fault log."""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

import pytest

from pyconsul.chaos.inventory import plan
from pyconsul.chaos.nemesis import grudge as g
from pyconsul.chaos.nemesis import nfqueue, remote
from pyconsul.chaos.nemesis.core import Nemesis
from pyconsul.chaos.nemesis.faults import FaultLog

FIVE = ["a", "b", "c", "d", "e"]
F = frozenset


@pytest.mark.parametrize(("shape", "hosts", "expected"), [
    ("halves", FIVE, {"a": F("cde"), "b": F("cde"), "c": F("ab"), "d": F("ab"), "e": F("ab")}),
    ("halves", ["e", "d", "c", "b", "a"], {"a": F("cde"), "b": F("cde"), "c": F("ab"), "d": F("ab"), "e": F("ab")}),
    ("halves", ["a", "b", "c", "d"], {"a": F("cd"), "b": F("cd"), "c": F("ab"), "d": F("ab")}),
    ("halves", ["a", "b"], {"a": F("b"), "b": F("a")}),
    ("bridge", FIVE, {"a": F("de"), "b": F("de"), "d": F("ab"), "e": F("ab")}),
    ("bridge", ["a", "b", "c"], {"a": F("c"), "c": F("a")}),
    ("bridge", ["a", "b", "c", "d"], {"a": F("d"), "b": F("d"), "d": F("ab")}),
])
def test_fixed_shapes(shape: str, hosts: list[str], expected: dict[str, frozenset[str]]) -> None:
    assert g.build(shape, hosts, random.Random(0)) == g.normalize(expected)


@pytest.mark.parametrize(("target", "expected"), [
    ("c", {"c": F("abde"), "a": F("c"), "b": F("c"), "d": F("c"), "e": F("c")}),
    ("a", {"a": F("bcde"), "b": F("a"), "c": F("a"), "d": F("a"), "e": F("a")}),
])
def test_isolate_and_isolate_leader(target: str, expected: dict[str, frozenset[str]]) -> None:
    assert g.build("isolate", FIVE, random.Random(0), target=target) == expected
    assert g.build("isolate-leader", FIVE, random.Random(0), leader=target) == expected


@pytest.mark.parametrize(("groups", "expected"), [
    ({"bj": ["a", "b", "c"], "sh": ["d", "e"]},
     {"a": F("de"), "b": F("de"), "c": F("de"), "d": F("abc"), "e": F("abc")}),
    ({"x": ["a"], "y": ["b"], "z": ["c"]}, {"a": F("bc"), "b": F("ac"), "c": F("ab")}),
    ({"bj": ["a", "b"], "sh": ["c"], "empty": []}, {"a": F("c"), "b": F("c"), "c": F("ab")}),
])
def test_split_dc(groups: dict[str, list[str]], expected: dict[str, frozenset[str]]) -> None:
    hosts = [h for hs in groups.values() for h in hs]
    assert g.build("split-dc", hosts, random.Random(0), groups=groups) == expected


@pytest.mark.parametrize("n", range(3, 10))
@pytest.mark.parametrize("seed", range(8))
def test_majorities_ring_every_host_sees_a_distinct_majority(n: int, seed: int) -> None:
    hosts = [f"n{i}" for i in range(n)]
    grudge = g.majorities_ring(hosts, random.Random(seed))
    views = {h: frozenset(hosts) - grudge.get(h, F()) for h in hosts}
    for h, view in views.items():
        assert h in view
        assert len(view) >= g.majority(n), (h, view)
    assert len(set(views.values())) == n, "two hosts see the same majority"
    if n >= 4:
        assert grudge, "a ring of 4+ hosts cuts something"


def test_majorities_ring_of_five_is_a_symmetric_ring() -> None:
    grudge = g.majorities_ring(FIVE, random.Random(3))
    assert all(len(d) == 2 for d in grudge.values()) and len(grudge) == 5
    assert all(g.connects(grudge, a, b) == g.connects(grudge, b, a) for a in FIVE for b in FIVE)
    assert {(s, d) for (s, d) in g.cut_pairs(grudge)} == {(d, s) for (s, d) in g.cut_pairs(grudge)}


def test_majorities_ring_of_three_is_asymmetric_like_jepsens() -> None:
    grudge = g.majorities_ring(["a", "b", "c"], random.Random(0))
    assert len(grudge) == 3 and all(len(d) == 1 for d in grudge.values())
    assert all(not g.delivers(grudge, s, d) and g.delivers(grudge, d, s) for s, d in g.cut_pairs(grudge))


def test_random_halves_is_seeded_and_complete() -> None:
    a = g.random_halves(FIVE, random.Random(42))
    assert a == g.random_halves(FIVE, random.Random(42))
    comps = g.components(a, FIVE)
    assert sorted(len(c) for c in comps) == [2, 3]
    for c in comps:
        for h in c:
            assert a[h] == F(FIVE) - F(c)
    seen = {tuple(map(tuple, g.components(g.random_halves(FIVE, random.Random(s)), FIVE))) for s in range(20)}
    assert len(seen) > 1, "different seeds should give different halves"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: g.build("zigzag", FIVE, random.Random(0)), "unknown partition shape"),
    (lambda: g.build("halves", ["a"], random.Random(0)), "at least 2"),
    (lambda: g.build("bridge", ["a", "b"], random.Random(0)), "at least 3"),
    (lambda: g.build("majorities-ring", ["a", "b"], random.Random(0)), "at least 3"),
    (lambda: g.build("isolate", FIVE, random.Random(0), target="z"), "not one of"),
    (lambda: g.build("isolate-leader", FIVE, random.Random(0)), "no leader"),
    (lambda: g.build("split-dc", FIVE, random.Random(0), groups={"bj": FIVE}), "at least 2"),
    (lambda: g.split_groups({"x": ["a", "b"], "y": ["b", "c"]}), "overlap"),
    (lambda: g.halves(["a", "a", "b"]), "duplicate"),
])
def test_bad_shapes_are_refused(call: object, message: str) -> None:
    with pytest.raises(g.GrudgeError, match=message):
        call()  # type: ignore[operator]


GRUDGE = {"a": F("b"), "c": F("a")}


@pytest.mark.parametrize(("src", "dst", "delivers", "connects"), [
    ("b", "a", False, False),  # a drops b
    ("a", "b", True, False),  # b hears a, but a drops b's answers
    ("a", "c", False, False),
    ("c", "a", True, False),
    ("b", "c", True, True),
    ("c", "b", True, True),
])
def test_delivers_and_connects(src: str, dst: str, delivers: bool, connects: bool) -> None:
    assert g.delivers(GRUDGE, src, dst) is delivers
    assert g.connects(GRUDGE, src, dst) is connects


def test_cut_pairs_components_and_normalize() -> None:
    assert g.cut_pairs(GRUDGE) == {("b", "a"), ("a", "c")}
    assert g.components(GRUDGE, ["a", "b", "c"]) == [["a"], ["b", "c"]]
    assert g.components({}, ["b", "a"]) == [["a", "b"]]
    assert g.normalize({"a": ["a"], "b": [], "c": ["d", "c"]}) == {"c": F("d")}
    assert g.complete([["a"], ["b", "c"]]) == {"a": F("bc"), "b": F("a"), "c": F("a")}
    assert g.complete([["a", "b"]]) == {}


# --- NFQUEUE codec (chaos.nemesis.nfqueue): the wire layout of linux/netfilter/nfnetlink_queue.h ---------

def test_bind_messages_layout() -> None:
    cmd, params, limits = nfqueue.bind_messages(7707)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", cmd)
    assert (length, kind, flags, seq, pid) == (len(cmd), (3 << 8) | 2, 0x5, 1, 0)
    assert struct.unpack_from("!BBH", cmd, 16) == (socket.AF_UNSPEC, 0, 7707)
    assert cmd[20:] == struct.pack("=HH", 8, 1) + struct.pack("!BxH", 1, socket.AF_INET)
    # params: a 5-byte payload (copy_range, copy_mode), padded to 12
    assert params[20:] == struct.pack("=HH", 9, 2) + struct.pack("!IB", 64, 2) + b"\0\0\0"
    assert len(limits) == 20 + 3 * 8 and all(len(m) % 4 == 0 for m in (cmd, params, limits))


def test_verdict_message_layout() -> None:
    msg = nfqueue.verdict_message(3, 0xDEADBEEF, nfqueue.NF_ACCEPT)
    assert struct.unpack_from("=IH", msg) == (len(msg), (3 << 8) | 1)
    assert msg[20:] == struct.pack("=HH", 12, 2) + struct.pack("!II", 1, 0xDEADBEEF)


def _packet(packet_id: int) -> bytes:
    attrs = nfqueue.nlattr(5, b"\0" * 6) + nfqueue.nlattr(0x8000 | 1, struct.pack("!IHB", packet_id, 0x0800, 1))
    return nfqueue.message(nfqueue.NFQNL_MSG_PACKET, 0, attrs)


def test_parse_packets_and_acks() -> None:
    ack = struct.pack("=IHHII", 36, nfqueue.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", 0) + b"\0" * 16
    err = struct.pack("=IHHII", 36, nfqueue.NLMSG_ERROR, 0, 2, 0) + struct.pack("=i", -16) + b"\0" * 16
    buf = _packet(7) + ack + _packet(8) + err
    assert list(nfqueue.parse(buf)) == [("packet", 7), ("error", 0), ("packet", 8), ("error", 16)]
    assert list(nfqueue.parse(buf[:10])) == []  # a truncated datagram yields nothing


@pytest.mark.parametrize(("delay", "jitter", "low", "high"), [(100, 0, 0.1, 0.1), (100, 20, 0.08, 0.12),
                                                               (5, 50, 0.0, 0.055), (0, 0, 0.0, 0.0)])
def test_hold_seconds_bounds(delay: float, jitter: float, low: float, high: float) -> None:
    rng = random.Random(1)
    holds = [nfqueue.hold_seconds(rng, delay, jitter) for _ in range(500)]
    assert low - 1e-9 <= min(holds) and max(holds) <= high + 1e-9


@pytest.mark.parametrize(("argv", "is_agent"), [
    (["/opt/pyconsul/venv/bin/python3", "/opt/pyconsul/venv/bin/pyconsul", "agent", "-config-dir", "/x"], True),
    (["/usr/bin/python3", "-m", "pyconsul.agent", "agent", "-dev"], True),
    (["pyconsul", "members"], False),
    (["/usr/bin/python3", "-m", "pyconsul.agent", "members"], False),
    (["sshd: root@notty"], False),
    ([], False),
])
def test_remote_recognises_agent_command_lines(argv: list[str], is_agent: bool) -> None:
    assert remote.is_agent(argv) is is_agent


@pytest.mark.parametrize(("running", "argv", "same"), [
    (["/usr/bin/python3", "-m", "pyconsul.agent", "agent"],
     ["/usr/bin/python3", "-m", "pyconsul.agent", "agent"], True),
    (["/usr/bin/python3", "/opt/v/bin/pyconsul", "agent"], ["/opt/v/bin/pyconsul", "agent"], True),  # shebang
    (["/usr/bin/python3", "/opt/v/bin/other", "agent"], ["/opt/v/bin/pyconsul", "agent"], False),
    (["/opt/v/bin/pyconsul", "members"], ["/opt/v/bin/pyconsul", "agent"], False),
])
def test_remote_knows_the_agent_it_started(running: list[str], argv: list[str], same: bool) -> None:
    assert remote.same_command(running, argv) is same


# --- fault log ------------------------------------------------------------------------------------------

def test_fault_log_records_forgets_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    log = FaultLog(path)
    assert log.entries() == {}
    log.record("partition", {"hosts": ["a", "b"]})
    log.record("kill:a", {"host": "a", "command": None})
    assert FaultLog(path).entries() == {"partition": {"hosts": ["a", "b"]}, "kill:a": {"host": "a", "command": None}}
    log.forget("partition", "missing")
    assert list(FaultLog(path).entries()) == ["kill:a"]
    log.forget("kill:a")
    assert not path.exists(), "an empty log is removed"
    path.write_text("not json")
    assert FaultLog(path).entries() == {}


# --- nemesis ops refused before anything is touched --------------------------------------------------------

HOSTVARS = {"a": {"ansible_host": "10.77.7.1", "pyconsul_datacenter": "BJ"},
            "b": {"ansible_host": "10.77.7.2", "pyconsul_datacenter": "bj"},
            "c": {"ansible_host": "10.77.7.3", "pyconsul_datacenter": "sh", "pyconsul_server": "no"}}
INVENTORY = {"_meta": {"hostvars": HOSTVARS},
             "all": {"children": ["ungrouped", "dcs"]}, "dcs": {"children": ["bj"], "hosts": ["c"]},
             "bj": {"hosts": ["a", "b"]}}


def test_inventory_plan_reads_role_variables() -> None:
    inv = plan(INVENTORY)
    assert inv.names == ["a", "b", "c"]
    assert inv.datacenters() == {"bj": ["a", "b"], "sh": ["c"]}
    assert inv.servers() == ["a", "b"] and inv.host("c").http == "10.77.7.3:8500"
    assert inv.groups["dcs"] == ("a", "b", "c") and inv.host("a").groups == ("bj", "dcs")


@pytest.mark.parametrize(("op", "error"), [
    ({"f": "bump-clock", "value": 100}, "clock faults are not supported"),
    ({"f": "teleport"}, "unknown nemesis operation"),
    ({"f": "start-partition", "value": "zigzag"}, "unknown partition shape"),
    ({"f": "start-partition", "value": {"shape": "isolate", "host": "z"}}, "not one of"),
    ({"f": "start-latency", "value": {"delay_ms": 10, "loss": 2}}, "0 <= loss <= 1"),
    ({"f": "kill", "value": "nosuchhost"}, "not in inventory"),
])
def test_bad_nemesis_ops_end_info_with_an_error(tmp_path: Path, op: dict[str, object], error: str) -> None:
    nemesis = Nemesis(plan(INVENTORY), faults=FaultLog(tmp_path / "f.json"))
    result = nemesis.invoke(op)
    assert result["type"] == "info" and error in result["error"]
    assert nemesis.faults.entries() == {}
