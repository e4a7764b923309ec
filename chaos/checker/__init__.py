"""Checkers: pure functions over a history (ARCHITECTURE.md, principles 1 and 8). No I/O, no clock.

    from pyconsul.chaos.checker import compose, linearizable, stats
    from pyconsul.chaos.checker import set as set_checker
    result = compose({"linear": linearizable.check, "set": set_checker.check, "stats": stats.check})(history)
    result.valid, result.to_dict()

`compose` runs several checkers on the same history and merges their validity (False beats "unknown"
beats True, as Jepsen's `compose`); a checker that raises yields "unknown" with the error, not a verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyconsul.chaos.checker.result import UNKNOWN, Checker, CheckResult, Validity, merge_validity
from pyconsul.chaos.history import Op

__all__ = ["UNKNOWN", "CheckResult", "Checker", "Composed", "ErrorResult", "Validity", "compose",
           "merge_validity"]


@dataclass(frozen=True, slots=True)
class ErrorResult:
    """A checker that raised: it decided nothing."""

    checker: str
    error: str
    valid: Validity = UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "checker": self.checker, "error": self.error}


@dataclass(frozen=True, slots=True)
class Composed:
    valid: Validity
    results: dict[str, CheckResult]

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "checker": "compose",
                "results": {name: r.to_dict() for name, r in self.results.items()}}


def compose(checkers: Mapping[str, Checker]) -> Callable[[Sequence[Op]], Composed]:
    """A checker running each named checker on the history, in the mapping's order."""
    named = dict(checkers)

    def run(history: Sequence[Op]) -> Composed:
        results: dict[str, CheckResult] = {}
        for name, checker in named.items():
            try:
                results[name] = checker(history)
            except Exception as e:  # a crashing checker must not turn into a verdict
                results[name] = ErrorResult(name, f"{type(e).__name__}: {e}")
        return Composed(merge_validity(r.valid for r in results.values()), results)

    return run
