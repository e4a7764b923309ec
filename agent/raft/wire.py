"""Server RPC framing (port 8300): Raft messages and forwarded requests as msgpack frames.

Frame: 4-byte big-endian length, then a msgpack array `[kind, ...fields]`. Kinds are an
append-only wire enum. Decoding is strict (WireError on anything malformed) so a bad peer can
only lose its own connection.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

import msgpack

from pyconsul.agent.raft.messages import (
    AppendRequest,
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    Server,
    Snapshot,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotMeta,
    SnapshotRequest,
    SnapshotResponse,
    Suffrage,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    WireMessage,
)

HEADER = struct.Struct(">I")
# Frame size limits by kind. A frame's length comes first, so an oversized frame is refused before its body is
# read: the receiver reads the first PEEK bytes of the body to learn the kind (and a REQUEST's method), looks up
# the cap, and drops the connection when the length exceeds it (transport.py counts and logs it).
MAX_FRAME = 64 * 1024 * 1024  # AppendRequest (a batch of entries), and a RESPONSE to one of our own requests
# InstallSnapshot as one frame (kind 5): no longer sent (snapshots stream as SNAPSHOT_CHUNKs); the old cap stays.
MAX_SNAPSHOT_FRAME = MAX_FRAME
# The largest Raft entry: alone in an AppendRequest it must fit in one frame. A restore (PUT /v1/snapshot) larger
# than 4 MiB is committed as pieces of 4 MiB (state/restore.py), so no entry holds a whole state.
MAX_ENTRY = MAX_FRAME - 1024 * 1024
# A snapshot streams in pieces of SNAPSHOT_CHUNK bytes (node.py / snapstream.py), each one frame.
SNAPSHOT_CHUNK = 4 * 1024 * 1024
MAX_CHUNK_FRAME = SNAPSHOT_CHUNK + 64 * 1024  # the piece plus ids and the configuration
# HELLO, votes, AppendResponse, SnapshotResponse, TimeoutNow: a few integers and two server ids.
MAX_SMALL_FRAME = 4 * 1024
# A forwarded request: KV values are <= 512 KiB and a txn <= 512 KiB / 64 operations (see README, Limits).
MAX_REQUEST_FRAME = 2 * 1024 * 1024
# ... except a forwarded Raft command (`apply`, `apply_forward`), which may be a snapshot restore (the leader splits
# it into pieces); over MAX_FRAME it streams (below).
MAX_WRITE_REQUEST_FRAME = MAX_FRAME
WRITE_METHODS = frozenset({"apply", "apply_forward"})
# A REQUEST or RESPONSE whose body exceeds MAX_FRAME travels as PART frames (transport.py), each carrying at most
# STREAM_PIECE bytes of the body, in order, back to back on its connection; the receiver reassembles the body (at
# most MAX_STREAM bytes) and handles it as one frame. Servers accept streamed REQUESTs only for WRITE_METHODS (a
# restore forwarded to the leader); any RESPONSE may stream (a forwarded read, GET /v1/snapshot through a follower).
STREAM_PIECE = 4 * 1024 * 1024
MAX_PART_FRAME = STREAM_PIECE + 1024
MAX_STREAM = 1024 * 1024 * 1024
PEEK = 64  # body bytes read before the rest: [kind, id, method] of our own encoder fit in them
# Every integer a peer sends us (terms, indexes, commit, read contexts) must be in [0, MAX_INT]. A term of
# 2**62 is a new term every millisecond for 146 million years, and the bound leaves room for +1 in the u64 on
# disk and on the wire: a forged 2**64-1 would otherwise be persisted and leave no next term (an election
# could never start again, even after a restart). Out of range is malformed: the frame is refused.
MAX_INT = 2**62


class WireError(ValueError):
    pass


class Kind(IntEnum):
    VOTE_REQUEST = 1
    VOTE_RESPONSE = 2
    APPEND_REQUEST = 3
    APPEND_RESPONSE = 4
    SNAPSHOT_REQUEST = 5
    SNAPSHOT_RESPONSE = 6
    TIMEOUT_NOW = 7
    HELLO = 8  # first frame on a connection: [HELLO, server_id, datacenter]
    REQUEST = 9  # [REQUEST, id, method, args] forwarded client request
    RESPONSE = 10  # [RESPONSE, id, ok, result | agent.errors.to_wire(exc)] (see transport.py)
    SNAPSHOT_CHUNK = 11  # a piece of an InstallSnapshot (messages.SnapshotChunk)
    SNAPSHOT_CHUNK_ACK = 12
    PART = 13  # [PART, offset, total, piece]: a piece of the body of one larger REQUEST or RESPONSE frame


def encode_config(c: Configuration) -> list[Any]:
    return [[s.id, s.address, int(s.suffrage)] for s in c.servers]


def decode_config(raw: Any) -> Configuration:
    if not isinstance(raw, list):
        raise WireError("configuration: expected a list")
    servers = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[1], str)
                and item[2] in (0, 1)):
            raise WireError("configuration: bad server")
        servers.append(Server(item[0], item[1], Suffrage(item[2])))
    return Configuration(tuple(servers))


def _entry(e: Entry) -> list[Any]:
    return [e.term, e.index, int(e.kind), e.data]


def _in_range(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT


def _decode_entry(raw: Any) -> Entry:
    if not (isinstance(raw, list) and len(raw) == 4 and all(_in_range(x) for x in raw[:3])
            and isinstance(raw[3], bytes) and raw[2] in (0, 1, 2)):
        raise WireError("bad entry")
    return Entry(raw[0], raw[1], EntryKind(raw[2]), raw[3])


def encode_message(m: WireMessage) -> list[Any]:
    if isinstance(m, VoteRequest):
        return [Kind.VOTE_REQUEST, m.term, m.from_, m.to, m.last_log_index, m.last_log_term, m.pre_vote, m.transfer]
    if isinstance(m, VoteResponse):
        return [Kind.VOTE_RESPONSE, m.term, m.from_, m.to, m.granted, m.pre_vote]
    if isinstance(m, AppendRequest):
        return [Kind.APPEND_REQUEST, m.term, m.from_, m.to, m.prev_log_index, m.prev_log_term,
                [_entry(e) for e in m.entries], m.leader_commit, m.read_ctx]
    if isinstance(m, AppendResponse):
        return [Kind.APPEND_RESPONSE, m.term, m.from_, m.to, m.success, m.match_index, m.read_ctx]
    if isinstance(m, SnapshotRequest):
        meta = m.snapshot.meta
        return [Kind.SNAPSHOT_REQUEST, m.term, m.from_, m.to, meta.index, meta.term, encode_config(meta.configuration),
                m.snapshot.data]
    if isinstance(m, SnapshotResponse):
        return [Kind.SNAPSHOT_RESPONSE, m.term, m.from_, m.to, m.success, m.match_index]
    if isinstance(m, TimeoutNow):
        return [Kind.TIMEOUT_NOW, m.term, m.from_, m.to]
    if isinstance(m, SnapshotChunk):
        return [Kind.SNAPSHOT_CHUNK, m.term, m.from_, m.to, m.index, m.snap_term, encode_config(m.configuration),
                m.offset, m.size, m.data]
    if isinstance(m, SnapshotChunkAck):
        return [Kind.SNAPSHOT_CHUNK_ACK, m.term, m.from_, m.to, m.index, m.snap_term, m.next_offset]
    raise TypeError(f"cannot encode {type(m).__name__}")


def _check(raw: list[Any], types: tuple[type, ...]) -> None:
    if len(raw) != len(types) + 1:
        raise WireError(f"frame kind {raw[0]}: expected {len(types)} fields, got {len(raw) - 1}")
    for i, (v, t) in enumerate(zip(raw[1:], types, strict=True)):
        if not isinstance(v, t) or (t is int and isinstance(v, bool)):
            raise WireError(f"frame kind {raw[0]}: field {i} has the wrong type")
        if t is int and not _in_range(v):
            raise WireError(f"frame kind {raw[0]}: field {i} is out of range")


def decode_message(raw: list[Any]) -> WireMessage:
    kind = raw[0]
    if kind == Kind.VOTE_REQUEST:
        _check(raw, (int, str, str, int, int, bool, bool))
        return VoteRequest(*raw[1:])
    if kind == Kind.VOTE_RESPONSE:
        _check(raw, (int, str, str, bool, bool))
        return VoteResponse(*raw[1:])
    if kind == Kind.APPEND_REQUEST:
        _check(raw, (int, str, str, int, int, list, int, int))
        entries = tuple(_decode_entry(e) for e in raw[6])
        return AppendRequest(raw[1], raw[2], raw[3], raw[4], raw[5], entries, raw[7], raw[8])
    if kind == Kind.APPEND_RESPONSE:
        _check(raw, (int, str, str, bool, int, int))
        return AppendResponse(*raw[1:])
    if kind == Kind.SNAPSHOT_REQUEST:
        _check(raw, (int, str, str, int, int, list, bytes))
        snap = Snapshot(SnapshotMeta(raw[4], raw[5], decode_config(raw[6])), raw[7])
        return SnapshotRequest(raw[1], raw[2], raw[3], snap)
    if kind == Kind.SNAPSHOT_RESPONSE:
        _check(raw, (int, str, str, bool, int))
        return SnapshotResponse(*raw[1:])
    if kind == Kind.TIMEOUT_NOW:
        _check(raw, (int, str, str))
        return TimeoutNow(*raw[1:])
    if kind == Kind.SNAPSHOT_CHUNK:
        _check(raw, (int, str, str, int, int, list, int, int, bytes))
        if len(raw[9]) > SNAPSHOT_CHUNK or raw[7] + len(raw[9]) > raw[8]:
            raise WireError("snapshot chunk: bad length")
        return SnapshotChunk(raw[1], raw[2], raw[3], raw[4], raw[5], decode_config(raw[6]), raw[7], raw[8], raw[9])
    if kind == Kind.SNAPSHOT_CHUNK_ACK:
        _check(raw, (int, str, str, int, int, int))
        return SnapshotChunkAck(*raw[1:])
    raise WireError(f"not a raft message kind: {kind}")


def frame(obj: list[Any]) -> bytes:
    # surrogateescape: KV keys are byte strings (see agent/state/wire.py); RPC arguments and replies carry them
    body: bytes = msgpack.packb(obj, use_bin_type=True, unicode_errors="surrogateescape")
    return HEADER.pack(len(body)) + body


def unframe(body: bytes | bytearray) -> list[Any]:
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=False, unicode_errors="surrogateescape")
    except Exception as exc:
        raise WireError(f"bad msgpack frame: {type(exc).__name__}") from None
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], int):
        raise WireError("frame is not [kind, ...]")
    return obj


def peek(prefix: bytes) -> tuple[int | None, str | None]:
    """(kind, method) from the first bytes of a frame body; None where they cannot be told (yet)."""
    u = msgpack.Unpacker(raw=False, max_buffer_size=max(len(prefix), 1), unicode_errors="surrogateescape")
    kind: int | None = None
    method: str | None = None
    try:
        u.feed(prefix)
        if u.read_array_header() < 1:
            return None, None
        k = u.unpack()
        if not isinstance(k, int) or isinstance(k, bool):
            return None, None
        kind = k
        if kind == Kind.REQUEST:
            u.skip()  # the request id
            m = u.unpack()
            method = m if isinstance(m, str) else None
    except Exception:  # truncated or malformed: what was learnt so far stands, the body decides the rest
        pass
    return kind, method


def peeked(prefix: bytes) -> bool:
    """Whether `prefix` says enough to choose the frame's limit: its kind and, for a REQUEST, the method."""
    kind, method = peek(prefix)
    return kind is not None and (kind != Kind.REQUEST or method is not None)


