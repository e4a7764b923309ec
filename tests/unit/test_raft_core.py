"""Table-driven tests of single Raft rules in the pure core (agent/raft/core.py and friends).

Cores are driven by hand: messages are built or taken from Ready batches and stepped into other cores.
Timing: heartbeat_timeout = election_timeout = 1 s (timeouts are drawn from [1, 2) s), heartbeat 0.1 s.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import pytest

from pyconsul.agent.config import RaftConfig
from pyconsul.agent.raft.core import ConfigChangeInProgress, LeadershipTransferInProgress, NotLeader, RaftCore
from pyconsul.agent.raft.log import encode_configuration
from pyconsul.agent.raft.messages import (
    AppendRequest,
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Message,
    Ready,
    Role,
    Server,
    Snapshot,
    SnapshotMeta,
    SnapshotRequest,
    SnapshotResponse,
    Suffrage,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from pyconsul.agent.raft.quorum import VoteResult, committed_index, majority, quorum_value, vote_result

T0 = 10.0  # "now" well after start-up, so the start-up stickiness window has passed


def cfg(**kw: object) -> RaftConfig:
    base: dict[str, object] = dict(heartbeat_timeout=1.0, election_timeout=1.0, leader_lease_timeout=0.5,
                                   heartbeat_interval=0.1)
    base.update(kw)
    return RaftConfig(**base)  # type: ignore[arg-type]


def conf(*ids: str) -> Configuration:
    return Configuration(tuple(Server(i, f"{i}:8300") for i in ids))


def log_of(terms: Sequence[int], ids: Sequence[str]) -> list[Entry]:
    """Index 1 is the bootstrap CONFIG entry (term terms[0]); the rest are commands."""
    out = [Entry(terms[0], 1, EntryKind.CONFIG, encode_configuration(conf(*ids)))]
    out += [Entry(t, i, EntryKind.NORMAL, f"x{i}".encode()) for i, t in enumerate(terms[1:], start=2)]
    return out


def make(nid: str = "a", ids: Sequence[str] = ("a", "b", "c"), terms: Sequence[int] = (1,), *, term: int = 0,
         vote: str = "", commit: int = 0, now: float = 0.0, **kw: object) -> RaftCore:
    entries = log_of(terms, ids)
    hs = HardState(max(term, terms[-1]), vote, commit)
    return RaftCore(nid, cfg(**kw), random.Random(1), now, hard_state=hs, entries=entries)


def role(core: RaftCore) -> Role:
    """The role, read through a call (mypy would otherwise narrow `core.role` across steps)."""
    return core.role


def drain(core: RaftCore) -> list[Ready]:
    out = []
    while core.has_ready():
        rd = core.ready()
        out.append(rd)
        core.advance(rd)
    return out


def sent(core: RaftCore) -> list[Message]:
    return [m for rd in drain(core) for m in rd.messages]


def elect(core: RaftCore, now: float = T0) -> list[Message]:
    """Time out and win every (pre-)vote; returns the leader's first messages."""
    core.tick(now)
    msgs = sent(core)
    while core.role != Role.LEADER:
        reqs = [m for m in msgs if isinstance(m, VoteRequest)]
        assert reqs, f"no vote requests from {core.role}"
        for m in reqs:
            core.step(VoteResponse(m.term, m.to, m.from_, True, pre_vote=m.pre_vote), now)
        msgs = sent(core)
    return msgs


def ack(core: RaftCore, frm: str, match: int, now: float = T0, read_ctx: int = 0) -> list[Message]:
    core.step(AppendResponse(core.term, frm, core.id, True, match, read_ctx), now)
    return sent(core)


def cluster_run(cores: dict[str, RaftCore], now: float, rounds: int = 50,
                drop: Iterable[str] = ()) -> None:
    """Deliver every message until quiet (no loss, no delay), except to/from nodes in `drop`."""
    dead = set(drop)
    for _ in range(rounds):
        msgs = [m for c in cores.values() if c.id not in dead for m in sent(c)]
        if not msgs:
            return
        for m in msgs:
            if m.to in cores and m.to not in dead:
                cores[m.to].step(m, now)


# ---------------------------------------------------------------- quorum arithmetic


