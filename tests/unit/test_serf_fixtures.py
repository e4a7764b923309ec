"""Golden fixtures: packets captured from real serf agents, decoded by our codec.

tests/unit/data/serf_packets.json was recorded by tests/vectors/capture_serf.py (see its docstring
and tests/vectors/README.md): three serf agents (Debian serf 0.9.4) on loopback join, fire a user
event and a query, one is killed with SIGKILL and one leaves, once in plain text and once with
`-encrypt`. Every datagram and TCP stream must decode; the decoded messages must carry the names,
tags, incarnations and events of that scenario; and what we re-encode from them must be what serf
sent. serf's go-msgpack writes struct fields as map keys in sorted order while we write them in
Go declaration order, so re-encoding is compared as decoded msgpack maps (every key, value and
msgpack type equal; key order is not significant to any msgpack decoder), not byte for byte.
"""

from __future__ import annotations

import base64
import json
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest

from pyconsul.agent.gossip import codec
from pyconsul.agent.gossip.keyring import decrypt, encrypt
from pyconsul.agent.gossip.messages import (
    Ack,
    Alive,
    Dead,
    IndirectPing,
    Message,
    MsgType,
    Nack,
    NodeState,
    Ping,
    PushPull,
    SerfJoin,
    SerfLeave,
    SerfMessage,
    SerfPushPull,
    SerfQuery,
    SerfQueryResponse,
    SerfUserEvent,
    Suspect,
    User,
)

FIXTURE = json.loads((Path(__file__).parent / "data" / "serf_packets.json").read_text())
CAPTURES: dict[str, dict[str, Any]] = {c["mode"]: c for c in FIXTURE["captures"]}
TAGS = {"alpha": "web", "beta": "db", "gamma": "cache"}
HOST = {"alpha": 1, "beta": 2, "gamma": 3}
PREFIX = {"plain": "127.77.250", "encrypted": "127.77.251"}
STREAM_HEADER = struct.Struct(">BI")


def _key(mode: str) -> bytes | None:
    k = CAPTURES[mode]["key_base64"]
    return base64.b64decode(k) if k else None


def _udp_plain(mode: str, hex_: str) -> bytes:
    raw, key = bytes.fromhex(hex_), _key(mode)
    return decrypt([key], raw, b"") if key else raw


def _tcp_plain(mode: str, hex_: str) -> bytes:
    raw, key = bytes.fromhex(hex_), _key(mode)
    if key is None:
        return raw
    t, size = STREAM_HEADER.unpack_from(raw)
    assert t == MsgType.ENCRYPT and len(raw) == STREAM_HEADER.size + size
    return decrypt([key], raw[STREAM_HEADER.size :], raw[: STREAM_HEADER.size])


@dataclass
class Decoded:
    messages: list[Message] = field(default_factory=list)
    serf: list[SerfMessage] = field(default_factory=list)
    push_pulls: list[PushPull] = field(default_factory=list)
    serf_push_pulls: list[SerfPushPull] = field(default_factory=list)


def _decode(mode: str) -> Decoded:
    out = Decoded()
    for u in CAPTURES[mode]["udp"]:
        out.messages.extend(codec.decode_packet(_udp_plain(mode, u["hex"])))
    for t in CAPTURES[mode]["tcp"]:
        plain = _tcp_plain(mode, t["hex"])
        used, msg = codec.parse_stream(plain)
        assert used == len(plain) and isinstance(msg, PushPull)
        out.push_pulls.append(msg)
        sp = codec.decode_serf(msg.user_state)
        assert isinstance(sp, SerfPushPull)
        out.serf_push_pulls.append(sp)
    out.serf = [codec.decode_serf(m.payload) for m in out.messages if isinstance(m, User)]
    return out


MODES = sorted(CAPTURES)


def test_fixture_provenance() -> None:
    assert set(CAPTURES) == {"plain", "encrypted"}
    assert "0.9.4" in FIXTURE["debian_package"] and FIXTURE["serf_version"].startswith("0.8.2")
    assert len(_key("encrypted") or b"") == 16 and _key("plain") is None
    for c in FIXTURE["captures"]:
        assert len(c["udp"]) >= 50 and len(c["tcp"]) >= 4


