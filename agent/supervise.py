"""Supervision of the agent's long-lived tasks, in one place: nothing dies silently.

Every background task the agent or its server runs is spawned here under a name. When one ends with an
exception (not a cancellation), its traceback is logged at ERROR -- in the message itself, so it shows at
every log level -- and then:
- critical: the agent stops with the reason (`on_fatal`, wired to Agent.fatal: the process exits 1).
  For loops whose loss leaves the agent a zombie: the leader's duties, the bootstrap loop, a leave.
- restartable: it runs again after a backoff (RESTART_BACKOFF doubling up to RESTART_BACKOFF_MAX);
  `restarts[name]` counts. For loops whose loss only degrades (tombstone reaping, member snapshots).
- neither (one-shot work such as a WAN flood join): logged, nothing else.
A task that returns normally is done (a retry-join that joined, a bootstrap that happened).

The Raft loop and the gossip pools' timers are not tasks of ours: RaftNode.on_failed and Pool.on_failed
report into `failed(name, exc, critical=True)`, the same path.

Short-lived work (one request, one connection's set-up) is not supervised: `start_tracked` runs it in a task kept
in its owner's set until it ends (so the owner cancels what is left when it stops, and no pending task is garbage
collected mid-flight) and logs an exception it ends with at once, as `failed` does, instead of letting it vanish
as "Task exception was never retrieved".

Test hook: PYCONSUL_TEST_FAIL_TASK=<name> (read when the Supervisor is built) makes the task of that name
raise RuntimeError at its first start, so a test can check the reaction to each task's death.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("agent.supervise")
T = TypeVar("T")

RESTART_BACKOFF = 0.5
RESTART_BACKOFF_MAX = 30.0
FAIL_TASK_ENV = "PYCONSUL_TEST_FAIL_TASK"

Factory = Callable[[], Coroutine[Any, Any, None]]


def start_tracked(coro: Coroutine[Any, Any, T], tasks: set[asyncio.Task[Any]], name: str | None = None
                  ) -> asyncio.Task[T]:
    """Run short-lived `coro` in a task held in `tasks` while it runs; an exception it ends with is logged."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    task.add_done_callback(log_failure)
    return task


def log_failure(task: asyncio.Future[Any]) -> None:
    """Done-callback: retrieve the exception a task ended with and log it with its traceback at ERROR (the work
    was meant to handle its expected errors itself: this is a bug, never silent). A cancellation is not a failure."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        log.error("task %r failed:\n%s", name, tb)


class InjectedFailure(RuntimeError):
    """What PYCONSUL_TEST_FAIL_TASK raises in the named task."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Supervisor:
    def __init__(self, on_fatal: Callable[[str], None] | None = None, *,
                 fail_task: str | None = None) -> None:
        self.on_fatal = on_fatal or (lambda reason: None)
        self.fail_task = os.environ.get(FAIL_TASK_ENV, "") if fail_task is None else fail_task
        self.restarts: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, name: str, work: Factory | Coroutine[Any, Any, None], *, critical: bool = False,
              restart: bool = False) -> asyncio.Task[None]:
        """Run `work` (a coroutine, or a factory of them when `restart`) as a supervised task."""
        if restart and not callable(work):
            raise TypeError("a restartable task needs a factory, not a coroutine")
        task = asyncio.get_running_loop().create_task(self._run(name, work, critical, restart), name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if not callable(work):
            # a task cancelled before its first step (a shutdown right after start) never awaits `work`: close it,
            # or Python warns "coroutine ... was never awaited" (closing a finished coroutine does nothing)
            coro = work
            task.add_done_callback(lambda _: coro.close())
        return task

    def failed(self, name: str, exc: BaseException, *, critical: bool) -> None:
        """A task (ours or a component's loop) ended with `exc`: log it with its traceback, count it,
        and stop the agent if it was critical."""
        self.failures[name] = self.failures.get(name, 0) + 1
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        log.error("background task %r failed%s:\n%s", name, " (critical)" if critical else "", tb)
        if critical:
            self.on_fatal(f"{name} failed: {_describe(exc)}")

    async def _run(self, name: str, work: Factory | Coroutine[Any, Any, None], critical: bool, restart: bool) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_BACKOFF
        first = True
        while True:
            coro = work() if callable(work) else work
            started = loop.time()
            try:
                if first and name == self.fail_task:
                    coro.close()
                    raise InjectedFailure(f"injected failure of task {name!r} ({FAIL_TASK_ENV})")
                first = False
                await coro
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                first = False
                self.failed(name, exc, critical=critical)
                if critical or not restart:
                    return
            if loop.time() - started > RESTART_BACKOFF_MAX:
                delay = RESTART_BACKOFF  # it ran well for a while: a new failure starts the backoff again
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log.warning("restarting background task %r in %.1fs (restart %d)", name, delay, self.restarts[name])
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF_MAX)
