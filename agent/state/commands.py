"""Commands of the replicated state machine: what a Raft log entry's `data` carries.

Encoding (`encode`/`decode`): msgpack (bin type on) of a 2-array `[type_tag, body]`, where `type_tag` is a
CommandType number and `body` a map from field name to value (nested dataclasses are maps, tuples arrays,
dict keys sorted). CommandType numbers are append-only: they are persisted in every Raft log and
snapshot, so a number is never reused or renumbered. A field added later must have a default.
`decode` raises DecodeError (a ValueError) on anything malformed; it never returns a half-built command.

Time: commands whose effect depends on the clock carry `now` (Unix seconds, float), stamped once by the
leader when it proposes the entry, so every replica computes the same deadlines and lock delays:
KVLock and Txn (lock-delay check), Register and Deregister (a critical or removed check invalidates
sessions, which starts lock delays), SessionCreate/SessionRenew (TTL deadline) and SessionDestroy
(lock delays). `now` is keyword-only and required: forgetting to stamp it is a TypeError, not a silent
wrong answer.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from enum import IntEnum

from pyconsul.agent.records import shared_repr
from pyconsul.agent.state.acl_defs import ACLPolicy, ACLRole, ACLToken
from pyconsul.agent.state.query_defs import PreparedQueryDef
from pyconsul.agent.state.wire import DecodeError, from_wire, pack, to_wire, unpack

__all__ = [
    "KVCAS",
    "ACLBootstrap",
    "ACLPolicyApply",
    "ACLRoleApply",
    "ACLTokenApply",
    "AutopilotConf",
    "AutopilotSet",
    "CheckDef",
    "CheckDefinition",
    "Command",
    "CommandType",
    "Coord",
    "CoordinateBatchUpdate",
    "CoordinateUpdate",
    "DecodeError",
    "Deregister",
    "KVDelete",
    "KVDeleteCAS",
    "KVDeleteTree",
    "KVLock",
    "KVSet",
    "KVUnlock",
    "PreparedQueryApply",
    "Register",
    "Restore",
    "ServiceAddress",
    "ServiceDef",
    "SessionCreate",
    "SessionDestroy",
    "SessionRenew",
    "TombstoneReap",
    "Txn",
    "TxnOp",
    "decode",
    "encode",
]


class CommandType(IntEnum):
    """Wire tags. Append-only: the numbers are part of the persisted log format."""

    KV_SET = 1
    KV_CAS = 2
    KV_DELETE = 3
    KV_DELETE_CAS = 4
    KV_DELETE_TREE = 5
    KV_LOCK = 6
    KV_UNLOCK = 7
    TXN = 8
    REGISTER = 9
    DEREGISTER = 10
    SESSION_CREATE = 11
    SESSION_DESTROY = 12
    SESSION_RENEW = 13
    TOMBSTONE_REAP = 14
    RESTORE = 15
    COORDINATE_BATCH_UPDATE = 16
    PREPARED_QUERY = 17
    ACL_TOKEN = 18
    ACL_POLICY = 19
    ACL_ROLE = 20
    ACL_BOOTSTRAP = 21
    AUTOPILOT = 22


# ---------------------------------------------------------------- KV


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class KVSet:
    """PUT /v1/kv/<key>. Keeps an existing lock holder (Session) and LockIndex. Result: True."""

    key: str
    value: bytes = b""
    flags: int = 0


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class KVCAS:
    """PUT ?cas=<index>: index 0 = create only if absent; else only if ModifyIndex == index. Result: bool."""

    key: str
    value: bytes = b""
    flags: int = 0
    index: int = 0


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class KVDelete:
    """DELETE /v1/kv/<key>. Result: True (also when the key did not exist)."""

    key: str


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class KVDeleteCAS:
    """DELETE ?cas=<index>. Result: True if deleted or already absent, False on an index mismatch."""

    key: str
    index: int


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class KVDeleteTree:
    """DELETE ?recurse: every key starting with prefix ("" = everything). Result: True."""

    prefix: str


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class KVLock:
    """PUT ?acquire=<session>. Result: bool (False: held by another session or under lock-delay);
    StateError for a missing or unknown session."""

    key: str
    value: bytes = b""
    flags: int = 0
    session: str = ""
    _: KW_ONLY
    now: float


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class KVUnlock:
    """PUT ?release=<session>. Result: bool (False: key absent or not held by that session)."""

    key: str
    value: bytes = b""
    flags: int = 0
    session: str = ""


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class TxnOp:
    """One KV op of /v1/txn. verb: set, cas, lock, unlock, get, get-tree, check-index, check-session,
    check-not-exists, delete, delete-tree, delete-cas. `index` is the request's Index field."""

    verb: str
    key: str
    value: bytes = b""
    flags: int = 0
    index: int = 0
    session: str = ""


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Txn:
    """PUT /v1/txn (KV ops only). All-or-nothing. Result: TxnResult (errors carry the failing op indices)."""

    ops: tuple[TxnOp, ...]
    _: KW_ONLY
    now: float