_SMALL_KINDS = frozenset({Kind.HELLO, Kind.VOTE_REQUEST, Kind.VOTE_RESPONSE, Kind.APPEND_RESPONSE,
                          Kind.SNAPSHOT_RESPONSE, Kind.TIMEOUT_NOW, Kind.SNAPSHOT_CHUNK_ACK})


def inbound_limit(prefix: bytes, hello_seen: bool) -> int:
    """The largest body a server accepts on its RPC port for the frame that starts with `prefix`. Before
    HELLO only a HELLO (small); unknown kinds, and kinds a server never receives, get the small cap."""
    kind, method = peek(prefix)
    if not hello_seen or kind in _SMALL_KINDS or kind is None:
        return MAX_SMALL_FRAME
    if kind == Kind.APPEND_REQUEST:
        return MAX_FRAME
    if kind == Kind.SNAPSHOT_REQUEST:
        return MAX_SNAPSHOT_FRAME
    if kind == Kind.SNAPSHOT_CHUNK:
        return MAX_CHUNK_FRAME
    if kind == Kind.REQUEST:
        return MAX_WRITE_REQUEST_FRAME if method in WRITE_METHODS else MAX_REQUEST_FRAME
    if kind == Kind.PART:
        return MAX_PART_FRAME
    return MAX_SMALL_FRAME


