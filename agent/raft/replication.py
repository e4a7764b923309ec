"""Leader-side Raft: replication to each peer, the commit rule, ReadIndex, lease, check-quorum, transfer.

`LeaderMixin` is half of RaftCore (core.py holds the state, the follower/candidate side and the Ready
plumbing); it is split out only to keep modules small. Everything here runs while role == LEADER.

Heartbeat rounds: every AppendEntries carries `read_ctx` = the current round number. A new round starts
every heartbeat_interval and whenever a ReadIndex request needs one; `_round_times` remembers when each
round started. A follower echoes read_ctx, so an echo of round r proves the follower still accepted us as
leader at some instant after round r started. That one mechanism serves
  * ReadIndex (thesis §6.4): a read queued at round r is answered once a majority echoed a round >= r;
  * the leader lease (thesis §6.4.1): valid while a majority echoed a round that started within
    leader_lease_timeout (followers will not vote for anyone else for heartbeat_timeout after they
    heard from us: leader stickiness, see RaftCore._in_lease).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyconsul.agent.raft.config import RaftConfig
from pyconsul.agent.raft.log import ConfigHistory, RaftLog
from pyconsul.agent.raft.messages import (
    AppendRequest,
    AppendResponse,
    Message,
    ReadState,
    Role,
    Snapshot,
    SnapshotRequest,
    SnapshotResponse,
    TimeoutNow,
)
from pyconsul.agent.raft.progress import NEVER, PeerState, Progress
from pyconsul.agent.raft.quorum import committed_index, quorum_value

INF_ROUND = 1 << 62
# A message of n entry bytes counts as lost (resent) only after the usual timeout PLUS n / RESEND_RATE: a probe
# resent every heartbeat round, or a pipelined batch every 2 heartbeats, would otherwise queue copies of a large
# entry (a 48 MiB restore) ahead of the heartbeats on the peer's connection faster than it can drain them.
RESEND_RATE = 16 * 1024 * 1024  # bytes per second: conservative for a loaded LAN peer that fsyncs what it gets


def transfer_time(n: int) -> float:
    return n / RESEND_RATE


@dataclass(slots=True)
class PendingRead:
    ctx: int
    index: int  # commit index when the read became answerable; -1 until the leader commits in its term
    round: int  # heartbeat round that must be echoed by a majority; -1 likewise


class LeaderMixin:
    # --- state shared with RaftCore (declared here for the type checker; RaftCore.__init__ sets it)
    _id: str
    cfg: RaftConfig
    log: RaftLog
    configs: ConfigHistory
    _role: Role
    _term: int
    _commit: int
    _now: float
    _msgs: list[Message]
    _read_states: list[ReadState]
    _snapshot: Snapshot | None
    # --- leader state
    _progress: dict[str, Progress]
    _round: int
    _round_times: dict[int, float]
    _round_pending: bool
    _bcast: bool
    _reads: list[PendingRead]
    _hb_deadline: float
    _transfer: str
    _transfer_deadline: float
    _timeout_now_sent: bool
    _lease_disabled: bool

    def _become_follower(self, term: int, leader: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ helpers

    def _committed_in_term(self) -> bool:
        """Thesis §6.4 / §4.1 caveat: a new leader knows the commit index only after committing an entry
        of its own term (the NOOP appended on election)."""
        return self.log.term_at(self._commit) == self._term

    def _voters(self) -> tuple[str, ...]:
        return self.configs.voters()

    def _reset_leader_state(self) -> None:
        self._progress = {}
        self._round = 0
        self._round_times = {}
        self._round_pending = False
        self._bcast = False
        self._reads = []
        self._hb_deadline = float("inf")
        self._transfer = ""
        self._transfer_deadline = float("inf")
        self._timeout_now_sent = False
        self._lease_disabled = False

    def _sync_progress(self, next_index: int) -> None:
        """Track exactly the servers of the latest configuration (other than us); new ones start probing."""
        ids = [s.id for s in self.configs.latest.servers if s.id != self._id]
        for sid in ids:
            if sid not in self._progress:
                self._progress[sid] = Progress(next=next_index, last_heard=self._now)
        for sid in [p for p in self._progress if p not in ids]:
            del self._progress[sid]

    def _start_round(self) -> None:
        self._round += 1
        self._round_times[self._round] = self._now
        horizon = self._now - 2 * max(self.cfg.election_timeout, self.cfg.leader_lease_timeout)
        while self._round_times:
            first = next(iter(self._round_times))
            if self._round_times[first] >= horizon or first == self._round:
                break
            del self._round_times[first]

    # ------------------------------------------------------------ sending

    def _flush(self) -> None:
        """Turn pending work into messages: new entries (batched since the last Ready) and heartbeat rounds."""
        if self._role != Role.LEADER:
            self._bcast = self._round_pending = False
            return
        empty = self._round_pending
        if empty:
            self._round_pending = False
            self._start_round()
        if self._bcast or empty:
            self._bcast = False
            for to, pr in self._progress.items():
                self._send_append(to, pr, empty)
        if empty:
            self._confirm_reads()

    def _send_append(self, to: str, pr: Progress, allow_empty: bool) -> None:
        """Send what `to` needs next, within flow control; a heartbeat if nothing and allow_empty."""
        if pr.state == PeerState.SNAPSHOT or (pr.state == PeerState.PROBE and pr.probe_sent):
            if allow_empty:
                self._send_heartbeat(to, pr)
            return
        if pr.state == PeerState.REPLICATE:
            sent = False
            while pr.next <= self.log.last_index and len(pr.inflight) < self.cfg.max_inflight:
                if not self._send_entries(to, pr):
                    return
                sent = True
            if not sent and allow_empty:
                self._send_heartbeat(to, pr)
            return
        if pr.next > self.log.last_index and not allow_empty:
            return
        if self._send_entries(to, pr):
            pr.probe_sent = True
            last = self._msgs[-1]
            size = sum(len(e.data) for e in last.entries) if isinstance(last, AppendRequest) else 0
            pr.probe_due = self._now + transfer_time(size)
        elif allow_empty:
            self._send_heartbeat(to, pr)

    def _send_entries(self, to: str, pr: Progress) -> bool:
        """One AppendEntries from pr.next (at most max_append_entries). False if a snapshot was due."""
        pr.next = min(pr.next, self.log.last_index + 1)
        prev = pr.next - 1
        prev_term = self.log.term_at(prev)
        if prev_term is None:  # the entries `to` needs are compacted: InstallSnapshot (Raft §7)
            self._send_snapshot(to, pr)
            return False
        hi = min(self.log.last_index, prev + self.cfg.max_append_entries)
        batch = self.log.slice(prev + 1, hi) if hi > prev else []
        size = 0
        for n, e in enumerate(batch):  # bytes too: a batch must fit in one frame (the first entry always goes)
            size += len(e.data)
            if n and size > self.cfg.max_append_bytes:
                batch = batch[:n]
                hi = prev + n
                break
        entries = tuple(batch)
        self._msgs.append(AppendRequest(self._term, self._id, to, prev, prev_term, entries, self._commit, self._round))
        if entries and pr.state == PeerState.REPLICATE:
            pr.next = hi + 1
            pr.inflight.append((hi, self._now + transfer_time(sum(len(e.data) for e in entries))))
        return True

    def _send_heartbeat(self, to: str, pr: Progress) -> None:
        """An empty AppendEntries anchored at what the peer is known to hold (match), so it never fails
        because of messages still in flight; it carries commit only up to match (Figure 2 rule 5)."""
        prev, prev_term = pr.match, self.log.term_at(pr.match)
        if prev_term is None:
            prev, prev_term = 0, 0  # below our log: the follower answers with its commit index
        self._msgs.append(AppendRequest(self._term, self._id, to, prev, prev_term, (), min(self._commit, prev),
                                        self._round))

    def _send_snapshot(self, to: str, pr: Progress) -> None:
        snap = self._snapshot
        if snap is None or snap.meta.index < self.log.offset:
            pr.needs_snapshot = True  # the shell must call set_snapshot(); retried every heartbeat round
            if pr.state == PeerState.PROBE:
                pr.probe_sent = True
            return
        pr.become_snapshot(snap.meta.index, self._now)
        self._msgs.append(SnapshotRequest(self._term, self._id, to, snap))

    # ------------------------------------------------------------ responses

    def _heard(self, pr: Progress, read_ctx: int) -> None:
        pr.last_heard = self._now
        if read_ctx > pr.acked_round:
            pr.acked_round = read_ctx
            sent = self._round_times.get(read_ctx)
            if sent is not None and sent > pr.acked_at:
                pr.acked_at = sent

    def _on_append_response(self, m: AppendResponse) -> None:
        pr = self._progress.get(m.from_)
        if pr is None:
            return
        self._heard(pr, m.read_ctx)
        if m.success:
            advanced = pr.ack(m.match_index)
            if pr.state == PeerState.PROBE:
                pr.become_replicate()
            elif pr.state == PeerState.SNAPSHOT:
                if pr.match >= pr.pending_snapshot:
                    pr.become_probe()
            elif pr.stalled(self._now, 2 * self.cfg.heartbeat_interval):
                pr.become_probe()  # an AppendEntries was lost: resend from match + 1
            if advanced:
                self._maybe_commit()
                self._maybe_timeout_now()
        elif m.match_index >= pr.match and (  # a reject; a hint below match is stale (reordered)
                pr.state == PeerState.REPLICATE or (pr.state == PeerState.PROBE and m.match_index + 1 < pr.next)):
            pr.become_probe(m.match_index + 1)
        self._confirm_reads()
        if self._role == Role.LEADER and m.from_ in self._progress:
            self._send_append(m.from_, pr, False)

    def _on_snapshot_response(self, m: SnapshotResponse) -> None:
        pr = self._progress.get(m.from_)
        if pr is None:
            return
        self._heard(pr, 0)
        advanced = m.success and pr.ack(m.match_index)
        if pr.state == PeerState.SNAPSHOT:
            pr.become_probe()
        if advanced:
            self._maybe_commit()
            self._maybe_timeout_now()
        if self._role == Role.LEADER and m.from_ in self._progress:
            self._send_append(m.from_, pr, False)

    # ------------------------------------------------------------ commit

    def _maybe_commit(self) -> None:
        """Raft §5.3/§5.4.2: commit the highest index stored on a majority of voters, but only if its
        entry is of the current term (earlier-term entries commit indirectly; Figure 8). Our own copy
        counts once it is durable (log.persisted; thesis §10.2.1)."""
        match = {sid: pr.match for sid, pr in self._progress.items()}
        match[self._id] = self.log.persisted
        idx = committed_index(self._voters(), match)
        if idx <= self._commit or self.log.term_at(idx) != self._term:
            return
        first = not self._committed_in_term()
        self._commit = idx
        if first:
            for r in self._reads:
                if r.round < 0:
                    r.index, r.round = self._commit, self._round + 1
                    self._round_pending = True
        if self._id not in self._voters() and self.configs.latest_index <= self._commit:
            self._step_down_removed()

    def _step_down_removed(self) -> None:
        """Thesis §4.2.2: a leader that is not in the committed configuration steps down. First tell
        everyone the new commit index and hand over to the most up-to-date voter (TimeoutNow)."""
        for to, pr in self._progress.items():
            self._send_heartbeat(to, pr)
        voters = self._voters()
        caught_up = sorted(sid for sid, pr in self._progress.items()
                           if sid in voters and pr.match == self.log.last_index)
        if caught_up:
            self._msgs.append(TimeoutNow(self._term, self._id, caught_up[0]))
        self._become_follower(self._term, "")

    # ------------------------------------------------------------ reads, lease, quorum

    def _confirm_reads(self) -> None:
        if not self._reads:
            return
        acked = quorum_value(
            (INF_ROUND if v == self._id else (self._progress[v].acked_round if v in self._progress else 0)
             for v in self._voters()), 0)
        while self._reads and 0 <= self._reads[0].round <= acked:
            r = self._reads.pop(0)
            self._read_states.append(ReadState(r.ctx, r.index))

    def _lease_ok(self) -> bool:
        if self._role != Role.LEADER or self._lease_disabled or self._transfer or not self._committed_in_term():
            return False
        lease = min(self.cfg.leader_lease_timeout, self.cfg.heartbeat_timeout)
        since = quorum_value(
            (self._now if v == self._id else (self._progress[v].acked_at if v in self._progress else NEVER)
             for v in self._voters()), NEVER)
        return since > self._now - lease

    def _quorum_active(self) -> bool:
        """Check-quorum: a majority of voters was heard from within election_timeout (etcd's choice; the
        window followers use before they campaign is heartbeat_timeout..2x, so by the time we give up
        the majority side can already have a new leader)."""
        heard = quorum_value(
            (self._now if v == self._id else (self._progress[v].last_heard if v in self._progress else NEVER)
             for v in self._voters()), NEVER)
        return heard >= self._now - self.cfg.election_timeout

    # ------------------------------------------------------------ timers and transfer

    def _tick_leader(self) -> None:
        now = self._now
        if self._transfer and now >= self._transfer_deadline:
            self._transfer = ""  # §3.10: abort; proposals resume (the lease stays off if TimeoutNow left)
            self._transfer_deadline = float("inf")
        if now < self._hb_deadline:
            return
        self._hb_deadline = now + self.cfg.heartbeat_interval
        if self.cfg.check_quorum and not self._quorum_active():
            self._become_follower(self._term, "")
            return
        for pr in self._progress.values():
            if pr.state == PeerState.PROBE and now >= pr.probe_due:
                pr.probe_sent = False
            elif pr.state == PeerState.SNAPSHOT and now - pr.snapshot_sent_at >= self.cfg.election_timeout:
                pr.become_probe()  # the snapshot (or its answer) was lost: try again
        self._round_pending = True

    def _maybe_timeout_now(self) -> None:
        """§3.10: once the target's log matches ours, tell it to campaign at once."""
        if not self._transfer or self._timeout_now_sent:
            return
        pr = self._progress.get(self._transfer)
        if pr is not None and pr.match == self.log.last_index:
            self._msgs.append(TimeoutNow(self._term, self._id, self._transfer))
            self._timeout_now_sent = True
            self._lease_disabled = True  # the target's election ignores leader stickiness
