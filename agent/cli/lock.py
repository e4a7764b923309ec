"""`pyconsul lock [options] PREFIX COMMAND...`: run a command while holding a lock (Consul 1.7's `lock`).

With `-n 1` the lock is `<PREFIX>/.lock`; with `-n N > 1` a semaphore of N slots under PREFIX (see
recipes.py). Once held, COMMAND runs through `$SHELL -c` (else /bin/sh; `-shell=false` runs it
directly) with CONSUL_LOCK_HELD=true in its environment. If the lock is lost (its session
invalidated, the key changed, the agent unreachable past -monitor-retry tries) or we get SIGINT or
SIGTERM, the command gets SIGTERM and, after a 5 s grace period, SIGKILL. Then the lock is released,
its key deleted if nobody else uses it, and the session destroyed.

Exit code: 0 once the command ran, whatever its status, unless -child-exit-code (then 2 if the
command failed); 1 when the lock could not be set up or acquired (or -timeout passed).

Threads: the acquisition, the lock monitor, the session renewer and the child's waiter run in
threads; the main thread only waits for the first of "acquired", "lost", "child exited" and a
signal, so a signal is never stuck behind a blocking HTTP read.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.cli.recipes import LOCK_KEY, HttpKV, InUse, Lock, LockError, Semaphore, join
from pyconsul.agent.flags import FlagSet

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for the child (Consul's lockKillGracePeriod)
DEFAULT_MONITOR_RETRY = 3


def shell_argv(command: Sequence[str], use_shell: bool) -> list[str]:
    """The child's argv: `$SHELL -c "<words joined>"` (Consul's ExecScript), or the words as-is."""
    if not use_shell:
        return list(command)
    return [os.environ.get("SHELL") or "/bin/sh", "-c", " ".join(command)]


def kill_child(proc: subprocess.Popen[bytes], grace: float = KILL_GRACE, verbose: bool = False) -> None:
    """SIGTERM, then SIGKILL if still running after `grace` seconds; waits for it to be reaped."""
    if proc.poll() is not None:
        return
    if verbose:
        print(f"Terminating child pid {proc.pid}")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
        return
    except subprocess.TimeoutExpired:
        pass
    if verbose:
        print(f"Killing child pid {proc.pid}")
    proc.kill()
    proc.wait()


class _Signals:
    """SIGINT/SIGTERM set an event (and are forwarded to the child while one runs) instead of raising."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake
        self.caught: int | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self._old = {s: signal.signal(s, self._on) for s in (signal.SIGINT, signal.SIGTERM)}

    def _on(self, signum: int, frame: FrameType | None) -> None:
        self.caught = signum
        self.wake.set()

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def cmd_lock(args: Sequence[str]) -> int:
    fs = FlagSet("lock")
    common.http_flags(fs)
    common.server_flags(fs)
    fs.bool("child-exit-code", False, "Exit 2 if the child process exited with an error if this is true, "
            "otherwise this doesn't propagate an error from the child. The default value is false.")
    fs.int("n", 1, "Optional limit on the number of concurrent lock holders. The underlying implementation "
           "switches from a lock to a semaphore when the value is greater than 1. The default value is 1.")
    fs.int("monitor-retry", DEFAULT_MONITOR_RETRY, "Number of times to retry if the agent returns a 500 error "
           "or cannot be reached while monitoring the lock. This allows riding out brief periods of "
           "unavailability, but increases the time needed to detect a lost lock. The default value is 3, with "
           "a 1s wait between retries. Set this value to 0 to disable retries.")
    fs.string("name", "", "Optional name to associate with the lock session. If not provided, one is generated "
              "based on the provided child command.")
    fs.bool("pass-stdin", False, "Pass stdin to the child process.")
    fs.bool("shell", True, "Use a shell to run the command (can set a custom shell via the SHELL environment "
            "variable).")
    fs.duration("timeout", 0.0, "Maximum amount of time to wait to acquire the lock, specified as a duration "
                'like "1s" or "3h". The default value is 0 (wait forever).')
    fs.duration("try", 0.0, "DEPRECATED. Use -timeout instead.", dest="timeout")
    fs.bool("verbose", False, "Enable verbose (debugging) output.")
    res = common.parse(
        fs, args, "lock [options] prefix child...",
        "Acquires a lock or semaphore at a given path, and invokes a child process when successful. The\n"
        "  child process can assume the lock is held while it executes. If the lock is lost or communication\n"
        "  is disrupted the child process will be sent a SIGTERM signal and given 5 seconds to gracefully\n"
        "  exit. After the grace period expires the process will be hard terminated.\n\n"
        "  When -n=1, only a single lock holder or leader exists providing mutual exclusion. Setting a\n"
        "  higher value switches to a semaphore allowing multiple holders to coordinate.\n\n"
        "  The prefix provided must have write privileges.")
    limit, timeout, retries = res.int("n"), res.float("timeout"), res.int("monitor-retry")
    verbose = res.bool("verbose")
    if limit <= 0:
        raise CLIError("Lock holder limit must be positive")
    if len(res.positional) < 2:
        raise CLIError("Key prefix and child command must be specified")
    prefix = res.positional[0].lstrip("/")
    command = res.positional[1:]
    if timeout < 0:
        raise CLIError("Timeout must be positive")
    if retries < 0:
        raise CLIError("Number for 'monitor-retry' must be >= 0")
    name = res.str("name") or f"Consul lock for '{' '.join(command)}' at '{prefix}'"
    base = common.http_addr(res)
    try:
        common.api_request("GET", base, "/v1/agent/self")
    except ApiError as exc:
        raise CLIError(f"Error querying Consul agent: {exc}") from None

    kv = HttpKV(base, res.str("datacenter"))
    options = {"session_name": name, "try_once": timeout if timeout > 0 else None, "monitor_retries": retries}
    recipe: Lock | Semaphore
    try:
        if limit == 1:
            if verbose:
                print(f"Setting up lock at path: {join(prefix, LOCK_KEY)}")
            recipe = Lock(kv, join(prefix, LOCK_KEY), **options)
        else:
            if verbose:
                print(f"Setting up semaphore (limit {limit}) at prefix: {prefix}")
            recipe = Semaphore(kv, prefix, limit, **options)
    except LockError as exc:
        raise CLIError(f"Lock setup failed: {exc}") from None
    return _run(recipe, command, res.bool("shell"), res.bool("pass-stdin"), res.bool("child-exit-code"), verbose)


