"""When KV tombstones may be reaped (Consul's TombstoneGC), as a pure object: hints in, reap indexes out.

A tombstone exists so that a blocking read of a prefix sees a delete (its index moves past the deleted
key's). Once no blocking query can still be waiting with an index from before the delete, the tombstone is
garbage. A blocking query waits at most 10 minutes plus wait/16 of jitter, so Consul keeps tombstones for
`ttl` = 15 minutes after the delete, then the leader commits a reap of everything at or below that index.

Deletes are grouped in bins of `granularity` (30 s): each bin remembers the highest index deleted in it
and expires at the end of its window + ttl, so a burst of 100,000 deletes costs one reap, not 100,000.

Only the leader runs a GC (`enabled`). A new leader hints its last log index when it takes over, which
covers every tombstone its predecessor created: they are reaped no earlier than ttl after the takeover.
Invariant: `expired(now)` never returns an index hinted less than `ttl` before `now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_TTL = 15 * 60.0  # Consul: TombstoneTTL
DEFAULT_GRANULARITY = 30.0  # Consul: TombstoneTTLGranularity


@dataclass
class TombstoneGC:
    ttl: float = DEFAULT_TTL
    granularity: float = DEFAULT_GRANULARITY
    enabled: bool = False
    bins: dict[float, int] = field(default_factory=dict)  # expiry time -> highest index hinted in its window

    def __post_init__(self) -> None:
        if not (self.ttl > 0 and self.granularity > 0 and math.isfinite(self.ttl) and math.isfinite(self.granularity)):
            raise ValueError("tombstone GC: ttl and granularity must be positive and finite")

    def set_enabled(self, enabled: bool) -> None:
        """Leadership gained (True) or lost (False: pending bins are the next leader's business)."""
        self.enabled = enabled
        if not enabled:
            self.bins.clear()

    def hint(self, index: int, now: float) -> None:
        """Tombstones up to `index` exist as of `now` (a delete was applied, or leadership was taken)."""
        if not self.enabled or index <= 0:
            return
        expiry = (math.floor((now + self.ttl) / self.granularity) + 1) * self.granularity
        if self.bins.get(expiry, 0) < index:
            self.bins[expiry] = index

    def next_deadline(self) -> float:
        return min(self.bins, default=math.inf)

    def expired(self, now: float) -> int:
        """The highest index whose tombstones may be reaped now (0: none); those bins are consumed."""
        due = [t for t in self.bins if t <= now]
        index = max((self.bins.pop(t) for t in due), default=0)
        return index
