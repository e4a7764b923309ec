"""A user-space packet delayer on an NFQUEUE, in plain Python (stdlib only): the latency nemesis.

This kernel has no ``tc netem``, and nft's own ``queue`` statement is missing too, but iptables' NFQUEUE
target works. Packets a rule sends to queue N are handed to this process over netlink
(NETLINK_NETFILTER, subsystem NFNL_SUBSYS_QUEUE); it keeps each one for ``delay ± jitter`` ms (uniform,
like netem's default; jitter can reorder packets, as with netem) and then gives the verdict ACCEPT, which
reinjects the packet where it left the hook. No library is needed (NetfilterQueue would need
libnetfilter-queue-dev and a compiler on every host): this file is copied to a host and run by the host's
own python3, so it must stay stdlib-only and free of imports from this repository.

Fail-safe contract:
- the iptables rule uses ``--queue-bypass``: while no process is bound to the queue, packets pass;
- the queue is bound with NFQA_CFG_F_FAIL_OPEN: if the queue overflows, packets pass rather than drop;
- SIGTERM/SIGINT: every held packet is accepted at once, then the queue is unbound and the process exits;
- on SIGKILL the kernel drops the held packets (at most `delay` worth of traffic), nothing else is left.

The pid file is written only once the queue is bound, so its presence means "delaying". Wire structures
are from linux/netfilter/nfnetlink_queue.h; the codec functions below are pure (and unit-tested).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 0x1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NF_DROP, NF_ACCEPT = 0, 1
NLA_TYPE_MASK = 0x3FFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host byte order)
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (queue number, network byte order)


def _align(n: int) -> int:
    return (n + 3) & ~3


def nlattr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def message(msg: int, queue: int, attrs: bytes, seq: int = 0, flags: int = NLM_F_REQUEST) -> bytes:
    """An nfnetlink queue message: nlmsghdr + nfgenmsg(AF_UNSPEC, v0, queue) + attributes."""
    body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, queue) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def bind_messages(queue: int, maxlen: int = 8192) -> list[bytes]:
    """Config messages: bind `queue`, copy 64 bytes of each packet, queue length, fail-open. Each asks an ack."""
    flags = NLM_F_REQUEST | NLM_F_ACK
    cmd = nlattr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET))
    params = nlattr(NFQA_CFG_PARAMS, struct.pack("!IB", 64, NFQNL_COPY_PACKET))
    limits = (nlattr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))
              + nlattr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
              + nlattr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)))
    return [message(NFQNL_MSG_CONFIG, queue, cmd, 1, flags), message(NFQNL_MSG_CONFIG, queue, params, 2, flags),
            message(NFQNL_MSG_CONFIG, queue, limits, 3, flags)]


def unbind_message(queue: int) -> bytes:
    cmd = nlattr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, socket.AF_INET))
    return message(NFQNL_MSG_CONFIG, queue, cmd)


def verdict_message(queue: int, packet_id: int, verdict: int) -> bytes:
    return message(NFQNL_MSG_VERDICT, queue, nlattr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id)))


def parse(buf: bytes) -> Iterator[tuple[str, int]]:
    """Messages in one netlink datagram: ("packet", packet_id) or ("error", errno; 0 is an ack)."""
    off = 0
    while off + _NLMSGHDR.size <= len(buf):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(buf, off)
        if length < _NLMSGHDR.size or off + length > len(buf):
            return
        body = buf[off + _NLMSGHDR.size:off + length]
        if kind == NLMSG_ERROR and len(body) >= 4:
            yield "error", -struct.unpack_from("=i", body)[0]
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            packet_id = _packet_id(body[_NFGENMSG.size:])
            if packet_id is not None:
                yield "packet", packet_id
        off += _align(length)


def _packet_id(attrs: bytes) -> int | None:
    off = 0
    while off + 4 <= len(attrs):
        length, kind = struct.unpack_from("=HH", attrs, off)
        if length < 4:
            return None
        if kind & NLA_TYPE_MASK == NFQA_PACKET_HDR and length >= 8:
            return int(struct.unpack_from("!I", attrs, off + 4)[0])
        off += _align(length)
    return None


def hold_seconds(rng: random.Random, delay_ms: float, jitter_ms: float) -> float:
    """How long to hold one packet: uniform in [delay - jitter, delay + jitter] ms, never negative."""
    return max(0.0, delay_ms + (rng.uniform(-jitter_ms, jitter_ms) if jitter_ms > 0 else 0.0)) / 1000.0


class Delayer:
    """Bound to one queue; `run()` holds every packet, then accepts it. Not thread-safe."""

    def __init__(self, queue: int, delay_ms: float, jitter_ms: float, seed: int) -> None:
        self.queue = queue
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms
        self.rng = random.Random(seed)
        self.held: list[tuple[float, int, int]] = []  # (due, arrival order, packet id): a heap
        self.order = 0
        self.stopping = False
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))

    def bind(self) -> None:
        """Bind the queue; raise OSError with the kernel's errno if it refuses (e.g. EBUSY: queue taken)."""
        for msg in bind_messages(self.queue):
            self.sock.send(msg)
            self._wait_ack()

    def _wait_ack(self) -> None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            for kind, value in parse(self.sock.recv(1 << 16)):
                if kind == "error":
                    if value:
                        raise OSError(value, f"NFQUEUE {self.queue}: {os.strerror(value)}")
                    return
                self._hold(value)  # a packet may come before the last ack
        raise OSError(errno.ETIMEDOUT, f"NFQUEUE {self.queue}: no answer from the kernel")

    def _hold(self, packet_id: int) -> None:
        due = time.monotonic() + hold_seconds(self.rng, self.delay_ms, self.jitter_ms)
        self.order += 1
        heapq.heappush(self.held, (due, self.order, packet_id))

    def _release(self, everything: bool = False) -> None:
        now = time.monotonic()
        out: list[bytes] = []
        while self.held and (everything or self.held[0][0] <= now):
            out.append(verdict_message(self.queue, heapq.heappop(self.held)[2], NF_ACCEPT))
        for i in range(0, len(out), 64):  # the kernel processes every message of one datagram
            try:
                self.sock.send(b"".join(out[i:i + 64]))
            except OSError:
                pass  # a packet whose verdict fails is dropped by the kernel; nothing else to do

    def run(self) -> None:
        while not self.stopping:
            timeout = 0.5 if not self.held else max(0.0, min(0.5, self.held[0][0] - time.monotonic()))
            try:
                ready, _, _ = select.select([self.sock], [], [], timeout)
            except InterruptedError:
                continue
            if ready:
                try:
                    data = self.sock.recv(1 << 16)
                except BlockingIOError:
                    data = b""
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        raise
                    data = b""
                for kind, value in parse(data):
                    if kind == "packet":
                        self._hold(value)
            self._release()
        self._release(everything=True)
        try:
            self.sock.send(unbind_message(self.queue))
        except OSError:
            pass
        self.sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="hold packets of an NFQUEUE for delay ± jitter ms, then accept")
    p.add_argument("--queue", type=int, required=True)
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pidfile", required=True, help="written once the queue is bound; removed on exit")
    p.add_argument("--tag", default="", help="ignored; names the process in its command line")
    args = p.parse_args(argv)
    delayer = Delayer(args.queue, args.delay_ms, args.jitter_ms, args.seed)

    def stop(_sig: int, _frame: object) -> None:
        delayer.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        delayer.bind()
    except OSError as e:
        print(f"nfqueue delayer: {e}", file=sys.stderr)
        return 1
    tmp = f"{args.pidfile}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, args.pidfile)
    try:
        delayer.run()
    finally:
        try:
            with open(args.pidfile) as f:
                mine = f.read().strip() == str(os.getpid())
            if mine:
                os.unlink(args.pidfile)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
