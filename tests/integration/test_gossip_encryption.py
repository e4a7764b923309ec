"""No plaintext gossip once `encrypt` is set (CVE-2020-7219 class; issue 14 item 3), with real agents.

With `encrypt` and encrypt_verify_incoming/outgoing at their defaults (true, as Consul), an agent:
- drops and counts (Stats.serf_lan.dropped_unencrypted) the plaintext messages of an agent without the key,
  so the two never form a cluster, whichever side starts the join;
- never sends plaintext: the first byte of its push-pull stream is memberlist's encrypt message type, and
  no datagram it sends parses as a plaintext memberlist packet.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
import urllib.error
from pathlib import Path

from pyconsul.agent.gossip import codec
from pyconsul.agent.gossip.messages import MsgType
from tests.harness import AgentProc, Cluster, new_block, wait_for

KEY = base64.b64encode(bytes(range(32))).decode()


def _join(a: AgentProc, addr: str) -> None:
    with contextlib.suppress(urllib.error.URLError, TimeoutError, OSError):
        a.api(f"/v1/agent/join/{addr}", "PUT", timeout=20)


def _dropped_unencrypted(a: AgentProc) -> int:
    return int(a.api("/v1/agent/self")["Stats"]["serf_lan"]["dropped_unencrypted"])


def test_keyed_and_keyless_agents_never_form_a_cluster(cluster: Cluster, tmp_path: Path) -> None:
    b = new_block()
    cfg = tmp_path / "enc.json"
    cfg.write_text(f'{{"encrypt": "{KEY}"}}')
    keyed = cluster.agent("keyed", f"{b}.1", f"-config-file={cfg}")
    plain = cluster.agent("plain", f"{b}.2")
    assert keyed.api("/v1/agent/self")["Stats"]["serf_lan"]["encrypted"] == "true"

    _join(plain, keyed.ip)  # plaintext push-pull to the keyed agent: refused
    wait_for(lambda: _dropped_unencrypted(keyed) >= 1, 20, "the keyed agent to count the plaintext")
    _join(keyed, plain.ip)  # encrypted push-pull to the keyless agent: it cannot read it
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # a bounded look: neither ever lists the other
        assert set(keyed.members()) == {"keyed"}
        assert set(plain.members()) == {"plain"}
        time.sleep(0.2)
    assert _dropped_unencrypted(keyed) >= 1


def test_a_keyed_agent_sends_no_plaintext(cluster: Cluster, tmp_path: Path) -> None:
    b = new_block()
    cfg = tmp_path / "enc.json"
    cfg.write_text(f'{{"encrypt": "{KEY}"}}')
    keyed = cluster.agent("keyed", f"{b}.1", f"-config-file={cfg}")
    fake = f"{b}.3"
    tcp = socket.create_server((fake, 8301))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((fake, 8301))
    udp.settimeout(0.2)
    first: list[bytes] = []

    def accept() -> None:
        tcp.settimeout(20)
        with contextlib.suppress(OSError):
            conn, _ = tcp.accept()
            with conn:
                conn.settimeout(10)
                first.append(conn.recv(1))

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        _join(keyed, fake)
        t.join(25)
        assert first and first[0], "the keyed agent never dialled the fake peer"
        assert first[0][0] == MsgType.ENCRYPT, f"first stream byte {first[0]!r}: plaintext gossip"
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # any datagram sent here must not be plaintext memberlist
            try:
                data, _ = udp.recvfrom(65535)
            except TimeoutError:
                continue
            try:
                plaintext = bool(codec.decode_packet(data))
            except Exception:
                plaintext = False
            assert not plaintext, "a plaintext gossip packet was sent"
    finally:
        tcp.close()
        udp.close()
