"""Gossip decoders are bounded by where the input arrives (issue 11 items 4 and 8).

A UDP packet may inflate to at most codec.UDP_MAX_DECOMPRESSED (64 KiB) in all, a stream message to
codec.STREAM_MAX_DECOMPRESSED; decompression stops at the cap instead of inflating and then checking;
compound parts and nesting are capped; a stream message is parsed incrementally, each byte once. The
bounded fuzz at the end checks that only DecodeError escapes and nothing decoded exceeds the caps.
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyconsul.agent.gossip import codec, lzw
from pyconsul.agent.gossip.codec import DecodeError, NeedMore, Oversized
from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.membership import Membership
from pyconsul.agent.gossip.messages import (
    Ack,
    Alive,
    Message,
    MsgType,
    Nack,
    NodeState,
    Ping,
    PushNodeState,
    PushPull,
    User,
)

IP = bytes([127, 0, 0, 1])
VSN = (1, 5, 2, 2, 5, 4)


def _pack_codes(codes: list[int]) -> bytes:
    """Codes LSB-first with the LZW reader's width schedule (no clear codes)."""
    acc = nbits = 0
    width, hi = 9, 257
    for code in codes:
        acc |= code << nbits
        nbits += width
        hi += 1
        if hi >= 1 << width:
            if width == 12:
                hi -= 1
            else:
                width += 1
    return acc.to_bytes((nbits + 7) // 8, "little")


def lzw_bomb(repeats: int) -> bytes:
    """An LZW stream of a few KB that inflates to ~7.4 MB + 3839 bytes per repeat (a frozen, full table
    whose last entry is 3,839 zeros)."""
    return _pack_codes([0, *range(258, 4096), *([4095] * repeats), 257])


def compress_msg(payload_lzw: bytes) -> bytes:
    body: bytes = msgpack.packb({"Algo": 0, "Buf": payload_lzw}, use_bin_type=False)
    return bytes([MsgType.COMPRESS]) + body


def compressed(inner: bytes) -> bytes:
    return compress_msg(lzw.compress(inner))


def _peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        try:
            fn()
        except DecodeError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- UDP


def test_udp_bomb_stops_at_the_udp_cap_without_inflating() -> None:
    """A 6 KB packet that inflates to ~12 MiB (it used to be inflated in full: the limit was 40 MiB for
    every input) is refused as soon as 64 KiB came out, without holding more than that in memory."""
    bomb = compress_msg(lzw_bomb(1000))
    assert len(bomb) < 8_000
    with pytest.raises(Oversized, match="larger than limit"):
        codec.decode_packet(bomb)
    assert _peak_bytes(lambda: codec.decode_packet(bomb)) < 1 << 20


def test_udp_cap_is_over_the_whole_packet() -> None:
    """Sibling compress messages in one compound share the packet's budget."""
    part = compressed(bytes([MsgType.USER]) + b"u" * 30_000)
    assert codec.decode_packet(codec.make_compound([part, part])) == [User(b"u" * 30_000)] * 2
    with pytest.raises(Oversized):
        codec.decode_packet(codec.make_compound([part, part, part]))


def test_real_sized_compressed_packets_still_decode() -> None:
    """What memberlist sends: CRC -> compress -> compound of broadcasts filling a 1400-byte packet."""
    alive = codec.encode(Alive(3, "node-with-a-long-name", IP, 8301, b"\xff" + b"m" * 400, VSN))
    parts = [codec.encode(Ping(1, "n1", IP, 8301, "n2")), alive, alive, codec.encode(Ack(1, b""))]
    packet = codec.add_crc(compressed(codec.make_compound(parts)))
    assert len(codec.decode_packet(packet)) == 4


def test_compound_parts_are_capped_over_nesting() -> None:
    nack = codec.encode(Nack(1))
    inner = codec.make_compound([nack] * 3)
    assert len(codec.decode_packet(codec.make_compound([inner] * 100))) == 300
    with pytest.raises(Oversized, match="compound parts"):
        codec.decode_packet(codec.make_compound([inner] * 255))  # 255 + 765 parts


def test_compress_inside_compress_and_deep_nesting_are_refused() -> None:
    nack = codec.encode(Nack(1))
    with pytest.raises(Oversized, match="inside a compressed"):
        codec.decode_packet(compressed(compressed(nack)))
    deep = nack
    for _ in range(codec.MAX_NESTING + 1):
        deep = codec.make_compound([deep])
    with pytest.raises(Oversized, match="nested"):
        codec.decode_packet(deep)


def test_membership_counts_oversized_apart_and_keeps_the_reason() -> None:
    m = Membership(GossipConfig.local(), "me", "127.0.0.1", 8301, b"", __import__("random").Random(1), 0.0)
    m.initial_effects()
    assert m.handle_packet(compress_msg(lzw_bomb(100)), ("127.0.0.9", 8301), 0.0) == []
    assert (m.stats.oversized, m.stats.decode_errors) == (1, 0)
    assert "larger than limit" in m.stats.last_oversized


# ---------------------------------------------------------------- streams


def _push_pull(n: int) -> PushPull:
    nodes = tuple(PushNodeState(f"node-{i}", IP, 8301, b"\xffmeta", i, NodeState.ALIVE, VSN) for i in range(n))
    return PushPull(True, nodes, b"\x02" + b"s" * 5000)


def test_stream_bomb_stops_at_the_stream_cap() -> None:
    bomb = compress_msg(lzw_bomb(6000))  # ~30 MiB if inflated in full
    with pytest.raises(Oversized, match="larger than limit"):
        codec.StreamDecoder().feed(bomb)
    with pytest.raises(Oversized):
        codec.parse_stream(bomb, max_decompressed=1 << 20)


def test_stream_byte_cap() -> None:
    raw = codec.encode_push_pull(_push_pull(50))
    dec = codec.StreamDecoder(max_bytes=len(raw) - 1)
    with pytest.raises(Oversized, match="stream message larger than limit"):
        for i in range(0, len(raw), 100):
            dec.feed(raw[i : i + 100])


class _CountingUnpacker(msgpack.Unpacker):  # type: ignore[misc]
    fed = 0
    calls = 0

    def feed(self, data: Any) -> None:
        type(self).fed += len(data)
        super().feed(data)

    def unpack(self) -> Any:
        type(self).calls += 1
        return super().unpack()


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_CountingUnpacker]]:
    _CountingUnpacker.fed = _CountingUnpacker.calls = 0
    monkeypatch.setattr(msgpack, "Unpacker", _CountingUnpacker)  # codec looks it up per decoder
    yield _CountingUnpacker


