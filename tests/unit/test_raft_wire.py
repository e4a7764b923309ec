"""Server RPC frames: every Raft message round-trips; garbage raises WireError only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.raft import wire
from agent.raft.messages import (
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
from agent.raft.wire import WireError

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
