"""Signals while faults are applied: SIGINT and SIGTERM unwind (so ``Nemesis.__exit__`` heals), and the
healing that follows is not cut short by another one.

Why this is needed (the Ctrl-C heal that hung in CI): a process inherits an *ignored* SIGINT from a
non-interactive shell that started it, or an ancestor of it, in the background (``cmd &`` without job
control sets SIGINT and SIGQUIT to SIG_IGN; CI runners and ``nohup``-style wrappers do this), and Python
installs its KeyboardInterrupt handler only when SIGINT is not ignored at start-up. Such a runner ignored
``kill -INT`` and Ctrl-C alike and kept its partition and paused agents forever. SIGTERM (``timeout``, a
CI job being cancelled) kills Python without running ``finally`` blocks at all.

Contract of `Guard` (used by the Nemesis context manager; main thread only, elsewhere it does nothing):
- `install()`: from now on the first SIGINT raises KeyboardInterrupt and the first SIGTERM raises
  SystemExit(143) in the main thread, whatever the inherited dispositions were.
- After that first signal, further SIGINT/SIGTERM are reported on stderr and otherwise ignored: the way
  out (join, heal) runs to its end. ``kill -9`` still stops the process; ``pyconsul-chaos heal`` (or
  ``python -m pyconsul.chaos.nemesis heal -i INV``) then heals from the fault log.
- `restore()` puts the previous handlers back (idempotent).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Guard:
    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._interrupted: str | None = None

    @property
    def interrupted(self) -> str | None:
        """The name of the first signal received since `install`, if any."""
        return self._interrupted

    def install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        self._interrupted = None
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._interrupted is not None:
            print(f"chaos: {name} ignored: still healing after {self._interrupted} (kill -9 to abandon, then "
                  "`pyconsul-chaos heal -i INVENTORY`)", file=sys.stderr, flush=True)
            return
        self._interrupted = name
        print(f"chaos: {name}: healing every fault before exiting", file=sys.stderr, flush=True)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)
