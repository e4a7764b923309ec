"""Queries that miss the DNS server's answer cache for one name and wait for the same view fill (agent/dns/server.py
`_slow`) are answered from the answer the first of them caches: one resolve-and-encode per name, not one per
waiter (bench/dns measured the stampede: docs/benchmarks.md). On a fake view, without sockets."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import dns.message

from pyconsul.agent.dns import codec
from pyconsul.agent.dns import resolver as r
from pyconsul.agent.dns.config import DNSConfig
from pyconsul.agent.dns.server import VARIANTS, DNSServer
from tests.harness import until

# The server imports dnspython on its first query, in a worker thread (codec.load); these tests feed it
# queries synchronously, so it is loaded up front (tests/unit/test_lean_agent.py covers the first query).
codec.load()

KEY: r.ViewKey = ("service", "dc1", "web")
INSTANCES = tuple(r.Instance(f"n{i}", f"10.0.0.{i}", "dc1", (), "", 80, (), "passing") for i in range(1, 6))


class SlowViews:
    """A view whose `web` entry is missing until the test completes its one fill."""

    def __init__(self, on_change: Callable[[r.ViewKey], None]) -> None:
        self.on_change = on_change
        self.data: dict[r.ViewKey, Any] = {}
        self.entries: dict[r.ViewKey, Any] = {}
        self.stats: dict[str, int] = {}
        self.cfg = DNSConfig()
        self.fut: asyncio.Future[Any] | None = None
        self.fills = 0

    def get(self, key: r.ViewKey) -> Any:
        return self.data.get(key, r.MISSING)

    def fill(self, key: r.ViewKey) -> asyncio.Future[Any]:
        if self.fut is None:
            self.fut = asyncio.get_running_loop().create_future()
            self.fills += 1
        return self.fut

    def complete(self) -> None:
        assert self.fut is not None
        self.data[KEY] = INSTANCES
        self.fut.set_result(INSTANCES)

    async def close(self) -> None:
        pass


class Sent:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.out.append(data)


def query(name: str, qid: int) -> bytes:
    m = dns.message.make_query(name, "A")
    m.id = qid
    return m.to_wire()


def test_waiters_for_one_fill_share_one_encoded_answer() -> None:
    async def main() -> None:
        server = DNSServer(DNSConfig(), "dc1", SlowViews, rng=random.Random(7))  # type: ignore[arg-type]
        views: Any = server.views
        encodes = 0
        encode = server._encode

        def counting(*a: Any) -> bytes:
            nonlocal encodes
            encodes += 1
            return encode(*a)

        server._encode = counting  # type: ignore[method-assign]
        sent = Sent()
        names = ["web.service.consul", "WEB.service.consul"] * 10  # two spellings: both cache lookups
        for qid, name in enumerate(names, start=1):
            server.udp_received(query(name, qid), ("127.0.0.1", 5353), sent)  # type: ignore[arg-type]
        await until(lambda: views.fills, 5, "the view fill to start", interval=0)
        assert not sent.out and views.fills == 1
        views.complete()
        await until(lambda: len(sent.out) == len(names), 5, "every answer", interval=0)
        msgs = [dns.message.from_wire(w) for w in sent.out]
        assert sorted(m.id for m in msgs) == list(range(1, len(names) + 1))
        for m in msgs:
            assert m.question[0].name.to_text() == names[m.id - 1] + "."
            assert m.answer[0].name.to_text() == names[m.id - 1] + "." and len(m.answer[0]) == 3
        assert encodes == VARIANTS, f"{encodes} encodes for one name (one answer and its shuffles expected)"
        assert server.stats["udp_cache_hits"] == len(names) - 1
        await server.close()

    asyncio.run(main())
