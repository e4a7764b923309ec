"""Anti-entropy timing (Consul's agent/ae), pure: how long to wait before the next full sync.

A full sync (read this node from the catalog, compare, write what differs) runs every SYNC_INTERVAL plus a
random stagger; in clusters of more than SCALE_THRESHOLD nodes the interval is scaled by
`scale_factor(n)` = ceil(log2(n) - log2(128)) + 1 (Consul's aeScale), so a large cluster's servers see a
bounded rate of syncs: 256 nodes sync every 2 min, 1,024 every 4 min, 8,192 every 7 min.
Changes between full syncs are pushed at once (sync.py); a failed sync is retried after
`retry_delay(attempt)`.
"""

from __future__ import annotations

import math

__all__ = ["RETRY_MAX", "SCALE_THRESHOLD", "SYNC_INTERVAL", "full_sync_delay", "retry_delay", "scale_factor"]

SYNC_INTERVAL = 60.0  # Consul's 1 min base
SCALE_THRESHOLD = 128
RETRY_MAX = 15.0  # Consul's retryFailIntv


def scale_factor(nodes: int) -> int:
    """1 up to SCALE_THRESHOLD nodes, then one more per doubling."""
    if nodes <= SCALE_THRESHOLD:
        return 1
    return math.ceil(math.log2(nodes) - math.log2(SCALE_THRESHOLD)) + 1


def full_sync_delay(nodes: int, r: float, interval: float = SYNC_INTERVAL) -> float:
    """Seconds until the next full sync: the scaled interval plus a stagger of r (in [0, 1)) times it."""
    scaled = interval * scale_factor(nodes)
    return scaled + r * scaled


def retry_delay(attempt: int, r: float) -> float:
    """After the attempt-th consecutive failure (1-based): 1, 2, 4, 8 s ... up to RETRY_MAX, plus up to
    half of that again (r in [0, 1)). Shorter than Consul's flat 15 s at first, so an agent that starts
    before its servers have a leader registers its services soon after they do."""
    base = min(RETRY_MAX, 2.0 ** max(0, attempt - 1))
    return base + r * base / 2
