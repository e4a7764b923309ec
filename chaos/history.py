"""Jepsen-style operation histories: the record every checker reads (ARCHITECTURE.md, principle 8).

A history is a sequence of `Op` events. A client operation appears twice: an `invoke` event when the
client is about to send it and a completion event once the outcome is known:

- `ok`   — it certainly happened (for a read, `value` is what was observed);
- `fail` — it certainly did NOT happen (a cas whose comparison failed, a request refused before it
           could take effect); checkers drop it;
- `info` — indeterminate (timeout, connection lost, any exception): it may or may not have taken effect,
           now or at any later time. A checker treats its completion as lying at +infinity.

Contracts for the client side (the runner) — the same as Jepsen's:

1. Events are appended in real-time order: the invoke event is recorded *before* the request is sent and
   the completion *after* the answer arrives, so each recorded interval contains the real one. Checkers
   use the order of events in the history as real-time order; `time` (ns) is informational.
2. A process has at most one operation outstanding (invoke, then exactly one completion).
3. After an `info` completion a process is never reused: its operation may still be in flight, so the
   client must continue under a NEW process id (Jepsen: `process + concurrency`). `pairs()` rejects reuse.
4. An exception is `info`, never `fail` (a `fail` claims certainty).
5. Non-client events (the nemesis) use a string process such as `NEMESIS`; `pairs()` skips them.

Values are JSON scalars or tuples (JSON arrays load as tuples so that values are hashable, which the
linearizability checker's memo needs): a cas carries `(expected, new)`, a set's read a tuple of elements.

This module is pure: no clock, no sockets, no `os`; the JSONL helpers take open text streams or paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal

Value = None | bool | int | float | str | tuple["Value", ...]
Key = str | int | None
Process = int | str
OpType = Literal["invoke", "ok", "fail", "info"]

INVOKE: OpType = "invoke"
OK: OpType = "ok"
FAIL: OpType = "fail"
INFO: OpType = "info"
TYPES: frozenset[str] = frozenset({INVOKE, OK, FAIL, INFO})
NEMESIS = "nemesis"


class HistoryError(ValueError):
    """A malformed history (the message names the event index)."""


@dataclass(frozen=True, slots=True)
class Op:
    """One event. `index` is the event's position in the history (-1 until recorded)."""

    process: Process
    type: OpType
    f: str
    key: Key = None
    value: Value = None
    time: int = 0
    index: int = -1
    error: str | None = None

    def complete(self, type: OpType, value: Value = None, *, time: int = 0, index: int = -1,
                 error: str | None = None) -> Op:
        """The completion event of this invocation (same process, f and key)."""
        if self.type != INVOKE:
            raise HistoryError(f"complete() called on a {self.type} event, not an invocation")
        if type == INVOKE:
            raise HistoryError("a completion cannot be an invocation")
        return Op(self.process, type, self.f, self.key, value, time, index, error)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"process": self.process, "type": self.type, "f": self.f, "key": self.key,
                             "value": _to_json_value(self.value), "time": self.time, "index": self.index}
        if self.error is not None:
            d["error"] = self.error
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Op:
        try:
            process, type_, f = d["process"], d["type"], d["f"]
        except KeyError as e:
            raise HistoryError(f"event lacks field {e.args[0]!r}: {d!r}") from None
        if type_ not in TYPES:
            raise HistoryError(f"unknown event type {type_!r}")
        if not isinstance(process, int | str) or isinstance(process, bool) or not isinstance(f, str):
            raise HistoryError(f"bad process or f in {d!r}")
        key = d.get("key")
        if not isinstance(key, str | int | None) or isinstance(key, bool):
            raise HistoryError(f"bad key in {d!r}")
        error = d.get("error")
        return cls(process, type_, f, key, _from_json_value(d.get("value")), int(d.get("time", 0)),
                   int(d.get("index", -1)), None if error is None else str(error))


def _to_json_value(v: Value) -> Any:
    return [_to_json_value(x) for x in v] if isinstance(v, tuple) else v


def _from_json_value(v: Any) -> Value:
    if isinstance(v, list):
        return tuple(_from_json_value(x) for x in v)
    if v is None or isinstance(v, bool | int | float | str):
        return v
    raise HistoryError(f"unsupported value {v!r}: values are JSON scalars or arrays")


def indexed(ops: Iterable[Op]) -> list[Op]:
    """The events with `index` set to their position (events that already carry it are unchanged)."""
    return [op if op.index == i else replace(op, index=i) for i, op in enumerate(ops)]


# --- JSONL: one event per line -------------------------------------------------------------------------

def dumps(op: Op) -> str:
    """One JSON line, without the newline."""
    return json.dumps(op.to_json(), separators=(",", ":"), allow_nan=False)


def loads(line: str) -> Op:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise HistoryError(f"not JSON: {e}") from None
    if not isinstance(d, dict):
        raise HistoryError(f"an event is a JSON object, got {type(d).__name__}")
    return Op.from_json(d)


