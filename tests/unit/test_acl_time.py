"""state/acl.rfc3339 (pure, no datetime import) agrees with datetime's UTC rendering."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from pyconsul.agent.state.acl import rfc3339


def _reference(ts: float) -> str:
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    frac = f".{dt.microsecond:06d}".rstrip("0") if dt.microsecond else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


@given(st.integers(min_value=-2_000_000_000_000_000, max_value=8_000_000_000_000_000))
def test_rfc3339_matches_datetime(us: int) -> None:
    ts = us / 1_000_000
    assert rfc3339(ts) == _reference(round(ts, 6))


def test_rfc3339_known_values() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(951782400.5) == "2000-02-29T00:00:00.5Z"
