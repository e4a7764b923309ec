"""Consul user events (agent/events.py): wire format, validation, filters on receipt, ring, index, size limit."""

from __future__ import annotations

import asyncio
import random

import msgpack
import pytest

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.events import (
    RING_SIZE,
    AgentEvents,
    EventBuffer,
    UserEvent,
    decode,
    encode,
    event_index,
    new_event,
    serf_name,
    should_process,
)
from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.serf import Serf

EID = "6a8fbc0d-3b5c-4d0e-9f22-1a2b3c4d5e6f"


def test_encode_is_consuls_go_msgpack_struct() -> None:
    ev = UserEvent(EID, "deploy", b"v42", "web-.*", "", "", 1)
    raw = encode(ev)
    # raw strings (no bin type), keys in go-msgpack's sorted order, empty filters omitted, no LTime
    assert msgpack.unpackb(raw, raw=True) == {b"ID": EID.encode(), b"n": b"deploy", b"nf": b"web-.*",
                                              b"p": b"v42", b"v": 1}
    assert list(msgpack.unpackb(raw, raw=True)) == [b"ID", b"n", b"nf", b"p", b"v"]
    assert b"\xc4" not in raw[:3] and raw[0] == 0x85  # a 5-entry fixmap
    # no payload: "p" omitted (omitempty)
    assert b"p" not in msgpack.unpackb(encode(UserEvent(EID, "x")), raw=True)


def test_decode_round_trip_and_foreign_shapes() -> None:
    ev = UserEvent(EID, "deploy", b"\x00\xff", "n", "s", "t", 1)
    assert decode(encode(ev), 7) == UserEvent(EID, "deploy", b"\x00\xff", "n", "s", "t", 1, 7)
    # a newer go-msgpack writes []byte as bin and may send nil: both accepted
    bin_form = msgpack.packb({"ID": EID, "n": "x", "p": b"abc", "v": 1}, use_bin_type=True)
    assert decode(bin_form, 1).payload == b"abc"
    assert decode(msgpack.packb({"ID": EID, "n": "x", "p": None, "v": 1}), 1).payload == b""


@pytest.mark.parametrize("raw", [
    b"\xc1", b"\x93\x01\x02\x03", msgpack.packb({"n": 5}), msgpack.packb({"n": "x", "p": 5}),
    msgpack.packb({"n": "x", "v": -1}), msgpack.packb({"n": "x", "v": "1"}), b"\x80" + b"\x00" * 10000,
    msgpack.packb([0] * 100000),
])
def test_decode_refuses_garbage(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode(raw, 1)


@pytest.mark.parametrize(("kw", "msg"), [
    ({"name": ""}, "User event missing name"),
    ({"name": "x", "tag_filter": "web"}, "Cannot provide tag filter without service filter"),
    ({"name": "x", "node_filter": "("}, "Invalid node filter"),
    ({"name": "x", "service_filter": "a(?=b)"}, "Invalid service filter"),
    ({"name": "x", "service_filter": "web", "tag_filter": "[z-a]"}, "Invalid tag filter"),
])
def test_new_event_validation(kw: dict[str, str], msg: str) -> None:
    with pytest.raises(BadRequest, match=msg.replace("(", r"\(")):
        new_event(**kw)  # type: ignore[arg-type]


def test_new_event_has_a_uuid_and_version_1() -> None:
    ev = new_event("x", b"p", node_filter="^n1$")
    assert len(ev.id) == 36 and ev.id.count("-") == 4 and ev.version == 1 and ev.ltime == 0


SERVICES = [("web-1", ("v1", "primary")), ("db", ("replica",))]


@pytest.mark.parametrize(("nf", "sf", "tf", "take"), [
    ("", "", "", True),
    ("node-a", "", "", True),
    ("^node-a$", "", "", True),
    ("^node-b$", "", "", False),
    ("", "web", "", True),
    ("", "^cache$", "", False),
    ("", "web", "^prim", True),
    ("", "web", "replica", False),
    ("", ".*", "replica", True),
    ("node", "db", "replica", True),
])
def test_filters_on_receipt(nf: str, sf: str, tf: str, take: bool) -> None:
    ev = UserEvent(EID, "x", b"", nf, sf, tf)
    assert should_process(ev, "node-a", lambda: SERVICES) is take


def test_service_filter_without_local_services_matches_nothing() -> None:
    assert not should_process(UserEvent(EID, "x", b"", "", "web"), "node-a", None)
    assert not should_process(UserEvent(EID, "x", b"", "(", ""), "node-a", None)  # bad regexp from the wire


def test_event_index_is_consuls_uuid_to_uint64() -> None:
    assert event_index("00000000-0000-0001-0000-000000000002") == 3
    assert event_index("ffffffff-ffff-ffff-0000-000000000000") == 2**64 - 1
    assert event_index("not-a-uuid") == 1
    assert EventBuffer.index([]) == 1


def test_agent_events_take_filter_and_ring() -> None:
    fired: list[tuple[str, bytes]] = []
    ae = AgentEvents("node-a", lambda n, p: fired.append((n, p)), lambda: SERVICES)
    ev = new_event("deploy", b"v1")
    ae.fire(ev)
    assert fired == [("consul:event:deploy", encode(ev))]
    got = ae.receive(*fired[0], 9)
    assert got is not None and got.ltime == 9 and ae.buffer.select() == [got]
    assert ae.receive("other-event", encode(ev), 10) is None  # not a Consul user event
    assert ae.receive(serf_name("x"), b"\xc1", 11) is None and ae.malformed == 1
    assert ae.receive(serf_name("x"), encode(UserEvent(EID, "x", b"", "^node-b$")), 12) is None
    assert ae.filtered == 1
    assert ae.receive(serf_name("_rexec"), encode(UserEvent(EID, "_rexec")), 13) is None  # no remote exec
    for i in range(RING_SIZE + 10):
        ae.receive(serf_name("n"), encode(UserEvent(f"{i:08x}-0000-0000-0000-000000000000", "n")), 100 + i)
    events = ae.buffer.select()
    assert len(events) == RING_SIZE and events[-1].ltime == 100 + RING_SIZE + 9
    assert [e.name for e in ae.buffer.select("deploy")] == []  # pushed out of the ring
    assert EventBuffer.index(events) == event_index(events[-1].id)


def test_buffer_wait_wakes_on_add() -> None:
    async def run() -> float:
        buf = EventBuffer()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, buf.add, UserEvent(EID, "x"))
        t0 = loop.time()
        await buf.wait(5.0)
        return loop.time() - t0

    assert asyncio.run(run()) < 4.0


