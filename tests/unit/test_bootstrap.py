"""When servers bootstrap Raft from the LAN gossip view."""

from __future__ import annotations

import pytest

from pyconsul.agent.gossip.serf import Member, MemberStatus
from pyconsul.agent.server.bootstrap import decide


def srv(name: str, dc: str = "bj", expect: str | None = "3", status: MemberStatus = MemberStatus.ALIVE,
        role: str = "consul", boot: bool = False) -> Member:
    tags = {"role": role, "dc": dc, "id": f"id-{name}", "port": "8300"}
    if expect is not None:
        tags["expect"] = expect
    if boot:
        tags["bootstrap"] = "1"
    return Member(name, f"10.0.0.{name[-1]}", 8301, tags, status)


@pytest.mark.parametrize(
    ("members", "ready", "why"),
    [
        ([srv("n1"), srv("n2")], False, "need 3 servers, see 2"),
        ([srv("n1"), srv("n2"), srv("n3")], True, ""),
        ([srv("n1"), srv("n2"), srv("n3", status=MemberStatus.FAILED)], False, "see 2"),
        ([srv("n1"), srv("n2"), srv("n3", dc="sh")], False, "see 2"),
        ([srv("n1"), srv("n2"), srv("n3", role="node")], False, "see 2"),
        ([srv("n1"), srv("n2"), srv("n3", expect="5")], False, "conflicting expect"),
        ([srv("n1"), srv("n2"), srv("n3"), srv("n4")], True, ""),
    ],
)
def test_bootstrap_expect(members: list[Member], ready: bool, why: str) -> None:
    d = decide(members, "bj", 3, False, "id-n1")
    assert (d.configuration is not None) == ready
    assert why in d.reason


def test_every_server_computes_the_same_configuration() -> None:
    members = [srv("n3"), srv("n1"), srv("n2")]
    a = decide(members, "bj", 3, False, "id-n1").configuration
    b = decide(list(reversed(members)), "bj", 3, False, "id-n3").configuration
    assert a == b and a is not None
    assert [s.id for s in a.servers] == ["id-n1", "id-n2", "id-n3"]
    assert a.servers[0].address == "10.0.0.1:8300"


def test_bootstrap_mode_single_server_and_conflict() -> None:
    d = decide([srv("n1", expect=None, boot=True)], "bj", 0, True, "id-n1")
    assert d.configuration is not None and [s.id for s in d.configuration.servers] == ["id-n1"]
    d2 = decide([srv("n1", expect=None, boot=True), srv("n2", expect=None, boot=True)], "bj", 0, True, "id-n1")
    assert d2.configuration is None and "two servers in bootstrap mode" in d2.reason


def test_no_expect_waits_for_join() -> None:
    assert decide([srv("n1", expect=None)], "bj", 0, False, "id-n1").configuration is None
