"""A request's `?filter=` for one endpoint: compiled against that endpoint's schema, cached, and refused
with a BadRequest (HTTP 400) whose text is Consul's and names the position.

    keep = request_filter(expr, "/v1/health/service/")   # a Filter; .evaluate(item) -> bool

Consul 1.7 answers an unusable filter with 500 "Failed to create boolean expression evaluator: ...";
issue 12 asks for 400 (README says so). The message is Consul's; where it does not already start with
go-bexpr's `line:column (offset)` position, " (at offset N)" is added.

Compiled filters are cached per (expression, endpoint), at most CACHE_SIZE of them: blocking watchers
re-run the same read on every wake-up, and 2,000 of them usually share one expression. Pure (no I/O).
"""

from __future__ import annotations

import re
from functools import lru_cache

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.filter import Filter, FilterError, compile
from pyconsul.agent.filter.schemas import ENDPOINT_FIELDS

__all__ = ["CACHE_SIZE", "request_filter"]

CACHE_SIZE = 256
_POSITIONED = re.compile(r"^\d+:\d+ \(\d+\)")


def request_filter(expression: str, endpoint: str) -> Filter:
    """The compiled filter for `endpoint` (a key of schemas.ENDPOINT_FIELDS); BadRequest if unusable."""
    if endpoint not in ENDPOINT_FIELDS:
        raise KeyError(f"no filter schema for {endpoint!r}")
    return _compiled(expression, endpoint)


@lru_cache(maxsize=CACHE_SIZE)
def _compiled(expression: str, endpoint: str) -> Filter:
    try:
        return compile(expression, ENDPOINT_FIELDS[endpoint])
    except FilterError as err:
        text = err.consul_message
        if err.position is not None and not _POSITIONED.match(err.message):
            text += f" (at offset {err.position})"
        raise BadRequest(text) from None
