"""Anti-entropy, the asyncio shell (Consul's agent/ae StateSyncer around local.State): keeps the catalog's
view of this node equal to the agent's local state.

- On every local change (`trigger()`), the out-of-sync entries are pushed at once (no catalog read).
- A full sync reads this node's services and checks from the catalog, marks what differs
  (LocalState.update_sync_state: the local state wins; entries the catalog has and we do not are
  deregistered, except the servers' "consul" service and "serfHealth") and pushes. It runs at start,
  after `trigger_full()` (a server joined) and then every ae.full_sync_delay (60 s scaled by cluster size,
  plus stagger).
- A failed sync is retried after ae.retry_delay; the loop itself runs under the agent's supervisor.

Writes are ordinary Register/Deregister commands through the agent's backend (the local server, or a
server over RPC on clients), carrying the node's address and ID as the leader's reconcile registers
them, so the two never rewrite each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyconsul.agent.local import ae
from pyconsul.agent.local.definitions import to_service_def
from pyconsul.agent.local.state import LocalCheck, LocalState, SyncOp
from pyconsul.agent.state import commands as c

log = logging.getLogger("agent.anti_entropy")

MAX_WRITES_IN_FLIGHT = 64  # catalog writes one sync round has outstanding at once

__all__ = ["AntiEntropy", "NodeInfo", "SyncBackend"]


class SyncBackend(Protocol):
    async def write(self, data: bytes) -> Any: ...
    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]: ...


@dataclass(frozen=True)
class NodeInfo:
    name: str
    address: str
    id: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)


class SyncFailed(Exception):
    pass


def _check_def(ch: LocalCheck, node: str) -> c.CheckDef:
    return c.CheckDef(ch.check_id, ch.name, ch.status, node, ch.service_id, ch.notes, ch.output, ch.type,
                      ch.definition)


def command(op: SyncOp, node: NodeInfo, now: float) -> c.Register | c.Deregister:
    """The catalog command for one sync operation."""
    if op.kind == "deregister_service":
        return c.Deregister(node.name, service_id=op.id, now=now)
    if op.kind == "deregister_check":
        return c.Deregister(node.name, check_id=op.id, now=now)
    service = to_service_def(op.service) if op.service is not None else None
    return c.Register(node.name, node.address, node.id, node.datacenter, dict(node.tagged_addresses),
                      dict(node.meta), service, tuple(_check_def(ch, node.name) for ch in op.checks), now=now)


class AntiEntropy:
    def __init__(self, state: LocalState, backend: SyncBackend, node: NodeInfo, cluster_size: Callable[[], int], *,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 interval: float = ae.SYNC_INTERVAL) -> None:
        self.state = state
        self.backend = backend
        self.node = node
        self.cluster_size = cluster_size
        self.clock = clock
        self.rng = rng or random.Random()
        self.interval = interval
        self._wake = asyncio.Event()
        self._full_due = 0.0  # monotonic time of the next full sync; 0 = now
        self._full_asks = 0  # trigger_full() calls: one during a full sync asks for another
        self._failures = 0
        self.full_syncs = 0  # counters, for tests and /v1/agent/self
        self.writes = 0

    def trigger(self) -> None:
        """The local state changed: push it."""
        self._wake.set()

    def trigger_full(self) -> None:
        """Compare with the catalog soon (a server appeared, a catalog edit is suspected)."""
        self._full_due = 0.0
        self._full_asks += 1
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock()
            full = now >= self._full_due
            try:
                if full:
                    asks = self._full_asks
                    await self.sync_full()
                    if asks == self._full_asks:  # else a trigger_full() came meanwhile: go again at once
                        self._full_due = self.clock() + ae.full_sync_delay(self.cluster_size(), self.rng.random(),
                                                                           self.interval)
                else:
                    await self.sync_changes()
                self._failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no server, no leader, a rejected write: retried
                self._failures += 1
                delay = ae.retry_delay(self._failures, self.rng.random())
                log.warning("Syncing local state failed (retrying in %.1fs): %s", delay, exc or type(exc).__name__)
                retry_at = self.clock() + delay  # a failed full sync is retried then (never at once: no busy loop)
                self._full_due = retry_at if full else min(self._full_due, retry_at)
            await self._sleep()

    async def _sleep(self) -> None:
        deadline = self._full_due
        deferred = self.state.next_deadline()
        if deferred is not None:
            deadline = min(deadline, deferred)
        timeout = max(0.0, deadline - self.clock())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def sync_full(self) -> None:
        name = self.node.name
        node, _ = await self.backend.read("catalog.node", {"node": name})
        checks, _ = await self.backend.read("health.node", {"node": name})
        services = (node or {}).get("Services") or {}
        remote_checks = {str(ch["CheckID"]): ch for ch in (checks or []) if isinstance(ch, dict)}
        self.state.update_sync_state(services, remote_checks)
        self.full_syncs += 1
        await self.sync_changes()

    async def sync_changes(self) -> None:
        """Push every pending operation: deregistrations, then registrations, each group concurrently (at most
        MAX_WRITES_IN_FLIGHT; the operations of one round touch disjoint services and checks, and concurrent
        writes share Raft batches: 1,000 checks turning critical at once are not 1,000 round trips in a row).
        A failed operation stays pending; the round then raises (the loop retries)."""
        ops = self.state.pending(self.clock())
        sem = asyncio.Semaphore(MAX_WRITES_IN_FLIGHT)

        async def one(op: SyncOp) -> None:
            async with sem:
                result = await self.backend.write(c.encode(command(op, self.node, time.time())))
            if not result:
                raise SyncFailed(f"{op.kind} {op.id!r} refused: {getattr(result, 'message', result)}")
            self.writes += 1
            self.state.mark_done(op)
            if op.kind == "register_service":
                log.info("Synced service: service=%s", op.id)
            elif op.kind == "deregister_service":
                log.info("Deregistered service: service=%s", op.id)
            else:
                log.debug("%s: check=%s", op.kind, op.id)

        for group in ([op for op in ops if op.kind.startswith("deregister")],
                      [op for op in ops if op.kind.startswith("register")]):
            results = await asyncio.gather(*(one(op) for op in group), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise failed[0]
