"""The result shape every checker shares, and how validities merge.

A checker is a pure function from a history to a result whose `to_dict()` is JSON-serialisable and has
the form `{"valid": True | False | "unknown", "checker": name, ...details}` (Jepsen's `:valid?`).
"unknown" means the checker could not decide (time budget exhausted, no final read, an error): it is
never a guess. Merging follows Jepsen's `merge-valid`: False beats "unknown" beats True.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

from pyconsul.chaos.history import Op

Validity = bool | Literal["unknown"]
UNKNOWN: Literal["unknown"] = "unknown"


class CheckResult(Protocol):
    @property
    def valid(self) -> Validity: ...

    def to_dict(self) -> dict[str, Any]: ...


Checker = Callable[[Sequence[Op]], CheckResult]


def merge_validity(validities: Iterable[Validity]) -> Validity:
    """False if any is False, else "unknown" if any is unknown, else True (True for none)."""
    result: Validity = True
    for v in validities:
        if v is False:
            return False
        if v == UNKNOWN:
            result = UNKNOWN
        elif v is not True:
            raise ValueError(f"not a validity: {v!r}")
    return result
