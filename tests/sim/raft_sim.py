"""A seeded, virtual-time simulation of a Raft cluster built from pure RaftCore nodes.

The driver of each node follows the Ready contract (messages.py) step by step -- persist to the node's
model disk, send to the network, apply to its state machine, advance -- and a crash can strike between
any two steps (or tear the persist step itself), losing everything not yet on "disk". A restarted node
is rebuilt from its disk alone, through the RaftCore constructor.

The network drops, delays (reorders), duplicates and partitions messages. A nemesis partitions, crashes
and restarts nodes, changes membership, transfers leadership and varies loss; clients write (unique
commands) to whoever claims to be leader and issue ReadIndex / lease reads.

Invariants (SimViolation, with the seed in the message):
  election safety        at most one leader per term, ever
  log matching           same index and term -> identical prefix (all pairs of live nodes, periodically)
  leader completeness    a new leader of term T holds every entry known committed before term T
  state machine safety   no two nodes apply different entries at one index; each applies in order
  linearizable reads     a ReadIndex answer, and a lease read, covers every write acknowledged before it
  no acknowledged write lost  after healing and quiescing every member applied every acknowledged
                         command exactly once, and all members' state machines are identical
A write is acknowledged only when its entry is applied on the leader that accepted it, at the index and
term it was given. The same seed gives the same run, event for event (`trace=True` records it).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyconsul.agent.config import RaftConfig
from pyconsul.agent.raft.core import ConfigChangeInProgress, NotLeader, RaftCore
from pyconsul.agent.raft.messages import (
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
    TimeoutNow,
    VoteResponse,
    may_send_before_persist,
)


class SimViolation(AssertionError):
    pass


CRASH_STAGES = ("before_persist", "torn", "after_persist", "mid_send", "after_send", "after_apply")


@dataclass
class Disk:
    """What survives a crash: the durable hard state, snapshot and log (fsynced at each persist step).
    It enforces what agent/raft/storage.py requires of a Ready: appends continue the log."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: dict[int, Entry] = field(default_factory=dict)
    last: int = 0

    def save_snapshot(self, snap: Snapshot) -> None:
        """Like storage.save_snapshot: keep the entries after it only if the log holds its last entry."""
        keep = self.entries.get(snap.meta.index) or (self.snapshot.meta if self.snapshot else None)
        if keep is None or keep.index != snap.meta.index or keep.term != snap.meta.term:
            self.entries, self.last = {}, snap.meta.index
        else:
            self.entries = {i: e for i, e in self.entries.items() if i > snap.meta.index}
        self.snapshot = snap

    def truncate(self, index: int) -> None:
        if self.snapshot is not None and index <= self.snapshot.meta.index:
            raise SimViolation(f"truncate_from {index} inside the snapshot at {self.snapshot.meta.index}")
        for i in range(index, self.last + 1):
            self.entries.pop(i, None)
        self.last = min(self.last, index - 1)

    def append(self, e: Entry) -> None:
        if e.index != self.last + 1:
            raise SimViolation(f"Ready entry {e.index} does not continue the disk log (last {self.last})")
        self.entries[e.index] = e
        self.last = e.index

    def compact(self, upto: int) -> None:
        for i in [i for i in self.entries if i <= upto]:
            del self.entries[i]


@dataclass
class SimNode:
    id: str
    disk: Disk
    core: RaftCore | None = None
    incarnation: int = 0
    sm: list[tuple[int, bytes]] = field(default_factory=list)  # (index, command) applied, in order
    sm_index: int = 0
    crash_stage: str | None = None
    last_snap: int = 0
    # async_disk: Readies taken but not yet durable (oldest first), with their late messages
    pipeline: list[tuple[Ready, list[Message]]] = field(default_factory=list)
    disk_free_at: float = 0.0  # when the node's (FIFO) disk finishes what it was given


