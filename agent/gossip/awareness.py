"""Lifeguard local-health awareness (Lifeguard §IV-A "Local Health Multiplier").

A node that misses acks or has to refute suspicions about itself is probably the slow one:
it scales its own probe interval and timeouts up instead of accusing healthy peers.
Invariant: 0 <= score < max_multiplier.
"""

from __future__ import annotations


class Awareness:
    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError("max_multiplier must be >= 1")
        self.max = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self.max - 1)

    def scale(self, timeout: float) -> float:
        """timeout x (score + 1): what the probe interval and probe timeout become."""
        return timeout * (self.score + 1)
