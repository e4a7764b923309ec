"""Linearizability checker for registers (read / write / cas), one key at a time.

Algorithm: Wing & Gong's depth-first search for a linearization (J. Parallel Distrib. Comput. 1993), in
the form Lowe gives it ("Testing for linearizability", Concurrency and Computation 2017): the history is a
doubly linked list of call and return events in real-time order; an operation may be linearized next iff
its call comes before the first return still in the list (every operation that completed before it was
invoked is already linearized) and the model accepts it in the current state. Linearizing an operation
*lifts* its call and return out of the list; backtracking *unlifts* them (dancing links, so both are
O(1)). Lowe's memoisation, which Porcupine (anishathalye/porcupine) also uses, prunes a branch when the
pair (set of linearized operations as a bitset, model state) has been reached before: the rest of the
search from there is the same. Written from those descriptions, not from either implementation.

Contracts:
- Real-time order is the order of events in the history (as in Knossos), not `Op.time`: the runner
  records an invocation before sending and a completion after the answer (chaos/history.py).
- Keys are independent registers (Herlihy & Wing's locality: a history is linearizable iff each object's
  sub-history is), so each key is searched separately and only the offending key is reported.
- `fail` operations certainly did not happen and are dropped. `info` operations (and invocations with no
  completion) may or may not have happened, at any time after their invocation: their return is at
  +infinity, so the search may linearize them anywhere after the call or never (an operation placed after
  every observation is indistinguishable from one that did not happen). An info read constrains nothing
  and is dropped, as is any info operation invoked after the last `ok` completion of its key.
- A budget (`max_steps`, or `time_limit` seconds on an injected `clock`: checker cores read no clock)
  turns an unfinished search into "unknown", never into a verdict.
- For an invalid key the result names the longest linearization found (by `ok` operations linearized),
  the register's value after it, the `ok` operation that could not be linearized before its return
  (`blocking`), and why each candidate operation was refused in that state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyconsul.chaos.checker.result import UNKNOWN, Validity, merge_validity
from pyconsul.chaos.history import INFO, OK, HistoryError, Key, Op, Pair, Process, Value, pairs

READ, WRITE, CAS = "read", "write", "cas"


@dataclass(frozen=True, slots=True)
class LinOp:
    """One operation of one key as the search sees it. `id` is its bit in the linearized-set bitset."""

    id: int
    f: str
    arg: Value  # the invocation's value: written value, (expected, new) for cas
    out: Value  # the completion's value for ok operations (what a read returned)
    known: bool  # True: completed ok (must be linearized before its return); False: info (return at +inf)
    invoke_index: int
    complete_index: int | None
    process: Process

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"invoke": self.invoke_index, "complete": self.complete_index,
                             "process": self.process, "f": self.f, "type": OK if self.known else INFO}
        d["value"] = list(self.arg) if isinstance(self.arg, tuple) else self.arg
        if self.f == READ:
            d["value"] = self.out
        return d


class Model(Protocol):
    """A sequential specification: `step` returns (legal, next state); states must be hashable."""

    def init(self) -> Value: ...

    def step(self, state: Value, op: LinOp) -> tuple[bool, Value]: ...

    def refusal(self, state: Value, op: LinOp) -> str: ...

    def read_only(self, op: LinOp) -> bool:
        """True if `op` never changes the state, whatever the state (e.g. a read)."""
        ...

    def invalid(self, f: str, value: Value) -> str | None:
        """Why an invocation (f, value) is not an operation of this model, or None if it is."""
        ...


@dataclass(frozen=True, slots=True)
class RegisterModel:
    """A register holding `initial` (None: the key does not exist) until written. Values compare with ==."""

    initial: Value = None

    def init(self) -> Value:
        return self.initial

    def step(self, state: Value, op: LinOp) -> tuple[bool, Value]:
        f = op.f
        if f == READ:
            return state == op.out, state
        if f == WRITE:
            return True, op.arg
        if f == CAS:
            arg = op.arg
            assert isinstance(arg, tuple)  # (expected, new), validated by _prepare
            if state == arg[0]:
                return True, arg[1]
            # An info cas may have run and found another value: legal, no effect. An ok cas claims success.
            return not op.known, state
        raise HistoryError(f"register model: unsupported f {f!r}")

    def read_only(self, op: LinOp) -> bool:
        return op.f == READ

    def invalid(self, f: str, value: Value) -> str | None:
        if f not in (READ, WRITE, CAS):
            return f"the register checker knows read, write and cas, not {f!r}"
        if f == CAS and not (isinstance(value, tuple) and len(value) == 2):
            return f"a cas value is (expected, new), got {value!r}"
        return None

    def refusal(self, state: Value, op: LinOp) -> str:
        if op.f == READ:
            return f"read {op.out!r}, but the register holds {state!r}"
        if op.f == CAS and isinstance(op.arg, tuple):
            return f"cas expected {op.arg[0]!r}, but the register holds {state!r}"
        return "refused by the model"


@dataclass(frozen=True, slots=True)
class Refusal:
    op: LinOp
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op.to_dict(), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class KeyResult:
    key: Key
    valid: Validity
    ops: int  # operations searched (after dropping fail, info reads and late info operations)
    steps: int
    reason: str | None = None  # for "unknown": why the search stopped
    linearized: tuple[LinOp, ...] = ()  # invalid: the longest linearization found, in order
    state: Value = None  # invalid: the model state after `linearized`
    blocking: LinOp | None = None  # invalid: the ok operation that could not be linearized before its return
    refused: tuple[Refusal, ...] = ()  # invalid: each candidate at that point and why it does not fit

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "valid": self.valid, "ops": self.ops, "steps": self.steps}
        if self.reason is not None:
            d["reason"] = self.reason
        if self.valid is False:
            d["linearized"] = [op.invoke_index for op in self.linearized]
            d["linearized_tail"] = [op.to_dict() for op in self.linearized[-5:]]
            d["state"] = list(self.state) if isinstance(self.state, tuple) else self.state
            d["blocking"] = None if self.blocking is None else self.blocking.to_dict()
            d["refused"] = [r.to_dict() for r in self.refused]
        return d


@dataclass(frozen=True, slots=True)
class LinearizableResult:
    valid: Validity
    keys: dict[Key, KeyResult] = field(default_factory=dict)

    @property
    def invalid_keys(self) -> list[Key]:
        return [k for k, r in self.keys.items() if r.valid is False]

    @property
    def unknown_keys(self) -> list[Key]:
        return [k for k, r in self.keys.items() if r.valid == UNKNOWN]

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "checker": "linearizable", "key_count": len(self.keys),
                "ops": sum(r.ops for r in self.keys.values()), "steps": sum(r.steps for r in self.keys.values()),
                "invalid_keys": self.invalid_keys, "unknown_keys": self.unknown_keys,
                "failures": [r.to_dict() for r in self.keys.values() if r.valid is not True]}


class Budget:
    """Search effort shared by all keys of one check: steps, and/or seconds on an injected clock."""

    CLOCK_EVERY = 1024  # steps between clock readings

    def __init__(self, *, max_steps: int | None = None, time_limit: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if time_limit is not None and clock is None:
            raise ValueError("time_limit needs clock= (e.g. time.monotonic): checker cores read no clock")
        self.steps_left = max_steps
        self.clock = clock
        self.deadline = None if time_limit is None or clock is None else clock() + time_limit
        self.exhausted: str | None = None

    def spend(self, steps: int) -> bool:
        """Account for `steps` more steps; False once the budget is exhausted."""
        if self.steps_left is not None:
            self.steps_left -= steps
            if self.steps_left < 0:
                self.exhausted = "step budget exhausted"
                return False
        if self.deadline is not None and self.clock is not None and self.clock() > self.deadline:
            self.exhausted = "time limit exceeded"
            return False
        return True


def check(history: Sequence[Op], *, model: Model | None = None, max_steps: int | None = None,
          time_limit: float | None = None, clock: Callable[[], float] | None = None) -> LinearizableResult:
    """Check that every key's register operations are linearizable. Keys are checked in order of first
    invocation; once the budget is exhausted the remaining keys are "unknown" without a search."""
    model = model or RegisterModel()
    budget = Budget(max_steps=max_steps, time_limit=time_limit, clock=clock)
    by_key: dict[Key, list[Pair]] = {}
    for pr in pairs(history):
        by_key.setdefault(pr.key, []).append(pr)
    results: dict[Key, KeyResult] = {}
    for key, prs in by_key.items():
        ops = _prepare(prs, model)
        if budget.exhausted is not None:
            results[key] = KeyResult(key, UNKNOWN, len(ops), 0, f"not checked: {budget.exhausted}")
        else:
            results[key] = _check_key(key, ops, model, budget)
    return LinearizableResult(merge_validity(r.valid for r in results.values()), results)


def _prepare(prs: Sequence[Pair], model: Model) -> list[LinOp]:
    """The operations the search needs, numbered 0..n-1 in invocation order."""
    kept: list[tuple[Pair, bool]] = []
    for pr in prs:
        why = model.invalid(pr.f, pr.invoke.value)
        if why is not None:
            raise HistoryError(f"event {pr.invoke_index}: {why}")
        t = pr.type
        if t == OK:
            kept.append((pr, True))
        elif t == INFO:
            probe = LinOp(-1, pr.f, pr.invoke.value, None, False, pr.invoke_index, None, pr.process)
            if not model.read_only(probe):  # an info read constrains nothing
                kept.append((pr, False))
    last_return = max((pr.complete_index or 0 for pr, known in kept if known), default=-1)
    kept = [(pr, known) for pr, known in kept if known or pr.invoke_index < last_return]
    out: list[LinOp] = []
    for pr, known in kept:
        c = pr.completion
        out.append(LinOp(len(out), pr.f, pr.invoke.value, c.value if known and c is not None else None, known,
                         pr.invoke_index, pr.complete_index if known else None, pr.process))
    return out


class _Node:
    """An event in the doubly linked list: the call or the return of `op`. A call's `match` is its return
    (None for info operations, whose return is at +infinity and never enters the list)."""

    __slots__ = ("call", "match", "next", "op", "prev")

    def __init__(self, op: LinOp, call: bool) -> None:
        self.op = op
        self.call = call
        self.match: _Node | None = None
        self.prev: _Node | None = None
        self.next: _Node | None = None


class _Frame:
    """One level of the search stack, immutable once pushed: a persistent (cons) list, so recording the
    best path found so far costs O(1). A `forced` frame is not a choice point (see _check_key)."""

    __slots__ = ("forced", "node", "parent", "state")

    def __init__(self, node: _Node, state: Value, parent: _Frame | None, forced: bool) -> None:
        self.node = node
        self.state = state  # the model state BEFORE node's operation
        self.parent = parent
        self.forced = forced


def _build(ops: Sequence[LinOp]) -> _Node:
    """The event list in history order behind a sentinel head node."""
    events: list[tuple[int, _Node]] = []
    for op in ops:
        call = _Node(op, True)
        events.append((op.invoke_index, call))
        if op.known:
            assert op.complete_index is not None
            ret = _Node(op, False)
            call.match = ret
            events.append((op.complete_index, ret))
    events.sort(key=lambda e: e[0])
    head = prev = _Node(LinOp(-1, "", None, None, False, -1, None, -1), True)
    for _, node in events:
        prev.next = node
        node.prev = prev
        prev = node
    return head


def _lift(call: _Node) -> None:
    for node in (call, call.match):
        if node is not None:
            assert node.prev is not None
            node.prev.next = node.next
            if node.next is not None:
                node.next.prev = node.prev


def _unlift(call: _Node) -> None:
    for node in (call.match, call):  # the reverse of _lift
        if node is not None:
            assert node.prev is not None
            node.prev.next = node
            if node.next is not None:
                node.next.prev = node


def _check_key(key: Key, ops: Sequence[LinOp], model: Model, budget: Budget) -> KeyResult:
    """WGL search with memoisation, plus one pruning rule that makes histories with many concurrent reads
    cheap (our own; Lowe 2017 §5 discusses similar partial-order reductions):

    Forced steps. If a candidate operation is read-only (`Model.read_only`: it never changes the state)
    and legal now, and the current configuration has any linearization, then it has one that takes that
    operation next: moving it forward to "now" leaves every other operation's state unchanged (it has no
    effect wherever it stood, and it accepts the current state) and respects real time (its call precedes
    every remaining return, and operations that returned before its call are linearized already). So such
    operations are linearized greedily, without a choice point: if the search fails below one, the
    configuration above it fails too and backtracking passes through. (A write of the current value is
    NOT read-only: where it stood it may have overwritten a different value.)
    """
    head = _build(ops)
    remaining = sum(1 for op in ops if op.known)  # ok operations not yet linearized
    total_known = remaining
    state = model.init()
    bits = 0
    top: _Frame | None = None
    best: _Frame | None = None
    best_score, best_state = 0, state
    seen: set[tuple[int, Value]] = set()  # configurations reached; any not on the stack has failed
    steps = chunk = 0
    step, read_only = model.step, model.read_only
    node = head.next
    closure = True  # apply forced steps first
    while True:
        if chunk >= Budget.CLOCK_EVERY:
            steps += chunk
            if not budget.spend(chunk):
                return KeyResult(key, UNKNOWN, len(ops), steps, budget.exhausted)
            chunk = 0
        dead = False
        if closure:
            closure = False
            n = head.next
            while n is not None and n.call:
                chunk += 1
                op = n.op
                if read_only(op) and step(state, op)[0]:
                    new_bits = bits | (1 << op.id)
                    if (new_bits, state) in seen:
                        dead = True  # failed before; so does this configuration
                        break
                    seen.add((new_bits, state))
                    top = _Frame(n, state, top, True)
                    bits = new_bits
                    if op.known:
                        remaining -= 1
                        if total_known - remaining > best_score:
                            best, best_score, best_state = top, total_known - remaining, state
                    after = n.next
                    if after is not None and after is n.match:
                        after = after.next  # still valid: lifted nodes keep their links
                    _lift(n)
                    n = after
                    continue
                n = n.next
            if not remaining:
                steps += chunk
                budget.spend(chunk)
                return KeyResult(key, True, len(ops), steps)
            node = head.next
        if not dead:
            # Choice point: try each candidate (a call before the first return) in list order.
            while node is not None and node.call:
                chunk += 1
                op = node.op
                legal, new_state = step(state, op)
                if legal:
                    new_bits = bits | (1 << op.id)
                    if (new_bits, new_state) not in seen:
                        seen.add((new_bits, new_state))
                        top = _Frame(node, state, top, False)
                        state, bits = new_state, new_bits
                        if op.known:
                            remaining -= 1
                            if total_known - remaining > best_score:
                                best, best_score, best_state = top, total_known - remaining, state
                        _lift(node)
                        closure = True
                        break
                node = node.next
            if closure:
                continue
        # Reached a return whose operation is not linearized (or a dead configuration): backtrack past
        # forced frames to the last choice point and try its next candidate.
        while True:
            if top is None:
                steps += chunk
                budget.spend(chunk)
                return _invalid(key, ops, model, steps, best, best_state)
            frame, top = top, top.parent
            n, state = frame.node, frame.state
            bits ^= 1 << n.op.id
            if n.op.known:
                remaining += 1
            _unlift(n)
            if not frame.forced:
                node = n.next
                break


def _invalid(key: Key, ops: Sequence[LinOp], model: Model, steps: int, best: _Frame | None,
             state: Value) -> KeyResult:
    path: list[LinOp] = []
    frame = best
    while frame is not None:
        path.append(frame.node.op)
        frame = frame.parent
    path.reverse()
    done = {op.id for op in path}
    pending = [op for op in ops if op.known and op.id not in done]
    blocking = min(pending, key=lambda op: op.complete_index or 0)
    limit = blocking.complete_index or 0
    refused: list[Refusal] = []
    for op in ops:
        if op.id in done or op.invoke_index >= limit:
            continue
        legal, _ = model.step(state, op)
        refused.append(Refusal(op, "legal here, but no linearization continues from it" if legal
                               else model.refusal(state, op)))
    return KeyResult(key, False, len(ops), steps, None, tuple(path), state, blocking, tuple(refused))
