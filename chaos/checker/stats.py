"""Stats checker (Jepsen's `stats`): completions per function — ok, fail, info — and their rates.

Valid iff every function has at least one ok completion (a function that never succeeds means the test
exercised nothing). An invocation the history ends without completing counts as info. An empty history
is "unknown": no completions are no evidence either way. Only client events count (not the nemesis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyconsul.chaos.checker.result import UNKNOWN, Validity
from pyconsul.chaos.history import FAIL, INFO, OK, Op, pairs


@dataclass(frozen=True, slots=True)
class FStats:
    count: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0

    @property
    def valid(self) -> bool:
        return self.ok > 0

    def to_dict(self) -> dict[str, Any]:
        n = self.count or 1
        return {"valid": self.valid, "count": self.count, "ok_count": self.ok, "fail_count": self.fail,
                "info_count": self.info, "ok_rate": self.ok / n, "fail_rate": self.fail / n,
                "info_rate": self.info / n}


@dataclass(frozen=True, slots=True)
class StatsResult:
    valid: Validity
    total: FStats
    by_f: dict[str, FStats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"checker": "stats", **self.total.to_dict()}
        d["valid"] = self.valid
        d["by_f"] = {f: s.to_dict() for f, s in sorted(self.by_f.items())}
        return d


def check(history: Sequence[Op]) -> StatsResult:
    counts: dict[str, list[int]] = {}  # f -> [ok, fail, info]
    slot = {OK: 0, FAIL: 1, INFO: 2}
    for pr in pairs(history):
        counts.setdefault(pr.f, [0, 0, 0])[slot[pr.type]] += 1
    by_f = {f: FStats(sum(c), c[0], c[1], c[2]) for f, c in counts.items()}
    total = FStats(sum(s.count for s in by_f.values()), sum(s.ok for s in by_f.values()),
                   sum(s.fail for s in by_f.values()), sum(s.info for s in by_f.values()))
    valid: Validity = UNKNOWN if not by_f else all(s.valid for s in by_f.values())
    return StatsResult(valid, total, by_f)
