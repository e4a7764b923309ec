"""Server robustness pieces that need no process: X-Consul-LastContact is always a finite integer."""

from __future__ import annotations

import math

import pytest

from agent.server.server import MAX_LAST_CONTACT_MS, last_contact_ms


@pytest.mark.parametrize(("ms", "expected"), [
    (0.0, 0), (12.7, 12), (-3.0, 0), (math.inf, MAX_LAST_CONTACT_MS), (math.nan, MAX_LAST_CONTACT_MS),
    (1e30, MAX_LAST_CONTACT_MS),
])
def test_last_contact_is_a_finite_integer(ms: float, expected: int) -> None:
    assert last_contact_ms(ms) == expected
    assert MAX_LAST_CONTACT_MS == 9223372036854  # Go's time.Since(time.Time{}) in ms, what Consul sends
