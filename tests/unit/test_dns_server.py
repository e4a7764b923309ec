"""The DNS server's answer cache (agent/dns/server.py) on a fake view, without sockets: hits patch the ID (and
another spelling's question name) into cached answers; a view change drops them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import dns.flags
import dns.message
import dns.rdatatype

from pyconsul.agent.dns import codec
from pyconsul.agent.dns import resolver as r
from pyconsul.agent.dns.config import DNSConfig
from pyconsul.agent.dns.server import DNSServer

# The server imports dnspython on its first query, in a worker thread (codec.load); these tests feed it
# queries synchronously, so it is loaded up front (tests/unit/test_lean_agent.py covers the first query).
codec.load()

INSTANCES = tuple(r.Instance(f"n{i}", f"10.0.0.{i}", "dc1", (), "", 80, (), "passing") for i in range(1, 6))


class FakeViews:
    def __init__(self, on_change: Callable[[r.ViewKey], None]) -> None:
        self.on_change = on_change
        self.data: dict[r.ViewKey, Any] = {("service", "dc1", "web"): INSTANCES}
        self.entries: dict[r.ViewKey, Any] = {}
        self.stats: dict[str, int] = {}
        self.cfg = DNSConfig()

    def get(self, key: r.ViewKey) -> Any:
        return self.data.get(key, r.MISSING)

    async def close(self) -> None:
        pass


class Sent:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.out.append(data)


def query(name: str, qid: int, qtype: str = "A", **kw: Any) -> bytes:
    m = dns.message.make_query(name, qtype, **kw)
    m.id = qid
    return m.to_wire()


def run(body: Callable[[DNSServer, Sent], None]) -> None:
    async def main() -> None:
        server = DNSServer(DNSConfig(), "dc1", FakeViews, rng=random.Random(3))  # type: ignore[arg-type]
        body(server, Sent())
        await server.close()

    asyncio.run(main())


def test_hits_patch_the_id_and_rotate_shuffles() -> None:
    def body(server: DNSServer, sent: Sent) -> None:
        for qid in range(1, 9):
            server.udp_received(query("web.service.consul", qid), ("127.0.0.1", 5353), sent)  # type: ignore[arg-type]
        msgs = [dns.message.from_wire(w) for w in sent.out]
        assert [m.id for m in msgs] == list(range(1, 9))
        assert server.stats["udp_queries"] == 1 and server.stats["udp_cache_hits"] == 7
        orders = {tuple(rr.address for rr in m.answer[0]) for m in msgs}
        assert len(orders) > 1 and all(len(o) == 3 for o in orders)  # udp_answer_limit, shuffled

    run(body)


def test_another_spelling_gets_its_own_question_back() -> None:
    def body(server: DNSServer, sent: Sent) -> None:
        server.udp_received(query("web.service.consul", 1), ("127.0.0.1", 5353), sent)  # type: ignore[arg-type]
        for i, name in enumerate(("WEB.service.consul", "wEb.SeRvIcE.CoNsUl"), start=2):
            server.udp_received(query(name, i), ("127.0.0.1", 5353), sent)  # type: ignore[arg-type]
            m = dns.message.from_wire(sent.out[-1])
            assert m.id == i and m.question[0].name.to_text() == name + "."
            assert m.answer[0].name.to_text() == name + "." and len(m.answer[0]) == 3
        assert server.stats["udp_queries"] == 1 and server.stats["udp_cache_hits"] == 2
        # an EDNS cookie does not matter either
        cookie = [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"abcdefgh")]
        other = [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"hgfedcba")]
        for qid, name, opts in ((9, "Web.service.consul", cookie), (10, "weB.service.consul", other)):
            wire = query(name, qid, use_edns=0, options=opts)
            server.udp_received(wire, ("127.0.0.1", 1), sent)  # type: ignore[arg-type]
        assert server.stats["udp_queries"] == 2 and server.stats["udp_cache_hits"] == 3
        last = dns.message.from_wire(sent.out[-1])
        assert last.question[0].name.to_text() == "weB.service.consul." and last.edns == 0

    run(body)


def test_a_view_change_drops_the_answers_built_from_it() -> None:
    def body(server: DNSServer, sent: Sent) -> None:
        addr = ("127.0.0.1", 5353)
        server.udp_received(query("web.service.consul", 1, "SRV"), addr, sent)  # type: ignore[arg-type]
        server.udp_received(query("WEB.service.consul", 2, "SRV"), addr, sent)  # type: ignore[arg-type]
        assert server.cache and server.folded
        views: Any = server.views
        views.data[("service", "dc1", "web")] = INSTANCES[:1]
        server._view_changed(("service", "dc1", "web"))
        assert not server.cache and not server.folded
        server.udp_received(query("Web.service.consul", 3, "SRV"), addr, sent)  # type: ignore[arg-type]
        m = dns.message.from_wire(sent.out[-1])
        assert [rr.target.to_text() for rr in m.answer[0]] == ["n1.node.dc1.consul."]
        assert m.flags & dns.flags.AA and m.additional[0].rdtype == dns.rdatatype.A

    run(body)
