"""The catalog view the DNS resolver reads: one entry per (kind, datacenter, name) asked for, kept fresh.

An entry is filled on demand by one read through the agent's backend (`health.service`, `catalog.node`,
`catalog.nodes`; `?stale` when dns_config.allow_stale, re-read from the leader when the answering server's
last contact is older than max_stale; `?dc=` forwarding for other datacenters). Concurrent misses for one key
share that read.

Freshness: per datacenter in use, three change detectors run long-lived blocking reads of the catalog's
`checks`, `services` and `nodes` indexes (health.state / catalog.services / catalog.nodes with a filter that
matches nothing, so each wake-up moves a few bytes). When one of them moves, the service entries of that
datacenter are checked with ONE batched read (`health.service_indexes`: each cached name's per-service index,
which moves when an instance, one of its checks, a node-level check of its node or its node changes; answered
by a server that has applied the change the detector saw, else asked of the leader) and only those whose index
differs from the one their own fill read returned are dropped (`on_change(key)`: the server drops the cached
answers built from them); node entries are dropped on any `nodes` move, prepared-query entries on any move. A
dropped entry is read again when next asked for. So a check going critical leaves DNS answers one
blocking-query wake-up, one batched read and one read after the servers apply it, while writes to other
services keep the cache; the number of blocking reads is 3 per datacenter however many names are asked for
(a client agent's forwarded requests in flight are bounded). If the batched read fails (an older server that
does not know it, a DNS token without the right to it) every entry the detector can affect is dropped; when a
detector starts, or recovers from a failed read, it drops its datacenter's entries too (a change may have been
missed). A read that overlaps any detected change of its datacenter is done again, so it cannot store what the
change replaced.

Bounds: at most MAX_WATCHED_NAMES entries (a new name beyond that evicts the least recently asked one);
a sweep every SWEEP_INTERVAL seconds drops entries not asked for in WATCH_IDLE seconds, and entries read more
than MAX_AGE seconds ago whatever the detectors say (so a stale read answered by a lagging server just after a
detected change cannot pin an old answer), with the answers built from them; a datacenter's detectors stop
when it has no entries left. A failed read gives a `Failed` entry (SERVFAIL), read again on the next question
after FAILED_RETRY. Prepared queries (`query` keys) are executed per question (the answer
depends on the asking node and the query's own failover) and kept QUERY_TTL seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from pyconsul.agent.dns import resolver as r
from pyconsul.agent.dns.config import MAX_WATCHED_NAMES, WATCH_IDLE, DNSConfig
from pyconsul.agent.errors import NotFound, PyconsulError
from pyconsul.agent.server.common import REQUEST_DC
from pyconsul.agent.supervise import Supervisor, start_tracked

log = logging.getLogger("agent.dns")

BLOCK_WAIT = 60.0  # seconds one blocking read of a detector waits before it is renewed (and idle entries go)
FAILED_RETRY = 1.0  # a Failed entry is read again after this long
QUERY_TTL = 1.0
MAX_AGE = 30.0
SWEEP_INTERVAL = 5.0
RETRY_BACKOFF = (0.2, 5.0)  # a detector whose read fails retries after this, doubling up to the second
MAX_FILL_ROUNDS = 3  # reads of one entry while changes keep overlapping them

QueryExec = Callable[[str, str], Awaitable[tuple[tuple["r.Instance", ...], float | None] | None]]  # r: lazy

# detector -> (query, args, the entry kinds a change can affect)
_NOTHING = {"filter": 'Node == ""'}
DETECTORS: dict[str, tuple[str, dict[str, Any], frozenset[str]]] = {
    "checks": ("health.state", {"state": "any", "filter": 'CheckID == ""'}, frozenset({"service", "query"})),
    "services": ("catalog.services", {"filter": 'ServiceName == ""'}, frozenset({"service", "query"})),
    "nodes": ("catalog.nodes", _NOTHING, frozenset({"service", "query", "node", "nodes"})),
}


class _Entry:
    __slots__ = ("filled", "index", "used", "value", "when")

    def __init__(self) -> None:
        self.value: Any = r.MISSING
        self.used = time.monotonic()
        self.when = 0.0
        self.index = 0  # a service entry: the per-service index its read returned (0: unknown)
        self.filled: asyncio.Future[Any] | None = None  # done with the value read


class Views:
    def __init__(self, backend: Any, cfg: DNSConfig, local_dc: str, supervisor: Supervisor,
                 on_change: Callable[[r.ViewKey], None], query_exec: QueryExec | None = None) -> None:
        self.backend = backend
        self.cfg = cfg
        self.local_dc = local_dc
        self.supervisor = supervisor
        self.on_change = on_change
        self.query_exec = query_exec
        self.entries: OrderedDict[r.ViewKey, _Entry] = OrderedDict()
        self.generation: dict[str, int] = {}  # per datacenter: detected changes so far
        self.detectors: dict[str, list[asyncio.Task[None]]] = {}
        self._fills: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.stats = {"fills": 0, "fill_errors": 0, "changes": 0, "dropped": 0, "evicted": 0, "aged": 0,
                      "detector_errors": 0, "checks": 0, "check_errors": 0, "kept": 0}

    # -------------------------------------------------------- the resolver's View

    def get(self, key: r.ViewKey) -> Any:
        e = self.entries.get(key)
        if e is None or e.value is r.MISSING:
            return r.MISSING
        now = time.monotonic()
        e.used = now
        self.entries.move_to_end(key)
        age = now - e.when
        if (age > MAX_AGE or (isinstance(e.value, r.Failed) and age > FAILED_RETRY)
                or (key[0] == "query" and age > QUERY_TTL)):
            return r.MISSING
        return e.value

    # -------------------------------------------------------- filling

    def fill(self, key: r.ViewKey) -> asyncio.Future[Any]:
        """A future done with the value read for `key` (or a Failed); shared by concurrent callers. The value
        answers the questions that waited for it even if a change drops the entry meanwhile."""
        e = self.entries.get(key)
        if e is None:
            while len(self.entries) >= MAX_WATCHED_NAMES:
                old, _ = self.entries.popitem(last=False)
                self.stats["evicted"] += 1
                self.on_change(old)
            e = self.entries[key] = _Entry()
        if e.filled is None or e.filled.done():
            e.filled = asyncio.get_running_loop().create_future()
            start_tracked(self._fill(key, e), self._fills, f"dns-fill:{key[0]}:{key[2]}")
        if key[0] != "query":
            self._ensure_detectors(key[1])
        return e.filled

    async def _fill(self, key: r.ViewKey, e: _Entry) -> None:
        kind, dc, name = key
        REQUEST_DC.set("" if dc == self.local_dc else dc)  # this task's own context
        value: Any = r.MISSING
        index = 0
        try:
            for _ in range(MAX_FILL_ROUNDS):
                gen = self.generation.get(dc, 0)
                value, index = await self._read_value(kind, dc, name)
                if self.generation.get(dc, 0) == gen:
                    break
        except asyncio.CancelledError:
            raise
        except NotFound:
            value = None
        except Exception as exc:
            self.stats["fill_errors"] += 1
            log.debug("dns: reading %s failed: %s", key, exc)
            value = r.Failed(_describe(exc))
        finally:
            self.stats["fills"] += 1
            try:
                if self.entries.get(key) is e and value is not r.MISSING:
                    changed = e.value is not r.MISSING
                    e.value, e.when, e.index = value, time.monotonic(), index
                    if changed:
                        self.on_change(key)
            finally:  # whatever on_change does, the questions waiting for this fill get their answer
                if e.filled is not None and not e.filled.done():
                    e.filled.set_result(r.Failed("read cancelled") if value is r.MISSING else value)

    async def _read_value(self, kind: str, dc: str, name: str) -> tuple[Any, int]:
        """The entry's value and (a service entry) the per-service index the read answered with."""
        if kind == "query":
            return (await self.query_exec(dc, name) if self.query_exec is not None else None), 0
        query, args, convert = _QUERIES[kind](name)
        value, meta = await self._read(query, args, 0, 0.0)
        return convert(value), (meta.index if kind == "service" else 0)

    async def _read(self, name: str, args: dict[str, Any], index: int, wait: float) -> tuple[Any, Any]:
        mode = "stale" if self.cfg.allow_stale else "default"
        value, meta = await self.backend.read(name, args, mode, index, wait)
        if mode == "stale" and meta.last_contact_ms > self.cfg.max_stale * 1000:
            value, meta = await self.backend.read(name, args, "default", 0, 0.0)
        return value, meta

    # -------------------------------------------------------- change detection

    def _ensure_detectors(self, dc: str) -> None:
        tasks = self.detectors.get(dc)
        if tasks and not all(t.done() for t in tasks):
            return
        self.detectors[dc] = [self.supervisor.spawn(f"dns-detect:{dc}:{what}",
                                                    functools.partial(self._detect, dc, what), restart=True)
                              for what in DETECTORS]
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = self.supervisor.spawn("dns-sweep", self._sweep, restart=True)

    def _invalidate(self, dc: str, kinds: frozenset[str], keep: frozenset[r.ViewKey] = frozenset()) -> None:
        """Drop `dc`'s entries of `kinds` except `keep` (and reads in flight, which the generation's move
        makes read again)."""
        self.generation[dc] = self.generation.get(dc, 0) + 1
        for key in [k for k in self.entries if k[1] == dc and k[0] in kinds and k not in keep]:
            e = self.entries[key]
            if e.filled is not None and not e.filled.done():
                continue  # a read in flight: it sees the generation move and reads again
            del self.entries[key]
            self.stats["dropped"] += 1
            self.on_change(key)

    async def _changed(self, dc: str, kinds: frozenset[str], seen: int) -> None:
        """A detector of `dc` moved to raft index `seen`: drop the entries of `kinds` whose data may have
        changed. Service entries whose per-service index is still the one they were read at are kept (one
        batched read for all, answered by a server that has applied at least `seen`; else all are dropped)."""
        self.generation[dc] = self.generation.get(dc, 0) + 1  # fills in flight now read again
        services = {k[2]: e.index for k, e in self.entries.items()
                    if k[1] == dc and k[0] == "service" and e.index and e.value is not r.MISSING}
        keep: set[r.ViewKey] = set()
        if services and "service" in kinds:
            self.stats["checks"] += 1
            now: Any = None
            try:
                args = {"names": sorted(services)}
                now, meta = await self._read("health.service_indexes", args, 0, 0.0)
                if meta.index < seen:  # a lagging server answered: ask the leader
                    now, meta = await self.backend.read("health.service_indexes", args, "default", 0, 0.0)
                if meta.index < seen:
                    now = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats["check_errors"] += 1
                log.debug("dns: checking %d service indexes of %s failed: %s", len(services), dc, exc)
            if isinstance(now, dict):
                for name, index in services.items():
                    key = ("service", dc, name)
                    e = self.entries.get(key)
                    # unchanged, and still the entry that was checked (not refilled during the read)
                    if now.get(name) == index and e is not None and e.index == index:
                        keep.add(key)
        self.stats["kept"] += len(keep)
        self._invalidate(dc, kinds, frozenset(keep))

    async def _sweep(self) -> None:
        """Drop idle and old entries (and the answers built from them); stop the detectors of datacenters
        that have no entries left."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for key, e in list(self.entries.items()):
                if e.filled is not None and not e.filled.done():
                    continue
                if now - e.used > WATCH_IDLE or now - e.when > MAX_AGE:
                    del self.entries[key]
                    self.stats["aged"] += 1
                    self.on_change(key)
            used = {k[1] for k in self.entries}
            for dc in [d for d in self.detectors if d not in used]:
                for t in self.detectors.pop(dc):
                    t.cancel()

    async def _detect(self, dc: str, what: str) -> None:
        """Block on one catalog index of `dc`; each move drops the entries it can affect."""
        REQUEST_DC.set("" if dc == self.local_dc else dc)
        query, args, kinds = DETECTORS[what]
        index = 0
        backoff = RETRY_BACKOFF[0]
        while True:
            try:
                _, meta = await self._read(query, args, index, BLOCK_WAIT if index else 0.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats["detector_errors"] += 1
                log.debug("dns: change detector %s/%s failed: %s", dc, what, exc)
                index = 0
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF[1])
                continue
            backoff = RETRY_BACKOFF[0]
            if meta.index != index:  # a change, or (index 0) a fresh start that may have missed one
                self.stats["changes"] += 1
                if index:
                    await self._changed(dc, kinds, meta.index)
                else:
                    self._invalidate(dc, kinds)
            index = meta.index

    async def close(self) -> None:
        tasks = [t for ts in self.detectors.values() for t in ts] + list(self._fills)
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self.entries.clear()


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
