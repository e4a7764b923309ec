"""The asyncio shell around one serf pool (LAN or WAN): UDP + TCP transport, timers, crypto.

It owns the sockets and the clock and nothing else: every protocol decision is the pure
`Serf`/`Membership` core's. Order of work for one input: decrypt -> core -> perform the
returned effects in order (packets are encrypted just before they are sent).

Timing is deadline-driven: one `loop.call_at` timer sits at the core's `next_deadline()`. Every core
call ends in `_perform`, which moves that timer (a packet can bring a deadline forward) and re-checks
whatever the shell waits for (leave broadcasts); a query's caller waits on the core's QueryComplete.
An idle pool therefore wakes only when the core has something to do, never on a polling period.

Bounds and supervision: an inbound stream is decoded incrementally (each byte parsed once) with a
total byte cap and decompression cap (codec.StreamDecoder), all of it -- reading and replying --
within `tcp_timeout`; at most MAX_INBOUND_STREAMS are served at once (more are closed at once and
counted). Inputs past a limit are dropped, counted (`dropped_oversized`) and logged at debug level
at most once per DROP_LOG_INTERVAL. A background task that fails is logged with its traceback and
counted (`task_failures`); a failure of the deadline timer's tick (the core's loop) marks the pool
failed and calls `on_failed`, which the agent uses to stop (as for a failed Raft loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from pyconsul.agent.gossip import codec
from pyconsul.agent.gossip.codec import DecodeError, NeedMore, Oversized
from pyconsul.agent.gossip.config import GossipConfig
from pyconsul.agent.gossip.coordinate import Coordinate
from pyconsul.agent.gossip.keyring import (
    ENCRYPT_OVERHEAD,
    DecryptError,
    Keyring,
    decrypt,
    encode_key,
    encrypt,
    encrypted_length,
)
from pyconsul.agent.gossip.membership import Addr, PushPullWith, SendPacket, TcpPing
from pyconsul.agent.gossip.messages import Ack, ErrResp, Message, MsgType, Ping, PushPull, SerfMsgType, SerfQuery, User
from pyconsul.agent.gossip.serf import (
    JoinAttempt,
    Member,
    MemberEvent,
    MemberStatus,
    QueryComplete,
    QueryReceived,
    Serf,
    SerfConfig,
    SerfEffect,
    UserEventReceived,
)

ENCRYPTION_VERSION = 1  # memberlist protocol >= 2 encrypts without padding
MAX_STREAM_BYTES = codec.MAX_STREAM_BYTES
READ_CHUNK = 65536
# Streams served at once per pool. A push/pull from each member arrives about once per push/pull
# interval (30 s on a LAN, scaled up with size), so legitimate concurrency is a handful even while many
# nodes join; memberlist allows 128 pending push/pulls per Go process, we allow fewer because each one
# may buffer up to MAX_STREAM_BYTES here (32 x 20 MiB bounds what trickling peers can make us hold).
MAX_INBOUND_STREAMS = 32
DROP_LOG_INTERVAL = 10.0  # seconds between debug logs about dropped oversized input / rejected streams
KEY_QUERIES = ("install-key", "use-key", "remove-key", "list-keys")


@dataclass
class PoolCounters:
    """Inputs dropped by the transport, by reason (shown by `pyconsul info`)."""

    udp_decrypt_failed: int = 0
    udp_unencrypted_rejected: int = 0
    udp_oversized: int = 0
    stream_errors: int = 0
    stream_decrypt_failed: int = 0
    stream_unencrypted_rejected: int = 0
    stream_oversized: int = 0  # stream messages past the byte or decompression cap
    streams_rejected: int = 0  # inbound connections closed at once: MAX_INBOUND_STREAMS were being served
    task_failures: int = 0  # background tasks that ended with an exception (logged with the traceback)
    push_pull_ok: int = 0
    push_pull_failed: int = 0
    packet_errors: int = 0  # the core raised on a packet (a bug; logged)
    timer_wakeups: int = 0  # deadline timer firings (tick calls), for the idle-cost figures
    extra: dict[str, int] = field(default_factory=dict)


class JoinError(Exception):
    pass


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.pool._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.pool.log.debug("udp error: %s", exc)


class Pool:
    """One gossip pool member: `await start()`, `join()`, `leave()`, `stop()`."""

    def __init__(
        self,
        *,
        label: str,
        name: str,
        logger: str | None = None,
        bind: Addr,
        advertise: Addr,
        gossip: GossipConfig,
        tags: dict[str, str],
        keyring: Keyring | None = None,
        verify_incoming: bool = True,
        verify_outgoing: bool = True,
        serf_config: SerfConfig | None = None,
        on_event: Callable[[SerfEffect], None] | None = None,
        on_keyring_change: Callable[[], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.label = label
        self.name = name
        self.bind = bind
        self.advertise = advertise
        self.gossip = gossip
        self.tags = tags
        self.keyring = keyring
        self.verify_incoming = verify_incoming
        self.verify_outgoing = verify_outgoing
        self.serf_config = serf_config or SerfConfig()
        self.on_event = on_event
        self.on_keyring_change = on_keyring_change
        self.on_failed = on_failed  # told once when the core's timer fails: the pool cannot go on
        self.failed: BaseException | None = None
        self.rng = rng or random.Random()
        self.log = logging.getLogger(logger or f"agent.serf.{label}")
        self.counters = PoolCounters()
        self.serf: Serf | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._waiters: list[tuple[Callable[[], bool], asyncio.Event]] = []
        self._queries: dict[tuple[int, int], asyncio.Event] = {}
        self._stopped = False
        self._inbound = 0  # inbound streams being served
        self._drop_logged_at = float("-inf")
        self._drops_unlogged = 0

    # ------------------------------------------------------------ lifecycle

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    @property
    def core(self) -> Serf:
        assert self.serf is not None, "pool not started"
        return self.serf

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        overhead = ENCRYPT_OVERHEAD[ENCRYPTION_VERSION] if self.keyring and self.verify_outgoing else 0
        self.serf = Serf(
            self.gossip, self.name, self.advertise[0], self.advertise[1], self.tags, self.rng, self._now(),
            config=self.serf_config, encryption_overhead=overhead,
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * 1024 * 1024)
        sock.bind(self.bind)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=sock)
        self._udp = transport
        self._tcp = await asyncio.start_server(self._on_stream, self.bind[0], self.bind[1], reuse_address=True)
        self._perform(self.core.initial_effects())  # also arms the deadline timer
        self.log.info("serf: started %s pool: name=%s bind=%s:%d", self.label, self.name, *self.bind)

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._udp:
            self._udp.close()
        if self._tcp:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)

    def _on_timer(self) -> None:
        """The core's next deadline has come: tick it (which re-arms the timer through _perform)."""
        self._timer = None
        if self._stopped:
            return
        self.counters.timer_wakeups += 1
        try:
            self._perform(self.core.tick(self._now()))
        except Exception as exc:  # the core's loop is broken: never carry on silently
            self._fail("gossip timer (core tick)", exc)

    def _fail(self, what: str, exc: BaseException) -> None:
        """The pool cannot go on (its core's timer failed): log the traceback, stop the timer, tell the
        owner once (the agent stops)."""
        self.counters.task_failures += 1
        if self.failed is not None:
            return
        self.failed = exc
        self.log.error("serf: %s failed; the %s pool stops", what, self.label, exc_info=exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.on_failed is not None:
            self.on_failed(exc)

    def _arm_timer(self) -> None:
        """Put the timer at the core's next deadline (at least 1 ms ahead, so a deadline the core
        failed to move can never spin the loop)."""
        if self._stopped or self.serf is None or self.failed is not None:
            return
        loop = asyncio.get_running_loop()
        when = max(self.serf.next_deadline(), loop.time() + 0.001)
        if self._timer is not None:
            if abs(when - self._timer_at) < 0.0005:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._on_timer)

    def _check_waiters(self) -> None:
        for cond, event in self._waiters:
            if not event.is_set() and cond():
                event.set()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a background task of this pool, supervised: it is cancelled by stop(), and if it ends
        with an exception that is logged with its traceback and counted (never lost silently)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"serf-{self.label}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.counters.task_failures += 1
            self.log.error("serf: background task %s failed", task.get_name(), exc_info=exc)

    def _log_drop(self, reason: str, src: tuple[Any, ...]) -> None:
        """Debug-log a dropped input, at most once per DROP_LOG_INTERVAL (a flood costs no log I/O)."""
        now = self._now()
        if now - self._drop_logged_at < DROP_LOG_INTERVAL:
            self._drops_unlogged += 1
            return
        more, self._drops_unlogged, self._drop_logged_at = self._drops_unlogged, 0, now
        self.log.debug("memberlist: dropped input from %s:%s: %s (%d more dropped since the last report)",
                       src[0], src[1], reason, more)

    # ------------------------------------------------------------ effects

    def _perform(self, effects: list[SerfEffect]) -> None:
        """Carry out the effects of one core call, in order; then re-arm the deadline timer and
        re-check the waiters (every core call goes through here, so the shell never polls)."""
        try:
            self._perform_effects(effects)
        finally:
            self._arm_timer()
            self._check_waiters()

    def _perform_effects(self, effects: list[SerfEffect]) -> None:
        for e in effects:
            if isinstance(e, SendPacket):
                self._send_packet(e.addr, e.data)
            elif isinstance(e, PushPullWith):
                self._spawn(self._push_pull_quiet(e.addr, e.join), "push-pull")
            elif isinstance(e, TcpPing):
                self._spawn(self._tcp_ping(e), "tcp-ping")
            elif isinstance(e, JoinAttempt):
                self._spawn(self._reconnect(e.addrs), "reconnect")
            elif isinstance(e, QueryReceived):
                self._answer_internal_query(e.query)
            elif isinstance(e, QueryComplete):
                if (event := self._queries.get(e.key)) is not None:
                    event.set()
            elif isinstance(e, (MemberEvent, UserEventReceived)):
                self._log_event(e)
                if self.on_event:
                    try:
                        self.on_event(e)
                    except Exception:  # the owner's bug: the core is fine, the rest of the effects still run
                        self.counters.task_failures += 1
                        self.log.exception("serf: the event handler failed on %s", e)

    def _log_event(self, e: MemberEvent | UserEventReceived) -> None:
        if isinstance(e, UserEventReceived):
            self.log.debug("serf: user event %s", e.name)
            return
        names = {
            "member-join": "EventMemberJoin",
            "member-leave": "EventMemberLeave",
            "member-failed": "EventMemberFailed",
            "member-update": "EventMemberUpdate",
            "member-reap": "EventMemberReap",
        }
        self.log.info("serf: %s: %s %s", names[e.kind], e.member.name, e.member.addr)

    def _send_packet(self, addr: Addr, data: bytes) -> None:
        if self._udp is None or self._stopped:
            return
        if self.keyring is not None and self.verify_outgoing:
            data = encrypt(ENCRYPTION_VERSION, self.keyring.primary(), data, b"")
        with contextlib.suppress(OSError):
            self._udp.sendto(data, addr)

    def _on_datagram(self, data: bytes, src: Addr) -> None:
        if self.serf is None or self._stopped:
            return
        if len(data) > 65507:
            self.counters.udp_oversized += 1
            return
        if self.keyring is not None:
            try:
                data = decrypt(self.keyring.keys(), data, b"")
            except (DecryptError, ValueError) as exc:
                if self.verify_incoming:
                    if _is_plaintext_packet(data):
                        self.counters.udp_unencrypted_rejected += 1
                    else:
                        self.counters.udp_decrypt_failed += 1
                    self.log.warning("memberlist: Decrypt packet failed: %s from=%s:%d", exc, *src)
                    return
        ml = self.serf.memberlist_stats()
        oversized = ml.oversized
        try:
            self._perform(self.serf.handle_packet(data, src, self._now()))
        except Exception:
            self.counters.packet_errors += 1
            self.log.exception("memberlist: error handling packet from %s:%d", *src)
        if ml.oversized != oversized:
            self._log_drop(ml.last_oversized, src)

    # ------------------------------------------------------------ streams

    def _local_addr(self) -> tuple[str, int] | None:
        """Dial from our bind address when it is specific, so peers (and firewalls) see it."""
        return None if self.bind[0] in ("0.0.0.0", "") else (self.bind[0], 0)

    def _seal_stream(self, plain: bytes) -> bytes:
        if self.keyring is None or not self.verify_outgoing:
            return plain
        header = bytes([MsgType.ENCRYPT]) + struct.pack(">I", encrypted_length(ENCRYPTION_VERSION, len(plain)))
        return header + encrypt(ENCRYPTION_VERSION, self.keyring.primary(), plain, header)

    async def _read_stream(self, reader: asyncio.StreamReader) -> Message | PushPull:
        """One stream message (the caller bounds the time); Oversized input is counted here."""
        try:
            return await self._read_stream_message(reader)
        except Oversized:
            self.counters.stream_oversized += 1
            raise

    async def _read_stream_message(self, reader: asyncio.StreamReader) -> Message | PushPull:
        first = await reader.readexactly(1)
        if first[0] == MsgType.ENCRYPT:
            if self.keyring is None:
                raise DecodeError("remote state is encrypted and encryption is not configured")
            size_raw = await reader.readexactly(4)
            (size,) = struct.unpack(">I", size_raw)
            if size > MAX_STREAM_BYTES:
                raise Oversized(f"remote node state is larger than limit ({size})")
            cipher = await reader.readexactly(size)
            try:
                plain = decrypt(self.keyring.keys(), cipher, first + size_raw)
            except (DecryptError, ValueError) as exc:
                self.counters.stream_decrypt_failed += 1
                raise DecodeError(str(exc)) from None
            try:
                _, msg = codec.parse_stream(plain)
            except NeedMore:
                raise DecodeError("truncated encrypted stream") from None
            return msg
        if self.keyring is not None and self.verify_incoming:
            self.counters.stream_unencrypted_rejected += 1
            raise DecodeError("encryption is configured but remote state is not encrypted")
        decoder = codec.StreamDecoder(max_bytes=MAX_STREAM_BYTES)  # parses each byte once, as it arrives
        got = decoder.feed(first)
        while got is None:
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                raise DecodeError("stream closed mid-message")
            got = decoder.feed(chunk)
        return got

    async def _on_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        if self._inbound >= MAX_INBOUND_STREAMS or self._stopped:
            self.counters.streams_rejected += 1
            writer.transport.abort()
            self._log_drop(f"stream refused: {MAX_INBOUND_STREAMS} streams are being served", peer)
            return
        self._inbound += 1
        clean = False
        try:
            async with asyncio.timeout(self.gossip.tcp_timeout):  # reading and replying, all of it
                clean = await self._serve_stream(reader, writer, peer)
        except TimeoutError:
            self.counters.stream_errors += 1
            self.log.debug("memberlist: stream from %s:%s timed out after %gs", peer[0], peer[1],
                           self.gossip.tcp_timeout)
        finally:
            self._inbound -= 1
            if clean:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
            else:
                writer.transport.abort()  # a peer that stopped reading cannot hold us in close()

    async def _serve_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            peer: tuple[Any, ...]) -> bool:
        """Read one message and act on it; True if the connection may be closed gracefully (everything
        written was drained), False if it must be aborted."""
        try:
            msg = await self._read_stream(reader)
            if isinstance(msg, PushPull):
                reply = self.core.local_push_pull(msg.join)
                writer.write(self._seal_stream(codec.encode_push_pull(reply)))
                await writer.drain()
                self._perform(self.core.merge_remote(msg, self._now()))
                self.counters.push_pull_ok += 1
            elif isinstance(msg, Ping):
                ack = self.core.stream_ping(msg)
                if ack is not None:
                    writer.write(self._seal_stream(codec.encode(ack)))
                    await writer.drain()
            elif isinstance(msg, User):
                self._perform(self.core.handle_packet(codec.encode(msg), (peer[0], peer[1]), self._now()))
            else:
                raise DecodeError(f"unexpected stream message {type(msg).__name__}")
        except Exception as exc:
            self.counters.stream_errors += 1
            if isinstance(exc, Oversized):
                self._log_drop(str(exc), peer)
            elif isinstance(exc, DecodeError):
                self.log.warning("memberlist: failed to receive: %s from=%s:%s", exc, peer[0], peer[1])
            elif isinstance(exc, (asyncio.IncompleteReadError, OSError)):
                self.log.debug("memberlist: stream from %s failed: %s", peer, exc)
            else:
                self.log.exception("memberlist: error handling stream from %s", peer)
            if isinstance(exc, DecodeError):
                with contextlib.suppress(Exception):
                    writer.write(self._seal_stream(codec.encode(ErrResp(str(exc)))))
                    await writer.drain()
                    return True
            return False
        return True

    async def push_pull(self, addr: Addr, join: bool) -> None:
        """One push/pull exchange with addr (SWIM anti-entropy, and how joins work)."""
        dial = asyncio.open_connection(addr[0], addr[1], local_addr=self._local_addr())
        reader, writer = await asyncio.wait_for(dial, self.gossip.tcp_timeout)
        try:
            writer.write(self._seal_stream(codec.encode_push_pull(self.core.local_push_pull(join))))
            await writer.drain()
            msg = await asyncio.wait_for(self._read_stream(reader), self.gossip.tcp_timeout)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if isinstance(msg, ErrResp):
            raise JoinError(f"remote error: {msg.error}")
        if not isinstance(msg, PushPull):
            raise JoinError(f"unexpected reply {type(msg).__name__}")
        self._perform(self.core.merge_remote(msg, self._now()))

    async def _push_pull_quiet(self, addr: Addr, join: bool) -> None:
        try:
            await self.push_pull(addr, join)
            self.counters.push_pull_ok += 1
        except Exception as exc:
            self.counters.push_pull_failed += 1
            self.log.debug("memberlist: push/pull with %s:%d failed: %s", addr[0], addr[1], exc)

    async def _tcp_ping(self, e: TcpPing) -> None:
        ok = False
        try:
            timeout = max(0.01, e.deadline - self._now())
            dial = asyncio.open_connection(e.addr[0], e.addr[1], local_addr=self._local_addr())
            reader, writer = await asyncio.wait_for(dial, timeout)
            try:
                writer.write(self._seal_stream(e.data))
                await writer.drain()
                msg = await asyncio.wait_for(self._read_stream(reader), max(0.01, e.deadline - self._now()))
                ok = isinstance(msg, Ack) and msg.seq_no == e.seq
            finally:
                writer.close()
        except Exception as exc:
            self.log.debug("memberlist: fallback TCP ping to %s failed: %s", e.node, exc)
        if ok:
            self.log.warning(
                "memberlist: Was able to connect to %s over TCP but UDP probes failed, network may be misconfigured",
                e.node,
            )
        if not self._stopped:
            self._perform(self.core.tcp_ping_result(e.seq, ok, self._now()))

    async def _reconnect(self, addrs: tuple[Addr, ...]) -> None:
        n, _ = await self.join([f"{h}:{p}" for h, p in addrs], default_port=addrs[0][1] if addrs else 0)
        if n:
            self.log.info("serf: reconnected to %s", addrs)

    # ------------------------------------------------------------ queries (serf keyring protocol)

    def _answer_internal_query(self, q: SerfQuery) -> None:
        op = q.name.removeprefix("_serf_")
        if op not in KEY_QUERIES:
            return
        resp: dict[str, Any] = {"Result": False, "Message": "", "Keys": None, "PrimaryKey": ""}
        ring = self.keyring
        try:
            if ring is None:
                resp["Message"] = (
                    "Keyring is empty (encryption not enabled)" if op == "list-keys"
                    else "No keyring to modify (encryption not enabled)"
                )
            elif op == "list-keys":
                resp.update(Result=True, Keys=[encode_key(k) for k in ring.keys()],  # noqa: SIM118
                            PrimaryKey=encode_key(ring.primary()))
            else:
                if not q.payload or q.payload[0] != SerfMsgType.KEY_REQUEST:
                    raise ValueError("invalid key request")
                key = codec.decode_key_request(q.payload[1:])
                self.log.info("serf: Received %s query", op)
                {"install-key": ring.install, "use-key": ring.use, "remove-key": ring.remove}[op](key)
                if self.on_keyring_change is not None:
                    self.on_keyring_change()
                resp["Result"] = True
        except ValueError as exc:
            resp["Message"] = str(exc)
            self.log.error("serf: Failed to %s: %s", op.replace("-", " "), exc)
        payload = bytes([SerfMsgType.KEY_RESPONSE]) + codec.encode_msgpack(resp)
        self._perform(self.core.respond(q, payload, self._now()))

    async def query(self, name: str, payload: bytes, timeout: float | None = None) -> dict[str, bytes]:
        """Ask every member; return responses by node, once all alive members answered (the core's
        QueryComplete) or at the deadline."""
        started = self.core.start_query(name, payload, self._now(), timeout)
        done = self._queries[started.key] = asyncio.Event()
        try:
            self._perform(started.effects)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(0.0, started.deadline - self._now()))
        finally:
            del self._queries[started.key]
            pq = self.core.finish_query(started.key)
        return dict(pq.responses) if pq is not None else {}

    async def key_operation(self, op: str, key: bytes | None) -> dict[str, Any]:
        """Run a serf keyring query (install-key, use-key, remove-key, list-keys) on the pool."""
        payload = b""
        if key is not None:
            payload = bytes([SerfMsgType.KEY_REQUEST]) + codec.encode_msgpack({"Key": key})
        responses = await self.query(f"_serf_{op}", payload)
        keys: dict[str, int] = {}
        primary: dict[str, int] = {}
        messages: dict[str, str] = {}
        errors = 0
        for node, raw in responses.items():
            try:
                if not raw or raw[0] != SerfMsgType.KEY_RESPONSE:
                    raise DecodeError("invalid key query response type")
                r = codec.decode_msgpack(raw[1:])
            except DecodeError as exc:
                messages[node] = str(exc)
                errors += 1
                continue
            if not r.get("Result"):
                errors += 1
                messages[node] = str(r.get("Message") or "")
            for k in r.get("Keys") or []:
                keys[str(k)] = keys.get(str(k), 0) + 1
            if r.get("PrimaryKey"):
                primary[str(r["PrimaryKey"])] = primary.get(str(r["PrimaryKey"]), 0) + 1
        return {
            "Keys": keys,
            "PrimaryKeys": primary,
            "Messages": messages,
            "NumNodes": self.core.num_alive(),
            "NumResp": len(responses),
            "NumErr": errors,
        }

    # ------------------------------------------------------------ operations

    async def join(self, addrs: list[str], default_port: int) -> tuple[int, list[str]]:
        """Push/pull-join each address; returns (nodes contacted, error strings)."""
        contacted = 0
        errors: list[str] = []
        for a in addrs:
            try:
                for target in await resolve(a, default_port):
                    await self.push_pull(target, True)
                    contacted += 1
                    break
            except Exception as exc:
                errors.append(f"Failed to join {a}: {exc}")
        if contacted:
            self._perform(self.core.joined(contacted, self._now()))
        return contacted, errors

    async def leave(self, timeout: float | None = None) -> None:
        """Graceful leave: serf leave intent, then memberlist dead-self, each until gossiped."""
        timeout = timeout if timeout is not None else self.serf_config.broadcast_timeout
        self._perform(self.core.leave(self._now()))
        await self._wait(self.core.intent_broadcast_done, timeout)
        self._perform(self.core.leave_memberlist(self._now()))
        await self._wait(self.core.leave_done, timeout)

    async def _wait(self, cond: Callable[[], bool], timeout: float) -> bool:
        """Wait until cond() (a predicate on the core) holds or timeout passes; cond is re-checked
        after every core call (_perform), the only moments it can change."""
        if cond():
            return True
        waiter = (cond, asyncio.Event())
        self._waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1].wait(), timeout)
        finally:
            self._waiters.remove(waiter)
        return cond()

    def members(self) -> list[Member]:
        return self.core.member_list()

    def local_member(self) -> Member:
        return self.core.local_member()

    def force_leave(self, node: str, prune: bool = False) -> bool:
        known, effects = self.core.force_leave(node, prune, self._now())
        self._perform(effects)
        return known

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags = dict(tags)
        self._perform(self.core.set_tags(tags, self._now()))

    def user_event(self, name: str, payload: bytes) -> None:
        """Fire a serf user event (not coalesced); ValueError with serf's message if it is too large."""
        self._perform(self.core.user_event(name, payload))

    def coordinate(self) -> Coordinate:
        """This member's network coordinate in this pool."""
        return self.core.coordinate()

    def cached_coordinate(self, name: str) -> Coordinate | None:
        return self.core.cached_coordinate(name)

    def stats(self) -> dict[str, str]:
        core = self.core
        ml = core.memberlist_stats()
        c = self.counters
        members = core.member_list()
        return {
            "members": str(len(members)),
            "failed": str(sum(1 for m in members if m.status == MemberStatus.FAILED)),
            "left": str(sum(1 for m in members if m.status == MemberStatus.LEFT)),
            "member_time": str(core.clock),
            "event_time": str(core.event_clock),
            "query_time": str(core.query_clock),
            "health_score": str(core.health_score()),
            "encrypted": str(self.keyring is not None).lower(),
            "packets_received": str(ml.packets_in),
            "packets_sent": str(ml.packets_out),
            "dropped_malformed": str(ml.decode_errors + core.stats.bad_serf_messages + c.packet_errors),
            "dropped_unknown_type": str(core.stats.unknown_serf_messages),
            "dropped_decrypt_failed": str(c.udp_decrypt_failed + c.stream_decrypt_failed),
            "dropped_unencrypted": str(c.udp_unencrypted_rejected + c.stream_unencrypted_rejected),
            "dropped_wrong_node": str(ml.wrong_node_pings),
            "dropped_oversized": str(c.udp_oversized + ml.oversized + c.stream_oversized),
            "streams_rejected": str(c.streams_rejected),
            "stream_errors": str(c.stream_errors),
            "task_failures": str(c.task_failures),
            "address_conflicts": str(ml.address_conflicts),
            "refutes": str(ml.refutes),
            "coordinate_resets": str(core.coords.stats.resets),
            "coordinate_rejected": str(core.coords.stats.rejected),
        }


def _is_plaintext_packet(data: bytes) -> bool:
    """A packet that failed to decrypt but parses as plaintext memberlist: a peer without (or not
    yet using) encryption, counted apart from wrong keys and garbage (`dropped_unencrypted`)."""
    try:
        return bool(codec.decode_packet(data))
    except Exception:
        return False


async def resolve(addr: str, default_port: int) -> list[Addr]:
    """'host', 'host:port', '[v6]:port' -> resolved (ip, port) candidates."""
    host, port = split_host_port(addr, default_port)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
    out: list[Addr] = []
    for info in infos:
        ip = str(info[4][0])
        if (ip, port) not in out:
            out.append((ip, port))
    if not out:
        raise JoinError(f"no addresses for {addr}")
    return out


def split_host_port(addr: str, default_port: int) -> tuple[str, int]:
    addr = addr.strip()
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if addr.count(":") == 1:
        host, _, p = addr.partition(":")
        return host, int(p)
    return addr, default_port
