"""The DNS server: UDP and TCP on ports.dns at every client address, answering from dns/resolver.py.

Hot path (UDP): an answer cache keyed by the query's bytes after its ID up to the end of the question, plus
its EDNS payload size and flags (codec.cache_key: equal keys always get the same answer; a client's EDNS
cookie does not matter) holds a few wire encodings of the answer (different shuffles of the instances) and
serves them in turn with the query's ID patched in, inside the socket's read callback: no task, no full
parse. The same question in another letter case (0x20 randomisation) is answered from the same entry, its
spelling patched into the question section (codec.folded_key), which the answer's names point at. A miss
parses the query (dns/codec.py) and resolves it against the catalog view (dns/views.py); when the view lacks
a name the query waits for one read (concurrent misses for one name share it). A view change drops every
cached answer built from it; an answer is cached only when every view it was built from is current.

Malformed queries are answered FORMERR/NOTIMP/REFUSED (or dropped: too short, or not a query) and counted by
reason in `stats` (`pyconsul info`, section dns). Names outside the domain go to `recursors` (over the
client's transport, each recursor in turn within recursor_timeout; SERVFAIL when none answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pyconsul.agent.dns import codec
from pyconsul.agent.dns import resolver as r
from pyconsul.agent.dns.config import (
    MAX_CACHED_ANSWERS,
    MAX_PENDING_PER_NAME,
    MAX_SLOW_QUERIES,
    MAX_TCP_CONNECTIONS,
    TCP_IDLE_TIMEOUT,
    DNSConfig,
    parse_recursor,
)
from pyconsul.agent.dns.views import Views

log = logging.getLogger("agent.dns")

UDP_BATCH = 64  # datagrams read per readiness of a UDP socket before the loop runs other work
UDP_SOCKET_BUFFER = 4 * 1024 * 1024  # asked for SO_RCVBUF/SO_SNDBUF (the kernel caps it at net.core.*mem_max)
MAX_UDP_QUERY = 4096  # bytes of a UDP query read; the rest of a longer datagram is cut (then FORMERR)
VARIANTS = 4  # precomputed shuffles of a multi-instance answer, served in turn
MAX_RESOLVE_ROUNDS = 4  # views one question may need filled (a service, then the "consul" NS list, ...)


class _Cached:
    __slots__ = ("folded", "n", "wires")

    def __init__(self, wires: list[bytes], folded: bytes) -> None:
        self.wires = wires
        self.folded = folded  # its key in DNSServer.folded
        self.n = 0


class DNSServer:
    def __init__(self, cfg: DNSConfig, local_dc: str, views_factory: Callable[[Callable[[r.ViewKey], None]], Views],
                 *, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.local_dc = local_dc
        self.views = views_factory(self._view_changed)
        self.rng = rng or random.Random()
        self.cache: dict[bytes, _Cached] = {}  # codec.cache_key -> answer
        self.folded: dict[bytes, _Cached] = {}  # codec.folded_key -> an answer to one of its spellings
        self.by_view: dict[r.ViewKey, set[bytes]] = defaultdict(set)
        self.stats: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.udp: list[_UDPEndpoint] = []
        self.tcp_servers: list[asyncio.Server] = []
        self.tcp_conns = 0
        self.recursors = [parse_recursor(x) for x in cfg.recursors]
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_counts: dict[r.ViewKey, int] = {}
        self._load_lock = asyncio.Lock()  # one codec.load thread at a time (it also runs the lazy resolver module)

    # -------------------------------------------------------- lifecycle

    async def start(self, addrs: list[str], port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            for a in addrs:
                self.udp.append(_UDPEndpoint(self, loop, a, port))
                self.tcp_servers.append(await asyncio.start_server(self._tcp_client, a, port, backlog=128))
        except OSError:
            await self.close()
            raise

    async def close(self) -> None:
        for u in self.udp:
            u.close()
        for s in self.tcp_servers:
            s.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.views.close()

    def reload(self, cfg: DNSConfig) -> None:
        """New settings (SIGHUP / `pyconsul reload`): every cached answer is dropped; the views stay."""
        self.cfg = cfg
        self.views.cfg = cfg
        self.recursors = [parse_recursor(x) for x in cfg.recursors]
        self.cache.clear()
        self.folded.clear()
        self.by_view.clear()
        self.stats["reloads"] += 1

    def info(self) -> dict[str, str]:
        """The `pyconsul info` dns section."""
        out = {k: str(v) for k, v in sorted(self.stats.items())}
        out.update({f"errors_{k}": str(v) for k, v in sorted(self.errors.items())})
        out["cached_answers"] = str(len(self.cache))
        out["watched_views"] = str(len(self.views.entries))
        out.update({f"views_{k}": str(v) for k, v in self.views.stats.items()})
        return out

    # -------------------------------------------------------- cache

    def _view_changed(self, key: r.ViewKey) -> None:
        for ck in self.by_view.pop(key, ()):
            self._drop(ck)

    def _drop(self, ck: bytes) -> None:
        c = self.cache.pop(ck, None)
        if c is not None and self.folded.get(c.folded) is c:
            del self.folded[c.folded]

    def _store(self, ck: bytes, wires: list[bytes], depends: tuple[r.ViewKey, ...]) -> None:
        if len(self.cache) >= MAX_CACHED_ANSWERS:
            self._drop(next(iter(self.cache)))  # FIFO; stale by_view members are harmless
        folded, _ = codec.folded_key(ck)
        c = self.cache[ck] = _Cached(wires, folded)
        self.folded[folded] = c
        for key in depends:
            self.by_view[key].add(ck)

    # -------------------------------------------------------- UDP

    def udp_received(self, data: bytes, addr: Any, transport: _UDPEndpoint) -> None:
        """The hot path: a cached answer with the ID patched in, or the slow path."""
        c = self.cache.get(data[2:])  # a query without EDNS options is its own key (codec.cache_key)
        if c is None:
            key = codec.cache_key(data)
            c = self.cache.get(key) if key is not None else None
            if c is None and key is not None:
                folded, qend = codec.folded_key(key)
                f = self.folded.get(folded)
                if f is not None:  # the same question in another letter case: its spelling patched in
                    f.n += 1
                    w = f.wires[f.n % len(f.wires)]
                    transport.sendto(data[:2] + w[2:12] + data[12:qend] + w[qend:], addr)
                    self.stats["udp_cache_hits"] += 1
                    return
        if c is not None:
            c.n += 1
            w = c.wires[c.n % len(c.wires)]
            transport.sendto(data[:2] + w[2:], addr)
            self.stats["udp_cache_hits"] += 1
            return
        self.stats["udp_queries"] += 1
        self._answer(data, False, lambda w: transport.sendto(w, addr))

    def _answer(self, data: bytes, tcp: bool, send: Callable[[bytes], None]) -> None:
        if not codec.loaded():  # the agent's first query: dnspython is imported first, off the event loop
            if len(self._tasks) >= MAX_SLOW_QUERIES:
                self.errors["overload"] += 1
                return
            first = asyncio.get_running_loop().create_task(self._answer_after_load(data, tcp, send))
            self._tasks.add(first)
            first.add_done_callback(self._tasks.discard)
            return
        try:
            q = codec.parse_query(data, tcp)
        except codec.Drop as exc:
            self.errors[f"dropped_{exc.reason}"] += 1
            return
        except codec.BadQuery as exc:
            self.errors[exc.reason] += 1
            send(codec.error_response(data, exc.rcode))
            return
        if self._try(q, data, tcp, send):
            return
        if len(self._tasks) >= MAX_SLOW_QUERIES:  # e.g. a flood of distinct names, each needing a read
            self.errors["overload"] += 1
            send(codec.error_response(data, r.SERVFAIL))
            return
        task = asyncio.get_running_loop().create_task(self._slow(q, data, tcp, send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_after_load(self, data: bytes, tcp: bool, send: Callable[[bytes], None]) -> None:
        """Answer a query that came before dnspython was loaded (codec.load, in a worker thread: ~20-30 ms)."""
        try:
            async with self._load_lock:
                if not codec.loaded():
                    await asyncio.to_thread(codec.load)
            self._answer(data, tcp, send)
        except Exception:
            log.exception("dns: failed to answer a query")
            self.errors["internal"] += 1
            with contextlib.suppress(Exception):
                send(codec.error_response(data, r.SERVFAIL))

    def _try(self, q: codec.Query, data: bytes, tcp: bool, send: Callable[[bytes], None],
             view: r.View | None = None) -> bool:
        """Answer `q` now if the view has what it needs; False if a view must be filled (or recursion) first.
        The answer is cached (UDP) only when every view it was built from is current in self.views."""
        v = view or self.views
        result = r.resolve(q.question, v, self.cfg, self.local_dc, time.time(), self.rng)
        if isinstance(result, r.Need | r.Recurse):
            return False
        wire = self._encode(q, result)
        send(wire)
        self.stats[f"rcode_{result.rcode}"] += 1
        if (not tcp and result.depends and result.rcode != r.SERVFAIL
                and all(k[0] != "query" and self.views.get(k) is v.get(k) for k in result.depends)):
            wires = [wire]
            if len(result.groups) > 1:
                for _ in range(VARIANTS - 1):
                    again = r.resolve(q.question, v, self.cfg, self.local_dc, time.time(), self.rng)
                    if isinstance(again, r.Answer):
                        wires.append(self._encode(q, again))
            key = codec.cache_key(data)
            if key is not None:
                self._store(key, wires, result.depends)
        return True

    def _encode(self, q: codec.Query, a: r.Answer) -> bytes:
        return codec.encode_answer(q, a, recursion_available=bool(self.recursors),
                                   enable_truncate=self.cfg.enable_truncate)

    async def _slow(self, q: codec.Query, data: bytes, tcp: bool, send: Callable[[bytes], None]) -> None:
        """A miss: fill the views the question needs (one shared read each), then answer from what was read."""
        got: dict[r.ViewKey, Any] = {}
        view = _Overlay(got, self.views)
        try:
            for _ in range(MAX_RESOLVE_ROUNDS):
                result = r.resolve(q.question, view, self.cfg, self.local_dc, time.time(), self.rng)
                if isinstance(result, r.Recurse):
                    send(await self._recurse(q, data, tcp))
                    return
                if isinstance(result, r.Need):
                    fut = self.views.fill(result.key)
                    if self._pending(result.key, +1) > MAX_PENDING_PER_NAME:
                        self._pending(result.key, -1)
                        self.errors["overload"] += 1
                        send(codec.error_response(data, r.SERVFAIL))
                        return
                    try:
                        got[result.key] = await asyncio.shield(fut)
                    finally:
                        self._pending(result.key, -1)
                    continue
                if not tcp and (wire := self._cached(data)) is not None:
                    send(wire)  # another query for this name, woken by the same fill, answered and cached it
                    self.stats["udp_cache_hits"] += 1
                    return
                self._try(q, data, tcp, send, view)
                return
            send(codec.error_response(data, r.SERVFAIL))
        except Exception:
            log.exception("dns: failed to answer a query")
            self.errors["internal"] += 1
            with contextlib.suppress(Exception):
                send(codec.error_response(data, r.SERVFAIL))

    def _cached(self, data: bytes) -> bytes | None:
        """The cached answer to the UDP query `data` (its ID, and its spelling of the name, patched in), or None.
        For the queries that waited in `_slow` for one fill: the first answers and caches, the others reuse its
        wires instead of each resolving and encoding the same answer again (a stampede after every view change:
        bench/dns, docs/benchmarks.md)."""
        key = codec.cache_key(data)
        if key is None:
            return None
        c = self.cache.get(key)
        if c is not None:
            c.n += 1
            return data[:2] + c.wires[c.n % len(c.wires)][2:]
        folded, qend = codec.folded_key(key)
        f = self.folded.get(folded)
        if f is None:
            return None
        f.n += 1
        w = f.wires[f.n % len(f.wires)]
        return data[:2] + w[2:12] + data[12:qend] + w[qend:]

    def _pending(self, key: r.ViewKey, delta: int) -> int:
        counts = self._pending_counts
        n = counts.get(key, 0) + delta
        if n <= 0:
            counts.pop(key, None)
        else:
            counts[key] = n
        return n

    # -------------------------------------------------------- TCP

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.tcp_conns >= MAX_TCP_CONNECTIONS:
            self.errors["tcp_refused"] += 1
            writer.close()
            return
        self.tcp_conns += 1
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    (n,) = struct.unpack("!H", head)
                    data = await asyncio.wait_for(reader.readexactly(n), TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                self.stats["tcp_queries"] += 1
                if len(data) < codec.HEADER.size or data[2] & 0x80:  # not a query: nothing to answer, hang up
                    self.errors["dropped_tcp"] += 1
                    return
                done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

                def send(w: bytes, done: asyncio.Future[bytes] = done) -> None:
                    if not done.done():
                        done.set_result(w)

                self._answer(data, True, send)
                try:
                    wire = await asyncio.wait_for(done, 30.0)
                except TimeoutError:
                    return
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.tcp_conns -= 1
            writer.close()

    # -------------------------------------------------------- recursors

    async def _recurse(self, q: codec.Query, data: bytes, tcp: bool) -> bytes:
        """Forward the query to each recursor in turn, over the client's transport (Consul's handleRecurse): the
        first answer that is NOERROR or NXDOMAIN (or truncated: the client retries over TCP) is passed on as
        is; SERVFAIL (with RA) when none gives one within recursor_timeout each."""
        self.stats["recursed"] += 1
        timeout = self.cfg.recursor_timeout
        for host, port in self.recursors:
            try:
                if tcp:
                    reply = await asyncio.wait_for(_tcp_exchange(data, host, port), timeout)
                else:
                    reply = await _udp_exchange(data, host, port, timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, struct.error) as exc:
                log.debug("dns: recursor %s:%d failed: %s", host, port, exc)
                continue
            if len(reply) < codec.HEADER.size:
                continue
            truncated = bool(reply[2] & 0x02)
            if (reply[3] & 0xF) in (r.NOERROR, r.NXDOMAIN) or truncated:
                return reply
            log.debug("dns: recursor %s:%d answered rcode %d", host, port, reply[3] & 0xF)
        self.errors["recursor_failed"] += 1
        return codec.error_response(data, r.SERVFAIL, recursion_available=True)


class _Overlay:
    """The views, with the values this question's own reads returned laid over them."""

    def __init__(self, got: dict[r.ViewKey, Any], views: Views) -> None:
        self.got = got
        self.views = views

    def get(self, key: r.ViewKey) -> Any:
        value = self.views.get(key)
        return self.got.get(key, r.MISSING) if value is r.MISSING else value