# ---------------------------------------------------------------- catalog


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class ServiceDef:
    """The Service of a catalog register request. id "" means id = service name."""

    id: str = ""
    service: str = ""
    tags: tuple[str, ...] = ()
    address: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    port: int = 0
    tagged_addresses: dict[str, ServiceAddress] = field(default_factory=dict)  # e.g. "lan", "wan"
    weights_passing: int = 1
    weights_warning: int = 1
    enable_tag_override: bool = False


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class ServiceAddress:
    """A service's tagged address (Consul's ServiceAddress)."""

    address: str = ""
    port: int = 0


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class CheckDefinition:
    """What a catalog check shows as "Definition" (Consul's HealthCheckDefinition). Durations in seconds."""

    http: str = ""
    tls_skip_verify: bool = False
    header: dict[str, tuple[str, ...]] = field(default_factory=dict)
    method: str = ""
    tcp: str = ""
    interval: float = 0.0
    timeout: float = 0.0
    deregister_critical_service_after: float = 0.0


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class CheckDef:
    """A check of a register request. check_id "" means check_id = name; node "" means the request's
    node; status "" means critical (Consul's default for new checks)."""

    check_id: str = ""
    name: str = ""
    status: str = ""
    node: str = ""
    service_id: str = ""
    notes: str = ""
    output: str = ""
    type: str = ""  # "ttl", "http", "tcp", "script", "alias"; "" for checks registered in the catalog directly
    definition: CheckDefinition = field(default_factory=CheckDefinition)


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Register:
    """PUT /v1/catalog/register. The request's single `Check` goes into `checks` (as Consul does).
    All-or-nothing. Result: True or StateError."""

    node: str
    address: str = ""
    id: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    node_meta: dict[str, str] = field(default_factory=dict)
    service: ServiceDef | None = None
    checks: tuple[CheckDef, ...] = ()
    skip_node_update: bool = False
    _: KW_ONLY
    now: float


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Deregister:
    """PUT /v1/catalog/deregister: service_id if set, else check_id if set, else the whole node
    (cascading to its services, checks and sessions). Absent targets are a no-op. Result: True."""

    node: str
    service_id: str = ""
    check_id: str = ""
    _: KW_ONLY
    now: float


# ---------------------------------------------------------------- sessions


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SessionCreate:
    """PUT /v1/session/create. The leader picks `id` (a UUID). ttl_seconds 0 = no TTL, else 10..86400.
    `checks` are node check IDs; the HTTP layer supplies ["serfHealth"] when the request omits Checks.
    Result: the session id, or StateError."""

    id: str
    node: str
    name: str = ""
    ttl_seconds: float = 0.0
    lock_delay_seconds: float = 15.0
    behavior: str = "release"
    checks: tuple[str, ...] = ()
    _: KW_ONLY
    now: float


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SessionDestroy:
    """PUT /v1/session/destroy/<id>, or the leader expiring a TTL. Result: True (also if absent)."""

    id: str
    _: KW_ONLY
    now: float


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class SessionRenew:
    """PUT /v1/session/renew/<id>: deadline := now + 2 × TTL. Changes no table index.
    Result: the Session record, or None if the session does not exist (HTTP 404)."""

    id: str
    _: KW_ONLY
    now: float


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class TombstoneReap:
    """Leader's tombstone GC: drop KV tombstones whose index <= `index`. Result: True."""

    index: int


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Restore:
    """PUT /v1/snapshot: replace the whole state with a snapshot (state/snapshot.py bytes). Committed
    through the log like any write, so every replica switches state at the same index. Result: True;
    StateError when `state` is not a valid snapshot (the state is then left as it was).
    A state larger than one entry travels as pieces (state/restore.py): `state` is then the piece at
    `offset` of a state of `total` bytes, `id` names the restore; the last piece switches the state."""

    state: bytes
    id: str = ""
    offset: int = 0
    total: int = 0


# ---------------------------------------------------------------- network coordinates


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Coord:
    """A Vivaldi network coordinate (agent/gossip/coordinate.py), seconds; finite by the wire's float rule."""

    vec: tuple[float, ...] = ()
    error: float = 0.0
    adjustment: float = 0.0
    height: float = 0.0


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class CoordinateUpdate:
    node: str
    coord: Coord
    segment: str = ""


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class CoordinateBatchUpdate:
    """Consul's CoordinateBatchUpdateType: set the coordinates of nodes; updates for nodes not in the catalog
    are skipped (their coordinates go with the node). Result: True; StateError above MAX_COORDINATE_BATCH."""

    updates: tuple[CoordinateUpdate, ...]


# ---------------------------------------------------------------- prepared queries


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class PreparedQueryApply:
    """Consul's PreparedQueryRequestType: op "create" (query.id new), "update" (replace; create_index kept) or
    "delete" (only query.id is read). Result: True; False for an update or delete of an unknown ID (nothing
    changes); StateError for a name taken by another query or aliasing a query ID, an unknown session, a bad
    template, or too many queries (state/prepared_queries.py)."""

    op: str
    query: PreparedQueryDef


