"""Compact construction of hand-written histories for checker tests."""

from __future__ import annotations

from pyconsul.chaos.history import Key, Op, OpType, Process, Value, indexed

Event = tuple[Process, OpType, str, Value] | tuple[Process, OpType, str, Value, Key]


def history(*events: Event, key: Key = "k") -> list[Op]:
    """Events as (process, type, f, value[, key]), indexed by position; the key defaults to `key`."""
    ops = []
    for e in events:
        k = e[4] if len(e) == 5 else key
        ops.append(Op(e[0], e[1], e[2], k, e[3]))
    return indexed(ops)


def seq(*ops: tuple[str, Value, Value], process: Process = 0, key: Key = "k") -> list[Event]:
    """Sequential (non-overlapping) ok operations by one process: (f, invoke value, ok value)."""
    out: list[Event] = []
    for f, arg, result in ops:
        out += [(process, "invoke", f, arg, key), (process, "ok", f, result, key)]
    return out
