"""A server-RPC request whose arguments cannot be encoded (an integer beyond uint64, an unsupported
type) fails at once with a typed error and leaves no pending future behind; the connection keeps working."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyconsul.agent.errors import Internal
from pyconsul.agent.raft.transport import Transport
from tests.harness import new_block


def test_unencodable_request_leaves_nothing_pending() -> None:
    ip = new_block()

    async def handler(method: str, args: Any) -> Any:
        return args

    async def main() -> None:
        a = Transport("a", "bj", (f"{ip}.1", 8300), lambda m: None, handler)
        b = Transport("b", "bj", (f"{ip}.2", 8300), lambda m: None, handler)
        await a.start()
        try:
            addr = f"{ip}.1:8300"
            assert await b.request(addr, "echo", {"n": 1}) == {"n": 1}
            for bad in ({"n": 1 << 64}, {"n": -(1 << 64)}, {"x": object()}):
                with pytest.raises(Internal, match="cannot be encoded"):
                    await b.request(addr, "echo", bad, timeout=5)
            assert b._clients[addr].pending == {}
            assert await b.request(addr, "echo", {"n": (1 << 64) - 1}) == {"n": (1 << 64) - 1}
            assert b._clients[addr].pending == {}
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(asyncio.wait_for(main(), 20))
