"""The agent as a process: log format, signals, start -> run until stopped -> shutdown, exit code.

Shutdown follows Consul: SIGTERM leaves gracefully when leave_on_terminate, SIGINT unless
skip_leave_on_interrupt; otherwise the agent just stops (the others see it fail). `leave` over HTTP
always leaves. A StartupError (a port in use, a failed -join, corrupt Raft storage) prints one line and
exits 1, and so does an agent that stopped itself (`fatal`, e.g. its Raft loop failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from pyconsul.agent.config import AgentConfig

log = logging.getLogger("agent")


class StartupError(Exception):
    pass


class Runnable(Protocol):
    stopped: asyncio.Event
    fatal: str  # set (non-empty) when the agent stopped itself because it cannot go on

    async def start(self) -> None: ...
    async def leave(self) -> None: ...
    async def shutdown(self) -> None: ...
    def spawn(self, work: Coroutine[Any, Any, None], name: str, *, critical: bool = False) -> None: ...


def setup_logging(level: str) -> None:
    class _Fmt(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            ms = int(record.msecs)
            tz = time.strftime("%z", time.localtime(record.created))
            lvl = f"[{record.levelname.replace('WARNING', 'WARN')}]"
            msg = record.getMessage()
            if record.exc_info and handler.level <= logging.DEBUG:  # the agent's level, not a monitor's
                msg += "\n" + self.formatException(record.exc_info)
            return f"    {ts}.{ms:03d}{tz} {lvl:<7} {record.name}: {msg}"

    from pyconsul.agent import logfeed

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Fmt())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    levels = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
              "WARNING": logging.WARNING, "ERR": logging.ERROR, "ERROR": logging.ERROR}
    root.setLevel(levels.get(level.upper(), logging.INFO))
    # The agent's output keeps the configured level even while a more verbose /v1/agent/monitor
    # stream lowers the root logger's (agent/logfeed.py).
    handler.setLevel(root.level)
    logfeed.feed().attach(root, root.level, _Fmt())


async def run_until_stopped(agent: Runnable, cfg: AgentConfig) -> int:
    """Start the agent, serve until a signal or a leave stops it, shut down; the exit code."""
    loop = asyncio.get_running_loop()
    exit_code = 0

    def on_signal(sig: signal.Signals) -> None:
        graceful = (sig == signal.SIGTERM and cfg.effective_leave_on_terminate) or (
            sig == signal.SIGINT and not cfg.effective_skip_leave_on_interrupt
        )
        log.info("Caught signal: %s", sig.name)
        if graceful:
            agent.spawn(agent.leave(), "leave", critical=True)  # a leave that fails must still stop the agent
        else:
            agent.stopped.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    async def reload() -> None:
        with contextlib.suppress(Exception):  # Agent.reload logs why a reload failed; the agent goes on
            await agent.reload()  # type: ignore[attr-defined]

    def on_hangup() -> None:
        log.info("Caught signal: hangup")
        if hasattr(agent, "reload"):  # Agent.reload: re-read config files (services, checks, log level)
            agent.spawn(reload(), "reload")

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        print("==> Starting pyconsul agent...", flush=True)
        await agent.start()
        print("==> Pyconsul agent running!", flush=True)
        release_startup_memory()
        await agent.stopped.wait()
        if agent.fatal:
            print(f"==> {agent.fatal}", file=sys.stderr, flush=True)
            exit_code = 1
    except StartupError as exc:
        print(f"==> {exc}", file=sys.stderr, flush=True)
        exit_code = 1
    finally:
        await agent.shutdown()
    return exit_code


def release_startup_memory() -> None:
    """Start-up (imports, config parsing, the first syncs) leaves freed heap that glibc keeps; hand it
    back to the kernel once (about 1 MiB of a ~22 MiB agent). Best effort: no glibc, no trim."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
