"""The DNS interface against real agents: dig and dnspython on -dns-port (agent/dns).

Services and nodes, healthy instances only (critical never, warning not with only_passing), tags and RFC 2782
names, SRV with additional addresses, NXDOMAIN with the SOA, `.<dc>` names across two datacenters, truncation
(TC=1) and the TCP retry, recursors (a stub upstream on loopback; SERVFAIL when it does not answer), and
malformed packets (answered with errors, counted in `pyconsul info`, the agent keeps answering).
"""

from __future__ import annotations

import functools
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration

PORT = 8600


def ask(p: AgentProc, name: str, qtype: str = "A", *, tcp: bool = False, **kw: Any) -> dns.message.Message:
    q = dns.message.make_query(name, qtype, **kw)
    if tcp:
        return dns.query.tcp(q, p.ip, port=PORT, timeout=5)
    return dns.query.udp(q, p.ip, port=PORT, timeout=5)


def addrs(msg: dns.message.Message) -> set[str]:
    return {rr.address for s in msg.answer if s.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rr in s}


def register(p: AgentProc, node: str, address: str, service: str, status: str = "passing", *,
             tags: tuple[str, ...] = (), port: int = 80, sid: str = "") -> None:
    sid = sid or service
    p.api("/v1/catalog/register", "PUT", {
        "Node": node, "Address": address, "NodeMeta": {"rack": "r1"},
        "Service": {"ID": sid, "Service": service, "Port": port, "Tags": list(tags)},
        "Check": {"CheckID": f"chk-{sid}", "Name": "health", "Status": status, "ServiceID": sid},
    })


def set_status(p: AgentProc, node: str, sid: str, status: str) -> None:
    p.api("/v1/catalog/register", "PUT", {
        "Node": node, "Address": p.api(f"/v1/catalog/node/{node}")["Node"]["Address"],
        "Check": {"CheckID": f"chk-{sid}", "Name": "health", "Status": status, "ServiceID": sid},
    })


