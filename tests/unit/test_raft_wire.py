"""Server RPC frames: every Raft message round-trips; garbage raises WireError only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyconsul.agent.raft import wire
from pyconsul.agent.raft.messages import (
    AppendRequest,
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    Message,
    Server,
    Snapshot,
    SnapshotMeta,
    SnapshotRequest,
    SnapshotResponse,
    Suffrage,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from pyconsul.agent.raft.wire import WireError

CONF = Configuration((Server("a", "10.0.0.1:8300"), Server("b", "10.0.0.2:8300", Suffrage.NONVOTER)))
MESSAGES: list[Message] = [
    VoteRequest(3, "a", "b", 10, 2, True, False),
    VoteResponse(3, "b", "a", True, True),
    AppendRequest(4, "a", "b", 9, 3, (Entry(4, 10, EntryKind.NORMAL, b"x"), Entry(4, 11, EntryKind.CONFIG, b"")), 8, 7),
    AppendRequest(4, "a", "b", 9, 3, (), 8, 0),
    AppendResponse(4, "b", "a", False, 5, 7),
    SnapshotRequest(5, "a", "c", Snapshot(SnapshotMeta(100, 4, CONF), b"\x00state")),
    SnapshotResponse(5, "c", "a", True, 100),
    TimeoutNow(6, "a", "b"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    framed = wire.frame(wire.encode_message(msg))
    (n,) = wire.HEADER.unpack(framed[:4])
    assert n == len(framed) - 4
    assert wire.decode_message(wire.unframe(framed[4:])) == msg


@pytest.mark.parametrize(
    "obj",
    [[99], [wire.Kind.VOTE_REQUEST, 1], [wire.Kind.VOTE_REQUEST, "x", "a", "b", 1, 1, True, False],
     [wire.Kind.APPEND_REQUEST, 1, "a", "b", 0, 0, [[1, 2]], 0, 0],
     [wire.Kind.SNAPSHOT_REQUEST, 1, "a", "b", 0, 0, [["a", "x", 7]], b""]],
)
def test_malformed_frames(obj: list[object]) -> None:
    with pytest.raises(WireError):
        wire.decode_message(obj)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_unframe(buf: bytes) -> None:
    try:
        wire.decode_message(wire.unframe(buf))
    except WireError:
        pass


def _with(msg: Message, field: int, value: int) -> list[object]:
    raw = wire.encode_message(msg)
    raw[field] = value
    return raw


@pytest.mark.parametrize("value", [2**64 - 1, wire.MAX_INT + 1, -1])
@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_terms_out_of_range_are_malformed(msg: Message, value: int) -> None:
    """A forged term of 2**64-1 was persisted and left no next term: such frames are refused on decode."""
    with pytest.raises(WireError, match="out of range"):
        wire.decode_message(wire.unframe(wire.frame(_with(msg, 1, value))[4:]))


@pytest.mark.parametrize("value", [2**64 - 1, -5])
def test_entry_indexes_out_of_range_are_malformed(value: int) -> None:
    raw = wire.encode_message(MESSAGES[2])
    raw[6] = [[4, value, 0, b"x"]]
    with pytest.raises(WireError, match="bad entry"):
        wire.decode_message(raw)


def test_the_largest_term_allowed_still_decodes() -> None:
    raw = _with(MESSAGES[0], 1, wire.MAX_INT)
    assert wire.decode_message(raw).term == wire.MAX_INT


# ---------------------------------------------------------------- frame size limits by kind (issue 11 item 4)

def _body(obj: list[object]) -> bytes:
    return wire.frame(obj)[4:]


@pytest.mark.parametrize("msg", [m for m in MESSAGES if not isinstance(m, AppendRequest | SnapshotRequest)],
                         ids=lambda m: type(m).__name__)
def test_small_kinds_get_the_small_cap(msg: Message) -> None:
    body = _body(wire.encode_message(msg))
    assert wire.inbound_limit(body[:wire.PEEK], True) == wire.MAX_SMALL_FRAME
    assert len(body) < wire.MAX_SMALL_FRAME


def test_limits_by_kind_and_method() -> None:
    hello = _body([wire.Kind.HELLO, "a" * 36, "dc1"])
    assert wire.inbound_limit(hello[:wire.PEEK], False) == wire.MAX_SMALL_FRAME
    append = _body(wire.encode_message(MESSAGES[2]))
    assert wire.inbound_limit(append[:wire.PEEK], True) == wire.MAX_FRAME
    assert wire.inbound_limit(append[:wire.PEEK], False) == wire.MAX_SMALL_FRAME, "before HELLO: small"
    snap = _body(wire.encode_message(MESSAGES[5]))
    assert wire.inbound_limit(snap[:wire.PEEK], True) == wire.MAX_SNAPSHOT_FRAME
    read = _body([wire.Kind.REQUEST, 2**40, "read_forward", {"name": "kv.get", "args": {"key": "k" * 500}}])
    assert wire.peek(read[:wire.PEEK]) == (wire.Kind.REQUEST, "read_forward")
    assert wire.inbound_limit(read[:wire.PEEK], True) == wire.MAX_REQUEST_FRAME == 2 * 1024 * 1024
    write = _body([wire.Kind.REQUEST, 7, "apply_forward", b"x" * 1000])
    assert wire.inbound_limit(write[:wire.PEEK], True) == wire.MAX_WRITE_REQUEST_FRAME
    # a server never receives RESPONSE frames on its port; unknown kinds and non-arrays: small
    for obj in ([wire.Kind.RESPONSE, 1, True, b"x" * 100], [99, b"x" * 100], [True, 1]):
        assert wire.inbound_limit(_body(obj)[:wire.PEEK], True) == wire.MAX_SMALL_FRAME
    assert wire.inbound_limit(b"\xc1", True) == wire.MAX_SMALL_FRAME
    assert wire.inbound_limit(b"", True) == wire.MAX_SMALL_FRAME
    assert wire.response_limit(_body([wire.Kind.RESPONSE, 1, True, None])) == wire.MAX_FRAME
    assert wire.response_limit(_body([wire.Kind.HELLO, "a", "b"])) == wire.MAX_SMALL_FRAME


def test_request_and_hello_decoding() -> None:
    assert wire.decode_request([wire.Kind.REQUEST, 5, "read", {"a": 1}]) == (5, "read", {"a": 1})
    assert wire.decode_hello([wire.Kind.HELLO, "id", "dc1"]) == ("id", "dc1")
    for bad in ([wire.Kind.REQUEST, -1, "read", None], [wire.Kind.REQUEST, 2**64, "read", None],
                [wire.Kind.REQUEST, 1, b"read", None], [wire.Kind.REQUEST, 1, "m" * 65, None],
                [wire.Kind.REQUEST, 1, "read"], [wire.Kind.HELLO, 1, "read", None]):
        with pytest.raises(WireError):
            wire.decode_request(bad)
    for bad in ([wire.Kind.HELLO], [wire.Kind.HELLO, 1, "dc"], [wire.Kind.VOTE_REQUEST, "a", "b"]):
        with pytest.raises(WireError):
            wire.decode_hello(bad)


# ---------------------------------------------------------------- bounded fuzz of the server RPC decoder

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
            | st.floats(allow_nan=True) | st.text(max_size=20) | st.binary(max_size=20))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=6)
                       | st.dictionaries(_scalars.filter(lambda v: not isinstance(v, float)), inner, max_size=4),
                       max_leaves=25)
# frames that look like ours: a known kind first, then anything
_frames = st.tuples(st.sampled_from([int(k) for k in wire.Kind] + [0, 11, 2**64 - 1]),
                    st.lists(_values, max_size=9)).map(lambda t: [t[0], *t[1]])


def _server_side(body: bytes) -> None:
    """What a server does with a frame body on its RPC port (transport._accept), minus the socket."""
    wire.inbound_limit(body[:wire.PEEK], True)
    wire.inbound_limit(body[:wire.PEEK], False)
    wire.response_limit(body[:wire.PEEK])
    obj = wire.unframe(body)
    if obj[0] == wire.Kind.HELLO:
        wire.decode_hello(obj)
    elif obj[0] == wire.Kind.REQUEST:
        wire.decode_request(obj)
    else:
        wire.decode_message(obj)


@settings(max_examples=600, deadline=None)
@given(_frames)
def test_fuzz_structured_frames_raise_only_wire_errors(obj: list[object]) -> None:
    try:
        body = _body(obj)
    except (TypeError, ValueError, OverflowError):
        return  # not encodable by us (hypothesis made something msgpack refuses): nothing to send
    try:
        _server_side(body)
    except WireError:
        pass


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=40))
def test_fuzz_raw_bytes_raise_only_wire_errors(head: bytes, tail: bytes) -> None:
    request = _body([wire.Kind.REQUEST, 1, "read"])[:-1]
    for body in (head, b"\x9f" + head, b"\xdc\x00\x09" + head + tail, request + tail):
        try:
            _server_side(body)
        except WireError:
            pass
