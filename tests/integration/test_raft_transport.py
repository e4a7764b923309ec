"""The server RPC transport on loopback: one-way Raft messages and forwarded requests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyconsul.agent.errors import Internal, Unavailable
from pyconsul.agent.raft.messages import Message, TimeoutNow, VoteRequest
from pyconsul.agent.raft.transport import Transport
from tests.harness import new_block

pytestmark = pytest.mark.integration


async def _scenario(ip: str) -> None:
    got: list[Message] = []

    async def handler(method: str, args: Any) -> Any:
        if method == "echo":
            return args
        raise ValueError(f"no such method {method}")

    a = Transport("a", "bj", (f"{ip}.1", 8300), got.append, handler)
    b = Transport("b", "bj", (f"{ip}.2", 8300), got.append, handler)
    await a.start()
    try:
        # b dials a before a's peer exists; messages queue and flow once connected
        b.send(f"{ip}.1:8300", VoteRequest(1, "b", "a", 0, 0))
        for i in range(100):
            b.send(f"{ip}.1:8300", TimeoutNow(i, "b", "a"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(got) < 101 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert got[0] == VoteRequest(1, "b", "a", 0, 0)
        assert [m.term for m in got[1:]] == list(range(100)), "order is kept on one connection"
        assert await b.request(f"{ip}.1:8300", "echo", {"k": [1, "x"]}) == {"k": [1, "x"]}
        with pytest.raises(Internal, match="no such method"):  # an untyped remote error
            await b.request(f"{ip}.1:8300", "nope", None)
        with pytest.raises(Unavailable):  # nothing listens there
            await b.request(f"{ip}.9:8300", "echo", 1, timeout=1.0)
        # messages to a dead address are dropped (bounded queue), never block the sender
        for i in range(5000):
            b.send(f"{ip}.9:8300", TimeoutNow(i, "b", "x"))
        assert b.stats.dropped_queue_full > 0
    finally:
        await a.stop()
        await b.stop()


def test_transport_messages_and_requests() -> None:
    asyncio.run(_scenario(new_block()))
