"""serf queries, the parts that hold no serf state (serf's query.go): the effects a query produces for the
shell, a started query's bookkeeping, the default timeout, and the filters of a query (decoded from their wire
form) matched against a member. Pure. The query handling itself is the Serf core's (agent/gossip/serf.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from pyconsul.agent.gossip import codec
from pyconsul.agent.gossip.codec import DecodeError
from pyconsul.agent.gossip.messages import SerfQuery

QUERY_TIMEOUT_MULT = 16  # serf: default query timeout = gossip interval x 16 x ceil(log10(N+1))


@dataclass(frozen=True, slots=True)
class QueryReceived:
    """A query addressed to us that the shell must answer with `respond` (e.g. keyring ops)."""

    query: SerfQuery


@dataclass(frozen=True, slots=True)
class QueryComplete:
    """Every alive member has answered the query we started with `key` (the shell may stop waiting
    before its deadline)."""

    key: tuple[int, int]


@dataclass(slots=True)
class PendingQuery:
    """A query we started: responses by node name until the deadline."""

    deadline: float
    responses: dict[str, bytes] = field(default_factory=dict)
    acks: set[str] = field(default_factory=set)
    complete: bool = False


def default_timeout(gossip_interval: float, nodes: int) -> float:
    """serf DefaultQueryTimeout: it grows with the log of the cluster's size."""
    return gossip_interval * QUERY_TIMEOUT_MULT * math.ceil(math.log10(nodes + 1))


def filters_match(filters: tuple[bytes, ...], name: str, tags: dict[str, str]) -> bool:
    """serf query filters: node-name lists and tag regexes; all must match (one that does not decode: no)."""
    for f in filters:
        try:
            if not f:
                return False
            if f[0] == 0:
                names = codec.decode_msgpack_any(f[1:])
                if not isinstance(names, list) or name.encode() not in [
                    n if isinstance(n, bytes) else str(n).encode() for n in names
                ]:
                    return False
            elif f[0] == 1:
                m = codec.decode_msgpack(f[1:])
                tag = m.get("Tag", b"")
                expr = m.get("Expr", b"")
                tag_s = tag.decode() if isinstance(tag, bytes) else str(tag)
                expr_s = expr.decode() if isinstance(expr, bytes) else str(expr)
                if tag_s not in tags or not re.search(expr_s, tags[tag_s]):
                    return False
            else:
                return False
        except (DecodeError, re.error, UnicodeDecodeError):
            return False
    return True
