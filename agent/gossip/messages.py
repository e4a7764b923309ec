"""Gossip messages: memberlist (SWIM) and serf (membership intents) as frozen dataclasses.

The numeric values of both enums are part of the wire protocol shared with HashiCorp
memberlist and serf. ONLY APPEND to them; never renumber.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from pyconsul.agent.records import shared_repr


class MsgType(IntEnum):
    """memberlist packet/stream message types (first byte of every message)."""

    PING = 0
    INDIRECT_PING = 1
    ACK_RESP = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK_RESP = 11
    HAS_CRC = 12
    ERR = 13
    HAS_LABEL = 244


class NodeState(IntEnum):
    """memberlist node states as carried in push/pull node records."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class SerfMsgType(IntEnum):
    """serf message types (first byte of a memberlist user message payload)."""

    LEAVE = 0
    JOIN = 1
    PUSH_PULL = 2
    USER_EVENT = 3
    QUERY = 4
    QUERY_RESPONSE = 5
    CONFLICT_RESPONSE = 6
    KEY_REQUEST = 7
    KEY_RESPONSE = 8
    RELAY = 9


# Protocol versions we speak: (min, max, cur) for memberlist and for the serf delegate.
# serf masks memberlist at protocol 2; we understand up to 5 (nacks, TCP ping, CRC).
PROTOCOL_VSN = (1, 5, 2)
DELEGATE_VSN = (2, 5, 4)


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Ping:
    seq_no: int
    node: str
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class IndirectPing:
    seq_no: int
    target: bytes
    port: int
    node: str
    nack: bool = False
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Ack:
    seq_no: int
    payload: bytes = b""


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Nack:
    seq_no: int


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class ErrResp:
    error: str


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Suspect:
    incarnation: int
    node: str
    from_: str


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Alive:
    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes = b""
    vsn: tuple[int, ...] = ()


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Dead:
    incarnation: int
    node: str
    from_: str


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class User:
    """A memberlist user message: the payload is a serf message, opaque to memberlist."""

    payload: bytes


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class PushNodeState:
    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    state: NodeState
    vsn: tuple[int, ...] = ()


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class PushPull:
    """A whole push/pull exchange body (header + node states + user state)."""

    join: bool
    nodes: tuple[PushNodeState, ...]
    user_state: bytes = b""


Message = Ping | IndirectPing | Ack | Nack | ErrResp | Suspect | Alive | Dead | User


# ---- serf messages (payloads of memberlist User messages) ----


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SerfJoin:
    ltime: int
    node: str


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SerfLeave:
    ltime: int
    node: str
    prune: bool = False


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SerfUserEvent:
    ltime: int
    name: str
    payload: bytes = b""
    cc: bool = False


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SerfEventRecord:
    name: str
    payload: bytes = b""


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SerfEvents:
    ltime: int
    events: tuple[SerfEventRecord, ...] = ()


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SerfPushPull:
    ltime: int
    status_ltimes: dict[str, int] = field(default_factory=dict)
    left_members: tuple[str, ...] = ()
    event_ltime: int = 0
    events: tuple[SerfEvents, ...] = ()
    query_ltime: int = 0


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SerfQuery:
    ltime: int
    id: int
    addr: bytes
    port: int
    source_node: str
    filters: tuple[bytes, ...]
    flags: int
    relay_factor: int
    timeout_ns: int
    name: str
    payload: bytes = b""


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SerfQueryResponse:
    ltime: int
    id: int
    from_: str
    flags: int
    payload: bytes = b""


SerfMessage = SerfJoin | SerfLeave | SerfUserEvent | SerfQuery | SerfQueryResponse | SerfPushPull

QUERY_FLAG_ACK = 1
QUERY_FLAG_NO_BROADCAST = 2