@pytest.mark.parametrize("mode", MODES)
def test_every_message_type_of_the_scenario_decodes(mode: str) -> None:
    d = _decode(mode)
    kinds = Counter(type(m).__name__ for m in [*d.messages, *d.serf])
    want = {Ping, Ack, IndirectPing, Nack, Alive, Suspect, Dead, User,
            SerfJoin, SerfLeave, SerfUserEvent, SerfQuery, SerfQueryResponse}
    assert {k.__name__ for k in want} <= set(kinds), kinds


@pytest.mark.parametrize("mode", MODES)
def test_packets_use_crc_compound_and_compression(mode: str) -> None:
    first = Counter(_udp_plain(mode, u["hex"])[0] for u in CAPTURES[mode]["udp"])
    assert {MsgType.HAS_CRC, MsgType.COMPOUND} <= set(first), first
    if _key(mode):  # encrypted UDP: the whole payload, encryption version 1 (no padding)
        assert {bytes.fromhex(u["hex"])[0] for u in CAPTURES[mode]["udp"]} == {1}
    # push/pull streams arrive LZW-compressed
    assert {_tcp_plain(mode, t["hex"])[0] for t in CAPTURES[mode]["tcp"]} == {MsgType.COMPRESS}


@pytest.mark.parametrize("mode", MODES)
def test_alive_messages_carry_names_addresses_tags_and_versions(mode: str) -> None:
    alive = [m for m in _decode(mode).messages if isinstance(m, Alive)]
    assert {m.node for m in alive} == set(TAGS)
    for m in alive:
        assert codec.ip_from_bytes(m.addr) == f"{PREFIX[mode]}.{HOST[m.node]}"
        assert m.port == 7946 and m.incarnation >= 1
        assert codec.decode_tags(m.meta) == {"role": TAGS[m.node], "dc": mode}
        assert m.vsn == (1, 5, 2, 2, 5, 5)  # memberlist protocol 1..5 (speaks 2), serf delegate 2..5 (speaks 5)


@pytest.mark.parametrize("mode", MODES)
def test_join_push_pulls(mode: str) -> None:
    d = _decode(mode)
    assert all(pp.join for pp in d.push_pulls)
    names = [sorted(n.name for n in pp.nodes) for pp in d.push_pulls]
    # beta joins alpha (each sends itself), then gamma joins alpha (alpha answers with alpha and beta)
    assert names == [["beta"], ["alpha"], ["gamma"], ["alpha", "beta"]]
    for pp in d.push_pulls:
        for n in pp.nodes:
            assert n.state == NodeState.ALIVE and n.incarnation >= 1 and n.port == 7946
            assert codec.decode_tags(n.meta) == {"role": TAGS[n.name], "dc": mode}
    for pp, sp in zip(d.push_pulls, d.serf_push_pulls, strict=True):
        assert set(sp.status_ltimes) == {n.name for n in pp.nodes} and sp.left_members == ()


@pytest.mark.parametrize("mode", MODES)
def test_scenario_events(mode: str) -> None:
    d = _decode(mode)
    serf = d.serf
    # the joiners' join intents are gossiped (alpha's own intent predates its peers: push/pull carries it)
    assert {"beta", "gamma"} <= {m.node for m in serf if isinstance(m, SerfJoin)}
    events = {(m.name, m.payload, m.cc) for m in serf if isinstance(m, SerfUserEvent)}
    assert events == {("deploy", b"v42", True)}  # CC: coalesce, `serf event`'s default
    queries = {(m.name, m.payload, m.source_node, codec.ip_from_bytes(m.addr), m.port) for m in serf
               if isinstance(m, SerfQuery)}
    assert queries == {("uptime", b"now", "alpha", f"{PREFIX[mode]}.1", 7946)}
    assert all(m.timeout_ns == 1_000_000_000 for m in serf if isinstance(m, SerfQuery))
    # every agent acks the query (an ack flag, no payload) to alpha
    acks = {m.from_ for m in serf if isinstance(m, SerfQueryResponse) and m.flags & 1}
    assert acks == set(TAGS)
    # gamma was killed: suspected, then declared dead by someone else
    assert {m.node for m in d.messages if isinstance(m, Suspect)} == {"gamma"}
    dead = {(m.node, m.from_) for m in d.messages if isinstance(m, Dead)}
    assert any(node == "gamma" and src != "gamma" for node, src in dead)
    # beta left: a serf leave intent and a memberlist dead message from beta itself
    assert {m.node for m in serf if isinstance(m, SerfLeave)} == {"beta"}
    assert ("beta", "beta") in dead
    # probes name their source (memberlist protocol >= 4 fields)
    pings = [m for m in d.messages if isinstance(m, Ping)]
    assert all(p.node in TAGS and p.source_node in TAGS and p.source_port == 7946 for p in pings)
    assert any(isinstance(m, Ack) and m.payload for m in d.messages)  # serf's coordinate ping payload
    assert all(m.nack for m in d.messages if isinstance(m, IndirectPing))  # Lifeguard: nacks requested


