"""CheckRunner: the asyncio shell around the scheduler core (schedule.py) and the probes (probes.py).

Contract:
- `add(spec)` starts a check, or restarts it when one of that ID runs (fresh stagger and counters; a
  result of the old one still in flight is dropped); `remove(check_id)` stops it (a running script's
  process group is killed); `ttl_update(check_id, status, output)` feeds a TTL check (False when there is
  no TTL check of that ID); `start()` (on the loop) and `await close()`. Checks added before `start()`
  begin at `start()`.
- One timer drives everything: `loop.call_at` at the core's next deadline (a run or a TTL expiry);
  nothing polls. Each run is its own task; a check never has two runs at once.
- Every result goes to `sink.update_check(check_id, status, output)`, on the loop. A run that raises is
  logged with its traceback and reported critical with the error as its output; the check keeps its
  schedule. A sink that raises is logged. No task ends silently: an unexpected end is logged (and
  counted by the Supervisor when one is given).
- Alias checks: `local_health` / `remote_health` are `AliasQuery` callables
  `(node, service_id, min_index) -> (index, checks)` that answer once the checks' index passes
  `min_index` (a blocking query; at most some minutes of wait), with every health check of that node
  as AliasCheckState. An alias of a service on this agent (AliasNode empty or our node name) uses
  `local_health`, one on another node `remote_health`; an alias on this agent does not count itself (the
  `check_id` of each AliasCheckState tells it apart). Query errors: the second failure in a row turns
  the alias critical ("Failure checking aliased node or service: ..."); after three, retries back off
  (2 s, 4 s, ... up to 60 s), as Consul's CheckAlias does.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyconsul.agent.checks import probes
from pyconsul.agent.checks.schedule import AliasCheckState, Scheduler, alias_status
from pyconsul.agent.checks.spec import CheckSink, CheckSpec
from pyconsul.agent.supervise import Supervisor

log = logging.getLogger("agent.checks")

AliasQuery = Callable[[str, str, int], Awaitable[tuple[int, Sequence[AliasCheckState]]]]

HTTP_WORKERS = 32  # threads for HTTP check requests (each check has at most one request in flight)
ALIAS_BACKOFF_AFTER = 3
ALIAS_BACKOFF_MAX = 60.0
ALIAS_MIN_WAIT = 1.0  # a health query that answers at once with an unchanged index is retried after this


def alias_backoff(attempt: int) -> float:
    """Seconds to wait before the next alias query after `attempt` failures in a row (Consul's CheckAlias)."""
    if attempt <= ALIAS_BACKOFF_AFTER:
        return 0.0
    return min(float(2 ** min(attempt - ALIAS_BACKOFF_AFTER, 16)), ALIAS_BACKOFF_MAX)


class CheckRunner:
    def __init__(self, sink: CheckSink, *, node_name: str = "", local_health: AliasQuery | None = None,
                 remote_health: AliasQuery | None = None, supervisor: Supervisor | None = None,
                 rand: Callable[[], float] = random.random, http_workers: int = HTTP_WORKERS) -> None:
        self.sink = sink
        self.node_name = node_name
        self.local_health = local_health
        self.remote_health = remote_health
        self.supervisor = supervisor
        self._rand = rand
        self._http_workers = http_workers
        self._core = Scheduler()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._aliases: dict[str, asyncio.Task[None]] = {}
        self._pending: dict[str, CheckSpec] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._tls = probes.TLSContexts()
        self._closed = False

    # -- the contract -------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        pending, self._pending = self._pending, {}
        for spec in pending.values():
            self.add(spec)
        self._arm()

    def add(self, spec: CheckSpec) -> None:
        if self._closed:
            return
        if self._loop is None:
            self._pending[spec.check_id] = spec
            return
        self._stop_tasks(spec.check_id)
        gen = self._core.add(spec, self._loop.time(), self._rand())
        if spec.kind == "alias":
            self._aliases[spec.check_id] = self._spawn(f"check-alias:{spec.check_id}", self._alias(spec, gen))
        self._arm()

    def remove(self, check_id: str) -> None:
        self._core.remove(check_id)
        self._pending.pop(check_id, None)
        self._stop_tasks(check_id)
        if self._loop is not None:
            self._arm()

    def ttl_update(self, check_id: str, status: str, output: str) -> bool:
        if self._loop is None:
            return False
        result = self._core.ttl_update(check_id, self._loop.time(), status, output)
        if result is None:
            return False
        self._report(check_id, *result)
        self._arm()
        return True

    def checks(self) -> list[CheckSpec]:
        """The checks this runner runs (for tests and introspection)."""
        return self._core.specs() + list(self._pending.values())

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = [*self._runs.values(), *self._aliases.values()]
        self._runs.clear()
        self._aliases.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- the shell ----------------------------------------------------------------------------------

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._loop is not None
        task = self._loop.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if self.supervisor is not None:
            self.supervisor.failed(task.get_name(), exc, critical=False)
        else:
            log.error("check task %r failed", task.get_name(), exc_info=exc)

    def _stop_tasks(self, check_id: str) -> None:
        for tasks in (self._runs, self._aliases):
            task = tasks.pop(check_id, None)
            if task is not None:
                task.cancel()

    def _arm(self) -> None:
        """Point the one timer at the core's next deadline."""
        if self._loop is None or self._closed:
            return
        at = self._core.next_deadline()
        if self._timer is not None:
            if at is not None and self._timer_at == at:
                return
            self._timer.cancel()
            self._timer = None
        if at is not None:
            self._timer_at = at
            self._timer = self._loop.call_at(at, self._wake)

    def _wake(self) -> None:
        assert self._loop is not None
        self._timer = None
        # call_at may fire up to the clock's resolution early: never ask the core about a time before the
        # deadline we armed for, or it would answer "nothing due" and the timer would spin.
        now = max(self._loop.time(), self._timer_at)
        try:
            for action in self._core.due(now):
                if action.kind == "expire":
                    result = self._core.expired(action.check_id, action.gen)
                    if result is not None:
                        log.warning("check %r missed its TTL, is now critical", action.check_id)
                        self._report(action.check_id, *result)
                    continue
                spec = self._core.spec(action.check_id)
                if spec is None:
                    continue
                self._runs[action.check_id] = self._spawn(f"check:{action.check_id}", self._run(spec, action.gen))
        except Exception:
            log.exception("check scheduler failed while starting due checks")
        finally:
            self._arm()

    async def _probe(self, spec: CheckSpec) -> tuple[str, str]:
        if spec.kind == "http":
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._http_workers, thread_name_prefix="check-http")
            return await probes.http_check(spec, self._executor, self._tls)
        if spec.kind == "tcp":
            return await probes.tcp_check(spec)
        if spec.kind == "script":
            return await probes.script_check(spec)
        if spec.kind == "grpc":
            return "critical", probes.GRPC_UNSUPPORTED.format(target=spec.grpc)
        raise ValueError(f"not an interval check: {spec.kind}")

    async def _run(self, spec: CheckSpec, gen: int) -> None:
        assert self._loop is not None
        try:
            try:
                status, output = await self._probe(spec)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("check %r failed to run", spec.check_id)
                status, output = "critical", f"check failed to run: {type(e).__name__}: {e}"
            result = self._core.finished(spec.check_id, gen, self._loop.time(), status, output)
            if result is not None:
                self._report(spec.check_id, *result)
        finally:
            if self._runs.get(spec.check_id) is asyncio.current_task():
                del self._runs[spec.check_id]
            self._arm()

    def _report(self, check_id: str, status: str, output: str) -> None:
        try:
            self.sink.update_check(check_id, status, output)
        except Exception:
            log.exception("the check sink failed on an update of %r", check_id)

    async def _alias(self, spec: CheckSpec, gen: int) -> None:
        assert self._loop is not None
        local = not spec.alias_node or spec.alias_node == self.node_name
        query = self.local_health if local else self.remote_health
        if query is None:
            self._report(spec.check_id, "critical", "Alias checks are not available on this agent")
            return
        node = spec.alias_node or self.node_name
        index, attempt = 0, 0
        last: tuple[str, str] | None = None
        while True:
            started = self._loop.time()
            try:
                new_index, checks = await query(node, spec.alias_service, index)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                attempt += 1
                log.warning("alias check %r: health query failed: %s", spec.check_id, e)
                if attempt > 1:
                    self._report(spec.check_id, "critical", f"Failure checking aliased node or service: {e}")
                    last = None
                await asyncio.sleep(alias_backoff(attempt))
                continue
            attempt = 0
            result = alias_status(checks, "" if local else node, spec.alias_service, spec.check_id if local else "")
            if result != last:
                last = result
                self._report(spec.check_id, *result)
            if new_index <= index and self._loop.time() - started < ALIAS_MIN_WAIT / 10:
                await asyncio.sleep(ALIAS_MIN_WAIT)  # the query did not block: never spin
            index = max(new_index, 1)