def response_limit(prefix: bytes) -> int:
    """The largest body accepted on a connection we dialled for requests: only RESPONSE frames are large."""
    kind, _ = peek(prefix)
    if kind == Kind.PART:
        return MAX_PART_FRAME
    return MAX_FRAME if kind == Kind.RESPONSE else MAX_SMALL_FRAME


def split(data: bytes) -> list[bytes]:
    """A frame (header and body, as frame() made it) whose body exceeds MAX_FRAME, as PART frames; [data] if
    it fits in one frame."""
    body = memoryview(data)[HEADER.size:]
    total = len(body)
    if total <= MAX_FRAME:
        return [data]
    return [frame([Kind.PART, off, total, bytes(body[off:off + STREAM_PIECE])])
            for off in range(0, total, STREAM_PIECE)]


def decode_part(raw: list[Any]) -> tuple[int, int, bytes]:
    """[PART, offset, total, piece] -> (offset, total, piece); WireError if malformed or out of bounds."""
    if not (len(raw) == 4 and _in_range(raw[1]) and _in_range(raw[2]) and isinstance(raw[3], bytes)
            and 0 < len(raw[3]) <= STREAM_PIECE and raw[1] + len(raw[3]) <= raw[2]):
        raise WireError("bad part frame")
    return raw[1], raw[2], raw[3]


