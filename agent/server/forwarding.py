"""Sending a request to the server that can answer it: the leader of our datacenter, or any server of
another datacenter (`?dc=`, Consul's forwardDC). Shared by servers and client agents (light: no Raft).

Server-RPC methods and what they expect (both ends are pyconsul agents of the same revision):
- "apply" (leader only) / "apply_forward" (any server; it forwards to its leader): command bytes ->
  `reply_to_wire(result)`.
- "read" (leader only) / "read_forward" (any server): `read_request(...)` -> {"value", "index",
  "known_leader"?, "last_contact"?}.
- "status": {"what", "args"} -> the answer of ConsulServer.status.
ACL tokens ride along (acl_enforce.py): a write is [command bytes, token] when there is one; a read's and a
status's map hold "token". The caller's token (REQUEST_TOKEN), or for the agent's own requests its agent token.
Failures come back as typed errors (agent/raft/transport.py). A reply or a write over one frame (64 MiB: a
large read, a snapshot, a restore) is streamed by the transport; a write's timeout grows with its size
(common.bulk_time).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pyconsul.agent.server.acl_enforce import REQUEST_TOKEN, write_args
from pyconsul.agent.server.common import (
    RPC_HOLD_TIMEOUT,
    ReadMeta,
    bulk_time,
    pick_dc_server,
    read_time,
    remote_dc,
)
from pyconsul.agent.state.results import WriteResult, reply_from_wire


class RequestTransport(Protocol):
    """The request half of agent.raft.transport.Transport."""

    async def request(self, address: str, method: str, args: Any, timeout: float = 10.0) -> Any: ...


def read_request(name: str, args: dict[str, Any], mode: str, index: int, wait: float,
                 token: str = "") -> dict[str, Any]:
    req = {"name": name, "args": args, "mode": mode, "index": index, "wait": wait}
    if token:  # the caller's ACL token: the server that answers enforces it (acl_enforce.py)
        req["token"] = token
    return req


def read_request_status(what: str, args: dict[str, Any] | None, token: str) -> dict[str, Any]:
    req: dict[str, Any] = {"what": what, "args": args or {}}
    if token:
        req["token"] = token
    return req


def request_token(agent_token: Callable[[], str]) -> str:
    """The token a forwarded request carries: the one of the request being served (acl_enforce.REQUEST_TOKEN),
    or for the agent's own requests `agent_token()` (acl.tokens.agent)."""
    t = REQUEST_TOKEN.get()
    return agent_token() if t is None else t


def read_reply(res: Any, last_contact_ms: int | None = None) -> tuple[Any, ReadMeta]:
    """A read answer as (value, meta). `last_contact_ms` overrides the answer's (a follower that asked
    its leader reports its own contact with that leader)."""
    contact = int(res.get("last_contact", 0)) if last_contact_ms is None else last_contact_ms
    return res["value"], ReadMeta(int(res["index"]), bool(res.get("known_leader", True)), contact)


class Forwarder:
    def __init__(self, transport: RequestTransport, datacenter: str,
                 wan_members: Callable[[], Iterable[Any]] = lambda: (), rng: random.Random | None = None) -> None:
        self.transport = transport
        self.datacenter = datacenter
        self.wan_members = wan_members
        self.rng = rng or random.Random()
        self.agent_token: Callable[[], str] = str  # acl.tokens.agent: what our own forwarded requests carry

    def dc_server(self) -> str:
        """For a request aimed at another datacenter (`?dc=`): one of its servers, else "".
        NoPathToDatacenter when that datacenter has no alive server in the WAN pool."""
        dc = remote_dc(self.datacenter)
        return pick_dc_server(self.wan_members, dc, self.rng) if dc else ""

    async def write(self, address: str, data: bytes, *, to_leader: bool) -> WriteResult:
        """`to_leader`: `address` is our leader ("apply"); else any server that forwards ("apply_forward")."""
        method, timeout = ("apply", RPC_HOLD_TIMEOUT) if to_leader else ("apply_forward", RPC_HOLD_TIMEOUT * 2)
        args = write_args(data, request_token(self.agent_token))
        return reply_from_wire(await self.transport.request(address, method, args,
                                                            timeout=timeout + bulk_time(len(data))))

    async def read(self, address: str, name: str, args: dict[str, Any], mode: str, index: int, wait: float, *,
                   to_leader: bool, last_contact_ms: int | None = None) -> tuple[Any, ReadMeta]:
        method, timeout = ("read", RPC_HOLD_TIMEOUT) if to_leader else ("read_forward", RPC_HOLD_TIMEOUT * 2)
        req = read_request(name, args, mode, index, wait, request_token(self.agent_token))
        res = await self.transport.request(address, method, req,
                                           timeout=timeout + wait + read_time(name))
        return read_reply(res, last_contact_ms)

    async def status(self, address: str, what: str, args: dict[str, Any] | None, *, to_leader: bool) -> Any:
        timeout = RPC_HOLD_TIMEOUT if to_leader else RPC_HOLD_TIMEOUT * 2
        req = read_request_status(what, args, request_token(self.agent_token))
        return await self.transport.request(address, "status", req, timeout=timeout)
