"""ACL enforcement where the state is: which permission a write command needs, and what a read may show.

Pure: no I/O, no asyncio. The server that applies a write or answers a read calls these with the Authorizer of
the request's token (agent/acl/authz.py), so a client agent's pre-check is never what protects the data: a
forwarded read or write carries its caller's token (REQUEST_TOKEN, server-RPC `token`) and the answering
server resolves and enforces it (Consul 1.7 does the same in its RPC endpoints).

- REQUEST_TOKEN: the token of the request being served, set by the HTTP layer (the header / `?token=` secret,
  "" for none = the anonymous token, i.e. acl.tokens.default) and by the server-RPC handlers from the request.
  None means an in-process caller of the agent itself (anti-entropy, leader duties, DNS sets "" itself):
  nothing to enforce locally; what such a caller forwards carries the agent's token (acl.tokens.agent).
- check_write(authz, cmd, lookup): PermissionDenied unless the token may apply the command, as Consul's
  endpoints decide (KV: key write, a recursive delete key_write_prefix; txn: every op; catalog register:
  node write when it changes the node, service write for its service, service or node write per check;
  deregister: the service's / check's / node's write; sessions: session write on the session's node;
  coordinates: node write; prepared queries: query write on the new and the stored name; restore and
  tombstone reaps: management; ACL bootstrap: anyone, once). Other commands (ACL tokens, policies) need acl
  write.
- check_read(authz, name, args): PermissionDenied for a read refused as a whole before it runs or blocks: a
  single-key KV read (kv.get) without key read on that key, whether the key exists or not (Consul 1.7's
  KVS.Get answers "Permission denied"; only listings are filtered), and `snapshot` without management.
- filter_read(authz, name, value): the value the token may see (Consul's aclFilter): KV entries and key
  names the token cannot read are dropped from listings (never leaked), catalog/health rows by node and service read,
  sessions by session read, coordinates by node read, prepared queries by query read, their stored Token
  "<hidden>" unless the caller is management (Consul's redactPreparedQueryTokens; results of an execute by
  service and node read); a single object the token cannot see reads as absent (None / []).
  `snapshot` needs management (PermissionDenied otherwise); ACL reads need acl read, except those keyed by a
  secret (acl.resolve, acl.token_self: knowing it is the proof) and acl.bootstrap_index. An unknown query
  name needs acl read (management).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from pyconsul.agent.acl.authz import Authorizer
from pyconsul.agent.errors import PermissionDenied
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.results import TxnError, TxnResult, WriteResult

if TYPE_CHECKING:  # client agents import this module and never load the store
    from pyconsul.agent.state.store import StateStore

__all__ = [
    "MAX_TOKEN",
    "REQUEST_TOKEN",
    "Lookup",
    "StoreLookup",
    "TxnDenied",
    "WithToken",
    "check_read",
    "check_status",
    "check_write",
    "filter_read",
    "filter_write_result",
    "read_token",
    "split_write",
    "txn_denials",
    "write_args",
]

REQUEST_TOKEN: ContextVar[str | None] = ContextVar("pyconsul_request_token", default=None)

EVENT_PREFIX = "consul:event:"  # agent/events.py's (not imported: it loads asyncio)
MAX_TOKEN = 256  # bytes of a token secret accepted anywhere (Consul's are 36-character UUIDs)


class Lookup(Protocol):
    """What a write check needs to know of the current state (the server's store implements it)."""

    def service_name(self, node: str, service_id: str) -> str | None: ...
    def check_service(self, node: str, check_id: str) -> str | None: ...  # "" for a node check, None: absent
    def session_node(self, session_id: str) -> str | None: ...
    def query_name(self, query_id: str) -> str | None: ...


class StoreLookup:
    """Lookup over a state store (a callable: a restore replaces the store)."""

    def __init__(self, store: Callable[[], StateStore]) -> None:
        self._store = store

    def service_name(self, node: str, service_id: str) -> str | None:
        ns = self._store().node_services(node)
        svc = (ns or {}).get("Services", {}).get(service_id)
        return str(svc.get("Service", "")) if isinstance(svc, dict) else None

    def check_service(self, node: str, check_id: str) -> str | None:
        for chk in self._store().health_checks(node=node):
            if chk.get("CheckID") == check_id:
                return str(chk.get("ServiceName", ""))
        return None

    def session_node(self, session_id: str) -> str | None:
        s = self._store().session(session_id)
        return s.node if s is not None else None

    def query_name(self, query_id: str) -> str | None:
        from pyconsul.agent.state import prepared_queries as pq

        q = pq.get(self._store().tables, query_id)
        return q.name if q is not None else None


def _deny() -> PermissionDenied:
    return PermissionDenied()


# ---------------------------------------------------------------- the token on server RPC


def write_args(data: bytes, token: str | None) -> Any:
    """A write's server-RPC argument: the command bytes alone when there is no token (ACLs off: unchanged
    bytes on the wire), else [bytes, token]."""
    return [data, token] if token else data


def split_write(args: Any) -> tuple[bytes, str] | None:
    """(command bytes, token) from a write's server-RPC argument; None when it is neither shape. A write
    without a token is the anonymous token's ("")."""
    if isinstance(args, bytes):
        return args, ""
    if (isinstance(args, list) and len(args) == 2 and isinstance(args[0], bytes) and isinstance(args[1], str)
            and len(args[1]) <= MAX_TOKEN):
        return args[0], args[1]
    return None


def read_token(a: dict[str, Any]) -> str:
    """The token of a read's server-RPC map ("" when absent or not a bounded string)."""
    t = a.get("token", "")
    return t if isinstance(t, str) and len(t) <= MAX_TOKEN else ""


class WithToken:
    """A Backend whose every read, write and status runs under `token()` (REQUEST_TOKEN), for in-process
    callers that must be enforced as a token: the DNS interface with acl.tokens.default, as Consul's DNS
    server (wrap the backend handed to agent/dns/views.Views: `WithToken(backend, resolver.default_token)`)."""

    def __init__(self, backend: Any, token: Callable[[], str]) -> None:
        self.backend = backend
        self.token = token

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]:
        REQUEST_TOKEN.set(self.token())  # the calling task's own context (each DNS fill runs in its own task)
        value, meta = await self.backend.read(name, args, mode, index, wait)
        return value, meta

    async def write(self, data: bytes) -> Any:
        REQUEST_TOKEN.set(self.token())
        return await self.backend.write(data)

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        REQUEST_TOKEN.set(self.token())
        return await self.backend.status(what, args)


