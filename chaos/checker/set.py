"""Set checker (Jepsen's `set` checker): unique adds, then a final read of the whole set.

Each element is added at most once (chaos/generator.py `SetGenerator`). Given the LAST ok read (taken
after the nemesis healed and the cluster settled; earlier reads are ignored, since a set may legitimately
lag while partitioned), classify the attempted elements:

- ok: acknowledged (add completed ok) and present;
- lost: acknowledged but absent — the database forgot an acknowledged write (invalid);
- unexpected: present but never attempted (invalid);
- failed_present: present although its add completed `fail`, which claims it certainly did not happen
  (invalid; a client that is unsure must report `info`);
- recovered: indeterminate (info) adds that are present — fine, they happened;
- missing_info: indeterminate adds that are absent — fine, they did not happen.

Valid iff nothing is lost, unexpected or failed_present; "unknown" when there is no ok read.
Elements must be hashable (JSON scalars; arrays load as tuples).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyconsul.chaos.checker.result import UNKNOWN, Validity
from pyconsul.chaos.history import FAIL, INFO, OK, HistoryError, Op, Value, pairs

ADD, READ = "add", "read"


def _sorted(xs: Iterable[Value]) -> list[Any]:
    return sorted(xs, key=lambda x: (type(x).__name__, repr(x) if not isinstance(x, int | float) else x))


@dataclass(frozen=True, slots=True)
class SetResult:
    valid: Validity
    attempt_count: int
    acknowledged_count: int
    read_count: int | None  # size of the final read (None: there was none)
    ok: frozenset[Value] = frozenset()
    lost: frozenset[Value] = frozenset()
    unexpected: frozenset[Value] = frozenset()
    failed_present: frozenset[Value] = frozenset()
    recovered: frozenset[Value] = frozenset()
    missing_info: frozenset[Value] = frozenset()
    duplicates: int = 0  # elements listed more than once in the final read (reported, not judged)
    final_read_index: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"valid": self.valid, "checker": "set", "attempt_count": self.attempt_count,
                             "acknowledged_count": self.acknowledged_count, "read_count": self.read_count,
                             "ok_count": len(self.ok), "lost_count": len(self.lost),
                             "unexpected_count": len(self.unexpected), "recovered_count": len(self.recovered),
                             "lost": _sorted(self.lost), "unexpected": _sorted(self.unexpected),
                             "failed_present": _sorted(self.failed_present), "recovered": _sorted(self.recovered),
                             "missing_info_count": len(self.missing_info), "duplicates": self.duplicates,
                             "final_read_index": self.final_read_index}
        if self.reason is not None:
            d["reason"] = self.reason
        return d


def check(history: Sequence[Op]) -> SetResult:
    attempts: set[Value] = set()
    acked: set[Value] = set()
    failed: set[Value] = set()
    info: set[Value] = set()
    final: Op | None = None
    for pr in pairs(history):
        if pr.f == ADD:
            x = pr.invoke.value
            attempts.add(x)
            {OK: acked, FAIL: failed, INFO: info}[pr.type].add(x)
        elif pr.f == READ and pr.type == OK and pr.completion is not None and (
                final is None or pr.completion.index > final.index):
            final = pr.completion
    info -= acked  # an element attempted twice counts as acknowledged if either attempt was
    failed -= acked | info
    if final is None:
        return SetResult(UNKNOWN, len(attempts), len(acked), None, reason="no ok read: nothing to compare")
    if not isinstance(final.value, tuple):
        raise HistoryError(f"event {final.index}: a set read returns an array, got {final.value!r}")
    read = set(final.value)
    lost, unexpected, failed_present = acked - read, read - attempts, read & failed
    return SetResult(
        valid=not (lost or unexpected or failed_present), attempt_count=len(attempts),
        acknowledged_count=len(acked), read_count=len(read), ok=frozenset(acked & read), lost=frozenset(lost),
        unexpected=frozenset(unexpected), failed_present=frozenset(failed_present),
        recovered=frozenset(info & read), missing_info=frozenset(info - read),
        duplicates=len(final.value) - len(read), final_read_index=final.index)
