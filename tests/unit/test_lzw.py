"""LZW (Go compress/lzw, LSB, litWidth 8) compatibility tests.

tests/unit/data/lzw_vectors.json is printed by Go 1.19's compress/lzw via tests/vectors/gen_lzw
(see tests/vectors/README.md). Large inputs are not stored: they are regenerated here from the same
deterministic formulas the Go program uses (see ``_lcg_text`` / ``_pcg_bytes``).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyconsul.agent.gossip.lzw import compress, decompress

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "data" / "lzw_vectors.json").read_text())

_WORDS = [
    "consul",
    "serf",
    "memberlist",
    "gossip",
    "node",
    "alive",
    "suspect",
    "dead",
    "push",
    "pull",
    "ack",
    "ping",
    "indirect",
    "key",
    "ring",
    "lan",
    "wan",
    "agent",
    "the",
    "a",
]


def _lcg_text(seed: int, n: int) -> bytes:
    """Words picked by a 32-bit LCG, ten per line (same formula as the Go generator)."""
    parts: list[str] = []
    state = seed
    count = 0
    size = 0
    while size < n:
        state = (state * 1103515245 + 12345) & 0xFFFFFFFF
        count += 1
        part = _WORDS[(state >> 16) % len(_WORDS)] + ("\n" if count % 10 == 0 else " ")
        parts.append(part)
        size += len(part)
    return "".join(parts).encode()[:n]


def _pcg_bytes(seed: int, n: int) -> bytes:
    """Top byte of a 64-bit LCG per output byte (same formula as the Go generator)."""
    out = bytearray(n)
    state = seed
    for i in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out[i] = state >> 56
    return bytes(out)


def _vector_input(v: dict[str, Any]) -> bytes:
    kind = v["kind"]
    if kind in ("hex", "go_decode"):
        return bytes.fromhex(v.get("input_hex", ""))
    if kind == "lcg_text":
        return _lcg_text(v["seed"], v["length"])
    if kind == "pcg_bytes":
        return _pcg_bytes(v["seed"], v["length"])
    if kind == "zeros":
        return bytes(v["length"])
    raise AssertionError(f"unknown vector kind {kind}")


def _ids(v: dict[str, Any]) -> str:
    return str(v["name"])


GO_WRITER_VECTORS = [v for v in VECTORS if v["kind"] != "go_decode"]


def test_vector_file_is_substantial() -> None:
    names = {v["name"] for v in VECTORS}
    assert len(GO_WRITER_VECTORS) >= 5
    # random_clear_at_close: Go emits a clear code between the last data code and EOF.
    assert {"text_60k", "random_12k", "empty", "random_clear_at_close"} <= names
    assert any(v["kind"] == "lcg_text" and v["length"] > 10_000 for v in VECTORS)


@pytest.mark.parametrize("vec", GO_WRITER_VECTORS, ids=_ids)
def test_decodes_go_output(vec: dict[str, Any]) -> None:
    assert decompress(bytes.fromhex(vec["output_hex"])) == _vector_input(vec)


@pytest.mark.parametrize("vec", GO_WRITER_VECTORS, ids=_ids)
def test_compress_matches_go_bytes(vec: dict[str, Any]) -> None:
    assert compress(_vector_input(vec)).hex() == vec["output_hex"]


def test_decodes_go_reader_reference_for_frozen_table() -> None:
    # A hand-built stream with no leading clear code that fills the 4096-entry table without a
    # clear (the reader then keeps the table frozen at 12 bits), later clears and hits KwKwK.
    # Expected output is what Go's lzw reader produced for this stream.
    (vec,) = [v for v in VECTORS if v["kind"] == "go_decode"]
    assert decompress(bytes.fromhex(vec["output_hex"])) == bytes.fromhex(vec["input_hex"])


def test_empty() -> None:
    assert compress(b"") == bytes.fromhex("000302")  # clear, EOF: what Go writes for no input
    assert decompress(compress(b"")) == b""


@pytest.mark.parametrize(
    "data",
    [
        b"a",
        b"ab" * 10,
        bytes(range(256)) * 40,
        b"\x00" * 200_000,
        _lcg_text(99, 300_000),  # fills and clears the table many times
        random.Random(5).randbytes(50_000),
    ],
    ids=["one", "kwkwk", "all_bytes", "zeros", "text_300k", "random_50k"],
)
def test_round_trip(data: bytes) -> None:
    assert decompress(compress(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=20_000))
def test_round_trip_property(data: bytes) -> None:
    assert decompress(compress(data)) == data


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"b", b"ab", b"ba", b"abc", b"\x00", b"\xff"]), max_size=4000))
def test_round_trip_low_entropy_property(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    assert decompress(compress(data)) == data


def test_trailing_bytes_after_eof_ignored() -> None:
    assert decompress(compress(b"hello") + b"\xff\xff\xff") == b"hello"


def test_no_leading_clear_code_accepted() -> None:
    # codes 'h'(0x68), 'i'(0x69), EOF(257) at 9 bits each, LSB first
    acc = 0x68 | (0x69 << 9) | (257 << 18)
    assert decompress(acc.to_bytes(4, "little")) == b"hi"


def test_truncated_raises_value_error() -> None:
    stream = compress(_lcg_text(1, 5000))
    for cut in (0, 1, 2, len(stream) // 2, len(stream) - 1):
        with pytest.raises(ValueError, match="truncated"):
            decompress(stream[:cut])


def test_invalid_code_raises_value_error() -> None:
    # clear, then code 300 while the next free code is 258
    acc = 256 | (300 << 9)
    with pytest.raises(ValueError, match="invalid code 300"):
        decompress(acc.to_bytes(3, "little"))
    # first code after clear must be a literal: 258 == hi+1
    acc = 256 | (258 << 9)
    with pytest.raises(ValueError, match="invalid code"):
        decompress(acc.to_bytes(3, "little"))


def test_limit() -> None:
    data = b"x" * 10_000
    stream = compress(data)
    assert decompress(stream, limit=10_000) == data
    with pytest.raises(ValueError, match="larger than limit"):
        decompress(stream, limit=9_999)
    with pytest.raises(ValueError):
        decompress(stream, limit=-1)


def _pack(codes: list[int]) -> bytes:
    """Pack codes LSB-first with the reader's width schedule (the stream must not contain clear codes)."""
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