# ---------------------------------------------------------------- writes


_KEY_WRITE = (c.KVSet, c.KVCAS, c.KVDelete, c.KVDeleteCAS, c.KVLock, c.KVUnlock)
_TXN_READ = frozenset({"get", "check-index", "check-session", "check-not-exists"})
_TXN_WRITE = frozenset({"set", "cas", "lock", "unlock", "delete", "delete-cas"})


def check_write(authz: Authorizer, cmd: Any, lookup: Lookup) -> None:
    """PermissionDenied unless `authz` may apply `cmd` (see the module docstring)."""
    if isinstance(cmd, _KEY_WRITE):
        ok = authz.key_write(cmd.key)
    elif isinstance(cmd, c.KVDeleteTree):
        ok = authz.key_write_prefix(cmd.prefix)
    elif isinstance(cmd, c.Txn):
        denied = txn_denials(authz, cmd)
        if denied is not None:
            raise TxnDenied(denied)
        ok = True
    elif isinstance(cmd, c.Register):
        ok = _register_ok(authz, cmd, lookup)
    elif isinstance(cmd, c.Deregister):
        ok = _deregister_ok(authz, cmd, lookup)
    elif isinstance(cmd, c.SessionCreate):
        ok = authz.session_write(cmd.node)
    elif isinstance(cmd, c.SessionDestroy | c.SessionRenew):
        node = lookup.session_node(cmd.id)
        ok = authz.session_write(node) if node is not None else True  # absent: the command is a no-op
    elif isinstance(cmd, c.CoordinateBatchUpdate):
        ok = all(authz.node_write(u.node) for u in cmd.updates)
    elif isinstance(cmd, c.PreparedQueryApply):
        ok = _query_ok(authz, cmd, lookup)
    elif isinstance(cmd, c.Restore | c.TombstoneReap):
        ok = authz.snapshot()
    elif isinstance(cmd, c.ACLBootstrap):
        ok = True  # open until done: the state machine refuses a second bootstrap
    elif isinstance(cmd, c.AutopilotSet):
        ok = authz.operator_write()  # Consul's Operator.AutopilotSetConfiguration
    else:
        ok = authz.acl_write()
    if not ok:
        raise _deny()


class TxnDenied(PermissionDenied):
    """A transaction with operations the token may not run: answered, not applied, with one "Permission
    denied" error per such operation (Consul's Txn.Apply: HTTP 409 with Errors)."""

    def __init__(self, result: TxnResult) -> None:
        super().__init__()
        self.result = result


def txn_denials(authz: Authorizer, cmd: c.Txn) -> TxnResult | None:
    """The rolled-back result of a transaction some of whose operations the token may not run, else None."""
    errors = tuple(TxnError(i, "Permission denied") for i, op in enumerate(cmd.ops) if not _txn_op_ok(authz, op))
    return TxnResult(errors=errors) if errors else None


