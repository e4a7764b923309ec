"""Capture what real serf agents send each other, as golden fixtures for the gossip codec.

Writes tests/unit/data/serf_packets.json (read by tests/unit/test_serf_fixtures.py). Not run in CI:
it needs the `serf` binary (Debian `serf`) and root (CAP_NET_RAW) for an AF_PACKET socket on `lo`,
nothing else (no tcpdump/tshark). Run from the repository root:

    sudo .venv/bin/python tests/vectors/capture_serf.py > tests/unit/data/serf_packets.json

For each mode (plain, and `-encrypt` with a fixed key) it runs three serf agents on 127.77.250.x
(plain) or 127.77.251.x (encrypted), port 7946, with tags: beta and gamma join alpha, alpha fires a
user event and a query, gamma is killed with SIGKILL (so suspect and dead messages are gossiped),
then beta leaves gracefully. Every UDP datagram and every TCP stream (both directions, reassembled)
on port 7946 to or from those addresses is recorded as hex, in arrival order. RPC traffic (port 7373)
is ignored. Nonces, sequence numbers, incarnations and Lamport times vary from run to run, so a new
capture is not byte-identical to the committed one; the tests assert structure, not those values.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
GOSSIP_PORT = 7946
KEY = base64.b64encode(bytes(range(16))).decode()  # the fixed key of the encrypted capture


class Sniffer(threading.Thread):
    """Loopback frames to or from addresses of one /24, reassembled into UDP datagrams and TCP streams."""

    def __init__(self, prefix: str) -> None:
        super().__init__(daemon=True)
        self.net = ipaddress.ip_network(f"{prefix}.0/24")
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.udp: list[dict[str, Any]] = []
        self.tcp: dict[tuple[str, int, str, int], dict[str, Any]] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if ready:
                frame, addr = self.sock.recvfrom(1 << 17)
                if addr[2] != PACKET_OUTGOING:  # lo shows each frame twice: keep the incoming copy
                    self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        ip = frame[14:]  # lo has a zeroed Ethernet header
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        proto, src, dst = ip[9], socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        # memberlist dials TCP without binding, so streams come from 127.0.0.1: one end in the block is enough
        if ipaddress.ip_address(src) not in self.net and ipaddress.ip_address(dst) not in self.net:
            return
        seg = ip[ihl:total]
        at = round(time.monotonic() - self.t0, 3)
        if proto == 17:
            sport, dport = struct.unpack_from(">HH", seg)
            if GOSSIP_PORT in (sport, dport):
                self.udp.append({"t": at, "src": f"{src}:{sport}", "dst": f"{dst}:{dport}", "hex": seg[8:].hex()})
        elif proto == 6:
            sport, dport, seq = struct.unpack_from(">HHI", seg)
            flags, off = seg[13], (seg[12] >> 4) * 4
            if GOSSIP_PORT not in (sport, dport):
                return
            key = (src, sport, dst, dport)
            if flags & 0x02:  # SYN: the stream starts at seq + 1
                self.tcp[key] = {"t": at, "isn": seq, "chunks": {}}
                return
            stream = self.tcp.get(key)
            payload = seg[off:]
            if stream is not None and payload:
                stream["chunks"][(seq - stream["isn"] - 1) % (1 << 32)] = payload

    def streams(self) -> list[dict[str, Any]]:
        out = []
        for (src, sport, dst, dport), s in sorted(self.tcp.items(), key=lambda kv: float(kv[1]["t"])):
            data = bytearray()
            for pos, chunk in sorted(s["chunks"].items()):
                if pos > len(data):
                    raise RuntimeError(f"gap in TCP stream {src}:{sport} -> {dst}:{dport}")
                data[pos : pos + len(chunk)] = chunk
            if data:
                out.append({"t": s["t"], "src": f"{src}:{sport}", "dst": f"{dst}:{dport}", "hex": data.hex()})
        return out


def serf(*args: str) -> str:
    return subprocess.run(["serf", *args], check=True, capture_output=True, text=True, timeout=30).stdout


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def status(rpc: str) -> dict[str, str]:
    return {m["name"]: m["status"] for m in json.loads(serf("members", f"-rpc-addr={rpc}", "-format=json"))["members"]}


def capture(mode: str, prefix: str, tmp: Path) -> dict[str, Any]:
    sniffer = Sniffer(prefix)
    sniffer.start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    nodes = {"alpha": (1, "role=web"), "beta": (2, "role=db"), "gamma": (3, "role=cache")}
    try:
        for name, (host, tag) in nodes.items():
            ip = f"{prefix}.{host}"
            argv = ["serf", "agent", f"-node={name}", f"-bind={ip}:{GOSSIP_PORT}", f"-rpc-addr={ip}:7373",
                    "-tag", tag, "-tag", f"dc={mode}", "-log-level=debug"]
            if mode == "encrypted":
                argv.append(f"-encrypt={KEY}")
            if name != "alpha":
                argv.append(f"-join={prefix}.1:{GOSSIP_PORT}")
            log = (tmp / f"{mode}-{name}.log").open("wb")
            procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            wait_until(lambda ip=ip: status(f"{ip}:7373"), 20, f"{name} RPC")
        alpha = f"{prefix}.1:7373"
        wait_until(lambda: set(status(alpha).values()) == {"alive"} and len(status(alpha)) == 3, 20, "3 alive")
        serf("event", f"-rpc-addr={alpha}", "deploy", "v42")
        serf("query", f"-rpc-addr={alpha}", "-timeout=1s", "uptime", "now")
        time.sleep(2)  # a few probe rounds (ping/ack) with everyone alive
        procs["gamma"].send_signal(signal.SIGKILL)
        procs["gamma"].wait()
        wait_until(lambda: status(alpha).get("gamma") == "failed", 30, "gamma failed")
        serf("leave", f"-rpc-addr={prefix}.2:7373")
        procs["beta"].wait(timeout=20)
        wait_until(lambda: status(alpha).get("beta") == "left", 20, "beta left")
        time.sleep(0.5)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        sniffer.stop.set()
        sniffer.join()
    return {"mode": mode, "key_base64": KEY if mode == "encrypted" else None,
            "udp": sniffer.udp, "tcp": sniffer.streams()}


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (an AF_PACKET socket on lo)")
    version = serf("version").splitlines()
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "serf"], capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory(prefix="capture-serf-") as tmp:
        captures = [capture("plain", "127.77.250", Path(tmp)), capture("encrypted", "127.77.251", Path(tmp))]
    doc = {
        "description": (
            "Packets sent between three real serf agents (alpha, beta -join alpha, gamma -join alpha) on loopback, "
            "captured with an AF_PACKET socket on lo by tests/vectors/capture_serf.py: joins, a user event "
            "'deploy', a query 'uptime', gamma killed with SIGKILL (suspect, dead), beta leaving gracefully. "
            "udp: each datagram's payload; tcp: each connection's bytes in one direction, reassembled. "
            "The encrypted capture used -encrypt=key_base64 (UDP packets: whole payload encrypted, no AAD; "
            "TCP: messageType 10 + 4-byte length header as AAD)."
        ),
        "serf_version": " / ".join(version),
        "debian_package": f"serf {dpkg}",
        "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "captures": captures,
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
