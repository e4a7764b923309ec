"""Gossip codec: round trips, go-msgpack conventions, framing, and fuzzing of the decoder."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyconsul.agent.gossip import codec, lzw
from pyconsul.agent.gossip.codec import DecodeError, NeedMore
from pyconsul.agent.gossip.messages import (
    Ack,
    Alive,
    Dead,
    IndirectPing,
    MsgType,
    Nack,
    NodeState,
    Ping,
    PushNodeState,
    PushPull,
    SerfJoin,
    SerfLeave,
    SerfPushPull,
    SerfQuery,
    SerfQueryResponse,
    SerfUserEvent,
    Suspect,
    User,
)

IP = bytes([127, 0, 0, 1])

MESSAGES = [
    Ping(7, "node1", IP, 8301, "node2"),
    Ping(1, ""),
    IndirectPing(9, IP, 8301, "node3", True, IP, 8302, "node1"),
    Ack(5, b""),
    Ack(5, b"\x01payload"),
    Nack(11),
    Suspect(3, "node1", "node2"),
    Alive(4, "node1", IP, 8301, b"\xffmeta", (1, 5, 2, 2, 5, 4)),
    Dead(6, "node1", "node1"),
    User(b"\x01serf"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: codec.Message) -> None:
    assert codec.decode_packet(codec.encode(msg)) == [msg]


def test_go_msgpack_conventions() -> None:
    raw = codec.encode(Alive(1, "n", IP, 8301, b"", (1, 5, 2, 2, 5, 4)))
    assert raw[0] == MsgType.ALIVE
    body = msgpack.unpackb(raw[1:], raw=True)
    # strings and []byte are raw (str family); Vsn is a 6-byte raw string; empty Meta is nil
    assert body[b"Node"] == b"n"
    assert body[b"Addr"] == IP
    assert body[b"Vsn"] == bytes([1, 5, 2, 2, 5, 4])
    assert body[b"Meta"] is None
    assert raw[1:].find(b"\xc4") == -1  # no bin8 type anywhere


def test_decodes_go_style_16_byte_ipv4_and_field_list_vsn() -> None:
    mapped = b"\x00" * 10 + b"\xff\xff" + IP
    body = msgpack.packb(
        {"Incarnation": 2, "Node": "go", "Addr": mapped, "Port": 7946, "Meta": None, "Vsn": [1, 5, 2, 2, 5, 4]},
        use_bin_type=False,
    )
    (msg,) = codec.decode_packet(bytes([MsgType.ALIVE]) + body)
    assert isinstance(msg, Alive)
    assert codec.ip_from_bytes(msg.addr) == "127.0.0.1"
    assert msg.vsn == (1, 5, 2, 2, 5, 4)


def test_compound_crc_and_compress() -> None:
    parts = [codec.encode(m) for m in MESSAGES[:4]]
    framed = codec.add_crc(codec.make_compound(parts))
    assert codec.decode_packet(framed) == MESSAGES[:4]
    comp = bytes([MsgType.COMPRESS]) + msgpack.packb(
        {"Algo": 0, "Buf": lzw.compress(codec.make_compound(parts))}, use_bin_type=False
    )
    assert codec.decode_packet(comp) == MESSAGES[:4]


def test_truncated_compound_keeps_complete_parts() -> None:
    parts = [codec.encode(m) for m in MESSAGES[:3]]
    framed = codec.make_compound(parts)
    assert codec.decode_packet(framed[:-3]) == MESSAGES[:2]


@pytest.mark.parametrize(
    ("buf", "reason"),
    [
        (b"", "missing message type"),
        (bytes([MsgType.HAS_CRC, 0, 0, 0, 0]) + codec.encode(Nack(1)), "invalid checksum"),
        (bytes([MsgType.COMPOUND]), "missing compound length"),
        (bytes([MsgType.COMPOUND, 3, 0]), "truncated compound"),
        (bytes([99]) + msgpack.packb({}), "unknown message type 99"),
        (bytes([MsgType.PING]) + b"\xc1", "bad msgpack"),
        (bytes([MsgType.PING]) + msgpack.packb([1, 2]), "expected a map"),
        (bytes([MsgType.PING]) + msgpack.packb({"SeqNo": "x"}), "SeqNo"),
        (bytes([MsgType.ALIVE]) + msgpack.packb({"Node": "a", "Addr": b"12"}, use_bin_type=False), "address"),
        (bytes([MsgType.SUSPECT]) + msgpack.packb({"Incarnation": 1}), "empty node name"),
        (bytes([MsgType.COMPRESS]) + msgpack.packb({"Algo": 1, "Buf": b"x"}), "unknown algorithm"),
        (bytes([MsgType.HAS_LABEL, 1, 65]), "labels"),
    ],
)
def test_malformed_packets_raise_decode_error(buf: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        codec.decode_packet(buf)


def test_push_pull_stream_incremental() -> None:
    nodes = (
        PushNodeState("a", IP, 8301, codec.encode_tags({"role": "node"}), 3, NodeState.ALIVE, (1, 5, 2, 2, 5, 4)),
        PushNodeState("b", IP, 8302, b"", 1, NodeState.LEFT, (1, 5, 2, 2, 5, 4)),
    )
    pp = PushPull(True, nodes, b"\x02user-state")
    raw = codec.encode_push_pull(pp)
    for cut in range(len(raw)):
        with pytest.raises(NeedMore):
            codec.parse_stream(raw[:cut])
    used, got = codec.parse_stream(raw + b"trailing")
    assert used == len(raw)
    assert got == pp


def test_stream_limits() -> None:
    header = msgpack.packb({"Nodes": codec.MAX_PUSH_STATE_NODES + 1, "UserStateLen": 0, "Join": False})
    with pytest.raises(DecodeError, match="exceeds limit"):
        codec.parse_stream(bytes([MsgType.PUSH_PULL]) + header)
    with pytest.raises(DecodeError, match="unexpected stream message"):
        codec.parse_stream(bytes([MsgType.SUSPECT]) + b"\x80")


def test_user_stream_message() -> None:
    raw = bytes([MsgType.USER]) + msgpack.packb({"UserMsgLen": 3}) + b"abc"
    assert codec.parse_stream(raw) == (len(raw), User(b"abc"))


def test_tags_round_trip_and_legacy_role() -> None:
    tags = {"role": "consul", "dc": "bj", "port": "8300"}
    meta = codec.encode_tags(tags)
    assert meta[0] == 0xFF
    assert codec.decode_tags(meta) == tags
    assert codec.decode_tags(b"web") == {"role": "web"}
    assert codec.decode_tags(b"") == {}


SERF = [
    SerfJoin(5, "n1"),
    SerfLeave(6, "n1", True),
    SerfUserEvent(2, "deploy", b"v1", True),
    SerfPushPull(9, {"n1": 5, "n2": 3}, ("n2",), 4, (), 2),
    SerfQuery(3, 77, IP, 8301, "n1", (b"\x00\x91\xa2n1",), 1, 0, 5_000_000_000, "_serf_ping", b""),
    SerfQueryResponse(3, 77, "n2", 1, b""),
]


@pytest.mark.parametrize("msg", SERF, ids=lambda m: type(m).__name__)
def test_serf_round_trip(msg: codec.SerfMessage) -> None:
    assert codec.decode_serf(codec.encode_serf(msg)) == msg


def test_serf_unknown_type() -> None:
    with pytest.raises(DecodeError, match="unknown serf message type"):
        codec.decode_serf(bytes([200]) + msgpack.packb({}))


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decode_packet_only_raises_decode_error(buf: bytes) -> None:
    try:
        codec.decode_packet(buf)
    except DecodeError:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(MESSAGES), st.integers(min_value=0, max_value=200), st.binary(min_size=1, max_size=8))
def test_fuzz_mutated_messages(msg: codec.Message, pos: int, junk: bytes) -> None:
    raw = bytearray(codec.encode(msg))
    p = pos % len(raw)
    raw[p : p + len(junk)] = junk
    try:
        codec.decode_packet(bytes(raw))
    except DecodeError:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_stream_and_serf(buf: bytes) -> None:
    for fn in (codec.parse_stream, codec.decode_serf, codec.decode_tags):
        try:
            fn(buf)  # type: ignore[operator]
        except (DecodeError, NeedMore):
            pass


def test_crc_header_layout() -> None:
    msg = codec.encode(Nack(1))
    framed = codec.add_crc(msg)
    assert framed[0] == MsgType.HAS_CRC
    assert struct.unpack(">I", framed[1:5])[0] == __import__("zlib").crc32(msg)
