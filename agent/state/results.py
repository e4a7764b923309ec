"""What `StateStore.apply` returns besides plain values, and the internal failure signal.

Contract: apply never raises. A command that cannot be applied returns StateError (and changes nothing);
a Txn returns TxnResult, whose `errors` are non-empty exactly when the transaction was rolled back.

Every server applies every entry and keeps the typed result; only the server whose writer waits for the
entry turns it into an answer: StateError becomes `agent.errors.CommandRejected`, and a result that
crosses server RPC to a forwarding server travels as `reply_to_wire` / `reply_from_wire`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyconsul.agent.state.tables import KVEntry, Session
from pyconsul.agent.state.wire import DecodeError, from_wire, to_wire


class StateFailure(Exception):
    """Raised inside an apply to abort the command; its message becomes StateError.message."""


@dataclass(frozen=True, slots=True)
class StateError:
    """The command was rejected (or was garbage); the state is unchanged. The writer raises it as
    CommandRejected (HTTP 400: the request conflicts with the state), or as Internal (500) when `internal`:
    the state machine failed on a valid command (a bug), not the request."""

    message: str
    internal: bool = False

    def __bool__(self) -> bool:  # so `if result:` treats a rejection as failure
        return False


@dataclass(frozen=True, slots=True)
class TxnError:
    op_index: int
    what: str


@dataclass(frozen=True, slots=True)
class TxnResult:
    """results: one KVEntry per result-producing op (get-tree yields several), in op order; values are
    blanked (b"") except for get and get-tree. errors: empty on success; otherwise results is ()."""

    results: tuple[KVEntry, ...] = ()
    errors: tuple[TxnError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


# A successful write's result: True/False (KV, catalog), a session id (str), None (renew of an unknown
# session), TxnResult or Session.
WriteResult = bool | str | int | None | TxnResult | Session


def reply_to_wire(result: WriteResult) -> Any:
    """A successful write's result as msgpack-ready data for a server-RPC reply:
    scalars as they are; {"txn": TxnResult map}; {"session": Session map}. StateError has no wire form:
    the writer raises it as CommandRejected, which travels as a typed error."""
    if isinstance(result, TxnResult):
        return {"txn": to_wire(result)}
    if isinstance(result, Session):
        return {"session": to_wire(result)}
    if result is None or isinstance(result, bool | str | int):
        return result
    raise TypeError(f"not a write result: {type(result).__name__}")


def reply_from_wire(obj: Any) -> WriteResult:
    """The inverse of reply_to_wire; DecodeError on anything else."""
    if isinstance(obj, dict):
        if "txn" in obj:
            return from_wire(TxnResult, obj["txn"])
        if "session" in obj:
            return from_wire(Session, obj["session"])
        raise DecodeError(f"unknown write reply with keys {sorted(map(str, obj))}")
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    raise DecodeError(f"unknown write reply of type {type(obj).__name__}")
