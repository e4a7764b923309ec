"""The catalog view the DNS resolver reads: one entry per (kind, datacenter, name) asked for, kept fresh.

An entry is filled by a read through the agent's backend (`health.service`, `catalog.node`, `catalog.nodes`;
`?stale` when dns_config.allow_stale, re-read from the leader when the answering server's last contact is
older than max_stale; `?dc=` forwarding for other datacenters) and then watched: a supervised task runs a
long-lived blocking read of the same query and, when the index moves, replaces the entry and calls
`on_change(key)` (the server drops cached answers built from it). So a check going critical reaches DNS
answers one blocking-query wake-up after the server applies it.

Bounds: at most MAX_WATCHED_NAMES entries (a new name beyond that evicts the least recently asked one); an
entry not asked for in WATCH_IDLE seconds is dropped with its watcher. Concurrent misses for one key share
one fill. A failed read gives a `Failed` entry (SERVFAIL) that is retried on the next question after a second.
Prepared queries (`query` keys) are executed per question (their result depends on the asking node) and kept
for QUERY_TTL seconds only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pyconsul.agent.dns import resolver as r
from pyconsul.agent.dns.config import MAX_WATCHED_NAMES, WATCH_IDLE, DNSConfig
from pyconsul.agent.errors import NotFound, PyconsulError
from pyconsul.agent.server.common import REQUEST_DC
from pyconsul.agent.supervise import Supervisor

log = logging.getLogger("agent.dns")

BLOCK_WAIT = 60.0  # seconds one blocking read waits before it is renewed (and the idle check runs)
FAILED_RETRY = 1.0  # a Failed entry is read again after this long
QUERY_TTL = 1.0
RETRY_BACKOFF = (0.2, 5.0)  # a watcher whose read fails retries after this, doubling up to the second

QueryExec = Callable[[str, str], Awaitable[tuple[tuple[r.Instance, ...], float | None] | None]]


class _Entry:
    __slots__ = ("filled", "task", "used", "value", "when")

    def __init__(self) -> None:
        self.value: Any = r.MISSING
        self.used = time.monotonic()
        self.when = 0.0
        self.filled: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class Views:
    def __init__(self, backend: Any, cfg: DNSConfig, local_dc: str, supervisor: Supervisor,
                 on_change: Callable[[r.ViewKey], None], query_exec: QueryExec | None = None) -> None:
        self.backend = backend
        self.cfg = cfg
        self.local_dc = local_dc
        self.supervisor = supervisor
        self.on_change = on_change
        self.query_exec = query_exec
        self.entries: dict[r.ViewKey, _Entry] = {}
        self.stats = {"fills": 0, "fill_errors": 0, "updates": 0, "evicted": 0}

    # -------------------------------------------------------- the resolver's View

    def get(self, key: r.ViewKey) -> Any:
        e = self.entries.get(key)
        if e is None:
            return r.MISSING
        now = time.monotonic()
        e.used = now
        if isinstance(e.value, r.Failed) and now - e.when > FAILED_RETRY:
            return r.MISSING
        if key[0] == "query" and now - e.when > QUERY_TTL:
            return r.MISSING
        return e.value

    # -------------------------------------------------------- filling

    def fill(self, key: r.ViewKey) -> asyncio.Future[None]:
        """A future done when `key` has a value (or a Failed); shared by concurrent callers."""
        e = self.entries.get(key)
        if e is None:
            if len(self.entries) >= MAX_WATCHED_NAMES:
                self._evict()
            e = self.entries[key] = _Entry()
        if e.filled is None or (e.filled.done() and self.get(key) is r.MISSING):
            e.filled = asyncio.get_running_loop().create_future()
            if e.task is not None:
                e.task.cancel()
            e.task = self.supervisor.spawn(f"dns-view:{key[0]}:{key[1]}:{key[2]}", self._run(key, e))
        return e.filled

    def _evict(self) -> None:
        oldest = min(self.entries, key=lambda k: self.entries[k].used)
        self._drop(oldest)
        self.stats["evicted"] += 1

    def _drop(self, key: r.ViewKey) -> None:
        e = self.entries.pop(key, None)
        if e is None:
            return
        if e.task is not None and e.task is not asyncio.current_task():
            e.task.cancel()
        if e.filled is not None and not e.filled.done():
            e.filled.set_result(None)
        self.on_change(key)

    def _set(self, key: r.ViewKey, e: _Entry, value: Any) -> None:
        changed = e.value is not r.MISSING and value != e.value
        e.value, e.when = value, time.monotonic()
        if e.filled is not None and not e.filled.done():
            e.filled.set_result(None)
        if changed:
            self.stats["updates"] += 1
            self.on_change(key)

    async def close(self) -> None:
        tasks = [e.task for e in self.entries.values() if e.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self.entries.clear()

    async def _read(self, name: str, args: dict[str, Any], index: int, wait: float) -> tuple[Any, Any]:
        mode = "stale" if self.cfg.allow_stale else "default"
        value, meta = await self.backend.read(name, args, mode, index, wait)
        if mode == "stale" and meta.last_contact_ms > self.cfg.max_stale * 1000:
            value, meta = await self.backend.read(name, args, "default", 0, 0.0)
        return value, meta

    async def _run(self, key: r.ViewKey, e: _Entry) -> None:
        kind, dc, name = key
        REQUEST_DC.set("" if dc == self.local_dc else dc)  # this task's own context
        if kind == "query":
            await self._run_query(key, e)
            return
        query, args, convert = _QUERIES[kind](name)
        index = 0
        backoff = RETRY_BACKOFF[0]
        first = True
        while True:
            try:
                value, meta = await self._read(query, args, index, BLOCK_WAIT if index else 0.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats["fill_errors"] += 1
                if first:
                    self.stats["fills"] += 1
                    self._set(key, e, r.Failed(_describe(exc)))
                    return  # the next question after FAILED_RETRY starts a new fill
                log.debug("dns: watch of %s failed: %s", key, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF[1])
                index = 0
                continue
            backoff = RETRY_BACKOFF[0]
            if first:
                self.stats["fills"] += 1
            first = False
            self._set(key, e, convert(value))
            index = meta.index if meta.index >= index else 0
            if time.monotonic() - e.used > WATCH_IDLE:
                self._drop(key)
                return

    async def _run_query(self, key: r.ViewKey, e: _Entry) -> None:
        self.stats["fills"] += 1
        if self.query_exec is None:
            self._set(key, e, None)
            return
        try:
            self._set(key, e, await self.query_exec(key[1], key[2]))
        except asyncio.CancelledError:
            raise
        except NotFound:
            self._set(key, e, None)
        except Exception as exc:
            self.stats["fill_errors"] += 1
            self._set(key, e, r.Failed(_describe(exc)))


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, PyconsulError) else f"{type(exc).__name__}: {exc}"


def _service(name: str) -> tuple[str, dict[str, Any], Callable[[Any], Any]]:
    return "health.service", {"name": name}, lambda rows: r.instances_from_health(rows or [])


def _node(name: str) -> tuple[str, dict[str, Any], Callable[[Any], Any]]:
    return "catalog.node", {"node": name}, lambda v: r.node_from_json(v.get("Node") if v else None)


def _nodes(name: str) -> tuple[str, dict[str, Any], Callable[[Any], Any]]:
    return "catalog.nodes", {}, lambda rows: tuple(n for n in map(r.node_from_json, rows or []) if n is not None)


_QUERIES: dict[str, Callable[[str], tuple[str, dict[str, Any], Callable[[Any], Any]]]] = {
    "service": _service, "node": _node, "nodes": _nodes,
}