class RaftSim:
    def __init__(self, seed: int, n: int = 3, *, config: RaftConfig | None = None, spares: int = 1,
                 faults: bool = True, trace: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.netrng = random.Random(seed * 7919 + 1)
        r = self.rng
        self.config = config or RaftConfig(
            heartbeat_timeout=0.2, election_timeout=0.2, leader_lease_timeout=0.1, heartbeat_interval=0.04,
            max_append_entries=r.choice((1, 3, 16)), max_inflight=r.choice((1, 2, 16)),
            snapshot_threshold=r.randint(6, 40), trailing_logs=r.randint(0, 8),
            pre_vote=r.random() < 0.75, check_quorum=r.random() < 0.75)
        self.faults = faults
        self.bounce = 0.0  # probability that handling a Ready crashes the node (set by the scenario)
        self.nemesis_period = 0.4
        self.lazy = False  # defer Ready handling (see _kick)
        self.async_disk = False  # persist on a slow FIFO disk, as node.py's writer thread (see _drain_async)
        self.diskrng = random.Random(seed * 104729 + 3)
        self._kicked: set[str] = set()
        self.now = 0.0
        # network
        self.loss = 0.0
        self.dup = 0.0
        self.blocked: set[tuple[str, str]] = set()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        # history
        self.trace: list[tuple[Any, ...]] | None = [] if trace else None
        self.stats: Counter[str] = Counter()  # what happened: elections, acked, crashes, ...
        self.leaders: dict[int, str] = {}
        self.applied_at: dict[int, Entry] = {}
        self.commit_term: dict[int, int] = {}  # index -> lowest term any node had when it applied it
        self.pending: dict[tuple[str, int, int], tuple[int, bytes]] = {}
        self.acked: dict[bytes, tuple[int, float]] = {}
        self.max_acked = 0
        self.reads: dict[tuple[str, int, int], int] = {}
        self._cmd = itertools.count(1)
        self._ctx = itertools.count(1)
        self.payloads: dict[bytes, tuple[int, tuple[tuple[int, bytes], ...]]] = {}
        self.nodes: dict[str, SimNode] = {}
        self.crash_hint_probability = 0.8  # peers that notice a crash (their connection from it closes)
        self.ids = [f"n{i + 1}" for i in range(n + spares)]
        for nid in self.ids:
            self.nodes[nid] = SimNode(nid, Disk())
            self._start(self.nodes[nid])
        conf = Configuration(tuple(Server(nid, f"{nid}:8300") for nid in self.ids[:n]))
        for nid in self.ids[:n]:
            core = self.nodes[nid].core
            assert core is not None
            core.bootstrap(conf)
            self._drain(self.nodes[nid])

    # ------------------------------------------------------------ helpers

    def fail(self, what: str) -> SimViolation:
        return SimViolation(f"seed={self.seed} t={self.now:.4f}: {what}")

    def _record(self, *ev: Any) -> None:
        if self.trace is not None:
            self.trace.append((round(self.now, 9), *ev))

    def digest(self) -> str:
        return hashlib.sha256(repr(self.trace).encode()).hexdigest()

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), fn))

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def leaders_now(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None and n.core.role == Role.LEADER]

    # ------------------------------------------------------------ node lifecycle

    def _start(self, node: SimNode) -> None:
        d = node.disk
        node.incarnation += 1
        rng = random.Random(f"{self.seed}/{node.id}/{node.incarnation}")
        meta = d.snapshot.meta if d.snapshot else SnapshotMeta()
        entries = [d.entries[i] for i in sorted(d.entries)]
        node.core = RaftCore(node.id, self.config, rng, self.now, hard_state=d.hard_state, snapshot=meta,
                             entries=entries, applied=meta.index)
        if d.snapshot is not None:
            node.core.set_snapshot(d.snapshot)
            node.sm = list(self.payloads[d.snapshot.data][1])
        else:
            node.sm = []
        node.sm_index = meta.index
        node.last_snap = meta.index
        node.crash_stage = None
        self._record("start", node.id, node.incarnation)

    def crash(self, node: SimNode) -> None:
        if node.pipeline:
            # the writer thread may have made some queued writes durable (in order) before the process died,
            # without the driver hearing of it; the next one may be torn
            pending, node.pipeline = node.pipeline, []
            made = self.diskrng.randrange(len(pending) + 1)
            for rd, _ in pending[:made]:
                self._persist(node, rd)
            if made < len(pending) and self.diskrng.random() < 0.5:
                self._persist_torn(node, pending[made][0])
        node.core = None
        node.crash_stage = None
        self.stats["crashes"] += 1
        for k in [k for k in self.pending if k[0] == node.id]:
            del self.pending[k]
        for k in [k for k in self.reads if k[0] == node.id]:
            del self.reads[k]
        self._record("crash", node.id)
        # the shell's connection-closed hint (RaftCore.leader_unreachable): most peers notice the crash,
        # after the messages already in flight on that connection (TCP delivers them before the EOF;
        # 0.07 s covers the network's slow path, not its "very late" reorderings)
        for other in self.nodes.values():
            if other is not node and self.rng.random() < self.crash_hint_probability:
                self.at(self.now + 0.07 + self.rng.random() * 0.005, lambda o=other, lost=node.id: self._hint(o, lost))

    def _hint(self, node: SimNode, lost: str) -> None:
        """Deliver a connection-lost hint, true or (from the nemesis) false."""
        if node.core is not None:
            node.core.leader_unreachable(lost, self.now)
            self._kick(node)

    def restart(self, node: SimNode) -> None:
        if node.core is None:
            self._start(node)
            self._drain(node)

    # ------------------------------------------------------------ the Ready contract

    def _kick(self, node: SimNode) -> None:
        """Handle the node's Readies now, or (a busy driver, `lazy` seeds) a moment later, so that several
        inputs are stepped between two Readies, as the asyncio driver does."""
        if not self.lazy:
            self._drain(node)
        elif node.id not in self._kicked:
            self._kicked.add(node.id)
            self.at(self.now + self.rng.random() * 0.003, lambda: self._drain_kicked(node))

    def _drain_kicked(self, node: SimNode) -> None:
        self._kicked.discard(node.id)
        self._drain(node)

    def _drain(self, node: SimNode) -> None:
        if self.async_disk:
            return self._drain_async(node)
        while node.core is not None and node.core.has_ready():
            core = node.core
            rd = core.ready()
            stage, node.crash_stage = node.crash_stage, None
            if stage is None and self.bounce and self.rng.random() < self.bounce:
                stage = self.rng.choice(CRASH_STAGES)  # a crash at a random point of any Ready, restart soon
                self.at(self.now + self.rng.random() * 0.1, lambda n=node: self.restart(n))  # type: ignore[misc]
            elif stage is None and self.bounce and self.rng.random() < 0.1 and any(
                    isinstance(m, VoteResponse) and m.granted for m in rd.messages):
                stage = "after_send"  # a voter dies right after voting and is back within the election
                self.at(self.now + self.rng.random() * 0.01, lambda n=node: self.restart(n))  # type: ignore[misc]
            if stage == "before_persist":
                return self.crash(node)
            if stage == "torn":
                self._persist_torn(node, rd)
                return self.crash(node)
            self._persist(node, rd)
            if stage == "after_persist":
                return self.crash(node)
            cut = self.rng.randrange(len(rd.messages) + 1) if stage == "mid_send" else -1
            for i, m in enumerate(rd.messages):
                if i == cut:
                    return self.crash(node)
                self._send(m)
            if stage in ("after_send", "mid_send"):
                return self.crash(node)
            self._apply(node, rd)
            if stage == "after_apply":
                return self.crash(node)
            core.advance(rd)
            self._maybe_snapshot(node)
        return None

    def _drain_async(self, node: SimNode) -> None:
        """node.py's driver: a leader's replication (may_send_before_persist) leaves at once, before its own
        write (thesis §10.2.1); the write goes to a FIFO disk that takes its time (now and then far longer
        than a follower's round trip, so followers' acknowledgements commit entries the leader has not
        stored yet); the rest of the Ready -- late messages, apply, advance -- follows once that write and
        every earlier one are durable. A crash may strike at any stage of any Ready (see crash())."""
        while node.core is not None and node.core.has_ready():
            core = node.core
            rd = core.ready()
            late = []
            for m in rd.messages:
                if may_send_before_persist(m):
                    if node.pipeline or rd.entries:
                        self.stats["sent_before_persist"] += 1
                    self._send(m)
                else:
                    late.append(m)
            node.pipeline.append((rd, late))
            writes = rd.snapshot is not None or rd.hard_state is not None or rd.truncate_from is not None \
                or bool(rd.entries)
            r = self.diskrng
            delay = (0.0005 + r.random() * 0.004) * (25 if r.random() < 0.05 else 1) if writes else 0.0
            node.disk_free_at = max(self.now, node.disk_free_at) + delay
            inc = node.incarnation
            self.at(node.disk_free_at, lambda n=node, i=inc: self._written(n, i))  # type: ignore[misc]

    def _written(self, node: SimNode, incarnation: int) -> None:
        """The oldest queued write of `node` is durable: finish its Ready (stages as in _drain)."""
        if node.core is None or node.incarnation != incarnation or not node.pipeline:
            return
        core = node.core
        stage, node.crash_stage = node.crash_stage, None
        if stage is None and self.bounce and self.rng.random() < self.bounce:
            stage = self.rng.choice(CRASH_STAGES)
            self.at(self.now + self.rng.random() * 0.1, lambda n=node: self.restart(n))  # type: ignore[misc]
        if stage in ("before_persist", "torn"):
            return self.crash(node)  # crash() decides how much of the queue reached the disk
        rd, late = node.pipeline.pop(0)
        self._persist(node, rd)
        if stage == "after_persist":
            return self.crash(node)
        cut = self.rng.randrange(len(late) + 1) if stage == "mid_send" else -1
        for i, m in enumerate(late):
            if i == cut:
                return self.crash(node)
            self._send(m)
        if stage in ("after_send", "mid_send"):
            return self.crash(node)
        self._apply(node, rd)
        if stage == "after_apply":
            return self.crash(node)
        core.advance(rd)
        self._maybe_snapshot(node)
        self._kick(node)
        return None

    def _persist(self, node: SimNode, rd: Ready) -> None:
        d = node.disk
        if rd.snapshot is not None:
            d.save_snapshot(rd.snapshot)
        if rd.truncate_from is not None:
            d.truncate(rd.truncate_from)
        for e in rd.entries:
            d.append(e)
        if rd.hard_state is not None:
            d.hard_state = rd.hard_state

    def _persist_torn(self, node: SimNode, rd: Ready) -> None:
        """Only a prefix of the persist step's writes reached the disk (order varies: hard state last or first)."""
        d = node.disk
        ops: list[Callable[[], None]] = []
        snap, trunc, hs = rd.snapshot, rd.truncate_from, rd.hard_state
        if snap is not None:
            ops.append(lambda: d.save_snapshot(snap))
        if trunc is not None:
            ops.append(lambda: d.truncate(trunc))
        ops += [(lambda e=e: d.append(e)) for e in rd.entries]  # type: ignore[misc]
        if hs is not None:
            def save_hs() -> None:
                d.hard_state = hs
            if self.rng.random() < 0.5:
                ops.append(save_hs)
            else:
                ops.insert(0, save_hs)
        for op in ops[:self.rng.randrange(len(ops) + 1)]:
            op()

    def _apply(self, node: SimNode, rd: Ready) -> None:
        core = node.core
        assert core is not None
        if rd.snapshot is not None:
            idx, sm = self.payloads[rd.snapshot.data]
            if idx != rd.snapshot.meta.index:
                raise self.fail(f"{node.id}: snapshot payload index {idx} != meta {rd.snapshot.meta.index}")
            node.sm = list(sm)
            node.sm_index = node.last_snap = idx
            self.stats["snapshots_installed"] += 1
            self._record("install", node.id, idx)
        for e in rd.committed:
            self._apply_entry(node, core, e)
        for rs in rd.read_states:
            need = self.reads.pop((node.id, node.incarnation, rs.ctx), None)
            if need is not None:
                if rs.index < need:
                    raise self.fail(f"{node.id}: ReadIndex ctx={rs.ctx} answered index {rs.index} < {need}, "
                                    "the last write acknowledged before the read began")
                self.stats["reads_ok"] += 1
        if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
            self._on_leader(node, core, rd.soft_state.term)

    def _apply_entry(self, node: SimNode, core: RaftCore, e: Entry) -> None:
        if e.index != node.sm_index + 1:
            raise self.fail(f"{node.id}: applied index {e.index} after {node.sm_index}")
        node.sm_index = e.index
        prior = self.applied_at.setdefault(e.index, e)
        if prior != e:
            raise self.fail(f"state machine safety: {node.id} applied {e} but another node applied {prior}")
        t = self.commit_term.get(e.index)
        if t is None or core.term < t:
            self.commit_term[e.index] = core.term
        if e.kind == EntryKind.NORMAL:
            node.sm.append((e.index, e.data))
            p = self.pending.pop((node.id, node.incarnation, e.index), None)
            if p is not None and p == (e.term, e.data):
                if e.data in self.acked:
                    raise self.fail(f"command {e.data!r} acknowledged twice")
                self.acked[e.data] = (e.index, self.now)
                self.max_acked = max(self.max_acked, e.index)
                self.stats["acked"] += 1
        elif e.kind == EntryKind.CONFIG and prior is e and e.index > 1:
            self.stats["config_changes"] += 1  # committed membership changes (counted once)

    def _on_leader(self, node: SimNode, core: RaftCore, term: int) -> None:
        """Election safety and leader completeness, checked the moment a leader appears."""
        prev = self.leaders.setdefault(term, node.id)
        if prev != node.id:
            raise self.fail(f"election safety: two leaders in term {term}: {prev} and {node.id}")
        self.stats["elections"] += 1
        self._record("leader", node.id, term)
        if self.bounce and self.rng.random() < 0.2:  # Figure 8: leaders that die right after election
            inc = node.incarnation
            def kill() -> None:
                if node.core is not None and node.incarnation == inc:
                    self.crash(node)
                    self.at(self.now + 0.05 + self.rng.random() * 0.3, lambda: self.restart(node))
            self.at(self.now + self.rng.random() * 0.03, kill)
        log = core.log
        for idx, t in self.commit_term.items():
            if t >= term or idx <= log.offset:
                continue
            want = self.applied_at[idx]
            if idx > log.last_index or log.entry(idx) != want:
                raise self.fail(f"leader completeness: {node.id} leads term {term} without committed "
                                f"entry {want} (known committed by term {t})")

    def _maybe_snapshot(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        if core.applied - node.last_snap < self.config.snapshot_threshold or core.applied != node.sm_index:
            return
        if core.applied < core.log.offset:
            return  # async_disk: a received snapshot past `applied` waits in the pipeline and supersedes ours
        idx = core.applied
        token = f"{node.id}/{node.incarnation}/{idx}/{len(self.payloads)}".encode()
        self.payloads[token] = (idx, tuple(node.sm))
        snap = Snapshot(core.snapshot_meta(idx), token)
        node.disk.save_snapshot(snap)
        core.set_snapshot(snap)
        node.disk.compact(core.compact(idx))
        node.last_snap = idx
        self._record("snapshot", node.id, idx)

    # ------------------------------------------------------------ network

    def _send(self, m: Message) -> None:
        self.stats["messages"] += 1
        if isinstance(m, SnapshotRequest):
            self.stats["snapshots_sent"] += 1
        elif isinstance(m, TimeoutNow):
            self.stats["timeout_now"] += 1
        src, dst = m.from_, m.to
        r = self.netrng
        if (src, dst) in self.blocked or r.random() < self.loss:
            return
        copies = 2 if r.random() < self.dup else 1
        for _ in range(copies):
            delay = 0.001 + r.random() * 0.004
            slow = r.random()
            if slow < 0.05:
                delay += r.random() * 0.06  # a slow path: reordering
                if slow < 0.003:
                    delay += r.random()  # very late: arrives terms later
            self.at(self.now + delay, lambda: self._deliver(m))

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None or node.core is None or (m.from_, m.to) in self.blocked:
            return
        self._record("msg", type(m).__name__, m.from_, m.to, m.term)
        node.core.step(m, self.now)
        self._kick(node)

    def partition(self, *groups: list[str]) -> None:
        """Cut every link between different groups (both directions); nodes in no group are isolated."""
        where = {nid: i for i, g in enumerate(groups) for nid in g}
        self.blocked = {(a, b) for a in self.ids for b in self.ids
                        if a != b and (a not in where or b not in where or where[a] != where[b])}
        self._record("partition", tuple(tuple(g) for g in groups))

    def heal(self) -> None:
        self.blocked = set()
        self._record("heal")

    # ------------------------------------------------------------ clients

    def propose(self, node: SimNode) -> bytes | None:
        core = node.core
        assert core is not None
        cmd = f"c{next(self._cmd)}".encode()
        try:
            idx = core.propose(cmd, self.now)
        except NotLeader:
            return None
        self.stats["proposed"] += 1
        self.pending[(node.id, node.incarnation, idx)] = (core.term, cmd)
        self._record("propose", node.id, idx, cmd)
        self._kick(node)
        return cmd

    def read(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        if core.lease_read_ok(self.now):
            if core.commit_index < self.max_acked:
                raise self.fail(f"{node.id}: lease read at commit {core.commit_index} misses acknowledged "
                                f"write at index {self.max_acked}")
            self.stats["lease_reads"] += 1
        ctx = next(self._ctx)
        try:
            core.read_index(ctx, self.now)
        except NotLeader:
            return
        self.reads[(node.id, node.incarnation, ctx)] = self.max_acked
        self._kick(node)

    # ------------------------------------------------------------ event loop

    def run(self, until: float) -> None:
        heap = self._heap
        while True:
            t_ev = heap[0][0] if heap else float("inf")
            t_node, who = float("inf"), None
            for n in self.nodes.values():
                if n.core is not None:
                    d = n.core.next_deadline()
                    if d < t_node:
                        t_node, who = d, n
            t = min(t_ev, t_node)
            if t > until:
                self.now = max(self.now, until)
                return
            self.now = max(self.now, t)
            if who is not None and t_node <= t_ev:
                assert who.core is not None
                who.core.tick(self.now)
                if who.core.next_deadline() <= self.now:
                    raise self.fail(f"{who.id}: tick() left next_deadline() in the past")
                self._kick(who)
                continue
            heapq.heappop(heap)[2]()

    # ------------------------------------------------------------ checks

    def check_log_matching(self) -> None:
        live = [n.core for n in self.live()]
        for a, b in itertools.combinations(live, 2):
            assert a is not None and b is not None
            la, lb = a.log, b.log
            lo, hi = max(la.offset, lb.offset), min(la.last_index, lb.last_index)
            for i in range(hi, lo - 1, -1):
                if la.term_at(i) == lb.term_at(i):
                    for j in range(max(lo, 1), i + 1):
                        if j > la.offset and j > lb.offset and la.entry(j) != lb.entry(j):
                            raise self.fail(f"log matching: {a.id} and {b.id} agree at index {i} "
                                            f"but differ at {j}: {la.entry(j)} vs {lb.entry(j)}")
                    break

    def members(self) -> list[str]:
        leaders = self.leaders_now()
        if not leaders:
            return []
        lead = max(leaders, key=lambda n: n.core.term if n.core else 0)
        assert lead.core is not None
        return [s.id for s in lead.core.configuration.servers]

    def converged(self) -> bool:
        leaders = [n for n in self.leaders_now() if n.core is not None]
        if len(leaders) != 1:
            return False
        lc = leaders[0].core
        assert lc is not None
        if lc.commit_index != lc.last_index or lc.term_at(lc.commit_index) != lc.term:
            return False
        for s in lc.configuration.servers:
            n = self.nodes[s.id]
            if n.core is None or n.sm_index != lc.commit_index or n.core.leader != lc.id:
                return False
        return True

    def quiesce(self, limit: float = 30.0) -> None:
        """Heal everything, restart every node, stop the clients and wait until the cluster agrees."""
        self.heal()
        self.loss = self.dup = 0.0
        for n in self.nodes.values():
            n.crash_stage = None
            self.restart(n)
        deadline = self.now + limit
        while not self.converged():
            if self.now >= deadline:
                raise self.fail(f"liveness: no convergence {limit}s after healing: " + "; ".join(
                    f"{n.id} {n.core.role if n.core else 'down'} term={n.core.term if n.core else '-'} "
                    f"commit={n.core.commit_index if n.core else '-'} sm={n.sm_index}"
                    for n in self.nodes.values()))
            self.run(self.now + 0.05)

    def check_final(self) -> None:
        self.check_log_matching()
        members = self.members()
        if not members:
            raise self.fail("no leader after quiescing")
        reference: list[tuple[int, bytes]] | None = None
        for nid in members:
            n = self.nodes[nid]
            cmds = [c for _, c in n.sm]
            if len(cmds) != len(set(cmds)):
                raise self.fail(f"{nid}: a command was applied twice")
            present = set(cmds)
            lost = [c for c in self.acked if c not in present]
            if lost:
                raise self.fail(f"acknowledged writes lost on {nid}: {lost[:5]} ({len(lost)} in all)")
            if reference is None:
                reference = n.sm
            elif n.sm != reference:
                raise self.fail(f"state machines differ between {members[0]} and {nid}")
        for cmd, (idx, _) in self.acked.items():
            if self.applied_at[idx].data != cmd:
                raise self.fail(f"acknowledged {cmd!r} at {idx} but {self.applied_at[idx]} was applied there")

    # ------------------------------------------------------------ scenario

    def nemesis(self) -> None:
        r = self.rng
        live = self.live()
        leaders = self.leaders_now()
        if live and r.random() < 0.15:  # a spurious hint: a flaky connection to a live leader
            victim = r.choice(live)
            self._hint(victim, victim.core.leader if victim.core is not None else "")
        roll = r.random()
        if roll < 0.2:
            ids = list(self.ids)
            r.shuffle(ids)
            k = r.randint(1, len(ids) - 1)
            self.partition(ids[:k], ids[k:])
        elif roll < 0.25 and leaders:
            lid = r.choice(leaders).id
            self.partition([lid], [i for i in self.ids if i != lid])
        elif roll < 0.3:
            a, b = r.sample(self.ids, 2)  # a one-way cut: a hears nothing from b, b still hears a
            self.blocked.add((b, a))
            self._record("cut", b, a)
        elif roll < 0.45:
            self.heal()
        elif roll < 0.62 and live:
            victim = r.choice(leaders) if leaders and r.random() < 0.5 else r.choice(live)
            if r.random() < 0.5:
                self.crash(victim)
            else:
                victim.crash_stage = r.choice(CRASH_STAGES)
            self.at(self.now + 0.05 + r.random() * 0.6, lambda v=victim: self.restart(v))  # type: ignore[misc]
        elif roll < 0.7:
            self.loss = r.choice((0.0, 0.0, 0.02, 0.1, 0.25))
            self.dup = r.choice((0.0, 0.02, 0.1))
        elif roll < 0.85 and leaders:
            self._change_membership(r.choice(leaders))
        elif leaders:
            lead = r.choice(leaders)
            assert lead.core is not None
            others = [v for v in lead.core.configuration.voters() if v != lead.id]
            if others:
                try:
                    lead.core.transfer_leadership(r.choice(others), self.now)
                    self.stats["transfers"] += 1
                except NotLeader:
                    pass
                self._kick(lead)

    def _change_membership(self, lead: SimNode) -> None:
        core = lead.core
        assert core is not None
        voters = core.configuration.voters()
        spares = [i for i in self.ids if core.configuration.get(i) is None]
        try:
            if spares and (len(voters) < 4 or self.rng.random() < 0.5) and len(voters) < 5:
                sid = self.rng.choice(spares)
                core.propose_config_change(add=Server(sid, f"{sid}:8300"), now=self.now)
            elif len(voters) > 3:
                core.propose_config_change(remove=self.rng.choice(voters), now=self.now)
            else:
                return
        except (NotLeader, ConfigChangeInProgress):
            return
        self._record("config", lead.id)
        self._kick(lead)

    def clients(self, action: Callable[[SimNode], object], period: float, stop: float) -> None:
        """Until `stop`, every random(0, period) seconds: `action` on a node that claims to lead."""
        if self.now >= stop:
            return
        leaders = self.leaders_now()
        if leaders:
            action(self.rng.choice(leaders))
        self.at(self.now + self.rng.random() * period, lambda: self.clients(action, period, stop))

    def _nemesis_loop(self, stop: float) -> None:
        if self.now >= stop:
            return
        self.nemesis()
        self.check_log_matching()
        self.at(self.now + self.rng.random() * self.nemesis_period, lambda: self._nemesis_loop(stop))

    def scenario(self, duration: float = 3.0) -> RaftSim:
        """Clients and (if faults) the nemesis for `duration` seconds, then heal, quiesce and check all."""
        start = self.now
        self.at(start + 0.01, lambda: self.clients(self.propose, 0.03, start + duration))
        self.at(start + 0.02, lambda: self.clients(self.read, 0.1, start + duration))
        if self.faults:
            self.at(start + 0.3, lambda: self._nemesis_loop(start + duration))
        self.run(start + duration)
        self.bounce = 0.0
        self.quiesce()
        self.check_final()
        return self


def run_seed(seed: int, *, trace: bool = False) -> RaftSim:
    """One standard run: 3 or 5 voters plus a spare, faults for a few simulated seconds."""
    n = 3 if seed % 3 else 5
    sim = RaftSim(seed, n, trace=trace)
    if seed % 2:  # the rough half: frequent nemesis and crashes at random points of any Ready
        sim.bounce = 0.003
        sim.nemesis_period = 0.2
    sim.lazy = seed % 4 >= 2
    sim.async_disk = seed % 8 >= 4  # node.py's writer thread: the leader's own write overlaps replication
    return sim.scenario(duration=2.0 + (seed % 5) * 0.5)

