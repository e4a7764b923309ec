"""Thin I/O helpers: running commands, /proc inspection, killing processes by PID, waiting with deadlines.

Contract: processes are only ever signalled by PID, and only PIDs that the caller identified as the lab's
(members of a lab network namespace, or the owner of a lab ControlMaster socket). Nothing here matches
processes by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pyconsul.agent.fsutil import atomic_write


class LabFailure(Exception):
    """A system step failed (a command, a deadline). The message is one line, fit for the user."""


def run(argv: Sequence[str], check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; on failure (check=True) raise LabFailure naming the command."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise LabFailure(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise LabFailure(f"`{argv[0]}` is not installed (run scripts/bootstrap.sh)") from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabFailure(f"`{' '.join(argv)}` failed ({proc.returncode}): {err[-1] if err else 'no output'}")
    return proc


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds have passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def alive(pid: int) -> bool:
    """Is `pid` a live process? Zombies count as dead (PID 1 here may not reap promptly)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 (state) follows the parenthesised comm, which may itself contain spaces or parentheses.
    state = stat.rsplit(")", 1)[1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X")


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def netns_inode(netns: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a named network namespace, or None if it does not exist."""
    try:
        st = os.stat(f"/run/netns/{netns}")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def netns_pids(netns: str) -> list[int]:
    """Live PIDs whose network namespace is `netns` (what `ip netns pids` reports), zombies excluded."""
    ident = netns_inode(netns)
    if ident is None:
        return []
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == ident and alive(int(entry)):
            pids.append(int(entry))
    return sorted(pids)


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def terminate(list_pids: Callable[[], list[int]], grace: float = 5.0, hard: float = 5.0) -> list[int]:
    """Stop every process `list_pids()` returns (re-listed each round, so late forks are caught).

    SIGTERM (then SIGCONT, so stopped processes see it) until `grace` seconds have passed, then SIGKILL until
    `hard` more. Returns the PIDs still alive at the end (empty on success).
    """
    signalled: set[int] = set()

    def term_round() -> bool:
        pids = list_pids()
        fresh = [p for p in pids if p not in signalled]
        _signal(fresh, signal.SIGTERM)
        _signal(fresh, signal.SIGCONT)
        signalled.update(fresh)
        return not pids

    if wait_until(term_round, grace):
        return []

    def kill_round() -> bool:
        pids = list_pids()
        _signal(pids, signal.SIGKILL)
        return not pids

    if wait_until(kill_round, hard):
        return []
    return list_pids()


def unix_socket_owners(path: Path) -> list[int]:
    """PIDs holding the listening unix socket bound at `path` (via /proc/net/unix inode → /proc/*/fd)."""
    inodes: set[str] = set()
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[7] == str(path):
            inodes.add(fields[6])
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    owners: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                    owners.add(int(entry))
                    break
            except OSError:
                continue
    return sorted(p for p in owners if alive(p))


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write `text` to `path` (atomically) unless it already holds exactly that; return whether it wrote."""
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=mode, durable=False)
    return True
