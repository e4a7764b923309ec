"""Encode and decode memberlist/serf messages (msgpack, go-msgpack conventions).

Wire conventions of HashiCorp's go-msgpack that we follow:
- structs are msgpack maps keyed by the Go field name;
- strings and []byte are both msgpack "raw" (str family, no bin types); []uint8 (Vsn) is raw too;
- a nil []byte is msgpack nil.
Decoding is strict about types and lenient about unknown keys: anything malformed raises
DecodeError (a ValueError), which callers count and drop. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections.abc import Callable
from typing import Any

import msgpack

from pyconsul.agent.gossip import lzw
from pyconsul.agent.gossip.messages import (
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    Message,
    MsgType,
    Nack,
    NodeState,
    Ping,
    PushNodeState,
    PushPull,
    SerfEventRecord,
    SerfEvents,
    SerfJoin,
    SerfLeave,
    SerfMessage,
    SerfMsgType,
    SerfPushPull,
    SerfQuery,
    SerfQueryResponse,
    SerfUserEvent,
    Suspect,
    User,
)

TAG_MAGIC = 0xFF
MAX_PUSH_STATE_BYTES = 20 * 1024 * 1024  # memberlist's maxPushStateBytes (user state; encrypted stream size)
MAX_PUSH_STATE_NODES = 1024 * 1024  # memberlist's maxPushStateNodes
MAX_COMPOUND_PARTS = 255
META_MAX_SIZE = 512

# Decompression caps, by where the compress message arrives (memberlist uses one cap, 40 MiB, for both).
#
# UDP: memberlist builds a packet of at most UDPBufferSize bytes (1400 in its LAN and WAN configs: a
# compound of broadcasts, or one message with piggybacked broadcasts) and only then compresses it, so a
# compress message from a real peer inflates to about 1.4 KB. 64 KiB is the largest UDP payload there is,
# so it still leaves 45x headroom for a peer configured with a larger UDPBufferSize, while a 1.4 KB bomb
# can no longer expand into tens of MiB on the event loop (40 MiB per packet was measured to stall it).
UDP_MAX_DECOMPRESSED = 64 * 1024
# TCP: a push/pull carries the whole member list plus serf's user state. memberlist refuses an encrypted
# remote state over maxPushStateBytes (20 MiB) and user state over the same; we cap the decompressed
# stream message at that size too (about 80,000 members with Consul's tags), half of memberlist's 40 MiB.
STREAM_MAX_DECOMPRESSED = MAX_PUSH_STATE_BYTES
# The most bytes one plaintext stream message may take on the wire (before decompression).
MAX_STREAM_BYTES = MAX_PUSH_STATE_BYTES + 1024
# Framing limits of one UDP packet: memberlist sends at most one compound (255 parts), at most three
# levels deep (CRC -> compress -> compound -> message).
MAX_PACKET_MESSAGES = 2 * MAX_COMPOUND_PARTS
MAX_NESTING = 4
# msgpack containers in a stream message (header and node maps have under ten fields, Vsn six bytes):
# without this a 5-byte array header could make the unpacker preallocate a list of millions of slots.
_MAX_STREAM_CONTAINER = 1024


class DecodeError(ValueError):
    """A message that cannot be decoded. The string says why; it is safe to log."""


class UnknownMessageType(DecodeError):
    """A well-formed message of a type this version does not know (a newer peer): counted apart."""


class Oversized(DecodeError):
    """Input past a size, count or nesting limit (decompressed bytes, compound parts, stream bytes):
    dropped and counted apart as `dropped_oversized`."""


# ---------------------------------------------------------------- low-level helpers


def _pack(obj: dict[str, Any]) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=False)
    return out


def _unpack_map(buf: bytes) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(buf, raw=False, unicode_errors="surrogateescape", strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise DecodeError(f"bad msgpack: {exc}") from None
    except Exception as exc:  # msgpack raises a few other types on garbage
        raise DecodeError(f"bad msgpack: {type(exc).__name__}") from None
    return _as_map(obj)


def _as_map(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a map, got {type(obj).__name__}")
    return obj


def _int(m: dict[str, Any], key: str, default: int | None = 0, *, bits: int = 64) -> int:
    v = m.get(key, default)
    if v is None:
        if default is None:
            raise DecodeError(f"missing field {key}")
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise DecodeError(f"field {key}: expected an integer")
    if v < 0 and bits < 64:
        raise DecodeError(f"field {key}: negative value")
    if bits < 64 and v >= 1 << bits:
        raise DecodeError(f"field {key}: value out of range")
    return v


def _bool(m: dict[str, Any], key: str) -> bool:
    v = m.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise DecodeError(f"field {key}: expected a bool")
    return v


def _bytes(m: dict[str, Any], key: str) -> bytes:
    v = m.get(key)
    if v is None:
        return b""
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape")
    if isinstance(v, bytes):
        return v
    if isinstance(v, list) and all(isinstance(x, int) and 0 <= x < 256 for x in v):
        return bytes(v)
    raise DecodeError(f"field {key}: expected bytes")


def _str(m: dict[str, Any], key: str) -> str:
    v = m.get(key)
    if v is None:
        return ""
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if _has_surrogate(v) else v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    raise DecodeError(f"field {key}: expected a string")


def _has_surrogate(v: str) -> bool:
    return not v.isascii() and any("\udc80" <= c <= "\udcff" for c in v)


def _vsn(m: dict[str, Any]) -> tuple[int, ...]:
    return tuple(_bytes(m, "Vsn"))


# ---------------------------------------------------------------- addresses


def ip_to_bytes(ip: str) -> bytes:
    """Text IP -> 4 bytes (IPv4) or 16 bytes (IPv6), as memberlist puts in Addr fields."""
    parts = ip.split(".")
    if len(parts) == 4:
        try:
            return bytes(int(p) for p in parts)
        except ValueError:
            pass
    return ipaddress.ip_address(ip).packed


def ip_from_bytes(raw: bytes) -> str:
    """Addr field -> text IP; IPv4-mapped IPv6 (Go's 16-byte net.IP) becomes IPv4."""
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    if len(raw) == 16:
        if raw[:12] == b"\x00" * 10 + b"\xff\xff":
            return ip_from_bytes(raw[12:])
        return str(ipaddress.IPv6Address(raw))
    raise DecodeError(f"bad IP address length {len(raw)}")


# ---------------------------------------------------------------- memberlist messages


def encode(msg: Message) -> bytes:
    """One message -> type byte + body."""
    if isinstance(msg, Ping):
        body: dict[str, Any] = {"SeqNo": msg.seq_no, "Node": msg.node}
        if msg.source_addr:
            body["SourceAddr"] = msg.source_addr
        if msg.source_port:
            body["SourcePort"] = msg.source_port
        if msg.source_node:
            body["SourceNode"] = msg.source_node
        return bytes([MsgType.PING]) + _pack(body)
    if isinstance(msg, IndirectPing):
        body = {"SeqNo": msg.seq_no, "Target": msg.target, "Port": msg.port, "Node": msg.node, "Nack": msg.nack}
        if msg.source_addr:
            body["SourceAddr"] = msg.source_addr
        if msg.source_port:
            body["SourcePort"] = msg.source_port
        if msg.source_node:
            body["SourceNode"] = msg.source_node
        return bytes([MsgType.INDIRECT_PING]) + _pack(body)
    if isinstance(msg, Ack):
        return bytes([MsgType.ACK_RESP]) + _pack({"SeqNo": msg.seq_no, "Payload": msg.payload or None})
    if isinstance(msg, Nack):
        return bytes([MsgType.NACK_RESP]) + _pack({"SeqNo": msg.seq_no})
    if isinstance(msg, ErrResp):
        return bytes([MsgType.ERR]) + _pack({"Error": msg.error})
    if isinstance(msg, Suspect):
        return bytes([MsgType.SUSPECT]) + _pack(
            {"Incarnation": msg.incarnation, "Node": msg.node, "From": msg.from_}
        )
    if isinstance(msg, Alive):
        return bytes([MsgType.ALIVE]) + _pack(
            {
                "Incarnation": msg.incarnation,
                "Node": msg.node,
                "Addr": msg.addr,
                "Port": msg.port,
                "Meta": msg.meta or None,
                "Vsn": bytes(msg.vsn),
            }
        )
    if isinstance(msg, Dead):
        return bytes([MsgType.DEAD]) + _pack({"Incarnation": msg.incarnation, "Node": msg.node, "From": msg.from_})
    if isinstance(msg, User):
        return bytes([MsgType.USER]) + msg.payload
    raise TypeError(f"cannot encode {type(msg).__name__}")


def _decode_body(t: int, body: bytes) -> Message:
    if t == MsgType.USER:
        return User(body)
    return _decode_map(t, _unpack_map(body))


def _decode_map(t: int, m: dict[str, Any]) -> Message:
    if t == MsgType.PING:
        return Ping(
            _int(m, "SeqNo", bits=32),
            _str(m, "Node"),
            _bytes(m, "SourceAddr"),
            _int(m, "SourcePort", bits=16),
            _str(m, "SourceNode"),
        )
    if t == MsgType.INDIRECT_PING:
        return IndirectPing(
            _int(m, "SeqNo", bits=32),
            _bytes(m, "Target"),
            _int(m, "Port", bits=16),
            _str(m, "Node"),
            _bool(m, "Nack"),
            _bytes(m, "SourceAddr"),
            _int(m, "SourcePort", bits=16),
            _str(m, "SourceNode"),
        )
    if t == MsgType.ACK_RESP:
        return Ack(_int(m, "SeqNo", bits=32), _bytes(m, "Payload"))
    if t == MsgType.NACK_RESP:
        return Nack(_int(m, "SeqNo", bits=32))
    if t == MsgType.ERR:
        return ErrResp(_str(m, "Error"))
    if t == MsgType.SUSPECT:
        return Suspect(_int(m, "Incarnation", bits=32), _need_name(m, "Node"), _str(m, "From"))
    if t == MsgType.DEAD:
        return Dead(_int(m, "Incarnation", bits=32), _need_name(m, "Node"), _str(m, "From"))
    if t == MsgType.ALIVE:
        addr = _bytes(m, "Addr")
        if len(addr) not in (4, 16):
            raise DecodeError(f"alive: bad address length {len(addr)}")
        meta = _bytes(m, "Meta")
        if len(meta) > META_MAX_SIZE:
            raise DecodeError("alive: meta too large")
        return Alive(
            _int(m, "Incarnation", bits=32),
            _need_name(m, "Node"),
            addr,
            _int(m, "Port", bits=16),
            meta,
            _vsn(m),
        )
    raise DecodeError(f"unknown message type {t}")


def _need_name(m: dict[str, Any], key: str) -> str:
    name = _str(m, key)
    if not name:
        raise DecodeError(f"field {key}: empty node name")
    return name


class _PacketBudget:
    """What one UDP packet may still expand to while it is decoded (shared by all its nesting levels)."""

    __slots__ = ("decompressed", "messages")

    def __init__(self, decompressed: int) -> None:
        self.decompressed = decompressed
        self.messages = MAX_PACKET_MESSAGES


def decode_packet(buf: bytes, *, max_decompressed: int = UDP_MAX_DECOMPRESSED) -> list[Message]:
    """A UDP payload (after decryption) -> its messages, in order.

    Handles the CRC wrapper, compound messages and LZW compression. A compound message whose
    tail is truncated yields its complete parts (memberlist does the same) -- only a message
    that cannot be framed at all raises DecodeError. Bounds (raising `Oversized`, a DecodeError):
    everything decompressed in the packet, over all its compress messages, is at most
    `max_decompressed` bytes (decompression stops at that point); at most MAX_PACKET_MESSAGES
    compound parts in all; nesting at most MAX_NESTING deep, and never a compress inside a compress.
    """
    return _decode_packet(buf, 0, False, _PacketBudget(max_decompressed))


def _decode_packet(buf: bytes, depth: int, in_compress: bool, budget: _PacketBudget) -> list[Message]:
    if depth > MAX_NESTING:
        raise Oversized(f"messages nested more than {MAX_NESTING} deep")
    if not buf:
        raise DecodeError("missing message type byte")
    t = buf[0]
    if t == MsgType.HAS_CRC:
        if len(buf) < 5:
            raise DecodeError("truncated CRC header")
        (expected,) = struct.unpack(">I", buf[1:5])
        if zlib.crc32(buf[5:]) != expected:
            raise DecodeError("invalid checksum")
        return _decode_packet(buf[5:], depth + 1, in_compress, budget)
    if t == MsgType.HAS_LABEL:
        raise DecodeError("packet labels are not supported")
    if t == MsgType.COMPOUND:
        parts = split_compound(buf[1:])
        budget.messages -= len(parts)
        if budget.messages < 0:
            raise Oversized(f"more than {MAX_PACKET_MESSAGES} compound parts in one packet")
        out: list[Message] = []
        for part in parts:
            out.extend(_decode_packet(part, depth + 1, in_compress, budget))
        return out
    if t == MsgType.COMPRESS:
        if in_compress:
            raise Oversized("a compressed message inside a compressed message")
        inner = _decompress_map(_unpack_map(buf[1:]), budget.decompressed)
        budget.decompressed -= len(inner)
        return _decode_packet(inner, depth + 1, True, budget)
    return [_decode_body(t, buf[1:])]


def split_compound(buf: bytes) -> list[bytes]:
    if not buf:
        raise DecodeError("missing compound length byte")
    n = buf[0]
    if len(buf) < 1 + 2 * n:
        raise DecodeError("truncated compound length slice")
    lengths = struct.unpack(f">{n}H", buf[1 : 1 + 2 * n])
    pos = 1 + 2 * n
    parts = []
    for length in lengths:
        if pos + length > len(buf):
            break  # truncated tail: keep the complete parts
        parts.append(buf[pos : pos + length])
        pos += length
    return parts


def make_compound(msgs: list[bytes]) -> bytes:
    """Frame up to 255 encoded messages into one compound message."""
    if len(msgs) > MAX_COMPOUND_PARTS:
        raise ValueError("too many messages for one compound")
    head = bytes([MsgType.COMPOUND, len(msgs)]) + struct.pack(f">{len(msgs)}H", *(len(m) for m in msgs))
    return head + b"".join(msgs)


def decompress_body(body: bytes, limit: int = STREAM_MAX_DECOMPRESSED) -> bytes:
    """The payload of a compress message's body (after the type byte), at most `limit` bytes."""
    return _decompress_map(_unpack_map(body), limit)


def _decompress_map(m: dict[str, Any], limit: int) -> bytes:
    if _int(m, "Algo") != 0:
        raise DecodeError(f"cannot decompress unknown algorithm {m.get('Algo')}")
    try:
        out = lzw.decompress(_bytes(m, "Buf"), limit=max(0, limit))
    except lzw.LimitExceeded as exc:
        raise Oversized(f"decompress: {exc}") from None
    except ValueError as exc:
        raise DecodeError(f"decompress: {exc}") from None
    if not out:
        raise DecodeError("decompressed message is empty")
    return out


def add_crc(msg: bytes) -> bytes:
    return bytes([MsgType.HAS_CRC]) + struct.pack(">I", zlib.crc32(msg)) + msg


# ---------------------------------------------------------------- push/pull streams


def encode_push_pull(pp: PushPull) -> bytes:
    parts = [
        bytes([MsgType.PUSH_PULL]),
        _pack({"Nodes": len(pp.nodes), "UserStateLen": len(pp.user_state), "Join": pp.join}),
    ]
    for n in pp.nodes:
        parts.append(
            _pack(
                {
                    "Name": n.name,
                    "Addr": n.addr,
                    "Port": n.port,
                    "Meta": n.meta or None,
                    "Incarnation": n.incarnation,
                    "State": int(n.state),
                    "Vsn": bytes(n.vsn),
                }
            )
        )
    parts.append(pp.user_state)
    return b"".join(parts)


class NeedMore(Exception):
    """The stream buffer does not hold a complete message yet."""


_STREAM_TYPES = (MsgType.COMPRESS, MsgType.PUSH_PULL, MsgType.USER, MsgType.PING, MsgType.ACK_RESP, MsgType.ERR)


class StreamDecoder:
    """Incremental decoder of one plaintext stream message (pure: bytes in, a message out).

    `feed(chunk)` returns the message once it is complete and None while more is needed; every byte is
    parsed once, however the stream is cut (a msgpack Unpacker resumes where it stopped; user state is
    copied out as it arrives), so a peer trickling bytes costs time proportional to the bytes, not to
    their square. Bounds: at most `max_bytes` bytes fed in all and at most `max_decompressed` bytes
    inflated (`Oversized`); msgpack containers of at most 1,024 entries; malformed input raises
    DecodeError. A compressed body is unwrapped (never a compress inside a compress). `consumed` is the
    message's length once it is complete (bytes after it are not part of it).
    """

    def __init__(self, *, max_bytes: int = MAX_STREAM_BYTES, max_decompressed: int = STREAM_MAX_DECOMPRESSED,
                 _nested: bool = False) -> None:
        self.max_bytes = max_bytes
        self.max_decompressed = max_decompressed
        self._nested = _nested
        self._fed = 0
        self._type: int | None = None
        self._u = msgpack.Unpacker(
            raw=False, unicode_errors="surrogateescape", strict_map_key=False, max_buffer_size=max_bytes + 1,
            max_str_len=max_bytes, max_bin_len=max_bytes,
            max_array_len=_MAX_STREAM_CONTAINER, max_map_len=_MAX_STREAM_CONTAINER,
        )
        self._header: dict[str, Any] | None = None
        self._nodes: list[PushNodeState] = []
        self._n_nodes = 0
        self._tail_len = 0  # raw bytes after the msgpack part (user state / user message)
        self._tail = bytearray()
        self._result: PushPull | Message | None = None
        self.consumed = 0

    def feed(self, data: bytes) -> PushPull | Message | None:
        if self._result is not None:
            return self._result
        self._fed += len(data)
        if self._fed > self.max_bytes:
            raise Oversized(f"stream message larger than limit ({self.max_bytes} bytes)")
        if not data:
            return None
        if self._type is None:
            self._type = data[0]
            if self._type not in _STREAM_TYPES or (self._nested and self._type == MsgType.COMPRESS):
                raise DecodeError(f"unexpected stream message type {self._type}")
            data = data[1:]
        if data:
            self._u.feed(data)
        msg = self._step(self._type)
        if msg is not None:
            self._result = msg
            self.consumed = 1 + self._u.tell()
        return msg

    def _next(self) -> Any:
        """The next msgpack object, or _MISSING while it is incomplete (the unpacker keeps its place)."""
        try:
            return self._u.unpack()
        except msgpack.OutOfData:
            return _MISSING
        except Exception as exc:
            raise DecodeError(f"bad msgpack in stream: {type(exc).__name__}") from None

    def _read_tail(self) -> bytes | None:
        need = self._tail_len - len(self._tail)
        if need > 0:
            self._tail += self._u.read_bytes(need)
        return bytes(self._tail) if len(self._tail) == self._tail_len else None

    def _step(self, t: int) -> PushPull | Message | None:
        if t == MsgType.PUSH_PULL:
            return self._step_push_pull()
        if t == MsgType.USER:
            if self._header is None:
                obj = self._next()
                if obj is _MISSING:
                    return None
                self._header = _as_map(obj)
                n = _int(self._header, "UserMsgLen")
                if not 0 <= n <= MAX_PUSH_STATE_BYTES:
                    raise DecodeError(f"user message length ({n}) exceeds limit")
                self._tail_len = n
            tail = self._read_tail()
            return None if tail is None else User(tail)
        obj = self._next()
        if obj is _MISSING:
            return None
        m = _as_map(obj)
        if t == MsgType.COMPRESS:
            inner = _decompress_map(m, self.max_decompressed)
            dec = StreamDecoder(max_bytes=len(inner), max_decompressed=0, _nested=True)
            msg = dec.feed(inner)
            if msg is None:
                raise DecodeError("truncated compressed stream message")
            return msg
        return _decode_map(t, m)

    def _step_push_pull(self) -> PushPull | None:
        if self._header is None:
            obj = self._next()
            if obj is _MISSING:
                return None
            header = _as_map(obj)
            self._n_nodes = _int(header, "Nodes")
            self._tail_len = _int(header, "UserStateLen")
            if not 0 <= self._n_nodes <= MAX_PUSH_STATE_NODES:
                raise DecodeError(f"number of nodes in header ({self._n_nodes}) exceeds limit")
            if not 0 <= self._tail_len <= MAX_PUSH_STATE_BYTES:
                raise DecodeError(f"user state length ({self._tail_len}) exceeds limit")
            self._header = header
        while len(self._nodes) < self._n_nodes:
            obj = self._next()
            if obj is _MISSING:
                return None
            self._nodes.append(_push_node_state(_as_map(obj)))
        tail = self._read_tail()
        if tail is None:
            return None
        return PushPull(_bool(self._header, "Join"), tuple(self._nodes), tail)


_MISSING: Any = object()


def _push_node_state(m: dict[str, Any]) -> PushNodeState:
    state = _int(m, "State")
    if state not in (0, 1, 2, 3):
        raise DecodeError(f"bad node state {state}")
    addr = _bytes(m, "Addr")
    if len(addr) not in (4, 16):
        raise DecodeError(f"push/pull: bad address length {len(addr)}")
    return PushNodeState(
        _need_name(m, "Name"),
        addr,
        _int(m, "Port", bits=16),
        _bytes(m, "Meta"),
        _int(m, "Incarnation", bits=32),
        NodeState(state),
        _vsn(m),
    )


def parse_stream(buf: bytes, *, max_decompressed: int = STREAM_MAX_DECOMPRESSED) -> tuple[int, PushPull | Message]:
    """Parse one plaintext stream message from the start of buf (all of it at hand, e.g. decrypted).

    Returns (bytes consumed, message). Raises NeedMore when buf is a valid prefix and
    DecodeError when it can never become valid. Compressed bodies are unwrapped.
    """
    dec = StreamDecoder(max_bytes=max(len(buf), 1), max_decompressed=max_decompressed)
    msg = dec.feed(buf)
    if msg is None:
        raise NeedMore
    return dec.consumed, msg


# ---------------------------------------------------------------- serf


def encode_tags(tags: dict[str, str]) -> bytes:
    """serf node meta: magic byte 0xFF, then a msgpack map of string tags."""
    return bytes([TAG_MAGIC]) + encode_msgpack(dict(sorted(tags.items())))


def decode_tags(meta: bytes) -> dict[str, str]:
    """Inverse of encode_tags; old-style meta (no magic byte) is the node's role."""
    if not meta:
        return {}
    if meta[0] != TAG_MAGIC:
        return {"role": meta.decode("utf-8", "replace")}
    m = _unpack_map(meta[1:])
    return {k: _str(m, k) for k in m}


def encode_serf(msg: SerfMessage) -> bytes:
    if isinstance(msg, SerfJoin):
        return bytes([SerfMsgType.JOIN]) + _pack({"LTime": msg.ltime, "Node": msg.node})
    if isinstance(msg, SerfLeave):
        return bytes([SerfMsgType.LEAVE]) + _pack({"LTime": msg.ltime, "Node": msg.node, "Prune": msg.prune})
    if isinstance(msg, SerfUserEvent):
        return bytes([SerfMsgType.USER_EVENT]) + _pack(
            {"LTime": msg.ltime, "Name": msg.name, "Payload": msg.payload or None, "CC": msg.cc}
        )
    if isinstance(msg, SerfPushPull):
        return bytes([SerfMsgType.PUSH_PULL]) + _pack(
            {
                "LTime": msg.ltime,
                "StatusLTimes": dict(msg.status_ltimes),
                "LeftMembers": list(msg.left_members),
                "EventLTime": msg.event_ltime,
                "Events": [
                    {"LTime": e.ltime, "Events": [{"Name": r.name, "Payload": r.payload or None} for r in e.events]}
                    for e in msg.events
                ],
                "QueryLTime": msg.query_ltime,
            }
        )
    if isinstance(msg, SerfQuery):
        return bytes([SerfMsgType.QUERY]) + _pack(
            {
                "LTime": msg.ltime,
                "ID": msg.id,
                "Addr": msg.addr,
                "Port": msg.port,
                "SourceNode": msg.source_node,
                "Filters": list(msg.filters) or None,
                "Flags": msg.flags,
                "RelayFactor": msg.relay_factor,
                "Timeout": msg.timeout_ns,
                "Name": msg.name,
                "Payload": msg.payload or None,
            }
        )
    if isinstance(msg, SerfQueryResponse):
        return bytes([SerfMsgType.QUERY_RESPONSE]) + _pack(
            {"LTime": msg.ltime, "ID": msg.id, "From": msg.from_, "Flags": msg.flags, "Payload": msg.payload or None}
        )
    raise TypeError(f"cannot encode {type(msg).__name__}")


def _decode_serf_push_pull(m: dict[str, Any]) -> SerfPushPull:
    raw_status = m.get("StatusLTimes") or {}
    if not isinstance(raw_status, dict):
        raise DecodeError("StatusLTimes: expected a map")
    status = {}
    for k, v in raw_status.items():
        if not isinstance(k, (bytes, str)) or isinstance(v, bool) or not isinstance(v, int):
            raise DecodeError("StatusLTimes: bad entry")
        status[k.decode("utf-8", "replace") if isinstance(k, bytes) else k] = v
    left_raw = m.get("LeftMembers") or []
    if not isinstance(left_raw, list) or not all(isinstance(x, (bytes, str)) for x in left_raw):
        raise DecodeError("LeftMembers: expected a list of strings")
    left = tuple(x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in left_raw)
    events = []
    for e in m.get("Events") or []:
        if e is None:
            continue
        em = _as_map(e)
        recs = tuple(
            SerfEventRecord(_str(rm, "Name"), _bytes(rm, "Payload"))
            for rm in (_as_map(r) for r in (em.get("Events") or []))
        )
        events.append(SerfEvents(_int(em, "LTime"), recs))
    return SerfPushPull(
        _int(m, "LTime"), status, left, _int(m, "EventLTime"), tuple(events), _int(m, "QueryLTime")
    )


def _decode_serf_query(m: dict[str, Any]) -> SerfQuery:
    filters_raw = m.get("Filters") or []
    if not isinstance(filters_raw, list):
        raise DecodeError("Filters: expected a list")
    return SerfQuery(
        _int(m, "LTime"),
        _int(m, "ID", bits=32),
        _bytes(m, "Addr"),
        _int(m, "Port", bits=16),
        _str(m, "SourceNode"),
        tuple(f.encode("utf-8", "surrogateescape") if isinstance(f, str) else f if isinstance(f, bytes) else b""
              for f in filters_raw),
        _int(m, "Flags", bits=32),
        _int(m, "RelayFactor", bits=8),
        _int(m, "Timeout"),
        _str(m, "Name"),
        _bytes(m, "Payload"),
    )


_SERF_DECODERS: dict[int, Callable[[dict[str, Any]], SerfMessage]] = {
    SerfMsgType.JOIN: lambda m: SerfJoin(_int(m, "LTime"), _need_name(m, "Node")),
    SerfMsgType.LEAVE: lambda m: SerfLeave(_int(m, "LTime"), _need_name(m, "Node"), _bool(m, "Prune")),
    SerfMsgType.USER_EVENT: lambda m: SerfUserEvent(
        _int(m, "LTime"), _str(m, "Name"), _bytes(m, "Payload"), _bool(m, "CC")
    ),
    SerfMsgType.PUSH_PULL: _decode_serf_push_pull,
    SerfMsgType.QUERY: _decode_serf_query,
    SerfMsgType.QUERY_RESPONSE: lambda m: SerfQueryResponse(
        _int(m, "LTime"), _int(m, "ID", bits=32), _str(m, "From"), _int(m, "Flags", bits=32), _bytes(m, "Payload")
    ),
}


def decode_serf(buf: bytes) -> SerfMessage:
    """A serf message (a memberlist user payload) -> dataclass; DecodeError if malformed/unknown."""
    if not buf:
        raise DecodeError("empty serf message")
    dec = _SERF_DECODERS.get(buf[0])
    if dec is None:
        raise UnknownMessageType(f"unknown serf message type {buf[0]}")
    return dec(_unpack_map(buf[1:]))


def encode_msgpack(obj: Any) -> bytes:
    """Plain go-msgpack-compatible encoding of a value (used for query payloads)."""
    out: bytes = msgpack.packb(obj, use_bin_type=False)
    return out


def decode_msgpack(buf: bytes) -> dict[str, Any]:
    return _unpack_map(buf)


def decode_msgpack_any(buf: bytes) -> Any:
    try:
        return msgpack.unpackb(buf, raw=False, unicode_errors="surrogateescape", strict_map_key=False)
    except Exception as exc:
        raise DecodeError(f"bad msgpack: {type(exc).__name__}") from None


def decode_key_request(buf: bytes) -> bytes:
    """serf keyRequest{Key []byte} -> the raw key."""
    m = _unpack_map(buf)
    key = _bytes(m, "Key")
    if not key:
        raise DecodeError("key request without a key")
    return key
