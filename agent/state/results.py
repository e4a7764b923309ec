"""What `StateStore.apply` returns besides plain values, and the internal failure signal.

Contract: apply never raises. A command that cannot be applied returns StateError (and changes nothing);
a Txn returns TxnResult, whose `errors` are non-empty exactly when the transaction was rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.state.tables import KVEntry


class StateFailure(Exception):
    """Raised inside an apply to abort the command; its message becomes StateError.message."""


@dataclass(frozen=True, slots=True)
class StateError:
    """The command was rejected (or was garbage); the state is unchanged. HTTP maps it to 500 or 400."""

    message: str

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