def test_frozen_table_bomb_hits_default_limit() -> None:
    # 0, 258, 259, ... 4095 builds entries of growing runs of zeros (each one a KwKwK code);
    # the table is then full and frozen, and repeating code 4095 yields 3839 bytes per 12 bits.
    chain = [0, *range(258, 4096)]
    small = _pack([*chain, 4095, 257])
    assert decompress(small) == b"\x00" * (sum(range(1, 3840)) + 3839)
    bomb = _pack([*chain, *([4095] * 12_000), 257])
    assert len(bomb) < 25_000
    with pytest.raises(ValueError, match="larger than limit"):
        decompress(bomb)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_only_value_error(data: bytes) -> None:
    try:
        decompress(data, limit=1 << 20)
    except ValueError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=2000), st.data())
def test_fuzz_mutated_streams_only_value_error(payload: bytes, draw: st.DataObject) -> None:
    stream = bytearray(compress(payload))
    idx = draw.draw(st.integers(0, len(stream) - 1))
    stream[idx] ^= draw.draw(st.integers(1, 255))
    try:
        decompress(bytes(stream), limit=1 << 20)
    except ValueError:
        pass


def test_decode_speed() -> None:
    data = _lcg_text(11, 100_000)
    stream = compress(data)
    start = time.perf_counter()
    out = decompress(stream)
    elapsed = time.perf_counter() - start
    assert out == data
    assert elapsed < 1.0  # typically ~5 ms; generous bound for slow CI machines