def filter_write_result(authz: Authorizer, result: WriteResult) -> WriteResult:
    """A write's result as the token may see it: a transaction's get-tree entries it cannot read are left out
    (its get-tree needed key_list on the prefix; the keys below may still be denied)."""
    if isinstance(result, TxnResult) and result.results:
        return replace(result, results=tuple(e for e in result.results if authz.key_read(e.key)))
    return result


def _txn_op_ok(authz: Authorizer, op: c.TxnOp) -> bool:
    verb = op.verb
    if verb == "get-tree":
        return authz.key_list(op.key)  # its entries are filtered too (filter_txn)
    if verb in _TXN_READ:
        return authz.key_read(op.key)
    if verb == "delete-tree":
        return authz.key_write_prefix(op.key)
    return authz.key_write(op.key)  # set, cas, lock, unlock, delete, delete-cas and anything unknown


def _register_ok(authz: Authorizer, cmd: c.Register, lookup: Lookup) -> bool:
    # Consul's vetRegisterWithACL: node write unless the request leaves the node as it is (we cannot tell
    # cheaply whether it would change it, so only SkipNodeUpdate spares it); service write for its service
    if not cmd.skip_node_update and not authz.node_write(cmd.node):
        return False
    svc = cmd.service
    if svc is not None and not authz.service_write(svc.service):
        return False
    for chk in cmd.checks:
        if not chk.service_id:
            if not authz.node_write(cmd.node):
                return False
            continue
        name = svc.service if svc is not None and (svc.id or svc.service) == chk.service_id else lookup.service_name(
            cmd.node, chk.service_id)
        if name is not None and not authz.service_write(name):
            return False
    return True


def _deregister_ok(authz: Authorizer, cmd: c.Deregister, lookup: Lookup) -> bool:
    # Consul's vetDeregisterWithACL: the service's write for a service (or a service's check), node write for
    # a node check or the whole node
    if cmd.service_id:
        name = lookup.service_name(cmd.node, cmd.service_id)
        return True if name is None else authz.service_write(name)
    if cmd.check_id:
        svc = lookup.check_service(cmd.node, cmd.check_id)
        if svc is None:
            return True  # absent: a no-op
        return authz.service_write(svc) if svc else authz.node_write(cmd.node)
    return authz.node_write(cmd.node)


def _query_ok(authz: Authorizer, cmd: c.PreparedQueryApply, lookup: Lookup) -> bool:
    # Consul's PreparedQuery.Apply: query write on the query's (new) name, and on the stored query's name for
    # an update or delete. A query without a name is controlled by its token in Consul; here: management.
    q = cmd.query
    if cmd.op != "delete" and not (authz.query_write(q.name) if q.name else authz.acl_write()):
        return False
    if cmd.op in ("update", "delete"):
        stored = lookup.query_name(q.id)
        if stored is not None and not (authz.query_write(stored) if stored else authz.acl_write()):
            return False
    return True


# Server-RPC `status` requests Consul answers without resolving the token at all (Status.Leader, Status.Peers,
# Catalog.ListDatacenters): an unknown token (e.g. an acl.tokens.default not created yet) does not fail them.
STATUS_TOKEN_FREE = frozenset({"leader", "peers", "datacenters"})


def check_status(authz: Authorizer, what: str, args: dict[str, Any]) -> None:
    """Server-RPC `status` requests: operator read for the Raft configuration and autopilot's settings and
    health, operator write to remove a peer or change autopilot's settings, event write for a forwarded user
    event, node write for a coordinate update; the rest (leader, peers, datacenters) need nothing, as
    /v1/status/* in Consul."""
    if what in ("raft_configuration", "autopilot_configuration", "autopilot_health"):
        ok = authz.operator_read()
    elif what in ("remove_peer", "autopilot_set_configuration"):
        ok = authz.operator_write()
    elif what == "event_fire":
        name = str(args.get("name", ""))
        ok = authz.event_write(name.removeprefix(EVENT_PREFIX))
    elif what == "coordinate_update":
        ok = authz.node_write(str(args.get("node", "")))
    else:
        ok = True
    if not ok:
        raise _deny()


# ---------------------------------------------------------------- reads


def _node_row(authz: Authorizer, row: Any) -> bool:
    return isinstance(row, dict) and authz.node_read(str(row.get("Node", "")))


def _service_row(authz: Authorizer, row: Any) -> bool:
    # a catalog service row or a check: its node, and its service when it has one
    if not isinstance(row, dict) or not authz.node_read(str(row.get("Node", ""))):
        return False
    svc = row.get("ServiceName", "")
    return not svc or authz.service_read(str(svc))