def _maps(buf: bytes) -> list[Any]:
    """Every msgpack object in buf, raw strings kept as bytes (types are compared too)."""
    u = msgpack.Unpacker(raw=True, strict_map_key=False)
    u.feed(buf)
    return list(u)


def _canonical_parts(raw: bytes) -> list[bytes]:
    """A UDP payload -> its single messages (CRC checked and removed, compounds split, LZW undone)."""
    t = raw[0]
    if t == MsgType.HAS_CRC:
        assert codec.add_crc(raw[5:]) == raw
        return _canonical_parts(raw[5:])
    if t == MsgType.COMPOUND:
        return [p for part in codec.split_compound(raw[1:]) for p in _canonical_parts(part)]
    if t == MsgType.COMPRESS:
        return _canonical_parts(codec.decompress_body(raw[1:]))
    return [raw]


@pytest.mark.parametrize("mode", MODES)
def test_reencoded_udp_messages_equal_what_serf_sent(mode: str) -> None:
    checked: Counter[str] = Counter()
    for u in CAPTURES[mode]["udp"]:
        for part in _canonical_parts(_udp_plain(mode, u["hex"])):
            (msg,) = codec.decode_packet(part)
            ours = codec.encode(msg)
            assert ours[0] == part[0]
            if isinstance(msg, User):
                serf = codec.decode_serf(msg.payload)
                mine = codec.encode_serf(serf)
                assert mine[0] == msg.payload[0]
                assert _maps(mine[1:]) == _maps(msg.payload[1:]), serf
                checked[type(serf).__name__] += 1
            else:
                assert _maps(ours[1:]) == _maps(part[1:]), msg
                checked[type(msg).__name__] += 1
    assert len(checked) >= 12, checked


@pytest.mark.parametrize("mode", MODES)
def test_reencoded_push_pull_equals_what_serf_sent(mode: str) -> None:
    for t in CAPTURES[mode]["tcp"]:
        plain = _tcp_plain(mode, t["hex"])
        inner = codec.decompress_body(plain[1:])
        _, pp = codec.parse_stream(plain)
        assert isinstance(pp, PushPull)
        ours = codec.encode_push_pull(pp)
        assert ours[0] == inner[0] == MsgType.PUSH_PULL
        n_objects = 1 + len(pp.nodes)  # header, node states; then the serf user state (type byte + map)
        theirs_maps = _maps(inner[1 : len(inner) - len(pp.user_state)])
        our_maps = _maps(ours[1 : len(ours) - len(pp.user_state)])
        assert len(theirs_maps) == len(our_maps) == n_objects and our_maps == theirs_maps
        sp = codec.decode_serf(pp.user_state)
        again = codec.encode_serf(sp)
        (theirs,) = _maps(pp.user_state[1:])
        # serf sends its whole event ring buffer, nil slots included; we decode and send only events
        assert theirs[b"Events"] and all(e is None for e in theirs[b"Events"])
        theirs[b"Events"] = [e for e in theirs[b"Events"] if e is not None]
        assert again[0] == pp.user_state[0] and _maps(again[1:]) == [theirs]


def test_our_encryption_of_a_captured_packet_decrypts_like_serfs() -> None:
    key = _key("encrypted")
    assert key is not None
    for u in CAPTURES["encrypted"]["udp"][:10]:
        theirs = bytes.fromhex(u["hex"])
        plain = decrypt([key], theirs, b"")
        nonce = theirs[1:13]
        # same key, same nonce, same plaintext: our ciphertext is serf's, byte for byte
        assert encrypt(1, key, plain, b"", nonce=nonce) == theirs
    for t in CAPTURES["encrypted"]["tcp"]:
        theirs = bytes.fromhex(t["hex"])
        head = theirs[: STREAM_HEADER.size]
        plain = decrypt([key], theirs[STREAM_HEADER.size :], head)
        assert head + encrypt(1, key, plain, head, nonce=theirs[6:18]) == theirs
