"""How a client agent (no -server) reaches the servers: every KV/catalog request goes over
server RPC to an alive server of its datacenter, found through the LAN pool's tags."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from pyconsul.agent.errors import DialFailed, NoLeader, Unavailable
from pyconsul.agent.gossip.serf import Member
from pyconsul.agent.raft.transport import Transport
from pyconsul.agent.server import bootstrap
from pyconsul.agent.server.acl_enforce import write_args
from pyconsul.agent.server.common import RPC_HOLD_TIMEOUT, ReadMeta, bulk_time, read_time, remote_dc
from pyconsul.agent.server.forwarding import read_reply, read_request, read_request_status, request_token
from pyconsul.agent.state.results import WriteResult, reply_from_wire


class ClientBackend:
    def __init__(self, transport: Transport, members: Callable[[], list[Member]], datacenter: str) -> None:
        self.transport = transport
        self.members = members
        self.datacenter = datacenter
        self.rng = random.Random()
        self.agent_token: Callable[[], str] = str  # acl.tokens.agent: what our own requests carry (agent.py)

    def _servers(self) -> list[str]:
        out = []
        for m in self.members():
            s = bootstrap.server_of(m, self.datacenter) if m.status == 1 else None
            if s is not None:
                out.append(s.address)
        self.rng.shuffle(out)
        return out

    async def _call(self, method: str, args: Any, timeout: float, *, write: bool = False) -> Any:
        """Ask up to three alive servers in turn. Another server is tried after DialFailed (nothing was
        sent); for reads also after a connection lost mid-request. A write that may have reached a server
        is never resent to another: that could apply a non-idempotent command twice."""
        retryable = DialFailed if write else Unavailable
        dc = remote_dc(self.datacenter)
        if dc:  # a local server forwards it over the WAN
            method, args = "dc", {"dc": dc, "method": method, "args": args}
        servers = self._servers()
        if not servers:
            raise NoLeader()
        last = Unavailable("no server answered")
        for addr in servers[:3]:
            try:
                return await self.transport.request(addr, method, args, timeout=timeout)
            except Unavailable as exc:  # any other error is the answer
                if not isinstance(exc, retryable):
                    raise
                last = exc
        raise last

    async def write(self, data: bytes) -> WriteResult:
        args = write_args(data, request_token(self.agent_token))  # the server enforces the caller's token
        return reply_from_wire(await self._call("apply_forward", args, RPC_HOLD_TIMEOUT * 2 + bulk_time(len(data)),
                                                write=True))

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, ReadMeta]:
        req = read_request(name, args, mode, index, wait, request_token(self.agent_token))
        return read_reply(await self._call("read_forward", req, RPC_HOLD_TIMEOUT * 2 + wait + read_time(name)))

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        return await self._call("status", read_request_status(what, args, request_token(self.agent_token)),
                                RPC_HOLD_TIMEOUT * 2)