@pytest.mark.parametrize("kind", ["plain", "compressed", "user"])
def test_trickled_stream_is_parsed_once(kind: str, counting: type[_CountingUnpacker]) -> None:
    """Fed one byte at a time, a stream message is handed to msgpack once (each byte once) and needs at
    most one unpack attempt per byte (each resumes where the last stopped): work linear in the bytes,
    where re-parsing the buffer from the start on every read was quadratic."""
    pp = _push_pull(40)
    if kind == "user":
        raw = bytes([MsgType.USER]) + msgpack.packb({"UserMsgLen": 3000}) + b"x" * 3000
        want: Message | PushPull = User(b"x" * 3000)
    else:
        raw = codec.encode_push_pull(pp)
        want = pp
        if kind == "compressed":
            raw = compressed(raw)
    dec = codec.StreamDecoder()
    results = [dec.feed(raw[i : i + 1]) for i in range(len(raw))]
    assert results[-1] == want
    assert all(r is None for r in results[:-1])
    assert dec.consumed == len(raw)
    inner = len(codec.encode_push_pull(pp)) - 1 if kind == "compressed" else 0
    assert counting.fed == len(raw) - 1 + inner
    assert counting.calls <= len(raw) + len(pp.nodes) + 2


def test_parse_stream_prefixes_and_trailing_bytes() -> None:
    raw = compressed(codec.encode_push_pull(_push_pull(3)))
    for cut in range(len(raw)):
        with pytest.raises(NeedMore):
            codec.parse_stream(raw[:cut])
    assert codec.parse_stream(raw + b"next")[0] == len(raw)
    with pytest.raises(DecodeError, match="unexpected stream message type"):
        codec.parse_stream(compressed(compressed(codec.encode_push_pull(_push_pull(1)))))


# ---------------------------------------------------------------- bounded fuzz (CI)


