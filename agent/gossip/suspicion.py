"""Lifeguard suspicion timer (Lifeguard §IV-B "Local Health Aware Suspicion").

A suspicion starts at max_timeout and shrinks towards min_timeout as independent peers
confirm it: timeout(c) = max - log(c+1)/log(k+1) * (max - min), never below min, where k is
the number of confirmations expected. With k < 1 the timeout is min from the start.
Pure: the owner asks `deadline` and compares it with its own clock.
"""

from __future__ import annotations

import math


def suspicion_timeout(mult: int, n: int, interval: float) -> float:
    """memberlist's base: mult x max(1, log10(max(1, n))) x interval (rounded to the ms)."""
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return mult * math.floor(node_scale * 1000) / 1000 * interval


def remaining_fraction(confirmations: int, k: int, min_timeout: float, max_timeout: float) -> float:
    """Total suspicion time after `confirmations` independent confirmations."""
    if k < 1:
        return min_timeout
    frac = math.log(confirmations + 1.0) / math.log(k + 1.0)
    raw = max_timeout - frac * (max_timeout - min_timeout)
    return max(math.floor(raw * 1000.0) / 1000.0, min_timeout)


class Suspicion:
    """One suspicion of one node, started at `start` by `from_`."""

    def __init__(self, from_: str, k: int, min_timeout: float, max_timeout: float, start: float) -> None:
        self.k = k
        self.min = min_timeout
        self.max = max_timeout
        self.start = start
        self.confirmers = {from_}
        self.n = 0
        self.timeout = min_timeout if k < 1 else max_timeout

    @property
    def deadline(self) -> float:
        return self.start + self.timeout

    def confirm(self, from_: str) -> bool:
        """Count an independent confirmation. True if it was new (and should be re-gossiped)."""
        if self.n >= self.k or from_ in self.confirmers:
            return False
        self.confirmers.add(from_)
        self.n += 1
        self.timeout = remaining_fraction(self.n, self.k, self.min, self.max)
        return True