# ---------------------------------------------------------------- ACLs (state/acl.py)


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class ACLTokenApply:
    """op "create" (accessor and secret new), "update" (same secret and locality; create_index kept) or "delete"
    (only token.accessor_id is read; the anonymous token cannot be deleted). Policy links by ID or name must name
    existing policies. Result: True; False for an update or delete of an unknown accessor."""

    op: str
    token: ACLToken


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class ACLPolicyApply:
    """op "create", "update" or "delete" (only policy.id is read). Names are unique; the builtin
    global-management policy cannot be deleted, renamed or given other rules. Result as ACLTokenApply."""

    op: str
    policy: ACLPolicy


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class ACLRoleApply:
    """op "create", "update" or "delete" (only role.id is read). Names are unique; policy links must name existing
    policies. Result as ACLTokenApply."""

    op: str
    role: ACLRole


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class ACLBootstrap:
    """Create the first management token (linked to global-management) once: refused after a bootstrap unless
    reset_index equals the index of that bootstrap (Consul's acl-bootstrap-reset). Result: True."""

    token: ACLToken
    reset_index: int = 0


# ---------------------------------------------------------------- autopilot (state/autopilot.py)


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class AutopilotConf:
    """Autopilot's settings as the state keeps them (Consul's autopilot.Config; server/autopilot.py's
    AutopilotConfig is the leader's view of it). Durations in seconds. The indexes are set by the state
    machine (ignored in a command)."""

    cleanup_dead_servers: bool = True
    last_contact_threshold: float = 0.2
    max_trailing_logs: int = 250
    server_stabilization_time: float = 10.0
    create_index: int = 0
    modify_index: int = 0


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class AutopilotSet:
    """Consul's AutopilotRequestType: set the settings. `cas`: only if the stored settings' ModifyIndex is
    `index` (never when there are none, as Consul). `seed`: only if there are none (the leader's settings from
    its config file, at establishment). Result: bool (False: nothing changed)."""

    config: AutopilotConf
    cas: bool = False
    index: int = 0
    seed: bool = False


Command = (
    KVSet | KVCAS | KVDelete | KVDeleteCAS | KVDeleteTree | KVLock | KVUnlock | Txn
    | Register | Deregister | SessionCreate | SessionDestroy | SessionRenew | TombstoneReap | Restore
    | CoordinateBatchUpdate | PreparedQueryApply | ACLTokenApply | ACLPolicyApply | ACLRoleApply | ACLBootstrap
    | AutopilotSet
)

_CLASSES: dict[CommandType, type] = {
    CommandType.KV_SET: KVSet,
    CommandType.KV_CAS: KVCAS,
    CommandType.KV_DELETE: KVDelete,
    CommandType.KV_DELETE_CAS: KVDeleteCAS,
    CommandType.KV_DELETE_TREE: KVDeleteTree,
    CommandType.KV_LOCK: KVLock,
    CommandType.KV_UNLOCK: KVUnlock,
    CommandType.TXN: Txn,
    CommandType.REGISTER: Register,
    CommandType.DEREGISTER: Deregister,
    CommandType.SESSION_CREATE: SessionCreate,
    CommandType.SESSION_DESTROY: SessionDestroy,
    CommandType.SESSION_RENEW: SessionRenew,
    CommandType.TOMBSTONE_REAP: TombstoneReap,
    CommandType.RESTORE: Restore,
    CommandType.COORDINATE_BATCH_UPDATE: CoordinateBatchUpdate,
    CommandType.PREPARED_QUERY: PreparedQueryApply,
    CommandType.ACL_TOKEN: ACLTokenApply,
    CommandType.ACL_POLICY: ACLPolicyApply,
    CommandType.ACL_ROLE: ACLRoleApply,
    CommandType.ACL_BOOTSTRAP: ACLBootstrap,
    CommandType.AUTOPILOT: AutopilotSet,
}
_TAGS: dict[type, CommandType] = {cls: tag for tag, cls in _CLASSES.items()}


def encode(cmd: Command) -> bytes:
    """Bytes for a Raft entry. Deterministic: equal commands give equal bytes."""
    tag = _TAGS.get(type(cmd))
    if tag is None:
        raise TypeError(f"not a state command: {type(cmd).__name__}")
    return pack([int(tag), to_wire(cmd)])


def is_restore(data: bytes) -> bool:
    """Cheap: whether `data` encodes a Restore ([15, {...}] as encode() writes it), the one command whose
    decoding costs time proportional to the whole state (the driver decodes it on a worker thread)."""
    return data[:2] == bytes((0x92, int(CommandType.RESTORE)))


def decode(data: bytes) -> Command:
    """Inverse of encode. Raises DecodeError on garbage, an unknown tag, or a malformed body."""
    obj = unpack(data)
    if not isinstance(obj, list) or len(obj) != 2:
        raise DecodeError("a command is a 2-array [type, body]")
    tag, body = obj
    if not isinstance(tag, int) or isinstance(tag, bool):
        raise DecodeError(f"command type must be an int, got {type(tag).__name__}")
    try:
        cls = _CLASSES[CommandType(tag)]
    except ValueError:
        raise DecodeError(f"unknown command type {tag}") from None
    cmd: Command = from_wire(cls, body)
    return cmd