def write_jsonl(ops: Iterable[Op], stream: IO[str]) -> int:
    """Write events, one per line; returns how many. The runner appends and flushes one line at a time."""
    n = 0
    for op in ops:
        stream.write(dumps(op) + "\n")
        n += 1
    return n


@dataclass(frozen=True, slots=True)
class Loaded:
    """A read history. `truncated` describes a last line that did not parse (a crash while writing):
    it is dropped and reported, never raised. `truncated_line` is its 1-based line number."""

    ops: list[Op]
    truncated: str | None = None
    truncated_line: int | None = None


def read_jsonl(stream: IO[str] | Iterable[str]) -> Loaded:
    """Parse a JSONL history. Blank lines are skipped. A bad LAST line is reported in `Loaded.truncated`;
    a bad line followed by good ones is corruption, not a crash artifact, and raises HistoryError.
    Events without an index get their position."""
    ops: list[Op] = []
    pending: tuple[int, str, str] | None = None  # (line number, text, error) of an unparsable line
    for lineno, raw in enumerate(stream, 1):
        line = raw.strip()
        if not line:
            continue
        if pending is not None:
            raise HistoryError(f"line {pending[0]}: {pending[2]} (and it is not the last line)")
        try:
            ops.append(loads(line))
        except HistoryError as e:
            pending = (lineno, line, str(e))
    ops = indexed(ops)
    if pending is None:
        return Loaded(ops)
    text = pending[1] if len(pending[1]) <= 80 else pending[1][:77] + "..."
    return Loaded(ops, f"line {pending[0]} dropped ({pending[2]}): {text}", pending[0])


def save(path: str | Path, ops: Iterable[Op]) -> int:
    with open(path, "w", encoding="utf-8") as fh:
        return write_jsonl(ops, fh)


def load(path: str | Path) -> Loaded:
    with open(path, encoding="utf-8") as fh:
        return read_jsonl(fh)


# --- pairing invocations with completions --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Pair:
    """A client operation: its invocation and completion (None if the history ended first — treat it as
    `info`). `type` is the completion type; positions are event indices (`Op.index`)."""

    invoke: Op
    completion: Op | None

    @property
    def type(self) -> OpType:
        return INFO if self.completion is None else self.completion.type

    @property
    def process(self) -> Process:
        return self.invoke.process

    @property
    def f(self) -> str:
        return self.invoke.f

    @property
    def key(self) -> Key:
        return self.invoke.key

    @property
    def invoke_index(self) -> int:
        return self.invoke.index

    @property
    def complete_index(self) -> int | None:
        return None if self.completion is None else self.completion.index


def is_client(op: Op) -> bool:
    """Client events have integer processes; the nemesis and other actors use strings."""
    return isinstance(op.process, int)


def pairs(ops: Sequence[Op]) -> list[Pair]:
    """Pair every client invocation with its completion, in invocation order.

    Raises HistoryError for: a completion with no outstanding invocation, a second invocation while one is
    outstanding, a completion whose f or key differs from its invocation, and a process invoking again
    after an `info` completion (contract 3: the client must move to a new process id, as Jepsen does).
    Events without an index (-1) are numbered by position.
    """
    result: list[Pair | None] = []
    open_: dict[Process, tuple[int, Op]] = {}  # process -> (slot in result, invocation)
    crashed: dict[Process, int] = {}  # process -> index of its info completion
    for pos, op in enumerate(ops):
        if not is_client(op):
            continue
        if op.index == -1:
            op = replace(op, index=pos)
        p = op.process
        if op.type == INVOKE:
            if p in open_:
                raise HistoryError(f"event {op.index}: process {p} invokes while its operation from event "
                                   f"{open_[p][1].index} is outstanding")
            if p in crashed:
                raise HistoryError(f"event {op.index}: process {p} invokes again after crashing (info) at event "
                                   f"{crashed[p]}; the client must continue under a new process id")
            open_[p] = (len(result), op)
            result.append(None)
            continue
        if p not in open_:
            raise HistoryError(f"event {op.index}: {op.type} completion by process {p} with no outstanding invocation")
        slot, inv = open_.pop(p)
        if op.f != inv.f or op.key != inv.key:
            raise HistoryError(f"event {op.index}: completion ({op.f}, {op.key!r}) does not match invocation "
                               f"{inv.index} ({inv.f}, {inv.key!r})")
        if op.type == INFO:
            crashed[p] = op.index
        result[slot] = Pair(inv, op)
    for slot, inv in open_.values():
        result[slot] = Pair(inv, None)
    return [pr for pr in result if pr is not None]


def complete_pairs(ops: Sequence[Op]) -> Iterator[tuple[Op, Op]]:
    """(invocation, completion) for every operation that completed (any type)."""
    for pr in pairs(ops):
        if pr.completion is not None:
            yield pr.invoke, pr.completion