class Reassembly:
    """The body of one streamed frame, from its PART frames (which arrive in order, back to back). `add`
    returns the whole body once the last piece arrived, else None; WireError when a piece is out of order
    or the announced total exceeds `cap`. Memory grows with what arrived, not with what was announced."""

    def __init__(self, cap: int = MAX_STREAM) -> None:
        self.cap = cap
        self.total = 0
        self.buf = bytearray()

    @property
    def active(self) -> bool:
        return bool(self.buf)

    def add(self, offset: int, total: int, piece: bytes) -> bytearray | None:
        if offset != len(self.buf) or (self.buf and total != self.total):
            raise WireError(f"part at offset {offset} of {total} bytes does not continue the stream "
                            f"({len(self.buf)} of {self.total} bytes received)")
        if total > self.cap:
            raise WireError(f"a streamed frame of {total} bytes exceeds the {self.cap}-byte limit")
        self.total = total
        self.buf += piece
        if len(self.buf) < total:
            return None
        out, self.buf, self.total = self.buf, bytearray(), 0
        return out


def decode_hello(raw: list[Any]) -> tuple[str, str]:
    """[HELLO, server_id, datacenter] -> (server_id, datacenter)."""
    if raw[0] != Kind.HELLO or len(raw) < 3 or not isinstance(raw[1], str) or not isinstance(raw[2], str):
        raise WireError("first frame must be HELLO")
    return raw[1], raw[2]


def decode_request(raw: list[Any]) -> tuple[int, str, Any]:
    """[REQUEST, id, method, args] -> (id, method, args); the handler validates args."""
    if (raw[0] != Kind.REQUEST or len(raw) != 4 or not _in_range(raw[1]) or not isinstance(raw[2], str)
            or len(raw[2]) > 64):
        raise WireError("bad request frame")
    return raw[1], raw[2], raw[3]