def _serf() -> Serf:
    return Serf(GossipConfig.lan(), "n1", "127.0.0.1", 8301, {}, random.Random(1), 0.0)


def test_serf_size_limit_matches_consuls_event_budget() -> None:
    s = _serf()
    small = encode(UserEvent(EID, "deploy", b"x" * 100))
    assert s.user_event_error(serf_name("deploy"), small) == ""
    big = encode(UserEvent(EID, "deploy", b"x" * 440))
    assert "configured limit of 512 bytes" in s.user_event_error(serf_name("deploy"), big)
    with pytest.raises(ValueError, match="512"):
        s.user_event(serf_name("deploy"), big)


def test_readme_limits_match_the_code() -> None:
    from pathlib import Path

    from pyconsul.agent import netcoords
    from pyconsul.agent.gossip import coordinate
    from pyconsul.agent.gossip.serf import SerfConfig
    from pyconsul.agent.http import coordinate as coordinate_http
    from pyconsul.agent.http import event as event_http
    from pyconsul.agent.state import coordinates

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("|")}
    assert rows["`PUT /v1/event/fire/<name>` body (payload) / the encoded serf event"].startswith(
        f"{event_http.MAX_EVENT_BODY} B / {SerfConfig().user_event_size_limit} B")
    assert rows["Events kept per agent for `/v1/event/list`"] == str(RING_SIZE)
    assert rows["`PUT /v1/coordinate/update` body / node and segment names"] == (
        f"{coordinate_http.MAX_UPDATE_BODY // 1024} KiB / {netcoords.MAX_NAME} characters")
    assert rows["Coordinate updates in one Raft entry (the leader writes up to 128)"] == str(
        coordinates.MAX_COORDINATE_BATCH) and netcoords.BATCH_SIZE == 128
    assert rows["Coordinate updates of distinct nodes waiting at the leader (per 5 s batch period)"] == str(
        netcoords.BATCH_SIZE * netcoords.MAX_BATCHES) and netcoords.BATCH_PERIOD == 5.0
    assert rows["Gossip ack payload (a coordinate) decoded"] == f"{coordinate.MAX_PAYLOAD // 1024} KiB"
