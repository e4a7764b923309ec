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

from agent.gossip import lzw
from agent.gossip.messages import (
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
MAX_PUSH_STATE_BYTES = 20 * 1024 * 1024
MAX_PUSH_STATE_NODES = 1024 * 1024
MAX_COMPOUND_PARTS = 255
META_MAX_SIZE = 512


class DecodeError(ValueError):
    """A message that cannot be decoded. The string says why; it is safe to log."""


class UnknownMessageType(DecodeError):
    """A well-formed message of a type this version does not know (a newer peer): counted apart."""


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
    m = _unpack_map(body)
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


def decode_packet(buf: bytes, *, depth: int = 0) -> list[Message]:
    """A UDP payload (after decryption) -> its messages, in order.

    Handles the CRC wrapper, compound messages and LZW compression. A compound message whose
    tail is truncated yields its complete parts (memberlist does the same) -- only a message
    that cannot be framed at all raises DecodeError.
    """
    if depth > 4:
        raise DecodeError("messages nested too deeply")
    if not buf:
        raise DecodeError("missing message type byte")
    t = buf[0]
    if t == MsgType.HAS_CRC:
        if len(buf) < 5:
            raise DecodeError("truncated CRC header")
        (expected,) = struct.unpack(">I", buf[1:5])
        if zlib.crc32(buf[5:]) != expected:
            raise DecodeError("invalid checksum")
        return decode_packet(buf[5:], depth=depth + 1)
    if t == MsgType.HAS_LABEL:
        raise DecodeError("packet labels are not supported")
    if t == MsgType.COMPOUND:
        out: list[Message] = []
        for part in split_compound(buf[1:]):
            out.extend(decode_packet(part, depth=depth + 1))
        return out
    if t == MsgType.COMPRESS:
        return decode_packet(decompress_body(buf[1:]), depth=depth + 1)
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


def decompress_body(body: bytes) -> bytes:
    return _decompress_map(_unpack_map(body))


def _decompress_map(m: dict[str, Any]) -> bytes:
    if _int(m, "Algo") != 0:
        raise DecodeError(f"cannot decompress unknown algorithm {m.get('Algo')}")
    try:
        out = lzw.decompress(_bytes(m, "Buf"), limit=2 * MAX_PUSH_STATE_BYTES)
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


def parse_stream(buf: bytes) -> tuple[int, PushPull | Message]:
    """Parse one plaintext stream message from the start of buf.

    Returns (bytes consumed, message). Raises NeedMore when buf is a valid prefix and
    DecodeError when it can never become valid. Compressed bodies are unwrapped.
    """
    if not buf:
        raise NeedMore
    t = buf[0]
    if t == MsgType.COMPRESS:
        unpacker = _unpacker(buf[1:])
        obj = _next(unpacker)
        consumed = 1 + unpacker.tell()
        inner = _decompress_map(_as_map(obj))
        try:
            _, msg = parse_stream(inner)
        except NeedMore:
            raise DecodeError("truncated compressed stream message") from None
        return consumed, msg
    if t == MsgType.PUSH_PULL:
        unpacker = _unpacker(buf[1:])
        header = _as_map(_next(unpacker))
        n_nodes = _int(header, "Nodes")
        user_len = _int(header, "UserStateLen")
        if not 0 <= n_nodes <= MAX_PUSH_STATE_NODES:
            raise DecodeError(f"number of nodes in header ({n_nodes}) exceeds limit")
        if not 0 <= user_len <= MAX_PUSH_STATE_BYTES:
            raise DecodeError(f"user state length ({user_len}) exceeds limit")
        nodes = []
        for _ in range(n_nodes):
            m = _as_map(_next(unpacker))
            state = _int(m, "State")
            if state not in (0, 1, 2, 3):
                raise DecodeError(f"bad node state {state}")
            addr = _bytes(m, "Addr")
            if len(addr) not in (4, 16):
                raise DecodeError(f"push/pull: bad address length {len(addr)}")
            nodes.append(
                PushNodeState(
                    _need_name(m, "Name"),
                    addr,
                    _int(m, "Port", bits=16),
                    _bytes(m, "Meta"),
                    _int(m, "Incarnation", bits=32),
                    NodeState(state),
                    _vsn(m),
                )
            )
        pos = 1 + unpacker.tell()
        if len(buf) < pos + user_len:
            raise NeedMore
        return pos + user_len, PushPull(_bool(header, "Join"), tuple(nodes), buf[pos : pos + user_len])
    if t == MsgType.USER:
        unpacker = _unpacker(buf[1:])
        header = _as_map(_next(unpacker))
        n = _int(header, "UserMsgLen")
        if not 0 <= n <= MAX_PUSH_STATE_BYTES:
            raise DecodeError(f"user message length ({n}) exceeds limit")
        pos = 1 + unpacker.tell()
        if len(buf) < pos + n:
            raise NeedMore
        return pos + n, User(buf[pos : pos + n])
    if t in (MsgType.PING, MsgType.ACK_RESP, MsgType.ERR):
        unpacker = _unpacker(buf[1:])
        _next(unpacker)
        consumed = 1 + unpacker.tell()
        return consumed, _decode_body(t, buf[1:consumed])
    raise DecodeError(f"unexpected stream message type {t}")


def _unpacker(buf: bytes) -> msgpack.Unpacker:
    u = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False,
                         max_buffer_size=2 * MAX_PUSH_STATE_BYTES)
    u.feed(buf)
    return u


def _next(unpacker: msgpack.Unpacker) -> Any:
    try:
        return unpacker.unpack()
    except msgpack.OutOfData:
        raise NeedMore from None
    except Exception as exc:
        raise DecodeError(f"bad msgpack in stream: {type(exc).__name__}") from None


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
