"""Workload generators: what clients invoke, as data (ARCHITECTURE.md, principles 2 and 8).

Generators are pure and seeded: `random.Random(seed)` is their only source of randomness, so the same
seed yields the same sequence of invocations. They never sleep: each `Invocation` carries `stagger_ns`,
the pause the runner takes before issuing it (Jepsen's `stagger`: uniform in [0, 2 × mean), so the mean
rate is one op per `mean` per generator). Processes, timeouts and recording are the runner's job.

- `RegisterGenerator`: per-key registers with read / write / cas on a few keys (Jepsen's cas-register
  workload): values come from a small domain (0..values-1) so that stale reads are distinguishable and cas
  comparisons succeed often enough to matter. A cas is `(expected, new)`.
- `SetGenerator`: adds of unique integers to one set, then one final read (after the nemesis has healed).
- `LockGenerator`: turns at a Consul lock (the runner makes a turn an `acquire` if the process does not
  hold the lock, else a `release`) mixed with `?consistent` reads of who holds it (chaos/checker/lock.py).

`simulate_register` executes invocations against an in-memory, linearizable register store with
overlapping, randomly timed operations, crashes (info) and failures: a reference history for checker
tests and the checker benchmark. It is a simulation, not a client.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pyconsul.chaos.history import FAIL, INFO, INVOKE, OK, Key, Op, OpType, Value

READ, WRITE, CAS, ADD = "read", "write", "cas", "add"
TURN = "turn"  # lock workload: acquire, or release if the process holds the lock


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a client should invoke next, after waiting `stagger_ns`."""

    f: str
    key: Key
    value: Value
    stagger_ns: int = 0


def _stagger(rng: random.Random, mean_ns: int) -> int:
    return rng.randrange(2 * mean_ns) if mean_ns > 0 else 0


@dataclass(frozen=True, slots=True)
class RegisterMix:
    """Relative weights of reads, writes and cas (they need not sum to 1)."""

    read: float = 0.5
    write: float = 0.25
    cas: float = 0.25

    def validate(self) -> None:
        for name in ("read", "write", "cas"):
            if getattr(self, name) < 0:
                raise ValueError(f"RegisterMix.{name} must be >= 0")
        if self.read + self.write + self.cas <= 0:
            raise ValueError("RegisterMix: at least one weight must be > 0")


@dataclass(frozen=True, slots=True)
class RegisterWorkload:
    keys: tuple[Key, ...] = ("r0", "r1", "r2", "r3", "r4")
    mix: RegisterMix = field(default_factory=RegisterMix)
    values: int = 5  # written values are 0..values-1 (Jepsen's cas-register uses 0-4)
    stagger_ns: int = 10_000_000  # mean pause between invocations (10 ms)

    def validate(self) -> None:
        if not self.keys:
            raise ValueError("RegisterWorkload.keys must not be empty")
        if self.values < 1:
            raise ValueError("RegisterWorkload.values must be >= 1")
        if self.stagger_ns < 0:
            raise ValueError("RegisterWorkload.stagger_ns must be >= 0")
        self.mix.validate()


class RegisterGenerator:
    """An endless, seeded stream of register invocations; `final_reads()` reads every key once."""

    def __init__(self, workload: RegisterWorkload | None = None, *, seed: int = 0) -> None:
        self.workload = workload or RegisterWorkload()
        self.workload.validate()
        self._rng = random.Random(seed)
        m = self.workload.mix
        self._fs = (READ, WRITE, CAS)
        self._weights = (m.read, m.write, m.cas)

    def __iter__(self) -> Iterator[Invocation]:
        return self

    def __next__(self) -> Invocation:
        rng, w = self._rng, self.workload
        f = rng.choices(self._fs, self._weights)[0]
        key = w.keys[rng.randrange(len(w.keys))]
        value: Value
        if f == READ:
            value = None
        elif f == WRITE:
            value = rng.randrange(w.values)
        else:
            value = (rng.randrange(w.values), rng.randrange(w.values))
        return Invocation(f, key, value, _stagger(rng, w.stagger_ns))

    def take(self, n: int) -> list[Invocation]:
        return [next(self) for _ in range(n)]

    def final_reads(self) -> list[Invocation]:
        return [Invocation(READ, k, None, 0) for k in self.workload.keys]


@dataclass(frozen=True, slots=True)
class SetWorkload:
    key: Key = "set"
    adds: int | None = 1000  # how many adds before the generator is exhausted; None = endless
    stagger_ns: int = 10_000_000

    def validate(self) -> None:
        if self.adds is not None and self.adds < 0:
            raise ValueError("SetWorkload.adds must be >= 0 or None")
        if self.stagger_ns < 0:
            raise ValueError("SetWorkload.stagger_ns must be >= 0")


class SetGenerator:
    """Adds 0, 1, 2, ... (each element attempted once, so a lost or duplicated element is attributable),
    then stops; `final_reads()` is the single read the runner issues after healing."""

    def __init__(self, workload: SetWorkload | None = None, *, seed: int = 0) -> None:
        self.workload = workload or SetWorkload()
        self.workload.validate()
        self._rng = random.Random(seed)
        self._next = 0

    def __iter__(self) -> Iterator[Invocation]:
        return self

    def __next__(self) -> Invocation:
        w = self.workload
        if w.adds is not None and self._next >= w.adds:
            raise StopIteration
        element = self._next
        self._next += 1
        return Invocation(ADD, w.key, element, _stagger(self._rng, w.stagger_ns))

    def take(self, n: int) -> list[Invocation]:
        out: list[Invocation] = []
        for inv in self:
            out.append(inv)
            if len(out) >= n:
                break
        return out

    def final_reads(self) -> list[Invocation]:
        return [Invocation(READ, self.workload.key, None, 0)]


