"""The fault log: every fault is written down (and fsynced) BEFORE it is applied, and forgotten only after
it has been healed, so that `heal_all` can undo what a crashed runner left behind.

One JSON file per inventory (the inventory's absolute path names it), under ``$PYCONSUL_CHAOS_STATE`` or
``/var/lib/pyconsul-lab/chaos`` (root; the lab's state directory, which `pyconsul-lab down` leaves alone)
or ``~/.local/state/pyconsul-chaos``. Entries are keyed: ``partition``, ``latency``, ``kill:<host>``,
``pause:<host>``; values are JSON objects describing the fault (hosts, and for a kill how to start the agent
again). Writers are serialised with flock, so a runner and a `heal` command may overlap.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyconsul.agent.fsutil import atomic_write


def state_dir() -> Path:
    env = os.environ.get("PYCONSUL_CHAOS_STATE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/pyconsul-lab/chaos")
    return Path.home() / ".local" / "state" / "pyconsul-chaos"


def log_path(inventory_path: str) -> Path:
    real = os.path.realpath(inventory_path)
    digest = hashlib.sha256(real.encode()).hexdigest()[:12]
    name = Path(real).name or "inventory"
    return state_dir() / f"faults-{name}-{digest}.json"


class FaultLog:
    """A durable map key -> fault. Safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def for_inventory(cls, inventory_path: str) -> FaultLog:
        return cls(log_path(inventory_path))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the log's lock: every reader and writer, in any process, waits until the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        atomic_write(self.path, json.dumps(entries, indent=1, sort_keys=True))

    def entries(self) -> dict[str, dict[str, Any]]:
        with self.locked():
            return self._read()

    def record(self, key: str, fault: dict[str, Any]) -> None:
        """Write the fault down durably; call before applying it."""
        with self.locked():
            entries = self._read()
            entries[key] = fault
            self._write(entries)

    def forget(self, *keys: str) -> None:
        """Drop entries once their faults are healed."""
        with self.locked():
            entries = self._read()
            for key in keys:
                entries.pop(key, None)
            self._write(entries)
