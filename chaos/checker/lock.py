"""Lock checker: is the history of a Consul KV lock (sessions + `?acquire` / `?release`) a mutex's?

The lock workload (chaos/runner.py, chaos/client.py) gives each client process its own session
(no health checks, no TTL, lock-delay 0 s: only an operation in the history can free the lock) and
records, per lock key:

- `acquire` owner: `PUT ?acquire=<session>` with the owner (the process id) as the value; `true` is
  ok, `false` is fail (certainly not acquired).
- `release` owner: `PUT ?release=<session>`; `true` ok, `false` fail.
- `destroy` owner: `PUT /v1/session/destroy/<session>` of a retired process (one whose operation
  ended info), issued by a fresh process: frees the lock if that owner held it.
- `read`: `GET ?consistent`; the owner named by the key's Session, or None when no session holds it.

The model is a mutex whose state is the owner (None: free). It is checked with the same WGL search as
registers (chaos/checker/linearizable.py), so two owners at once, a lost release, or a read that
names a stale owner are all reported with the offending operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyconsul.chaos.checker.linearizable import LinearizableResult, LinOp
from pyconsul.chaos.checker.linearizable import check as check_linearizable
from pyconsul.chaos.history import Op, Value

ACQUIRE, RELEASE, DESTROY, READ = "acquire", "release", "destroy", "read"


@dataclass(frozen=True, slots=True)
class MutexModel:
    def init(self) -> Value:
        return None

    def step(self, state: Value, op: LinOp) -> tuple[bool, Value]:
        f, owner = op.f, op.arg
        if f == READ:
            return state == op.out, state
        if f == ACQUIRE:
            if state is None or state == owner:  # Consul lets a session re-acquire what it holds
                return True, owner
            return not op.known, state  # an info acquire may have found the lock taken: no effect
        if f == RELEASE:
            if state == owner:
                return True, None
            return not op.known, state
        if f == DESTROY:
            return True, None if state == owner else state
        raise AssertionError(f"unreachable: {f!r}")  # _prepare validated f

    def read_only(self, op: LinOp) -> bool:
        return op.f == READ

    def invalid(self, f: str, value: Value) -> str | None:
        if f not in (ACQUIRE, RELEASE, DESTROY, READ):
            return f"the lock checker knows acquire, release, destroy and read, not {f!r}"
        if f != READ and value is None:
            return f"a {f} names its owner, got no value"
        return None

    def refusal(self, state: Value, op: LinOp) -> str:
        held = "free" if state is None else f"held by {state!r}"
        if op.f == READ:
            return f"read owner {op.out!r}, but the lock is {held}"
        if op.f == ACQUIRE:
            return f"{op.arg!r} acquired it, but the lock is {held}"
        if op.f == RELEASE:
            return f"{op.arg!r} released it, but the lock is {held}"
        return "refused by the model"


def check(history: Sequence[Op]) -> LinearizableResult:
    return check_linearizable(history, model=MutexModel())