@pytest.mark.parametrize(("n", "want"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority(n: int, want: int) -> None:
    assert majority(n) == want


@pytest.mark.parametrize(("values", "want"), [([], -1), ([5], 5), ([5, 3], 3), ([1, 9, 5], 5), ([4, 4, 2, 9, 7], 4)])
def test_quorum_value(values: list[int], want: int) -> None:
    assert quorum_value(values, -1) == want


def test_committed_index_ignores_non_voters() -> None:
    assert committed_index(["a", "b", "c"], {"a": 9, "b": 7, "x": 100}) == 7


@pytest.mark.parametrize(("votes", "want"), [
    ({}, VoteResult.PENDING),
    ({"a": True}, VoteResult.PENDING),
    ({"a": True, "b": True}, VoteResult.WON),
    ({"a": True, "b": False}, VoteResult.PENDING),
    ({"a": True, "b": False, "c": False}, VoteResult.LOST),
    ({"x": True, "y": True}, VoteResult.PENDING),  # non-voters do not count
])
def test_vote_result(votes: dict[str, bool], want: VoteResult) -> None:
    assert vote_result(["a", "b", "c"], votes) == want


# ---------------------------------------------------------------- elections


@pytest.mark.parametrize(("req", "granted", "resp_term"), [
    (VoteRequest(3, "b", "a", 3, 2), True, 3),  # equal log, newer term
    (VoteRequest(3, "b", "a", 2, 2), False, 3),  # shorter log with the same last term (§5.4.1)
    (VoteRequest(3, "b", "a", 1, 3), True, 3),  # higher last term beats a longer log
    (VoteRequest(3, "b", "a", 9, 1), False, 3),  # lower last term loses whatever the length
    (VoteRequest(1, "b", "a", 9, 9), False, 2),  # stale term: rejected, told our term
    (VoteRequest(2, "c", "a", 9, 2), False, 2),  # same term, already voted for b
    (VoteRequest(2, "b", "a", 3, 2), True, 2),  # same term, same candidate again
])
def test_vote_granting(req: VoteRequest, granted: bool, resp_term: int) -> None:
    a = make(terms=(1, 2, 2), term=2, vote="b")
    a.step(req, T0)
    rds = drain(a)
    resp = [m for rd in rds for m in rd.messages]
    assert resp == [VoteResponse(resp_term, "a", req.from_, granted)]
    if granted:  # the vote is persisted in the same Ready that carries the response
        hs = [rd.hard_state for rd in rds if rd.hard_state is not None] or [HardState(2, "b", 0)]  # unchanged
        assert hs[-1].vote == req.from_ and hs[-1].term == req.term


def test_higher_term_vote_request_resets_vote_even_when_refused() -> None:
    a = make(terms=(1, 2, 2), term=2, vote="a")
    a.step(VoteRequest(5, "b", "a", 1, 1), T0)
    assert a.term == 5 and a.role == Role.FOLLOWER
    assert sent(a) == [VoteResponse(5, "a", "b", False)]


@pytest.mark.parametrize(("dt", "transfer", "answered"), [
    (0.5, False, False),  # heard from the leader 0.5 s ago: ignore (thesis §4.2.3), keep our term
    (0.5, True, True),  # leadership transfer overrides stickiness
    (1.5, False, True),  # the leader has been silent for a full heartbeat_timeout
])
def test_leader_stickiness(dt: float, transfer: bool, answered: bool) -> None:
    a = make(terms=(1, 1), term=1)
    a.step(AppendRequest(1, "b", "a", 2, 1, (), 0), T0)
    drain(a)
    a.step(VoteRequest(2, "c", "a", 2, 1, transfer=transfer), T0 + dt)
    msgs = sent(a)
    if answered:
        assert msgs == [VoteResponse(2, "a", "c", True)] and a.term == 2
    else:
        assert msgs == [] and a.term == 1 and a.leader == "b"


def test_restart_is_sticky_for_one_timeout() -> None:
    a = make(terms=(1, 1), term=1, now=T0)
    a.step(VoteRequest(2, "c", "a", 2, 1), T0 + 0.1)
    assert sent(a) == []
    a.step(VoteRequest(2, "c", "a", 2, 1), T0 + 1.1)
    assert sent(a) == [VoteResponse(2, "a", "c", True)]


def test_pre_vote_does_not_bump_terms() -> None:
    a = make(terms=(1, 1), term=4, pre_vote=True)
    a.tick(T0)
    assert a.role == Role.PRE_CANDIDATE and a.term == 4
    rds = drain(a)
    reqs = [m for rd in rds for m in rd.messages]
    assert {m.to for m in reqs} == {"b", "c"}
    assert all(isinstance(m, VoteRequest) and m.pre_vote and m.term == 5 for m in reqs)
    assert all(rd.hard_state is None for rd in rds)  # nothing to persist
    # a voter grants the pre-vote without changing its own term or vote
    b = make("b", terms=(1, 1), term=4, vote="c")
    b.step(reqs[0] if reqs[0].to == "b" else reqs[1], T0)
    rds = drain(b)
    assert [m for rd in rds for m in rd.messages] == [VoteResponse(5, "b", "a", True, pre_vote=True)]
    assert b.term == 4 and all(rd.hard_state is None for rd in rds)
    # one grant plus our own is a majority: now the real election, at term 5
    a.step(VoteResponse(5, "b", "a", True, pre_vote=True), T0)
    assert role(a) == Role.CANDIDATE and a.term == 5
    assert all(isinstance(m, VoteRequest) and not m.pre_vote and m.term == 5 for m in sent(a))


def test_pre_vote_refused_for_stale_log() -> None:
    b = make("b", terms=(1, 1, 3), term=3)
    b.step(VoteRequest(4, "a", "b", 9, 2, pre_vote=True), T0)
    assert sent(b) == [VoteResponse(3, "b", "a", False, pre_vote=True)]
    assert b.term == 3


def test_candidate_without_pre_vote_increments_term_and_votes_for_itself() -> None:
    a = make(terms=(1, 1), term=1, pre_vote=False)
    a.tick(T0)
    assert a.role == Role.CANDIDATE and a.term == 2
    rds = drain(a)
    assert rds[0].hard_state == HardState(2, "a", 0)
    assert {m.to for m in rds[0].messages} == {"b", "c"}


def test_election_timeout_is_randomised_within_t_2t() -> None:
    deadlines = set()
    for seed in range(50):
        a = RaftCore("a", cfg(), random.Random(seed), 0.0, entries=log_of((1,), ("a", "b", "c")))
        d = a.next_deadline()
        assert 1.0 <= d < 2.0
        deadlines.add(round(d, 3))
    assert len(deadlines) > 40


def test_noop_on_election() -> None:
    a = make(terms=(1, 1, 1), term=1)
    msgs = elect(a)
    assert a.role == Role.LEADER and a.term == 2 and a.leader == "a"  # pre-vote at 2 does not count; vote at 2
    apps = [m for m in msgs if isinstance(m, AppendRequest)]
    assert {m.to for m in apps} == {"b", "c"}
    assert all(m.entries == (Entry(a.term, 4, EntryKind.NOOP, b""),) and m.prev_log_index == 3 for m in apps)


def test_leader_steps_down_on_higher_term_response() -> None:
    a = make(terms=(1, 1))
    elect(a)
    a.step(AppendResponse(a.term + 3, "b", "a", False, 0), T0)
    assert a.role == Role.FOLLOWER and a.term == 5


# ---------------------------------------------------------------- replication and commit


def test_figure8_only_current_term_entries_commit_by_counting() -> None:
    """Raft Figure 8 (c): S1 leads term 4 holding index 2 from term 2; replicating index 2 to a
    majority must not commit it; committing index 3 (term 4) commits both."""
    ids = ("s1", "s2", "s3", "s4", "s5")
    s1 = make("s1", ids, terms=(1, 2), term=3)
    elect(s1)
    assert s1.term == 4 and s1.last_index == 3
    ack(s1, "s2", 2)
    ack(s1, "s3", 2)
    assert s1.commit_index == 0  # index 2 is on s1, s2, s3 but is of term 2
    ack(s1, "s2", 3)
    assert s1.commit_index == 0
    ack(s1, "s3", 3)
    assert s1.commit_index == 3 and s1.applied == 3


def test_figure8_end_to_end_overwrite_is_allowed_only_for_uncommitted() -> None:
    """Figure 8 (d): the term-2 entry was never committed, so S5 (term 3 at index 2) may win and
    overwrite it everywhere."""
    ids = ("s1", "s2", "s3", "s4", "s5")
    s5 = make("s5", ids, terms=(1, 3), term=4)
    s2 = make("s2", ids, terms=(1, 2), term=4)
    s3 = make("s3", ids, terms=(1, 2), term=4)
    s4 = make("s4", ids, terms=(1,), term=4)
    cores = {c.id: c for c in (s2, s3, s4, s5)}
    s5.tick(T0 + 5)
    cluster_run(cores, T0 + 5)
    assert s5.role == Role.LEADER
    for c in (s2, s3, s4):
        assert c.log.term_at(2) == 3


def test_follower_truncates_conflicting_suffix() -> None:
    b = make("b", terms=(1, 1, 2, 2), term=2)
    b.step(AppendRequest(3, "a", "b", 2, 1, (Entry(3, 3, EntryKind.NORMAL, b"new"),), 0), T0)
    rds = drain(b)
    assert rds[0].truncate_from == 3 and rds[0].entries == [Entry(3, 3, EntryKind.NORMAL, b"new")]
    assert b.last_index == 3 and b.log.term_at(3) == 3
    assert [m for rd in rds for m in rd.messages] == [AppendResponse(3, "b", "a", True, 3)]


def test_follower_keeps_entries_on_a_stale_duplicate_append() -> None:
    b = make("b", terms=(1, 1, 2, 2), term=2)
    b.step(AppendRequest(2, "a", "b", 1, 1, (Entry(1, 2, EntryKind.NORMAL, b"x2"),), 0), T0)
    rds = drain(b)
    assert b.last_index == 4 and all(rd.truncate_from is None and not rd.entries for rd in rds)
    assert [m for rd in rds for m in rd.messages] == [AppendResponse(2, "b", "a", True, 2)]


@pytest.mark.parametrize(("prev", "prev_term", "hint"), [
    (9, 2, 6),  # beyond our end: back up to our last index
    (6, 3, 3),  # our entry 6 is term 2: skip the whole term-2 run (4..6) -> probe at 3
    (3, 2, 2),  # our entry 3 is term 1: skip the term-1 run after the commit floor (2)
])
def test_reject_hint(prev: int, prev_term: int, hint: int) -> None:
    b = make("b", terms=(1, 1, 1, 2, 2, 2), term=3, commit=2)
    b.step(AppendRequest(3, "a", "b", prev, prev_term, (), 0), T0)
    assert sent(b) == [AppendResponse(3, "b", "a", False, hint)]


def test_leader_backs_up_with_the_hint_and_then_streams() -> None:
    a = make(terms=(1, 1, 1, 1, 1), term=1, max_append_entries=2)
    elect(a)  # last index 6 (NOOP); b probes at prev 5
    a.step(AppendResponse(a.term, "b", "a", False, 2), T0)
    probe = [m for m in sent(a) if isinstance(m, AppendRequest) and m.to == "b"]
    assert len(probe) == 1 and probe[0].prev_log_index == 2 and len(probe[0].entries) == 2
    msgs = ack(a, "b", 4)  # probe succeeded: replicate state, pipelined to the end
    apps = [m for m in msgs if isinstance(m, AppendRequest) and m.to == "b"]
    assert [(m.prev_log_index, len(m.entries)) for m in apps] == [(4, 2)]


def test_a_batch_is_bounded_in_bytes_too_but_always_carries_one_entry() -> None:
    """A batch of large entries must fit in one frame (the follower drops a larger one, forever)."""
    a = make(terms=(1,), term=1, max_append_entries=64, max_append_bytes=250)
    elect(a)
    ack(a, "b", 2)
    for size in (100, 100, 100, 400, 10):
        a.propose(b"x" * size, T0)
    msgs = [m for m in sent(a) if isinstance(m, AppendRequest) and m.to == "b" and m.entries]
    assert [[len(e.data) for e in m.entries] for m in msgs] == [[100, 100], [100], [400], [10]]
    assert [m.prev_log_index for m in msgs] == [2, 4, 5, 6]


@pytest.mark.parametrize(("size", "resends"), [(100, {9, 10}), (8 << 20, {1, 2})])
def test_a_large_probe_is_not_resent_every_heartbeat_round(size: int, resends: set[int]) -> None:
    """A probe of n bytes waits n / RESEND_RATE (8 MiB: 0.5 s) before a heartbeat round may resend it: copies of a
    large entry would otherwise queue ahead of the heartbeats on the follower's connection."""
    a = make(terms=(1,), term=1)
    elect(a)
    a.propose(b"x" * size, T0)
    sent(a)
    a.step(AppendResponse(a.term, "b", "a", False, 0), T0)  # b has nothing: probed from 1
    probes = [m for m in sent(a) if isinstance(m, AppendRequest) and m.to == "b" and m.entries]
    assert len(probes) == 1 and len(probes[0].entries[-1].data) == size  # one in flight, never answered
    for i in range(1, 11):  # ten heartbeat rounds, 1 s
        a.tick(T0 + 0.1 * i + 0.01)
        probes += [m for m in sent(a) if isinstance(m, AppendRequest) and m.to == "b" and m.entries]
    assert len(probes) - 1 in resends


def test_pipelining_respects_max_inflight() -> None:
    a = make(terms=(1,), term=1, max_append_entries=1, max_inflight=2)
    elect(a)
    ack(a, "b", 2)
    for i in range(5):
        a.propose(f"p{i}".encode(), T0)
    msgs = [m for m in sent(a) if isinstance(m, AppendRequest) and m.to == "b"]
    assert [m.prev_log_index for m in msgs] == [2, 3]  # two in flight, the rest wait for acks
    more = ack(a, "b", 3)
    assert [m.prev_log_index for m in more if isinstance(m, AppendRequest) and m.to == "b"] == [4]


def test_single_server_commits_after_persisting() -> None:
    a = make(ids=("a",), terms=(1,), term=1)
    a.tick(T0)
    assert a.role == Role.LEADER
    rd = a.ready()
    assert rd.entries and not rd.committed  # our copy counts only once durable
    a.advance(rd)
    idx = a.propose(b"cmd", T0)
    committed = [e for r in drain(a) for e in r.committed]
    assert [e.index for e in committed] == [1, 2, idx]


def test_three_node_cluster_replicates_and_applies() -> None:
    cores = {i: make(i, terms=(1,), term=1) for i in ("a", "b", "c")}
    cores["a"].tick(T0)
    cluster_run(cores, T0)
    assert cores["a"].role == Role.LEADER
    cores["a"].propose(b"hello", T0)
    cluster_run(cores, T0)
    cores["a"].tick(T0 + 0.2)  # a heartbeat carries the commit index to the followers
    cluster_run(cores, T0 + 0.2)
    assert all(c.commit_index == 3 and c.applied == 3 for c in cores.values())


# ---------------------------------------------------------------- check-quorum, transfer, reads


@pytest.mark.parametrize(("check_quorum", "leader_after"), [(True, False), (False, True)])
def test_check_quorum_step_down(check_quorum: bool, leader_after: bool) -> None:
    a = make(terms=(1,), term=1, check_quorum=check_quorum)
    elect(a)
    t = T0
    while t < T0 + 1.5:
        t += 0.1
        a.tick(t)
        sent(a)
    assert (a.role == Role.LEADER) == leader_after


def test_check_quorum_kept_by_answers() -> None:
    a = make(terms=(1,), term=1)
    elect(a)
    t = T0
    while t < T0 + 3:
        t += 0.1
        a.tick(t)
        sent(a)
        a.step(AppendResponse(a.term, "b", "a", True, 0), t)
    assert a.role == Role.LEADER


def test_timeout_now_makes_the_target_campaign_at_once() -> None:
    b = make("b", terms=(1, 1), term=2, pre_vote=True)
    b.step(TimeoutNow(2, "a", "b"), T0)
    assert b.role == Role.CANDIDATE and b.term == 3  # no pre-vote
    reqs = sent(b)
    assert reqs and all(isinstance(m, VoteRequest) and m.transfer and not m.pre_vote for m in reqs)


def test_transfer_leadership() -> None:
    a = make(terms=(1,), term=1)
    elect(a)
    last = a.last_index
    a.transfer_leadership("b", T0)
    assert not [m for m in sent(a) if isinstance(m, TimeoutNow)]  # b is not caught up yet
    with pytest.raises(LeadershipTransferInProgress):
        a.propose(b"x", T0)
    msgs = ack(a, "b", last)
    assert TimeoutNow(a.term, "a", "b") in msgs
    assert not a.lease_read_ok(T0)
    # the target's election overrides stickiness, and a steps down
    a.step(VoteRequest(a.term + 1, "b", "a", last, a.term, transfer=True), T0)
    assert a.role == Role.FOLLOWER


def test_transfer_aborts_after_election_timeout() -> None:
    a = make(terms=(1,), term=1, check_quorum=False)
    elect(a)
    a.transfer_leadership("b", T0)
    a.tick(T0 + 1.01)
    assert a.role == Role.LEADER
    a.propose(b"x", T0 + 1.01)


def test_read_index_waits_for_the_first_commit_of_the_term() -> None:
    a = make(terms=(1, 1), term=1)
    elect(a)
    a.read_index(7, T0)
    # a majority confirms leadership, but the NOOP is not committed yet: no answer
    rd = drain(a)
    rounds = [m.read_ctx for r in rd for m in r.messages if isinstance(m, AppendRequest)]
    a.step(AppendResponse(a.term, "b", "a", True, 0, max(rounds, default=0)), T0)
    assert not [rs for r in drain(a) for rs in r.read_states]
    # the NOOP commits; the read then needs a fresh round acknowledged
    a.step(AppendResponse(a.term, "b", "a", True, 3, 0), T0)
    rds = drain(a)
    assert a.commit_index == 3 and not [rs for r in rds for rs in r.read_states]
    new_round = max(m.read_ctx for r in rds for m in r.messages if isinstance(m, AppendRequest))
    a.step(AppendResponse(a.term, "c", "a", True, 0, new_round), T0)
    states = [rs for r in drain(a) for rs in r.read_states]
    assert [(s.ctx, s.index) for s in states] == [(7, 3)]


def test_read_index_not_leader() -> None:
    b = make("b", terms=(1,), term=1)
    b.step(AppendRequest(1, "a", "b", 1, 1, (), 0), T0)
    with pytest.raises(NotLeader) as exc:
        b.read_index(1, T0)
    assert exc.value.leader == "a"


def test_lease_read() -> None:
    a = make(terms=(1,), term=1)
    elect(a)
    ack(a, "b", 2)
    assert a.commit_index == 2
    assert not a.lease_read_ok(T0)  # nobody echoed a round yet
    a.tick(T0 + 0.1)
    rnd = max(m.read_ctx for m in sent(a) if isinstance(m, AppendRequest))
    a.step(AppendResponse(a.term, "b", "a", True, 2, rnd), T0 + 0.12)
    assert a.lease_read_ok(T0 + 0.5)
    assert not a.lease_read_ok(T0 + 0.61)  # lease counts from when the round was sent


# ---------------------------------------------------------------- membership


def test_single_pending_config_change() -> None:
    a = make(terms=(1,), term=1)
    elect(a)
    with pytest.raises(ConfigChangeInProgress):  # not committed in this term yet
        a.propose_config_change(add=Server("d", "d:8300"), now=T0)
    ack(a, "b", 2)
    idx = a.propose_config_change(add=Server("d", "d:8300"), now=T0)
    assert a.configuration.voters() == ("a", "b", "c", "d")  # in force once appended
    assert "d" in a.status()["peers"]
    with pytest.raises(ConfigChangeInProgress):
        a.propose_config_change(remove="c", now=T0)
    sent(a)
    ack(a, "b", idx)
    ack(a, "c", idx)
    assert a.commit_index == idx
    a.propose_config_change(remove="c", now=T0)
    assert a.configuration.voters() == ("a", "b", "d")


def test_a_non_voter_is_added_then_promoted_one_change_at_a_time() -> None:
    """Autopilot's path (thesis §4.1, §4.2.1): a new server joins as a non-voter, which replicates but never
    counts in the commit quorum, then becomes a voter by a second single-server change."""
    a = make(terms=(1,), term=1)
    elect(a)
    ack(a, "b", 2)
    idx = a.propose_config_change(add=Server("d", "d:8300", Suffrage.NONVOTER), now=T0)
    assert a.configuration.voters() == ("a", "b", "c") and a.configuration.get("d") is not None
    assert any(isinstance(m, AppendRequest) and m.to == "d" for m in sent(a))  # it is replicated to
    ack(a, "b", idx)
    assert a.commit_index == idx  # a and b: a majority of the 3 voters; d never answered
    promoted = a.propose_config_change(add=Server("d", "d:8300", Suffrage.VOTER), now=T0)
    assert a.configuration.voters() == ("a", "b", "c", "d")
    assert [s.id for s in a.configuration.servers] == ["a", "b", "c", "d"]  # updated in place, not added twice
    sent(a)
    ack(a, "b", promoted)
    assert a.commit_index == idx  # now 3 of 4 voters are needed
    ack(a, "d", promoted)
    assert a.commit_index == promoted


def test_a_non_voter_never_campaigns() -> None:
    d = RaftCore("d", cfg(), random.Random(1), 0.0, hard_state=HardState(1, "", 0), entries=[
        Entry(1, 1, EntryKind.CONFIG, encode_configuration(Configuration(
            (Server("a", "a:8300"), Server("d", "d:8300", Suffrage.NONVOTER)))))])
    assert d.next_deadline() == float("inf")
    d.tick(T0 * 10)
    assert role(d) == Role.FOLLOWER and not sent(d)


def test_config_change_argument_errors() -> None:
    a = make(terms=(1,), term=1)
    elect(a)
    ack(a, "b", 2)
    with pytest.raises(ValueError):
        a.propose_config_change(now=T0)
    with pytest.raises(ValueError):
        a.propose_config_change(remove="zz", now=T0)
    with pytest.raises(NotLeader):
        make("b").propose_config_change(remove="a", now=T0)


def test_removed_leader_steps_down_after_commit() -> None:
    a = make(terms=(1,), term=1)
    elect(a)
    ack(a, "b", 2)
    idx = a.propose_config_change(remove="a", now=T0)
    sent(a)
    ack(a, "b", idx)
    assert a.role == Role.LEADER  # counts b and c only now: one of two is not a majority
    msgs = ack(a, "c", idx)
    assert role(a) == Role.FOLLOWER
    assert any(isinstance(m, TimeoutNow) for m in msgs)
    assert a.next_deadline() == float("inf")  # not a voter: never campaigns


def test_follower_config_follows_the_log_and_its_truncation() -> None:
    b = make("b", terms=(1, 1), term=1)
    new = Entry(2, 3, EntryKind.CONFIG, encode_configuration(conf("a", "b")))
    b.step(AppendRequest(2, "a", "b", 2, 1, (new,), 0), T0)
    assert b.configuration.voters() == ("a", "b")
    # c was removed by the uncommitted entry 3, won term 3 without it and overwrites it. While b still
    # hears from a (its lease), an outsider's higher term is ignored (thesis §4.2.3); once it lapses, c leads.
    overwrite = AppendRequest(3, "c", "b", 2, 1, (Entry(3, 3, EntryKind.NORMAL, b"z"),), 0)
    b.step(overwrite, T0 + 0.5)
    assert b.term == 2 and b.configuration.voters() == ("a", "b")
    b.step(overwrite, T0 + 1.01)
    assert b.term == 3 and b.configuration.voters() == ("a", "b", "c")


OUTSIDER_MESSAGES = [
    AppendRequest(3, "x", "b", 2, 1, (), 0),
    SnapshotRequest(3, "x", "b", Snapshot(SnapshotMeta(9, 3, conf("x")), b"")),
    TimeoutNow(3, "x", "b"),
    VoteRequest(3, "x", "b", 99, 3, False, True),
    AppendResponse(3, "x", "b", False, 0, 0),
]


@pytest.mark.parametrize("msg", OUTSIDER_MESSAGES, ids=lambda m: type(m).__name__)
def test_a_server_outside_the_configuration_cannot_disrupt_a_follower_in_lease(msg: Message) -> None:
    b = make("b", terms=(1,), term=1)
    b.step(AppendRequest(1, "a", "b", 1, 1, (), 1), T0)
    b.step(msg, T0 + 0.1)
    assert (b.term, b.leader, role(b)) == (1, "a", Role.FOLLOWER)


def test_a_second_leader_of_the_same_term_is_ignored() -> None:
    b = make("b", terms=(1,), term=1)
    b.step(AppendRequest(1, "a", "b", 1, 1, (), 1), T0)
    b.step(AppendRequest(1, "c", "b", 1, 1, (Entry(1, 2, EntryKind.NORMAL, b"forged"),), 1), T0 + 0.1)
    b.step(TimeoutNow(1, "c", "b"), T0 + 0.1)
    assert (b.last_index, b.leader, role(b)) == (1, "a", Role.FOLLOWER)


# ---------------------------------------------------------------- bootstrap, restart, snapshots


def test_bootstrap_gives_identical_logs() -> None:
    c = conf("a", "b", "c")
    readies = []
    for nid in ("a", "b", "c"):
        core = RaftCore(nid, cfg(), random.Random(nid), 0.0)
        core.bootstrap(c)
        rd = core.ready()
        readies.append((rd.hard_state, rd.entries))
    assert readies[0] == readies[1] == readies[2]
    hs, entries = readies[0]
    assert hs == HardState(1, "", 0) and [(e.index, e.term, e.kind) for e in entries] == [(1, 1, EntryKind.CONFIG)]


def test_bootstrap_refuses_existing_state() -> None:
    with pytest.raises(ValueError):
        make().bootstrap(conf("a"))


def test_restart_repairs_a_torn_write() -> None:
    """Entries of term 3 reached the disk but the hard state (term 2, commit 9) did not catch up."""
    entries = log_of((1, 2, 3), ("a", "b", "c"))
    a = RaftCore("a", cfg(), random.Random(1), 0.0, hard_state=HardState(2, "b", 9), entries=entries)
    assert a.term == 3 and a.commit_index == 3
    assert drain(a)[0].hard_state == HardState(3, "", 3)


def test_constructor_ignores_entries_superseded_by_the_snapshot() -> None:
    meta = SnapshotMeta(3, 2, conf("a", "b", "c"))
    stale = [Entry(1, i, EntryKind.NORMAL, b"") for i in range(1, 6)]  # term 1 at index 3 != snapshot term
    a = RaftCore("a", cfg(), random.Random(1), 0.0, hard_state=HardState(2, "", 3), snapshot=meta,
                 entries=stale, applied=3)
    assert a.last_index == 3 and a.applied == 3
    assert a.ready().truncate_from == 4  # the driver must delete them


def test_leader_sends_snapshot_to_lagging_follower_and_follower_installs_it() -> None:
    a = make(terms=(1,), term=1, trailing_logs=0)
    elect(a)
    ack(a, "b", 2)
    for i in range(4):
        a.propose(f"p{i}".encode(), T0)
    sent(a)
    ack(a, "b", 6)
    drain(a)
    assert a.applied == 6
    snap = Snapshot(a.snapshot_meta(6), b"state@6")
    a.set_snapshot(snap)
    assert a.compact(6) == 6 and a.log.first_index == 7
    # c is empty and far behind: the probe backs up below our log -> InstallSnapshot
    a.step(AppendResponse(a.term, "c", "a", False, 0), T0)
    msgs = sent(a)
    assert SnapshotRequest(a.term, "a", "c", snap) in msgs
    c = RaftCore("c", cfg(), random.Random(3), 0.0, hard_state=HardState(1, "", 0),
                 entries=log_of((1, 1, 1), ("a", "b", "c", "z")))
    c.step(SnapshotRequest(a.term, "a", "c", snap), T0)
    rd = c.ready()
    assert rd.snapshot == snap and rd.truncate_from is None  # its entries 1..3 are below the snapshot
    assert rd.hard_state is not None and rd.hard_state.commit == 6 and not rd.committed
    assert rd.messages == [SnapshotResponse(a.term, "c", "a", True, 6)]
    c.advance(rd)
    assert c.applied == 6 and c.last_index == 6 and c.configuration.voters() == ("a", "b", "c")
    a.step(rd.messages[0], T0)
    a.propose(b"after", T0)
    nxt = [m for m in sent(a) if isinstance(m, AppendRequest) and m.to == "c"]
    assert [(m.prev_log_index, len(m.entries)) for m in nxt] == [(6, 1)]
    assert a.status()["peers"]["c"]["match_index"] == 6


def test_compact_keeps_trailing_logs_and_needs_the_snapshot() -> None:
    a = make(terms=(1, 1, 1, 1, 1, 1), term=1, commit=6, trailing_logs=2)
    drain(a)
    assert a.compact(6) == 0  # no snapshot given: nothing dropped
    a.set_snapshot(Snapshot(a.snapshot_meta(5), b""))
    assert a.compact(5) == 4  # last index 6 - 2 trailing


def test_snapshot_after_a_truncation_in_the_same_ready() -> None:
    """A conflict truncated the log at 3, then (before the driver took a Ready) a snapshot at 10 arrived:
    the Ready carries the snapshot and truncate_from 11 only -- never an index inside the snapshot."""
    b = make("b", terms=(1, 1, 1, 2, 2), term=2, commit=1)
    drain(b)
    b.step(AppendRequest(3, "a", "b", 2, 1, (Entry(3, 3, EntryKind.NORMAL, b"y"),), 0), T0)
    snap = Snapshot(SnapshotMeta(10, 3, conf("a", "b", "c")), b"s")
    b.step(SnapshotRequest(3, "a", "b", snap), T0)
    b.step(AppendRequest(3, "a", "b", 10, 3, (Entry(3, 11, EntryKind.NORMAL, b"z"),), 11), T0)
    rd = b.ready()
    assert rd.snapshot == snap and rd.truncate_from == 11
    assert [e.index for e in rd.entries] == [11] and [e.index for e in rd.committed] == [11]
    assert rd.hard_state is not None and rd.hard_state.commit == 11


def test_leader_connection_lost_hint_drops_the_lease_and_campaigns_soon() -> None:
    a = make(terms=(1, 1), term=1)
    a.step(AppendRequest(1, "b", "a", 2, 1, (), 0), T0)
    drain(a)
    a.leader_unreachable("c", T0 + 0.01)  # not our leader: ignored
    a.step(VoteRequest(2, "c", "a", 2, 1, pre_vote=True), T0 + 0.02)
    assert sent(a) == []  # still shielding b's lease
    a.leader_unreachable("b", T0 + 0.05)
    assert T0 + 0.05 + 0.1 <= a.next_deadline() < T0 + 0.05 + 0.3  # 1-3 heartbeat intervals
    a.step(VoteRequest(2, "c", "a", 2, 1, pre_vote=True), T0 + 0.06)  # lease gone: pre-vote granted
    assert sent(a) == [VoteResponse(2, "a", "c", True, pre_vote=True)]
    a.tick(a.next_deadline())
    assert any(isinstance(m, VoteRequest) and m.pre_vote for m in sent(a))


def test_a_false_connection_lost_hint_is_healed_by_the_next_heartbeat() -> None:
    a = make(terms=(1, 1), term=1)
    a.step(AppendRequest(1, "b", "a", 2, 1, (), 0), T0)
    drain(a)
    a.leader_unreachable("b", T0 + 0.01)
    a.step(AppendRequest(1, "b", "a", 2, 1, (), 0), T0 + 0.05)  # the leader is alive after all
    drain(a)
    assert a.next_deadline() >= T0 + 0.05 + 1.0
    a.step(VoteRequest(2, "c", "a", 2, 1, pre_vote=True), T0 + 0.06)
    assert sent(a) == [] and a.leader == "b"
