"""One direction of one proxied connection: a reader task -> the stream's toxics -> the writer.

Contracts:

* The reader timestamps each chunk when it arrives and queues it (bounded: a stalled link stops
  reading, so TCP pushes back on the sender). The pump takes chunks in order and passes each
  through the toxics that are active on this link, then writes it. Latency is measured from the
  arrival time, so a latency toxic delays every chunk by its amount without cutting throughput.
* The toxics are read afresh for every chunk: a toxic added, changed or removed applies to the
  next chunk on every open connection. A toxic removed while it holds a chunk (latency, slicer,
  bandwidth sleeps) lets go of it at once; no data is dropped by a change.
* Toxicity is rolled once per connection and toxic version (an update rolls again), as in
  Toxiproxy. Per-connection state (limit_data's count, bandwidth's schedule) lasts until the toxic
  is removed.
* End of stream travels through the toxics too (slow_close holds it); when it reaches the end the
  destination is closed, and the other direction then sees end of stream from it.
* Removing a `timeout` toxic that was holding a connection closes it (its data was dropped: the
  stream is no longer whole), as Toxiproxy does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyconsul.chaos.toxiproxy.toxics import Toxic, slice_offsets

READ_SIZE = 32 * 1024
QUEUE_CHUNKS = 1024


@dataclass
class Chunk:
    data: bytes | None  # None: end of stream
    ts: float  # loop time of arrival, moved forward by latency toxics


class _Closed(Exception):
    """The link is done: end of stream reached the destination, or a toxic closed it."""


class Link:
    def __init__(self, name: str, chain: Callable[[], Sequence[Toxic]], reader: asyncio.StreamReader,
                 dest: asyncio.StreamWriter, rng: random.Random, on_done: Callable[[Link], None],
                 reset: Callable[[], None]) -> None:
        self.name = name
        self._chain = chain
        self._reader = reader
        self._dest = dest
        self._rng = rng
        self._on_done = on_done
        self._reset_connection = reset
        self._queue: asyncio.Queue[Chunk] = asyncio.Queue(QUEUE_CHUNKS)
        self._rolls: dict[int, bool] = {}  # toxic serial -> applies to this connection
        self._state: dict[str, dict[str, float]] = {}  # toxic name -> per-connection state
        self._timers: dict[int, asyncio.TimerHandle] = {}  # serial of an active timeout toxic -> its close
        self._holders: set[str] = set()  # names of the timeout toxics that drop this connection's data
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def start(self) -> None:
        self._sync()
        self._tasks = [self.loop.create_task(self._read()), self.loop.create_task(self._pump())]

    # ------------------------------------------------------------ toxics changed

    def chain_changed(self) -> None:
        """Called by the proxy after a toxic of this link's stream was added, updated or removed."""
        if self.closed:
            return
        removed_timeout = self._sync()
        self._changed.set()
        if removed_timeout:
            self.close()

    def _active(self) -> list[Toxic]:
        return [t for t in self._chain() if self._rolls.get(t.serial)]

    def _sync(self) -> bool:
        """Roll toxicity for new toxic versions, drop state of removed toxics, (re)arm timeout
        timers. True if a timeout toxic that held this connection is gone."""
        chain = list(self._chain())
        live = {t.serial for t in chain}
        for t in chain:
            if t.serial not in self._rolls:
                self._rolls[t.serial] = self._rng.random() < t.toxicity
        names = {t.name for t in chain}
        for name in list(self._state):
            if name not in names:
                del self._state[name]
        for serial in list(self._timers):
            if serial not in live:
                self._timers.pop(serial).cancel()
        held = {t.name for t in chain if t.type == "timeout" and self._rolls[t.serial]}
        removed_timeout = bool(self._holders - names)
        self._holders = held
        for t in chain:
            if t.type == "timeout" and self._rolls[t.serial] and t.attr("timeout") > 0 and t.serial not in self._timers:
                self._timers[t.serial] = self.loop.call_later(t.attr("timeout") / 1000, self.close)
        return removed_timeout

    # ------------------------------------------------------------ tasks

    async def _read(self) -> None:
        try:
            while True:
                try:
                    data = await self._reader.read(READ_SIZE)
                except (ConnectionError, OSError):
                    data = b""
                await self._queue.put(Chunk(data or None, self.loop.time()))
                if not data:
                    return
        except asyncio.CancelledError:
            pass

    async def _pump(self) -> None:
        try:
            while True:
                chunk = await self._queue.get()
                await self._through(self._active(), 0, chunk)
        except (_Closed, ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for h in self._timers.values():
            h.cancel()
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        with contextlib.suppress(Exception):
            self._dest.close()
        self._on_done(self)

    # ------------------------------------------------------------ the chain

    async def _through(self, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        if i == len(active):
            if chunk.data is None:
                raise _Closed
            self._dest.write(chunk.data)
            await self._dest.drain()
            return
        t = active[i]
        handler = getattr(self, f"_toxic_{t.type}")
        await handler(t, active, i, chunk)

    async def _next(self, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        await self._through(active, i + 1, chunk)

    async def _sleep(self, seconds: float, toxic: Toxic) -> bool:
        """Sleep, but wake early (False) once `toxic` is no longer on the chain."""
        deadline = self.loop.time() + seconds
        while True:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return True
            if toxic.serial not in {t.serial for t in self._chain()}:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _toxic_noop(self, t: Toxic, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        await self._next(active, i, chunk)

    async def _toxic_latency(self, t: Toxic, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        if chunk.data is not None:
            delay = t.attr("latency")
            jitter = t.attr("jitter")
            if jitter > 0:
                delay += self._rng.randrange(-jitter, jitter)
            wait = delay / 1000 - (self.loop.time() - chunk.ts)
            if wait > 0 and await self._sleep(wait, t):
                chunk.ts += wait
        await self._next(active, i, chunk)

    async def _toxic_bandwidth(self, t: Toxic, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        rate = t.attr("rate") * 1000  # bytes per second
        if chunk.data is None or rate <= 0:
            await self._next(active, i, chunk)
            return
        state = self._state.setdefault(t.name, {"due": 0.0})
        piece = max(1, rate // 10)  # at most 100 ms worth of data at a time
        data = chunk.data
        for off in range(0, len(data), piece):
            part = data[off:off + piece]
            state["due"] = max(state["due"], self.loop.time()) + len(part) / rate
            if not await self._sleep(state["due"] - self.loop.time(), t):
                await self._next(active, i, Chunk(data[off:], chunk.ts))
                return
            await self._next(active, i, Chunk(part, chunk.ts))

    async def _toxic_slicer(self, t: Toxic, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        if chunk.data is None:
            await self._next(active, i, chunk)
            return
        data = chunk.data
        for start, end in slice_offsets(len(data), t.attr("average_size"), t.attr("size_variation"), self._rng):
            await self._next(active, i, Chunk(data[start:end], chunk.ts))
            if not await self._sleep(t.attr("delay") / 1_000_000, t):
                await self._next(active, i, Chunk(data[end:], chunk.ts))
                return

    async def _toxic_slow_close(self, t: Toxic, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        if chunk.data is None:
            await self._sleep(t.attr("delay") / 1000, t)
        await self._next(active, i, chunk)

    async def _toxic_timeout(self, t: Toxic, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        if chunk.data is None:  # the source closed: so do we
            await self._next(active, i, chunk)
        # data is dropped on the floor; the timer armed in _sync closes the link

    async def _toxic_reset_peer(self, t: Toxic, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        await self._sleep(t.attr("timeout") / 1000, t)
        self._reset_connection()
        raise _Closed

    async def _toxic_limit_data(self, t: Toxic, active: Sequence[Toxic], i: int, chunk: Chunk) -> None:
        if chunk.data is None:
            await self._next(active, i, chunk)
            return
        state = self._state.setdefault(t.name, {"sent": 0.0})
        remaining = t.attr("bytes") - int(state["sent"])
        data = chunk.data[:max(0, remaining)]
        if data:
            state["sent"] += len(data)
            await self._next(active, i, Chunk(data, chunk.ts))
        if t.attr("bytes") - int(state["sent"]) <= 0:
            await self._next(active, i, Chunk(None, chunk.ts))


def abort_with_rst(*writers: asyncio.StreamWriter) -> None:
    """Close sockets so the peers see a TCP reset (SO_LINGER on, timeout 0), not an orderly FIN."""
    for w in writers:
        sock = w.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(Exception):
            w.transport.abort()