@dataclass(frozen=True, slots=True)
class LockWorkload:
    keys: tuple[Key, ...] = ("lock",)
    read: float = 0.3  # share of reads among invocations
    stagger_ns: int = 10_000_000

    def validate(self) -> None:
        if not self.keys:
            raise ValueError("LockWorkload.keys must not be empty")
        if not 0.0 <= self.read < 1.0:
            raise ValueError("LockWorkload.read must be in [0, 1)")
        if self.stagger_ns < 0:
            raise ValueError("LockWorkload.stagger_ns must be >= 0")


class LockGenerator:
    """An endless, seeded stream of lock turns and reads; `final_reads()` reads every lock once."""

    def __init__(self, workload: LockWorkload | None = None, *, seed: int = 0) -> None:
        self.workload = workload or LockWorkload()
        self.workload.validate()
        self._rng = random.Random(seed)

    def __iter__(self) -> Iterator[Invocation]:
        return self

    def __next__(self) -> Invocation:
        rng, w = self._rng, self.workload
        f = READ if rng.random() < w.read else TURN
        return Invocation(f, w.keys[rng.randrange(len(w.keys))], None, _stagger(rng, w.stagger_ns))

    def take(self, n: int) -> list[Invocation]:
        return [next(self) for _ in range(n)]

    def final_reads(self) -> list[Invocation]:
        return [Invocation(READ, k, None, 0) for k in self.workload.keys]


# --- a reference execution -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Planned:
    seq: int
    process: int
    inv: Invocation
    start: int
    effect: int  # when it takes effect (if it does)
    end: int
    outcome: OpType  # planned completion type: ok, fail (refused) or info (crash)
    applies: bool  # whether it takes effect at all (info ops: a coin flip)


def simulate_register(invocations: Iterable[Invocation], *, processes: int = 5, seed: int = 0,
                      latency_ns: int = 2_000_000, info_rate: float = 0.0, fail_rate: float = 0.0,
                      initial: Value = None) -> list[Op]:
    """Run `invocations` on `processes` concurrent simulated clients against a linearizable register store.

    Each op takes effect at one instant strictly inside its interval (uniform latencies up to
    `latency_ns`), in effect-time order; so the history is linearizable by construction. With probability
    `fail_rate` an op is refused (`fail`, no effect); with probability `info_rate` the client times out
    (`info`), and the op takes effect or not (a coin flip), possibly long after the timeout; the client
    then continues as a new process (id + `processes`). A cas whose comparison fails completes `fail`.
    Reads of an unwritten key return `initial`. Returns the indexed history.
    """
    if processes < 1:
        raise ValueError("processes must be >= 1")
    rng = random.Random(seed)
    lat = max(1, latency_ns)
    free = [(0, slot) for slot in range(processes)]  # (time the slot is free, slot)
    ids = list(range(processes))
    plans: list[_Planned] = []
    for seq, inv in enumerate(invocations):
        t, slot = heapq.heappop(free)
        start = t + inv.stagger_ns + 1
        effect = start + 1 + rng.randrange(lat)
        end = effect + 1 + rng.randrange(lat)
        roll = rng.random()
        outcome: OpType = INFO if roll < info_rate else FAIL if roll < info_rate + fail_rate else OK
        applies = outcome == OK or (outcome == INFO and rng.random() < 0.5)
        if outcome == INFO and applies:
            effect += rng.randrange(4 * lat)  # a timed-out request may land after the client gave up
        plans.append(_Planned(seq, ids[slot], inv, start, effect, end, outcome, applies))
        if outcome == INFO:
            ids[slot] += processes
        heapq.heappush(free, (end, slot))

    state: dict[Key, Value] = {}
    results: dict[int, tuple[OpType, Value]] = {}
    for p in sorted(plans, key=lambda p: (p.effect, p.seq)):
        if not p.applies:
            results[p.seq] = (p.outcome, None)
            continue
        results[p.seq] = _apply(state, p.inv, initial, p.outcome)

    events: list[tuple[int, int, Op]] = []
    for p in plans:
        inv = p.inv
        events.append((p.start, 2 * p.seq, Op(p.process, INVOKE, inv.f, inv.key, inv.value, p.start)))
        kind, out = results[p.seq]
        value = out if kind == OK and inv.f == READ else inv.value if kind == OK else None
        events.append((p.end, 2 * p.seq + 1, Op(p.process, kind, inv.f, inv.key, value, p.end,
                                                 error="timeout" if kind == INFO else None)))
    events.sort(key=lambda e: (e[0], e[1]))
    return [Op(op.process, op.type, op.f, op.key, op.value, op.time, i, op.error)
            for i, (_, _, op) in enumerate(events)]


def _apply(state: dict[Key, Value], inv: Invocation, initial: Value, outcome: OpType) -> tuple[OpType, Value]:
    current = state.get(inv.key, initial)
    if inv.f == READ:
        return outcome, current
    if inv.f == WRITE:
        state[inv.key] = inv.value
        return outcome, None
    if inv.f == CAS:
        if not isinstance(inv.value, tuple) or len(inv.value) != 2:
            raise ValueError(f"cas value must be (expected, new), got {inv.value!r}")
        if current != inv.value[0]:
            return (FAIL if outcome == OK else outcome), None
        state[inv.key] = inv.value[1]
        return outcome, None
    raise ValueError(f"simulate_register: unsupported f {inv.f!r}")