def _run(recipe: Lock | Semaphore, command: Sequence[str], use_shell: bool, pass_stdin: bool,
         propagate: bool, verbose: bool) -> int:
    wake = threading.Event()
    sigs = _Signals(wake)
    try:
        return _hold(recipe, command, use_shell, pass_stdin, propagate, verbose, wake, sigs)
    finally:
        sigs.restore()


def _hold(recipe: Lock | Semaphore, command: Sequence[str], use_shell: bool, pass_stdin: bool, propagate: bool,
          verbose: bool, wake: threading.Event, sigs: _Signals) -> int:
    if verbose:
        print("Attempting lock acquisition")
    stop = threading.Event()
    outcome: queue.Queue[BaseException | bool] = queue.Queue(1)

    def acquire() -> None:
        try:
            outcome.put(recipe.acquire(stop))
        except BaseException as exc:  # handed to the main thread, which reports it
            outcome.put(exc)
        wake.set()

    threading.Thread(target=acquire, daemon=True, name="lock-acquire").start()
    while outcome.empty() and sigs.caught is None:
        wake.wait(1.0)
        wake.clear()
    if outcome.empty():  # a signal during acquisition: stop trying; a late success is released below
        stop.set()
        print("Shutdown triggered or timeout during lock acquisition", file=sys.stderr)
        recipe.end_session()  # its keys go with it (a contender key is deleted, a lock released)
        return 1
    got = outcome.get()
    if isinstance(got, BaseException):
        print(f"Lock acquisition failed: {got}", file=sys.stderr)
        return 1
    if not got:
        print("Shutdown triggered or timeout during lock acquisition", file=sys.stderr)
        return 1

    child_code = 0
    lost = threading.Event()
    def monitor() -> None:
        recipe.monitor(stop)
        lost.set()
        wake.set()

    threading.Thread(target=monitor, daemon=True, name="lock-monitor").start()
    if sigs.caught is not None:
        print("Shutdown triggered during lock acquisition", file=sys.stderr)
    else:
        if verbose:
            print("Starting handler")
        try:
            proc = subprocess.Popen(shell_argv(command, use_shell), env={**os.environ, "CONSUL_LOCK_HELD": "true"},
                                    stdin=None if pass_stdin else subprocess.DEVNULL)
        except OSError as exc:
            print(f"Error starting handler: {exc}", file=sys.stderr)
            proc = None
            child_code = 2
        if proc is not None:
            sigs.child = proc
            threading.Thread(target=_reap, args=(proc, wake), daemon=True, name="lock-child").start()
            while proc.poll() is None and not lost.is_set() and sigs.caught is None:
                wake.wait(1.0)
                wake.clear()
            if proc.poll() is not None:
                if proc.returncode != 0:
                    print(f"Error running handler: exit status {proc.returncode}", file=sys.stderr)
                    child_code = 2
                if verbose:
                    print("Child terminated, releasing lock")
            else:
                if verbose:
                    print("Lock lost, killing child" if lost.is_set() else "Shutdown triggered, killing child")
                kill_child(proc, KILL_GRACE, verbose)
    stop.set()
    try:
        recipe.release()
    except (ApiError, LockError) as exc:
        print(f"Lock release failed: {exc}", file=sys.stderr)
        return 1
    try:
        recipe.destroy()
        if verbose:
            print("Cleanup succeeded")
    except InUse:
        if verbose:
            print("Cleanup aborted, lock in use")
    except (ApiError, LockError) as exc:
        print(f"Lock cleanup failed: {exc}", file=sys.stderr)
        return 1
    return child_code if propagate else 0


def _reap(proc: subprocess.Popen[bytes], wake: threading.Event) -> None:
    proc.wait()
    wake.set()


COMMANDS: common.Table = {
    "lock": (cmd_lock, "Execute a command holding a lock"),
}
