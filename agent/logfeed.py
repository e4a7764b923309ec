"""The agent's log as a feed: a logging handler that copies each record to live subscribers
(`GET /v1/agent/monitor`), each with its own level and a bounded queue.

Contracts:
- `emit` never blocks and never raises: it may run on any thread (the Raft prepare thread, executor
  workers), so it only appends under a lock and wakes the subscriber's event loop with
  call_soon_threadsafe when the queue goes from empty to non-empty.
- A subscriber's queue holds at most `MAX_QUEUED` lines. When a slow reader falls behind, new lines
  are dropped and counted (`dropped` per subscriber, `dropped_total` for the feed); the reader gets a
  line saying how many it missed before the next line it does get.
- At most `MAX_SUBSCRIBERS` subscribers at once (`subscribe` raises TooManySubscribers beyond).
- A subscriber may ask for a more verbose level than the agent logs at (Consul 1.7's monitor does):
  while one is attached, the root logger's level is lowered to the most verbose subscriber's, and the
  agent's own output handler keeps the configured level, so its log does not change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque

MAX_QUEUED = 512  # lines per subscriber (Consul's monitor buffers 512)
MAX_SUBSCRIBERS = 64  # monitor streams at once

LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "err": logging.ERROR, "error": logging.ERROR}


class TooManySubscribers(Exception):
    pass


def parse_level(name: str) -> int:
    """A Consul log level name (any case) -> a logging level; ValueError for an unknown one."""
    level = LEVELS.get(name.strip().lower())
    if level is None:
        raise ValueError(f"Unknown log level: {name}")
    return level


def json_line(record: logging.LogRecord) -> str:
    """One record as hclog's JSON format (`@level`, `@message`, `@module`, `@timestamp`)."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
    level = {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname.lower())
    return json.dumps({"@level": level, "@message": record.getMessage(), "@module": record.name,
                       "@timestamp": ts}, ensure_ascii=False)


class Subscription:
    """One reader's queue. `lines()` yields batches of lines (each ending with a newline)."""

    def __init__(self, feed: LogFeed, level: int, as_json: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.feed, self.level, self.as_json, self.loop = feed, level, as_json, loop
        self.queue: deque[str] = deque()
        self.dropped = 0  # lines this reader missed, in total
        self._unreported = 0  # missed lines not yet announced to the reader
        self._ready = asyncio.Event()
        self.closed = False

    def offer(self, line: str) -> None:
        """Called with the feed's subs_lock held, from any thread."""
        if len(self.queue) >= MAX_QUEUED:
            self.dropped += 1
            self._unreported += 1
            self.feed.dropped_total += 1
            return
        self.queue.append(line)
        if len(self.queue) == 1:
            try:
                self.loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop is closed: nobody reads any more
                pass

    def lines(self) -> Subscription:
        """The stream's body: an async iterator of batches of lines, as they come. Its aclose() (which the
        HTTP server calls when the stream ends, even if it never started) unsubscribes."""
        return self

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        if self.closed:
            raise StopAsyncIteration
        await self._ready.wait()
        with self.feed.subs_lock:
            self._ready.clear()
            batch = list(self.queue)
            self.queue.clear()
            missed, self._unreported = self._unreported, 0
        text = "".join(batch)
        if missed:
            text = f"[WARN] monitor: dropped {missed} log lines: this reader fell behind\n" + text
        return text.encode("utf-8", "replace")

    async def aclose(self) -> None:
        self.closed = True
        self.feed.unsubscribe(self)


class LogFeed(logging.Handler):
    """A logging.Handler that fans records out to subscribers; install it on the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.subs: list[Subscription] = []
        self.subs_lock = threading.Lock()  # guards subs and every subscription's queue; taken by emit on any thread
        self.dropped_total = 0
        self.base_level = logging.INFO  # what the agent itself logs at
        self._root: logging.Logger | None = None

    def attach(self, root: logging.Logger, base_level: int, formatter: logging.Formatter) -> None:
        """Install on `root`, whose own output is at `base_level` (called by setup_logging)."""
        self.setFormatter(formatter)
        self._root = root
        self.base_level = base_level
        if self not in root.handlers:
            root.addHandler(self)
        self._apply_level()

    def set_base_level(self, level: int) -> None:
        """The agent's own level changed (a reload): keep the root logger at the most verbose one needed."""
        self.base_level = level
        self._apply_level()

    def subscribe(self, level: int, as_json: bool = False) -> Subscription:
        """A new subscriber at `level` on the running event loop; TooManySubscribers beyond the limit."""
        sub = Subscription(self, level, as_json, asyncio.get_running_loop())
        with self.subs_lock:
            if len(self.subs) >= MAX_SUBSCRIBERS:
                raise TooManySubscribers(f"too many monitor streams (limit {MAX_SUBSCRIBERS})")
            self.subs.append(sub)
        self._apply_level()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self.subs_lock:
            if sub in self.subs:
                self.subs.remove(sub)
        self._apply_level()

    def _apply_level(self) -> None:
        if self._root is None:
            return
        with self.subs_lock:
            levels = [s.level for s in self.subs]
        self._root.setLevel(min([self.base_level, *levels]))

    def emit(self, record: logging.LogRecord) -> None:
        subs = self.subs
        if not subs:
            return
        try:
            text: str | None = None
            as_json: str | None = None
            with self.subs_lock:
                for sub in subs:
                    if record.levelno < sub.level:
                        continue
                    if sub.as_json:
                        as_json = as_json if as_json is not None else json_line(record) + "\n"
                        sub.offer(as_json)
                    else:
                        text = text if text is not None else self.format(record).lstrip() + "\n"
                        sub.offer(text)
        except Exception:  # a logging handler must not raise into the code that logs
            self.handleError(record)


_FEED = LogFeed()


def feed() -> LogFeed:
    """The process's one feed (the root logger is process-wide too)."""
    return _FEED