def _health_row(authz: Authorizer, row: Any) -> bool:
    if not isinstance(row, dict):
        return False
    node, svc = row.get("Node"), row.get("Service")
    node_name = node.get("Node", "") if isinstance(node, dict) else ""
    svc_name = svc.get("Service", "") if isinstance(svc, dict) else ""
    return authz.node_read(str(node_name)) and (not svc_name or authz.service_read(str(svc_name)))


def _node_services(authz: Authorizer, value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    node = value.get("Node")
    name = node.get("Node", "") if isinstance(node, dict) else ""
    if not authz.node_read(str(name)):
        return None
    services = value.get("Services")
    if isinstance(services, dict):
        services = {k: s for k, s in services.items()
                    if isinstance(s, dict) and authz.service_read(str(s.get("Service", "")))}
    elif isinstance(services, list):
        services = [s for s in services if isinstance(s, dict) and authz.service_read(str(s.get("Service", "")))]
    return {**value, "Services": services}


def _query_visible(authz: Authorizer, q: Any) -> bool:
    if not isinstance(q, dict):
        return False
    name = q.get("Name", "")
    return authz.query_read(str(name)) if name else authz.acl_read()


def _redact_query(q: Any) -> Any:
    # Consul's redactPreparedQueryTokens: a query's stored Token reads "<hidden>" unless the caller is management
    return {**q, "Token": "<hidden>"} if isinstance(q, dict) and q.get("Token") else q


def _lst(value: Any, keep: Any) -> Any:
    return [x for x in value if keep(x)] if isinstance(value, list) else value


_ACL_BY_SECRET = frozenset({"acl.resolve", "acl.token_self", "acl.bootstrap_index"})


def check_read(authz: Authorizer, name: str, args: dict[str, Any]) -> None:
    """PermissionDenied when the token may not run read `name` with `args` at all (see the module docstring)."""
    if name == "kv.get" and not authz.key_read(str(args.get("key", ""))):
        raise _deny()
    if name == "snapshot" and not authz.snapshot():
        raise _deny()


def filter_read(authz: Authorizer, name: str, value: Any) -> Any:
    """What of read `name`'s answer `value` the token may see (see the module docstring)."""
    a = authz
    if name == "kv.get":
        return value if not isinstance(value, dict) or a.key_read(str(value.get("Key", ""))) else None
    if name == "kv.list":
        return _lst(value, lambda e: isinstance(e, dict) and a.key_read(str(e.get("Key", ""))))
    if name == "kv.keys":
        return _lst(value, lambda k: isinstance(k, str) and a.key_read(k))
    if name in ("catalog.nodes", "coordinate.nodes", "coordinate.node"):
        return _lst(value, lambda r: _node_row(a, r))
    if name in ("catalog.services", "health.service_indexes"):  # {service name: ...}
        return {k: v for k, v in value.items() if a.service_read(k)} if isinstance(value, dict) else value
    if name in ("catalog.service", "health.checks", "health.node", "health.state"):
        return _lst(value, lambda r: _service_row(a, r))
    if name == "health.service":
        return _lst(value, lambda r: _health_row(a, r))
    if name in ("catalog.node", "catalog.node_services"):
        return _node_services(a, value)
    if name in ("session.info", "session.list", "session.node"):
        return _lst(value, lambda s: isinstance(s, dict) and a.session_read(str(s.get("Node", ""))))
    if name in ("query.list", "query.get"):
        shown = _lst(value, lambda q: _query_visible(a, q))
        return shown if a.acl_write() or not isinstance(shown, list) else [_redact_query(q) for q in shown]
    if name == "query.explain":
        if isinstance(value, dict) and not _query_visible(a, value.get("Query")):
            raise _deny()
        if isinstance(value, dict) and not a.acl_write():
            return {**value, "Query": _redact_query(value.get("Query"))}
        return value
    if name in ("query.execute", "query.execute_remote"):
        return _execute(a, value)
    if name == "snapshot":
        if not a.snapshot():
            raise _deny()
        return value
    if name in _ACL_BY_SECRET:  # the caller proves it knows the secret
        return value
    if name == "acl.replication" and not a.acl_write():  # secrets: acl:write (Consul's replication token)
        raise _deny()
    if name.startswith("acl.") and not a.acl_read():
        raise _deny()
    if not a.acl_read():  # a read this module does not know: management only
        raise _deny()
    return value


def _execute(authz: Authorizer, value: Any) -> Any:
    result = value.get("result") if isinstance(value, dict) and "result" in value else value
    if not isinstance(result, dict) or not isinstance(result.get("Nodes"), list):
        return value
    kept = {**result, "Nodes": [r for r in result["Nodes"] if _health_row(authz, r)]}
    return {**value, "result": kept} if result is not value else kept
