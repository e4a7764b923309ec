"""The server-RPC methods a Consul server answers: one table, name -> handler.

Each handler validates its arguments (BadRequest otherwise) and answers with plain msgpack data.
Methods (see forwarding.py for the shapes):
- apply          leader only: propose the command bytes; `reply_to_wire(result)`.
- read           leader only: run a named query under the requested consistency.
- apply_forward  any server (from a client agent): write through our leader.
- read_forward   any server (from a client agent): read, forwarding as needed.
- status         /v1/status/*, /v1/operator/raft/*.
- dc             from a client agent, for another datacenter: {"dc", "method", "args"} where method is
                 apply_forward, read_forward or status; runs it with REQUEST_DC set.
- remove_self    leader only: a leaving server asks to be removed from the Raft configuration.
Requests arriving over RPC run in a fresh context, so REQUEST_DC is "" (local) unless `dc` sets it.
ACL tokens (acl_enforce.py): a write's argument is the command bytes, or [bytes, token]; a read's or a
status's map may hold "token". Each handler sets REQUEST_TOKEN to it ("" without one: the anonymous token),
so this server enforces the caller's token, and "apply" (the leader) checks the command again: a raw RPC
client without a valid token writes nothing once ACLs are on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pyconsul.agent.errors import BadRequest, NotLeader
from pyconsul.agent.server.acl_enforce import (
    MAX_TOKEN,
    REQUEST_TOKEN,
    TxnDenied,
    check_status,
    filter_write_result,
    read_token,
    split_write,
)
from pyconsul.agent.server.common import REQUEST_DC, ReadMeta
from pyconsul.agent.state.results import WriteResult, reply_to_wire

Handler = Callable[[Any], Awaitable[Any]]

FORWARDABLE = frozenset({"apply_forward", "read_forward", "status"})
READ_MODES = ("default", "stale", "consistent")
MAX_READ_WAIT = 3600.0  # seconds; the HTTP layer caps ?wait= at 10 minutes (plus jitter)


class Local(Protocol):
    """What the RPC methods need from the server they run on (ConsulServer implements it)."""

    @property
    def is_leader(self) -> bool: ...
    @property
    def leader_id(self) -> str: ...
    async def apply_local(self, data: bytes) -> WriteResult: ...
    async def write(self, data: bytes) -> WriteResult: ...
    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, ReadMeta]: ...
    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any: ...
    def remove_server(self, server_id: str) -> None: ...
    def acl_enabled(self) -> bool: ...
    async def authorizer(self) -> Any: ...
    async def check_write(self, data: bytes) -> Any: ...


def _bytes(args: Any, method: str) -> bytes:
    """A write's command bytes; sets REQUEST_TOKEN to the token sent with them."""
    w = split_write(args)
    if w is None:
        raise BadRequest(f"{method} takes bytes")
    REQUEST_TOKEN.set(w[1])
    return w[0]


def _map(args: Any, method: str) -> dict[str, Any]:
    if not isinstance(args, dict):
        raise BadRequest(f"{method} takes a map")
    return args


def _read_args(a: dict[str, Any]) -> tuple[str, dict[str, Any], str, int, float]:
    q = a.get("args")
    if not isinstance(a.get("name"), str) or not isinstance(q, dict):
        raise BadRequest("read takes a map with a query name and its arguments")
    mode, index, wait = a.get("mode", "default"), a.get("index", 0), a.get("wait", 0.0)
    # bounds of a read's map (any msgpack value may arrive): a BadRequest, never a TypeError from decoding
    if not isinstance(mode, str) or mode not in READ_MODES:
        raise BadRequest(f"read: mode must be one of {', '.join(READ_MODES)}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 2**64:
        raise BadRequest("read: index must be an integer in [0, 2^64)")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0.0 <= wait <= MAX_READ_WAIT:
        raise BadRequest(f"read: wait must be a number of seconds in [0, {MAX_READ_WAIT:g}]")
    REQUEST_TOKEN.set(read_token(a))
    return a["name"], q, mode, index, float(wait)


class RPCMethods:
    def __init__(self, local: Local) -> None:
        self.local = local
        self.table: dict[str, Handler] = {
            "apply": self.apply,
            "read": self.read,
            "apply_forward": self.apply_forward,
            "read_forward": self.read_forward,
            "status": self.status,
            "dc": self.dc,
            "remove_self": self.remove_self,
        }

    async def dispatch(self, method: str, args: Any) -> Any:
        """The transport's on_request."""
        handler = self.table.get(method)
        if handler is None:
            raise BadRequest(f"unknown rpc method {method!r}")
        return await handler(args)

    def _leader_only(self) -> None:
        if not self.local.is_leader:
            raise NotLeader(self.local.leader_id)

    async def apply(self, args: Any) -> Any:
        data = _bytes(args, "apply")
        self._leader_only()
        if self.local.acl_enabled():
            try:
                authz = await self.local.check_write(data)
            except TxnDenied as exc:
                return reply_to_wire(exc.result)
            if authz is not None:
                return reply_to_wire(filter_write_result(authz, await self.local.apply_local(data)))
        return reply_to_wire(await self.local.apply_local(data))

    async def read(self, args: Any) -> Any:
        q = _read_args(_map(args, "read"))
        self._leader_only()
        value, meta = await self.local.read(*q)
        return {"value": value, "index": meta.index}

    async def apply_forward(self, args: Any) -> Any:
        return reply_to_wire(await self.local.write(_bytes(args, "apply_forward")))

    async def read_forward(self, args: Any) -> Any:
        value, meta = await self.local.read(*_read_args(_map(args, "read_forward")))
        return {"value": value, "index": meta.index, "known_leader": meta.known_leader,
                "last_contact": meta.last_contact_ms}

    async def status(self, args: Any) -> Any:
        a = _map(args, "status")
        REQUEST_TOKEN.set(read_token(a))
        extra = a.get("args")
        return await self.local.status(str(a.get("what")), extra if isinstance(extra, dict) else None)

    async def dc(self, args: Any) -> Any:
        a = _map(args, "dc")
        method = a.get("method")
        if method not in FORWARDABLE:
            raise BadRequest("dc takes a map with a forwardable method")
        REQUEST_DC.set(str(a.get("dc", "")))  # this request's own context (the transport runs a task per request)
        return await self.table[str(method)](a.get("args"))

    async def remove_self(self, args: Any) -> Any:
        """args: the leaving server's ID, or [ID, token]. With ACLs on it needs operator:write (a raw client
        must not remove a Raft peer); a leaving server without that right is removed by the leader's
        reconcile once it has left the LAN pool."""
        if isinstance(args, list) and len(args) == 2 and isinstance(args[1], str):
            server_id, token = str(args[0]), args[1][:MAX_TOKEN]
        else:
            server_id, token = str(args), ""
        self._leader_only()
        if self.local.acl_enabled():
            REQUEST_TOKEN.set(token)
            authz = await self.local.authorizer()
            if authz is not None:
                check_status(authz, "remove_peer", {})
        self.local.remove_server(server_id)
        return True
