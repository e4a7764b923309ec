"""Rejoining after a restart (serf's snapshot, reduced to what Consul relies on): each pool's alive
members are written to `<data_dir>/serf/{local,remote}.snapshot.json` when membership changed (a burst
of changes is coalesced into one write per SNAPSHOT_INTERVAL), and on start the agent joins them again.
A graceful leave writes `"left": true`, so a node that left does not rejoin on its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from pyconsul.agent.fsutil import atomic_write
from pyconsul.agent.gossip.pool import Pool
from pyconsul.agent.gossip.serf import MemberStatus

log = logging.getLogger("agent")

SNAPSHOT_INTERVAL = 1.0

# (label, pool or None, serf port): label "local" is the LAN pool, "remote" the WAN pool
Pools = Sequence[tuple[str, Pool | None, int]]


class MemberSnapshots:
    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self._dirty = asyncio.Event()

    def path(self, label: str) -> Path | None:
        return self.data_dir / "serf" / f"{label}.snapshot.json" if self.data_dir else None

    def mark_dirty(self) -> None:
        """Membership changed (synchronous; the writer loop picks it up)."""
        self._dirty.set()

    def write(self, pools: Pools, left: bool) -> None:
        for label, pool, _port in pools:
            path = self.path(label)
            if pool is None or path is None:
                continue
            alive = [f"{m.addr}:{m.port}" for m in pool.members()
                     if m.status == MemberStatus.ALIVE and m.name != pool.name]
            with contextlib.suppress(OSError):
                atomic_write(path, json.dumps({"alive": alive, "left": left}))

    async def run(self, pools: Pools, has_left: Callable[[], bool]) -> None:
        """Write the snapshots after membership changes until the agent leaves. Sleeps while idle."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(SNAPSHOT_INTERVAL)  # coalesce a burst of changes into one write
            self._dirty.clear()
            if not has_left():
                self.write(pools, left=False)

    async def rejoin(self, pools: Pools) -> None:
        for label, pool, port in pools:
            path = self.path(label)
            if pool is None or path is None or not path.exists():
                continue
            try:
                snap = json.loads(path.read_text())
            except (OSError, ValueError):
                log.warning("ignoring unreadable snapshot %s", path)
                continue
            if snap.get("left") or not snap.get("alive"):
                continue
            n, _ = await pool.join(list(snap["alive"]), port)
            log.info("rejoined %d previous %s members from snapshot", n, label)