def dig(p: AgentProc, *args: str) -> str:
    if shutil.which("dig") is None:
        pytest.fail("dig is not installed (Debian package bind9-dnsutils; scripts/bootstrap.sh installs it)")
    cp = subprocess.run(["dig", f"@{p.ip}", "-p", str(PORT), "+time=3", "+tries=1", *args],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp.stdout


class StubUpstream:
    """A recursor for the test: UDP and TCP on ip:port, answering every A question with 192.0.2.7."""

    def __init__(self, ip: str, port: int) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((ip, port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((ip, port))
        self.tcp.listen(8)
        self.udp.settimeout(0.2)
        self.tcp.settimeout(0.2)
        self.running = True
        self.answering = True
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def _reply(self, data: bytes) -> bytes:
        q = dns.message.from_wire(data)
        resp = dns.message.make_response(q)
        resp.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.7"))
        return resp.to_wire()

    def _serve_udp(self) -> None:
        while self.running:
            try:
                data, addr = self.udp.recvfrom(4096)
            except OSError:
                continue
            if self.answering:
                self.udp.sendto(self._reply(data), addr)

    def _serve_tcp(self) -> None:
        while self.running:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    (n,) = struct.unpack("!H", conn.recv(2))
                    data = conn.recv(n)
                    if self.answering:
                        w = self._reply(data)
                        conn.sendall(struct.pack("!H", len(w)) + w)
                except OSError:
                    pass

    def close(self) -> None:
        self.running = False
        for t in self.threads:
            t.join(timeout=2)
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def stub() -> Iterator[StubUpstream]:
    ip = new_block()
    s = StubUpstream(f"{ip}.9", 5353)
    s.ip = ip  # type: ignore[attr-defined]
    try:
        yield s
    finally:
        s.close()


def test_dns_single_datacenter(cluster: Cluster, stub: StubUpstream) -> None:
    ip = new_block()
    upstream = f"{stub.ip}.9:5353"  # type: ignore[attr-defined]
    server = cluster.agent("s1", f"{ip}.1", "-server", "-bootstrap", f"-dns-port={PORT}",
                           f'-hcl=recursors = ["{upstream}"]',
                           '-hcl=dns_config {\n enable_truncate = true\n recursor_timeout = "1s"\n}')
    client = cluster.agent("c1", f"{ip}.2", f"-join={ip}.1", f"-dns-port={PORT}",
                           "-hcl=dns_config { only_passing = true }")
    wait_for(lambda: server.api("/v1/status/leader"), 20, "a leader")
    register(server, "ext1", "10.1.0.1", "web", tags=("v1", "primary"))
    register(server, "ext2", "10.1.0.2", "web", "warning", tags=("v2",))
    register(server, "ext3", "10.1.0.3", "web", "critical")

    # A: the critical instance never answers; the warning one only without only_passing (the client's)
    wait_for(lambda: addrs(ask(server, "web.service.consul")) == {"10.1.0.1", "10.1.0.2"}, 20, "web's A records")
    assert addrs(ask(client, "web.service.consul")) == {"10.1.0.1"}
    assert addrs(ask(server, "WEB.Service.Consul.")) == {"10.1.0.1", "10.1.0.2"}  # case-insensitive
    assert addrs(ask(server, "v2.web.service.consul")) == {"10.1.0.2"}
    assert addrs(ask(server, "web.service.dc1.consul")) == {"10.1.0.1", "10.1.0.2"}

    # SRV: targets are node names, with their addresses in the additional section; RFC 2782 names
    srv = ask(server, "web.service.consul", "SRV")
    targets = {rr.target.to_text() for s in srv.answer for rr in s}
    assert targets == {"ext1.node.dc1.consul.", "ext2.node.dc1.consul."}
    assert {(s.name.to_text(), rr.address) for s in srv.additional if s.rdtype == dns.rdatatype.A for rr in s} == {
        ("ext1.node.dc1.consul.", "10.1.0.1"), ("ext2.node.dc1.consul.", "10.1.0.2")}
    rfc = ask(server, "_web._v1.service.consul", "SRV")
    assert [rr.target.to_text() for s in rfc.answer for rr in s] == ["ext1.node.dc1.consul."]
    assert len(ask(server, "_web._tcp.service.consul", "SRV").answer[0]) == 2
    out = dig(server, "web.service.consul", "SRV", "+noall", "+answer", "+additional")
    assert "IN\tSRV\t1 1 80 ext1.node.dc1.consul." in out and "ext1.node.dc1.consul.\t0\tIN\tA\t10.1.0.1" in out

    # nodes; unknown names are NXDOMAIN with the SOA in the authority section
    assert addrs(ask(server, "ext1.node.consul")) == {"10.1.0.1"}
    assert addrs(ask(client, "s1.node.dc1.consul")) == {f"{ip}.1"}
    for name in ("nope.service.consul", "ghost.node.consul", "ext3.web.service.consul"):
        nx = ask(server, name)
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA, name
    assert "status: NXDOMAIN" in dig(server, "nope.service.consul")

    # a check going critical takes the instance out of the answers (the blocking watcher wakes)
    t0 = time.monotonic()
    set_status(server, "ext2", "web", "critical")
    wait_for(lambda: addrs(ask(server, "web.service.consul")) == {"10.1.0.1"}, 10, "ext2 gone from DNS")
    assert time.monotonic() - t0 < 10
    set_status(server, "ext1", "web", "warning")
    wait_for(lambda: ask(client, "web.service.consul").rcode() == dns.rcode.NXDOMAIN, 10,
             "no passing instance left for only_passing")

    assert addrs(ask(server, "web.service.consul")) == {"10.1.0.1"}  # cached while "big" is written below
    # truncation: 20 instances; plain UDP gets udp_answer_limit (3) and TC=1, TCP gets all of them
    for i in range(20):
        register(server, f"big{i}", f"10.2.0.{i + 1}", "big", sid=f"big{i}")
    wait_for(lambda: len(addrs(ask(server, "big.service.consul", tcp=True))) == 20, 20, "20 big instances")
    udp = ask(server, "big.service.consul")
    assert len(addrs(udp)) == 3 and udp.flags & dns.flags.TC
    out = dig(server, "+noedns", "+ignore", "big.service.consul")
    assert "flags: qr aa tc rd ra;" in out, out  # ra: recursors are configured
    retried = dig(server, "+noedns", "big.service.consul")  # dig retries over TCP on TC=1
    assert "Truncated, retrying in TCP mode" in retried and retried.count("\tIN\tA\t10.2.0.") == 20
    big_srv = ask(server, "big.service.consul", "SRV", use_edns=0, payload=4096)
    assert len(big_srv.answer[0]) == 20 and not big_srv.flags & dns.flags.TC  # EDNS0: it all fits

    # recursors: names outside the domain go to the stub upstream; SERVFAIL when it does not answer
    rec = ask(server, "example.test")
    assert addrs(rec) == {"192.0.2.7"}  # the upstream's answer, passed on as is
    assert addrs(ask(server, "example.test", tcp=True)) == {"192.0.2.7"}
    stub.answering = False
    assert ask(server, "other.test").rcode() == dns.rcode.SERVFAIL
    assert ask(client, "example.test").rcode() == dns.rcode.REFUSED  # no recursors there

    # malformed packets: errors (or silence for non-queries), counted; the agent keeps answering
    good = dns.message.make_query("web.service.consul", "A").to_wire()
    bad = [good[:11], good[:20], good + b"junk", good[:4] + b"\x00\x02" + good[6:],
           good[:2] + b"\x28\x00" + good[4:], b"\xff" * 600, good[:12] + b"\xc0\x0c\x00\x01\x00\x01"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    rcodes = []
    for data in bad:
        sock.sendto(data, (server.ip, PORT))
    with sock:
        for _ in range(5):
            try:
                rcodes.append(sock.recv(4096)[3] & 0xF)
            except TimeoutError:
                break
    assert set(rcodes) <= {1, 4, 5} and 1 in rcodes and 4 in rcodes  # FORMERR, NOTIMP
    with socket.create_connection((server.ip, PORT), timeout=5) as conn:  # over TCP: a bad message, then a good one
        junk = good[:12] + b"\x05abc"
        conn.sendall(struct.pack("!H", len(junk)) + junk + struct.pack("!H", len(good)) + good)
        replies = []
        for _ in range(2):
            (n,) = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))
            replies.append(dns.message.from_wire(conn.recv(n, socket.MSG_WAITALL)))
    assert replies[0].rcode() == dns.rcode.FORMERR and addrs(replies[1]) == {"10.1.0.1"}
    with socket.create_connection((server.ip, PORT), timeout=5) as conn:
        conn.sendall(b"\x10\x00half a message")  # then hang up
    assert addrs(ask(server, "web.service.consul")) == {"10.1.0.1"}
    stats = server.api("/v1/agent/self")["Stats"]["dns"]
    assert int(stats["errors_malformed"]) >= 2 and int(stats["errors_opcode"]) >= 1
    assert int(stats["errors_dropped_short"]) >= 1
    # catalog writes to other services (the 20 "big" instances) kept web's cached view: one batched index
    # check per change, none failed, on the server and on the client (whose check is forwarded)
    assert int(stats["views_checks"]) >= 1 and int(stats["views_kept"]) >= 1
    assert stats["views_check_errors"] == "0"
    cstats = client.api("/v1/agent/self")["Stats"]["dns"]
    assert int(cstats["views_checks"]) >= 1 and cstats["views_check_errors"] == "0"
    info = server.cli("info").stdout
    assert "dns:" in info and "errors_malformed" in info


def test_dns_across_datacenters(cluster: Cluster) -> None:
    ip = new_block()
    bj = cluster.agent("bj1", f"{ip}.1", "-server", "-bootstrap", "-datacenter=BJ", f"-dns-port={PORT}")
    sh = cluster.agent("sh1", f"{ip}.2", "-server", "-bootstrap", "-datacenter=SH", f"-dns-port={PORT}")
    bj.cli("join", "-wan", f"{ip}.2")
    for p in (bj, sh):
        wait_for(functools.partial(p.api, "/v1/status/leader"), 20, f"{p.name} leader")
    register(sh, "shweb", "10.3.0.1", "web")
    register(bj, "bjweb", "10.4.0.1", "web")
    wait_for(lambda: addrs(ask(bj, "web.service.sh.consul")) == {"10.3.0.1"}, 30, "SH's web through BJ's DNS")
    assert addrs(ask(bj, "web.service.consul")) == {"10.4.0.1"}
    assert addrs(ask(sh, "web.service.bj.consul")) == {"10.4.0.1"}
    srv = ask(bj, "web.service.sh.consul", "SRV")
    assert [rr.target.to_text() for s in srv.answer for rr in s] == ["shweb.node.sh.consul."]
    assert addrs(ask(bj, "sh1.node.sh.consul")) == {f"{ip}.2"}
    assert ask(bj, "web.service.nowhere.consul").rcode() == dns.rcode.SERVFAIL
    out = dig(bj, "web.service.sh.consul", "+short")
    assert out.split() == ["10.3.0.1"]


def test_dns_settings_reload(cluster: Cluster, tmp_path: Any) -> None:
    ip = new_block()
    conf = tmp_path / "dns.json"
    conf.write_text('{"dns_config": {"only_passing": false, "service_ttl": {"*": "5s"}}}')
    server = cluster.agent("r1", f"{ip}.1", "-server", "-bootstrap", f"-dns-port={PORT}", f"-config-file={conf}")
    wait_for(lambda: server.api("/v1/status/leader"), 20, "a leader")
    register(server, "ok1", "10.5.0.1", "api")
    register(server, "warn1", "10.5.0.2", "api", "warning")
    wait_for(lambda: addrs(ask(server, "api.service.consul")) == {"10.5.0.1", "10.5.0.2"}, 20, "both instances")
    assert {rr.ttl for rr in ask(server, "api.service.consul").answer} == {5}
    conf.write_text('{"dns_config": {"only_passing": true, "service_ttl": {"api": "30s"}}, "domain": "example"}')
    server.cli("reload")
    wait_for(lambda: addrs(ask(server, "api.service.example")) == {"10.5.0.1"}, 10, "only_passing after reload")
    assert {rr.ttl for rr in ask(server, "api.service.example").answer} == {30}
    assert ask(server, "api.service.consul").rcode() == dns.rcode.REFUSED  # no longer our domain