def _decoded_bytes(msgs: Sequence[object]) -> int:
    """Bytes carried by decoded messages (their byte and string fields)."""
    total = 0
    for m in msgs:
        assert dataclasses.is_dataclass(m) and not isinstance(m, type)
        for f in dataclasses.fields(m):
            v = getattr(m, f.name)
            if isinstance(v, (bytes, str)):
                total += len(v)
            elif isinstance(v, tuple) and v and dataclasses.is_dataclass(v[0]):
                total += _decoded_bytes(list(v))
    return total


_SEEDS = [
    codec.encode(Ping(7, "node1", IP, 8301, "node2")),
    codec.encode(Alive(4, "node1", IP, 8301, b"\xffmeta", VSN)),
    codec.make_compound([codec.encode(Nack(1)), codec.encode(User(b"\x01serf"))]),
    compressed(codec.make_compound([codec.encode(Nack(2)), codec.encode(Ack(3, b"p"))])),
    compress_msg(lzw_bomb(30)),
]
_STREAM_SEEDS = [
    codec.encode_push_pull(_push_pull(2)),
    compressed(codec.encode_push_pull(_push_pull(2))),
    bytes([MsgType.USER]) + msgpack.packb({"UserMsgLen": 2}) + b"ab",
    compress_msg(lzw_bomb(30)),
]


def _mutate(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    def apply(seed: bytes, pos: int, junk: bytes, cut: int) -> bytes:
        raw = bytearray(seed)
        p = pos % len(raw)
        raw[p : p + len(junk)] = junk
        return bytes(raw[: max(1, len(raw) - cut)])

    return st.one_of(
        st.binary(max_size=400),
        st.builds(apply, st.sampled_from(seeds), st.integers(0, 10_000), st.binary(max_size=6), st.integers(0, 8)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutate(_SEEDS))
def test_fuzz_udp_decode_is_bounded(buf: bytes) -> None:
    """Only DecodeError escapes; what comes back and what is held meanwhile is bounded by the cap
    (memory: a few times the 64 KiB cap plus the LZW table, never the MiBs a bomb would inflate to)."""
    try:
        msgs = codec.decode_packet(buf)
    except DecodeError:
        msgs = []
    assert len(msgs) <= codec.MAX_PACKET_MESSAGES
    assert _decoded_bytes(msgs) <= codec.UDP_MAX_DECOMPRESSED + len(buf)
    assert _peak_bytes(lambda: codec.decode_packet(buf)) < 4 * codec.UDP_MAX_DECOMPRESSED + 64 * len(buf) + 65536


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutate(_STREAM_SEEDS), st.integers(1, 64))
def test_fuzz_stream_decode_is_bounded(buf: bytes, chunk: int) -> None:
    cap = 32 * 1024
    dec = codec.StreamDecoder(max_bytes=len(buf), max_decompressed=cap)
    try:
        got = None
        for i in range(0, len(buf), chunk):
            got = dec.feed(buf[i : i + chunk])
            if got is not None:
                break
    except DecodeError:
        return
    if got is not None:
        assert _decoded_bytes([got]) <= cap + len(buf)
        one_shot = codec.parse_stream(buf, max_decompressed=cap)
        assert one_shot == (dec.consumed, got)


def test_fuzz_seeds_cover_the_bomb() -> None:
    """The fuzz starts from a bomb that must be refused, or it would not exercise the cap."""
    with pytest.raises(Oversized):
        codec.decode_packet(_SEEDS[-1])


def test_readme_gossip_limits_match_the_code() -> None:
    from pathlib import Path

    from pyconsul.agent.gossip import pool

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| Gossip")}
    assert rows["Gossip UDP packet: bytes decompressed (all its compress messages) / compound parts / nesting"] == (
        f"{codec.UDP_MAX_DECOMPRESSED // 1024} KiB / {codec.MAX_PACKET_MESSAGES} / {codec.MAX_NESTING}")
    mib = 1024 * 1024
    assert pool.MAX_STREAM_BYTES == codec.MAX_STREAM_BYTES == 20 * mib + 1024
    assert rows["Gossip stream message (push/pull): bytes received / bytes decompressed"] == (
        f"20 MiB + 1 KiB / {codec.STREAM_MAX_DECOMPRESSED // mib} MiB")
    lan, wan = GossipConfig.lan().tcp_timeout, GossipConfig.wan().tcp_timeout
    assert rows["Gossip streams served at once per pool / time to read and answer one"] == (
        f"{pool.MAX_INBOUND_STREAMS} / `tcp_timeout` ({lan:g} s LAN, {wan:g} s WAN)")