class _UDPEndpoint:
    """One UDP socket read straight from the event loop's selector: each readiness drains up to UDP_BATCH
    datagrams (asyncio's datagram transport takes one per loop iteration, which costs more than answering
    from the cache), and answers go out with a non-blocking sendto (dropped, and counted, when the socket's
    send buffer is full: the client retries, as after any lost datagram)."""

    def __init__(self, server: DNSServer, loop: asyncio.AbstractEventLoop, addr: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_SOCKET_BUFFER)
            self.sock.bind((addr.strip("[]"), port))
            loop.add_reader(self.sock.fileno(), self._readable)
        except BaseException:
            self.sock.close()
            raise
        self.server = server
        self.loop = loop

    def _readable(self) -> None:
        recv, server = self.sock.recvfrom, self.server
        for _ in range(UDP_BATCH):
            try:
                data, addr = recv(MAX_UDP_QUERY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error for an earlier answer: nothing to do with this socket's state
                continue
            try:
                server.udp_received(data, addr, self)
            except Exception:
                log.exception("dns: failed to answer a datagram")
                server.errors["internal"] += 1

    def sendto(self, data: bytes, addr: Any) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.server.errors["udp_send_dropped"] += 1
        except OSError as exc:
            log.debug("dns: UDP send to %s failed: %s", addr, exc)
            self.server.errors["udp_send_failed"] += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _Exchange(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes, done: asyncio.Future[bytes]) -> None:
        self.qid = qid
        self.done = done

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data[:2] == self.qid and not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def _udp_exchange(data: bytes, host: str, port: int, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Exchange(data[:2], done), remote_addr=(host, port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(done, timeout)
    finally:
        transport.close()


async def _tcp_exchange(data: bytes, host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        (n,) = struct.unpack("!H", await reader.readexactly(2))
        reply = await reader.readexactly(n)
        if reply[:2] != data[:2]:
            raise ValueError("recursor answered another ID")
        return reply
    finally:
        writer.close()
