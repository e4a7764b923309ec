"""Forged Raft traffic on port 8300 from a non-member cannot disrupt a healthy cluster (issue 11, item 1).

Measured before the fix: one AppendEntries with term 2**64-1 left every server pre-candidate forever (the next
term fitted neither the wire nor the disk), and a forged term+1 forced a multi-second write outage each time.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from pyconsul.agent.raft import wire
from pyconsul.agent.raft.messages import AppendRequest, Entry, EntryKind, TimeoutNow, VoteRequest
from tests.harness import AgentProc, Cluster, new_block, wait_for
from tests.integration.test_raft_cluster import http, leader_of, start_bj

pytestmark = pytest.mark.integration


def raft_stats(p: AgentProc) -> dict[str, str]:
    stats: dict[str, str] = p.api("/v1/agent/self")["Stats"]["consul"]
    return stats


def send_forged(ip: str, frames: list[list[object]]) -> None:
    """Dial a server's RPC port as a server that is not in the configuration and send frames."""
    with socket.create_connection((ip, 8300), timeout=5) as s:
        s.sendall(wire.frame([wire.Kind.HELLO, "forger", "bj"]))
        for f in frames:
            s.sendall(wire.frame(f))
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass


def test_forged_terms_from_a_non_member_change_nothing(cluster: Cluster) -> None:
    ip = new_block()
    ps = start_bj(cluster, ip)
    leader = leader_of(ps)
    conf = json.loads(http(ps[0], "/v1/operator/raft/configuration")[2])
    ids = {s["Address"].split(":")[0]: s["ID"] for s in conf["Servers"]}
    term = max(int(raft_stats(p)["raft_term"]) for p in ps)
    assert http(ps[0], "/v1/kv/before", "PUT", b"1")[0] == 200

    for p in ps:
        to = ids[p.ip]
        send_forged(p.ip, [
            wire.encode_message(AppendRequest(term + 1, "forger", to, 0, 0, (), 0, 0)),
            wire.encode_message(AppendRequest(term, "forger", to, 0, 0, (Entry(term, 10**6, EntryKind.NORMAL,
                                                                                 b"x"),), 0, 0)),
            wire.encode_message(TimeoutNow(term, "forger", to)),
            wire.encode_message(VoteRequest(term + 5, "forger", to, 10**6, term + 4, False, True)),
        ])
    for p in ps:  # a term that leaves no next term is malformed: the connection is dropped, nothing persisted
        send_forged(p.ip, [[wire.Kind.APPEND_REQUEST, 2**64 - 1, "forger", ids[p.ip], 0, 0, [], 0, 0]])

    # writes keep committing (each within a generous ceiling) and nobody changed term or leader
    for i in range(10):
        t0 = time.monotonic()
        status = http(ps[i % 3], f"/v1/kv/after{i}", "PUT", b"1", timeout=30)[0]
        assert status == 200 and time.monotonic() - t0 < 10
    assert leader_of(ps) == leader
    assert {int(raft_stats(p)["raft_term"]) for p in ps} == {term}
    wait_for(lambda: all("out of range" in p.log() for p in ps), 10, "every server logging the refused frame")
