"""RaftCore: a pure, deterministic Raft state machine (Raft paper, Ongaro's thesis), etcd-raft style.

No I/O, no clock, no randomness of its own: inputs are messages, proposals and `now`; `rng` draws the
election timeouts. Output is a Ready (messages.py): persist -> send -> apply -> advance. This module holds
the state, the follower/candidate side and the Ready plumbing; the leader side is replication.py.

Choices (each documented where it is implemented):
  * Election timeouts are uniform in [T, 2T): T = heartbeat_timeout for a follower waiting for a leader,
    election_timeout for a (pre-)candidate waiting for votes.
  * Leader stickiness (thesis §4.2.3) is always on: a follower that heard from a leader within
    heartbeat_timeout, or a leader, ignores (pre-)vote requests unless `transfer` is set; a freshly
    started server counts as having just heard from one (so a crash-restart cannot break a lease).
  * Pre-vote (§9.6) when config.pre_vote; check-quorum when config.check_quorum (replication.py).
  * A new leader appends a NOOP (§5.4.2, §6.4); reads and configuration changes wait for it to commit.
  * Membership: one server at a time; a configuration is in force once appended (§4.1).
  * Bootstrap writes index 1 / term 1 CONFIG and currentTerm 1 (as hashicorp/raft's BootstrapCluster):
    every server bootstrapped with the same configuration holds an identical log.

Snapshots, the shell's side of the contract:
  * After the state machine snapshotted at index i (i <= applied): persist it, then call
    `set_snapshot(Snapshot(core.snapshot_meta(i), data))` and `compact(i)`. compact() keeps
    trailing_logs entries and returns the index up to which the log was dropped (the storage may drop
    the same prefix). At start-up pass the stored snapshot's meta to the constructor and call
    set_snapshot() with the stored snapshot (data included) so the core can send it to followers.
  * A follower that needs compacted entries is sent SnapshotRequest(snapshot) in Ready.messages (the
    latest Snapshot given to set_snapshot or received). Without one, status()["peers"][id]["needs_snapshot"].
  * A follower that receives one returns it in Ready.snapshot. Persist it FIRST -- like
    storage.save_snapshot: keep the log after it only if the log holds its last entry (index and term),
    else discard the log -- then truncate_from (None or snapshot.index + 1) and entries (which continue
    at snapshot.index + 1), then hard_state (whose commit covers the snapshot). Restore the state
    machine from it before applying Ready.committed, which only holds entries after it. Entries at or
    below a snapshot's index are obsolete; the constructor ignores them.

Not thread-safe; call ready()/advance() in pairs with nothing in between.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pyconsul.agent.errors import NotLeader  # .leader: the known leader ID or ""
from pyconsul.agent.raft.config import RaftConfig
from pyconsul.agent.raft.log import ConfigHistory, RaftLog, encode_configuration
from pyconsul.agent.raft.messages import (
    AppendRequest,
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Message,
    ReadState,
    Ready,
    Role,
    Server,
    Snapshot,
    SnapshotMeta,
    SnapshotRequest,
    SnapshotResponse,
    SoftState,
    Suffrage,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from pyconsul.agent.raft.progress import NEVER, Progress
from pyconsul.agent.raft.quorum import VoteResult, vote_result
from pyconsul.agent.raft.replication import LeaderMixin, PendingRead

INF = float("inf")
HINTED_CAMPAIGNS = 3  # after a leader_unreachable hint: real campaigns retried on the short timer
_NO_HARD_STATE = HardState()
_NO_SNAPSHOT = SnapshotMeta()


class LeadershipTransferInProgress(NotLeader):
    """Proposals are refused while this leader hands over (thesis §3.10)."""


class ConfigChangeInProgress(Exception):
    """One membership change at a time, and only after the leader committed in its term (thesis §4.1)."""


class RaftCore(LeaderMixin):
    def __init__(self, id: str, config: RaftConfig, rng: random.Random, now: float, *,
                 hard_state: HardState = _NO_HARD_STATE, snapshot: SnapshotMeta = _NO_SNAPSHOT,
                 entries: Sequence[Entry] = (), applied: int = 0) -> None:
        self._id = id
        self.cfg = config
        self.rng = rng
        self._now = now
        self.log = RaftLog(snapshot, entries)
        self.configs = ConfigHistory(snapshot.index, snapshot.configuration, self.log.entries)
        # Invariant: currentTerm >= last log term (a torn write may have stored entries but not the term;
        # the vote belonged to the older term, so it is void).
        self._term = max(hard_state.term, self.log.last_term)
        self._vote = hard_state.vote if hard_state.term == self._term else ""
        # commit is volatile in Figure 2; the stored one is a hint, clamped to the entries that survived.
        self._commit = min(max(hard_state.commit, snapshot.index), self.log.last_index)
        # Invariant: snapshot.index <= applied <= commit.
        self._applied = min(max(applied, snapshot.index), self._commit)
        self._applying = self._applied  # last index handed out in Ready.committed
        self._role = Role.FOLLOWER
        self._leader = ""
        self._last_leader_contact = now  # see _in_lease: a restart counts as contact
        self._hinted = 0  # campaigns left on the short timer after a leader_unreachable hint
        self._election_deadline = INF
        self._votes: dict[str, bool] = {}
        self._snapshot: Snapshot | None = None
        self._received_snapshot: Snapshot | None = None
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._hs_sent = hard_state
        self._soft_sent = SoftState("", Role.FOLLOWER, 0)
        self._reset_leader_state()
        self._reset_election_timer()

    # ------------------------------------------------------------ properties

    @property
    def id(self) -> str:
        return self._id

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader(self) -> str:
        return self._leader

    @property
    def term(self) -> int:
        return self._term

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def applied(self) -> int:
        return self._applied

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def configuration(self) -> Configuration:
        """The configuration in force: the latest in the log, committed or not (thesis §4.1)."""
        return self.configs.latest

    def configuration_at(self, index: int) -> Configuration:
        """The configuration in force at log index (>= the first index): what a snapshot at index records."""
        return self.configs.at(index)

    def term_at(self, index: int) -> int:
        t = self.log.term_at(index)
        if t is None:
            raise IndexError(f"log index {index} is not available (first {self.log.first_index}, "
                             f"last {self.log.last_index})")
        return t

    def snapshot_meta(self, index: int) -> SnapshotMeta:
        """Metadata for a state-machine snapshot taken at `index` (offset <= index <= applied)."""
        return SnapshotMeta(index, self.term_at(index), self.configs.at(index))

    def last_leader_contact(self) -> float:
        """`now` of the last AppendEntries/InstallSnapshot from the current leader (start-up time before)."""
        return self._now if self._role == Role.LEADER else self._last_leader_contact

    def _is_voter(self) -> bool:
        return self._id in self.configs.voters()

    # ------------------------------------------------------------ inputs

    def has_state(self) -> bool:
        """Anything at all: a term (a leader's message may have brought one), a log, a configuration."""
        return bool(self.log.last_index or self.log.offset or self._term or self.configs.latest.servers)

    def bootstrap(self, configuration: Configuration) -> None:
        """Only on a server with no state at all. Writes term 1 and Entry(term=1, index=1, CONFIG)."""
        if self.has_state():
            raise ValueError("cannot bootstrap a server that already has Raft state")
        if not configuration.voters():
            raise ValueError("cannot bootstrap a configuration without voters")
        e = Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration))
        self._term = 1
        self.log.append([e])
        self.configs.observe(e)
        self._reset_election_timer()

    def tick(self, now: float) -> None:
        self._now = now
        if self._role == Role.LEADER:
            self._tick_leader()
        elif now >= self._election_deadline:
            if self._is_voter():
                self._campaign(pre=self.cfg.pre_vote)
            else:
                self._reset_election_timer()

    def next_deadline(self) -> float:
        """The shell must call tick() no later than this (INF: nothing scheduled)."""
        if self._role == Role.LEADER:
            return min(self._hb_deadline, self._transfer_deadline)
        return self._election_deadline if self._is_voter() else INF

    def propose(self, data: bytes, now: float) -> int:
        """Append a command; returns its index. It is committed once it appears in Ready.committed
        with this term (a different entry at that index means it was lost with our leadership)."""
        self._now = now
        self._check_can_propose()
        return self._append(EntryKind.NORMAL, data)

    def propose_config_change(self, add: Server | None = None, remove: str | None = None, *,
                              now: float) -> int:
        """Add (or update) one server, or remove one (thesis §4.1 single-server change). Returns the
        CONFIG entry's index. Raises ConfigChangeInProgress while the previous change is uncommitted
        or before this leader committed an entry of its term."""
        self._now = now
        self._check_can_propose()
        if (add is None) == (remove is None):
            raise ValueError("give exactly one of add= or remove=")
        if self.configs.latest_index > self._commit or not self._committed_in_term():
            raise ConfigChangeInProgress("a configuration change is pending")
        servers = list(self.configs.latest.servers)
        if add is not None:
            pos = next((i for i, s in enumerate(servers) if s.id == add.id), None)
            if pos is None:
                servers.append(add)
            else:
                servers[pos] = add
        else:
            if self.configs.latest.get(remove or "") is None:
                raise ValueError(f"server {remove!r} is not in the configuration")
            servers = [s for s in servers if s.id != remove]
        return self._append(EntryKind.CONFIG, encode_configuration(Configuration(tuple(servers))))

    def read_index(self, ctx: int, now: float) -> None:
        """ReadIndex (thesis §6.4): ReadState(ctx, index) appears in a later Ready once a majority has
        confirmed our leadership after this call and we have committed in our term; the read may be
        served when applied >= index. Pending reads are dropped if we lose leadership (SoftState)."""
        self._now = now
        if self._role != Role.LEADER:
            raise NotLeader(self._leader)
        if self._committed_in_term():
            self._reads.append(PendingRead(ctx, self._commit, self._round + 1))
            self._round_pending = True
        else:
            self._reads.append(PendingRead(ctx, -1, -1))

    def lease_read_ok(self, now: float) -> bool:
        """Leader lease (thesis §6.4.1): a majority echoed a heartbeat round that started less than
        min(leader_lease_timeout, heartbeat_timeout) ago, we committed in our term, and no transfer is
        or was under way. Serve the read after applying up to commit_index."""
        self._now = max(self._now, now)
        return self._lease_ok()

    def transfer_leadership(self, target: str, now: float) -> None:
        """Thesis §3.10: stop accepting proposals, bring `target` up to date, send it TimeoutNow.
        Aborted after election_timeout if the target has not taken over."""
        self._now = now
        if self._role != Role.LEADER:
            raise NotLeader(self._leader)
        if target == self._id:
            return
        if target not in self._voters():
            raise ValueError(f"{target!r} is not a voter")
        self._transfer = target
        self._transfer_deadline = now + self.cfg.election_timeout
        self._timeout_now_sent = False
        pr = self._progress[target]
        self._maybe_timeout_now()
        if not self._timeout_now_sent:
            self._send_append(target, pr, True)

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """The latest durable snapshot (data included): what we send to followers that fell behind."""
        if self._snapshot is None or snapshot.meta.index >= self._snapshot.meta.index:
            self._snapshot = snapshot

    def compact(self, index: int, snapshot_data_known: bool = True) -> int:
        """The state machine snapshotted at `index`: drop the log prefix, keeping trailing_logs entries
        and never passing applied (nor, if snapshot_data_known, the index of set_snapshot's snapshot,
        which must cover what followers may need). Returns the new compaction point."""
        limit = min(index, self._applied, self.log.last_index - self.cfg.trailing_logs)
        if snapshot_data_known:
            limit = min(limit, self._snapshot.meta.index if self._snapshot else self.log.offset)
        if limit > self.log.offset:
            self.log.compact(limit)
            self.configs.compact(limit)
        return self.log.offset

    def step(self, m: Message, now: float) -> None:
        """Figure 2's term rules, then dispatch by role."""
        self._now = now
        if m.to != self._id:
            return
        if m.term > self._term and self._in_lease() and self._outsider(m.from_):
            return  # thesis §4.2.3: a server outside the configuration cannot depose a leader we hear from
        if m.term > self._term:
            if isinstance(m, VoteRequest):
                if not m.transfer and self._in_lease():
                    return  # thesis §4.2.3: do not even update the term
                if not m.pre_vote:
                    self._become_follower(m.term, "")
            elif isinstance(m, VoteResponse) and m.pre_vote and m.granted:
                pass  # a granted pre-vote carries the term we asked for; nobody changed term
            elif isinstance(m, AppendRequest | SnapshotRequest | TimeoutNow):
                self._become_follower(m.term, m.from_)
            else:
                self._become_follower(m.term, "")
        elif m.term < self._term:
            self._reject_stale(m)
            return
        if isinstance(m, VoteRequest):
            self._on_vote_request(m)
        elif self._role == Role.LEADER:
            self._step_leader(m)
        elif self._role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # ------------------------------------------------------------ Ready

    def _hard_state(self) -> HardState:
        return HardState(self._term, self._vote, self._commit)

    def _soft_state(self) -> SoftState:
        return SoftState(self._leader, self._role, self._term)

    def has_ready(self) -> bool:
        """Whether ready() would return something (flushes batched appends into the outbox)."""
        self._flush()
        hs, ss = self._hs_sent, self._soft_sent
        return bool(
            self._msgs or self._read_states or self._received_snapshot is not None or self.log.has_unsent()
            or self._commit > self._applying or self._term != hs.term or self._vote != hs.vote
            or self._commit != hs.commit or self._leader != ss.leader or self._role != ss.role or self._term != ss.term)

    def ready(self) -> Ready:
        """Take everything pending. Contract (messages.py): persist snapshot, truncate_from, entries and
        hard_state; then send messages; then apply committed; then advance(ready)."""
        self._flush()
        rd = Ready()
        hs = self._hard_state()
        if hs != self._hs_sent:
            rd.hard_state = self._hs_sent = hs
        rd.truncate_from, rd.entries = self.log.take_unsent()
        if self._received_snapshot is not None:
            rd.snapshot, self._received_snapshot = self._received_snapshot, None
            self._applying = max(self._applying, rd.snapshot.meta.index)
        rd.messages, self._msgs = self._msgs, []
        if self._commit > self._applying:
            rd.committed = self.log.slice(self._applying + 1, self._commit)
            self._applying = self._commit
        rd.read_states, self._read_states = self._read_states, []
        ss = self._soft_state()
        if ss != self._soft_sent:
            rd.soft_state = self._soft_sent = ss
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied `rd`."""
        if rd.entries:
            self.log.stable_to(rd.entries[-1].index, rd.entries[-1].term)
        if rd.snapshot is not None:
            self._applied = max(self._applied, rd.snapshot.meta.index)
        if rd.committed:
            self._applied = max(self._applied, rd.committed[-1].index)
        if self._role == Role.LEADER and rd.entries:
            self._maybe_commit()  # our own copy is durable now

    # ------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """For /v1/operator/raft/configuration and autopilot; times are `now` values of the shell's clock."""
        return {
            "id": self._id, "role": str(self._role), "term": self._term, "leader": self._leader,
            "vote": self._vote, "commit_index": self._commit, "applied_index": self._applied,
            "first_index": self.log.first_index, "last_index": self.log.last_index,
            "last_log_term": self.log.last_term,
            "snapshot_index": self._snapshot.meta.index if self._snapshot else self.log.offset,
            "configuration": [{"id": s.id, "address": s.address, "voter": s.suffrage == Suffrage.VOTER}
                              for s in self.configs.latest.servers],
            "configuration_index": self.configs.latest_index,
            "configuration_committed": self.configs.latest_index <= self._commit,
            "last_leader_contact": self.last_leader_contact(),
            "transfer_target": self._transfer,
            "peers": {sid: {"match_index": pr.match, "next_index": pr.next, "state": str(pr.state),
                            "last_contact": pr.last_heard, "inflight": len(pr.inflight),
                            "needs_snapshot": pr.needs_snapshot}
                      for sid, pr in self._progress.items()},
        }

    # ------------------------------------------------------------ roles

    def _reset_election_timer(self) -> None:
        if self._hinted and self._role != Role.LEADER:
            self._election_deadline = self._now + self.cfg.heartbeat_interval * (1.0 + 2.0 * self.rng.random())
            return
        base = self.cfg.heartbeat_timeout if self._role == Role.FOLLOWER else self.cfg.election_timeout
        self._election_deadline = self._now + base * (1.0 + self.rng.random())

    def leader_unreachable(self, peer: str, now: float) -> None:
        """A hint from the shell: the connection from `peer` closed (its process died or restarted).
        If `peer` is our leader, stop shielding its lease and campaign after 1-3 heartbeat intervals
        (randomised) instead of the whole randomised heartbeat timeout. Safety is unchanged (pre-vote
        still needs a majority, and a server that still hears the leader refuses it); a hint from a
        merely flaky connection costs at most one refused pre-vote, because the live leader's next
        heartbeat restores the lease and the timer."""
        self._now = now
        if self._role != Role.FOLLOWER or not self._leader or peer != self._leader:
            return
        self._last_leader_contact = NEVER
        self._hinted = HINTED_CAMPAIGNS  # a split vote retries on the short timer too, a few times
        soon = now + self.cfg.heartbeat_interval * (1.0 + 2.0 * self.rng.random())
        self._election_deadline = min(self._election_deadline, soon)

    def _outsider(self, sender: str) -> bool:
        """Not in our latest configuration: a removed server, or no server of ours at all. (A server added
        at an index we have not received yet also looks like one; it is heard once our lease lapses.)"""
        latest = self.configs.latest
        return bool(latest.servers) and latest.get(sender) is None

    def _in_lease(self) -> bool:
        """Leader stickiness (thesis §4.2.3): refuse to help depose a leader we heard from recently."""
        if self._role == Role.LEADER:
            return True
        return self._role == Role.FOLLOWER and self._now - self._last_leader_contact < self.cfg.heartbeat_timeout

    def _become_follower(self, term: int, leader: str) -> None:
        if self._role == Role.LEADER and not leader:
            self._last_leader_contact = NEVER  # we stepped down: do not shield our own old leadership
        if term > self._term:
            self._term, self._vote = term, ""
        self._role = Role.FOLLOWER
        self._leader = leader
        if leader:
            self._last_leader_contact = self._now
        self._reset_leader_state()
        self._reset_election_timer()

    def _campaign(self, pre: bool, transfer: bool = False) -> None:
        """Pre-vote (§9.6) asks for votes at term+1 without changing anyone's term; a real election
        increments the term and votes for itself (persisted before the requests leave: Ready order)."""
        if pre:
            self._role = Role.PRE_CANDIDATE
            term = self._term + 1
        else:
            self._role = Role.CANDIDATE
            self._term += 1
            self._vote = self._id
            term = self._term
            self._hinted = max(0, self._hinted - 1)
        self._leader = ""
        self._reset_leader_state()
        voters = self._voters()
        self._votes = {self._id: True} if self._id in voters else {}
        self._reset_election_timer()
        if vote_result(voters, self._votes) == VoteResult.WON:
            self._on_won()
            return
        for v in voters:
            if v != self._id:
                self._msgs.append(VoteRequest(term, self._id, v, self.log.last_index, self.log.last_term,
                                              pre_vote=pre, transfer=transfer))

    def _on_won(self) -> None:
        if self._role == Role.PRE_CANDIDATE:
            self._campaign(pre=False)
        else:
            self._become_leader()

    def _become_leader(self) -> None:
        self._role = Role.LEADER
        self._leader = self._id
        self._reset_leader_state()
        self._sync_progress(self.log.last_index + 1)
        self._append(EntryKind.NOOP, b"")
        self._hb_deadline = self._now + self.cfg.heartbeat_interval
        self._round_pending = True

    def _append(self, kind: EntryKind, data: bytes) -> int:
        e = Entry(self._term, self.log.last_index + 1, kind, data)
        self.log.append([e])
        self._bcast = True
        if kind == EntryKind.CONFIG:
            self.configs.observe(e)
            self._sync_progress(e.index)
        return e.index

    def _check_can_propose(self) -> None:
        if self._role != Role.LEADER:
            raise NotLeader(self._leader)
        if self._transfer:
            raise LeadershipTransferInProgress("", "leadership transfer in progress")

    # ------------------------------------------------------------ messages by role

    def _reject_stale(self, m: Message) -> None:
        """A message from an older term: tell the sender our term so a deposed leader steps down."""
        if isinstance(m, AppendRequest):
            self._msgs.append(AppendResponse(self._term, self._id, m.from_, False, 0, m.read_ctx))
        elif isinstance(m, SnapshotRequest):
            self._msgs.append(SnapshotResponse(self._term, self._id, m.from_, False, 0))
        elif isinstance(m, VoteRequest):
            self._msgs.append(VoteResponse(self._term, self._id, m.from_, False, pre_vote=m.pre_vote))

    def _on_vote_request(self, m: VoteRequest) -> None:
        """Raft §5.2/§5.4.1; pre-votes (§9.6) are granted on the same log test without recording anything."""
        up_to_date = self.log.is_up_to_date(m.last_log_index, m.last_log_term)
        if m.pre_vote:
            grant = m.term > self._term and up_to_date
            self._msgs.append(VoteResponse(m.term if grant else self._term, self._id, m.from_, grant, pre_vote=True))
            return
        # here m.term == self._term
        can_vote = self._vote == m.from_ or (self._vote == "" and self._leader == "")
        grant = can_vote and up_to_date
        if grant:
            self._vote = m.from_  # persisted (Ready.hard_state) before the response is sent
            self._reset_election_timer()
        self._msgs.append(VoteResponse(self._term, self._id, m.from_, grant))

    def _step_leader(self, m: Message) -> None:
        if isinstance(m, AppendResponse):
            self._on_append_response(m)
        elif isinstance(m, SnapshotResponse):
            self._on_snapshot_response(m)

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, AppendRequest | SnapshotRequest):
            self._become_follower(self._term, m.from_)  # a leader won this term (§5.2)
            self._step_follower(m)
        elif isinstance(m, VoteResponse) and m.pre_vote == (self._role == Role.PRE_CANDIDATE):
            if m.granted and m.term != (self._term + 1 if m.pre_vote else self._term):
                return
            self._votes[m.from_] = m.granted
            result = vote_result(self._voters(), self._votes)
            if result == VoteResult.WON:
                self._on_won()
            elif result == VoteResult.LOST:
                self._become_follower(self._term, "")

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendRequest | SnapshotRequest | TimeoutNow) and self._leader and m.from_ != self._leader:
            return  # one leader per term (§5.2): a second "leader" of our term is forged or confused
        if isinstance(m, AppendRequest | SnapshotRequest):
            self._hinted = 0  # a leader exists
            self._leader = m.from_
            self._last_leader_contact = self._now
            self._reset_election_timer()
            if isinstance(m, AppendRequest):
                self._on_append(m)
            else:
                self._on_snapshot(m)
        elif isinstance(m, TimeoutNow) and self._is_voter():
            self._campaign(pre=False, transfer=True)  # §3.10: skip pre-vote and stickiness

    def _on_append(self, m: AppendRequest) -> None:
        """Figure 2, AppendEntries receiver. The prefix up to our commit index is known to match the
        leader's (Leader Completeness), so a request starting below it is trimmed rather than checked."""
        prev, entries = m.prev_log_index, m.entries
        if prev < self._commit:
            entries = entries[self._commit - prev:]
            prev = self._commit
        elif self.log.term_at(prev) != m.prev_log_term:
            hint = self.log.conflict_hint(prev, self._commit)
            self._msgs.append(AppendResponse(self._term, self._id, m.from_, False, hint, m.read_ctx))
            return
        first_new = self.log.merge(entries, self._commit)
        if first_new is not None:
            self.configs.truncate(first_new)
            for e in entries:
                if e.index >= first_new:
                    self.configs.observe(e)
        last_new = prev + len(entries)
        if m.leader_commit > self._commit:
            self._commit = max(self._commit, min(m.leader_commit, last_new))
        self._msgs.append(AppendResponse(self._term, self._id, m.from_, True, last_new, m.read_ctx))

    def _on_snapshot(self, m: SnapshotRequest) -> None:
        """Figure 13, InstallSnapshot receiver."""
        meta = m.snapshot.meta
        if meta.index <= self._commit:
            match = self._commit
        elif self.log.term_at(meta.index) == meta.term:
            self._commit = match = meta.index  # we hold that entry: keep the log, just commit (step 6)
        else:
            self.log.restore(meta)
            self.configs.reset(meta.index, meta.configuration)
            self._commit = match = meta.index
            self._received_snapshot = self._snapshot = m.snapshot
        self._msgs.append(SnapshotResponse(self._term, self._id, m.from_, True, match))


__all__ = ["ConfigChangeInProgress", "LeadershipTransferInProgress", "NotLeader", "Progress", "RaftCore"]
