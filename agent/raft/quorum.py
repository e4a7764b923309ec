"""Majority arithmetic for Raft: commit index, vote tallies, quorum contact times.

Pure functions over plain values. "Voters" are the servers with Suffrage.VOTER in the configuration
that is in force (the latest one in the log, appended or not: Raft thesis §4.1). Non-voters never count.
A configuration without voters has no quorum: nothing commits and nobody wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import TypeVar

T = TypeVar("T", int, float)


class VoteResult(Enum):
    PENDING = 0
    WON = 1
    LOST = 2


def majority(n: int) -> int:
    """Smallest number of voters that is more than half of n (Raft §5.2). majority(0) == 1: unreachable."""
    return n // 2 + 1


def quorum_value(values: Iterable[T], default: T) -> T:
    """The largest v such that a majority of `values` are >= v (one value per voter).

    With match indexes this is the highest index stored on a majority (§5.3); with contact times it is
    the latest instant by which a majority had been heard from. `default` when there are no voters.
    """
    ordered = sorted(values, reverse=True)
    if not ordered:
        return default
    return ordered[majority(len(ordered)) - 1]


def committed_index(voters: Iterable[str], match: Mapping[str, int]) -> int:
    """Highest index replicated on a majority of voters (missing voters count as 0).

    The caller must still apply the §5.4.2 rule: only an index whose entry has the leader's current
    term may be committed by counting replicas.
    """
    return quorum_value((match.get(v, 0) for v in voters), 0)


def vote_result(voters: Iterable[str], votes: Mapping[str, bool]) -> VoteResult:
    """Tally a (pre-)election: WON on a majority of grants, LOST once a majority can no longer be reached."""
    vs = list(dict.fromkeys(voters))
    if not vs:
        return VoteResult.LOST
    need = majority(len(vs))
    granted = sum(1 for v in vs if votes.get(v) is True)
    rejected = sum(1 for v in vs if votes.get(v) is False)
    if granted >= need:
        return VoteResult.WON
    if len(vs) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING
