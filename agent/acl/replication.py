"""ACL replication from the primary datacenter (Consul 1.7's leader ACL replication, acl_replication*.go).

`primary_datacenter` (config; "" = the agent's own datacenter) holds the authoritative policies, roles and
global tokens. In any other datacenter, the leader of its servers runs `Replicator.run` (supervised by the
agent): a blocking read "acl.replication" (server/acl_reads.py) sent to a server of the primary (?dc=, as any
forwarded read) with acl.tokens.replication (the primary requires acl:write of it: the answer holds secrets),
then `diff` (pure) turns the difference between that answer and the local tables into ordinary ACL commands
(ACLPolicyApply / ACLRoleApply / ACLTokenApply), proposed one at a time through the local Raft log, so local
indexes only grow. Order: policy deletes, policy upserts, role deletes, role upserts, token deletes, token
upserts (a token or role links only policies that exist by then; a deleted token frees its secret first).
- What replicates: policies and roles always; global tokens (Local false) when acl.enable_token_replication
  is true (Consul's default is false: policies and roles only). Local tokens never leave their datacenter and
  are never deleted by replication.
- Errors (the primary unreachable, the replication token refused, a command refused) are logged, kept in the
  status (LastError, LastErrorMessage) and retried after a backoff (BACKOFF_MIN doubling to BACKOFF_MAX).
- Status (GET /v1/acl/replication): Enabled (this is a secondary with ACLs on), Running (this server leads
  and replicates), SourceDatacenter, ReplicationType ("policies" or "tokens"), ReplicatedIndex (the primary's
  index of the last applied round), ReplicatedRoleIndex, ReplicatedTokenIndex, LastSuccess, LastError.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pyconsul.agent.state import commands as c
from pyconsul.agent.state.acl_defs import ANONYMOUS_ACCESSOR, ACLPolicy, ACLPolicyLink, ACLRole, ACLToken
from pyconsul.agent.state.tables import Tables

__all__ = ["READ_NAME", "ReplicationStatus", "Replicator", "diff", "for_server", "resolve_remote", "snapshot"]

log = logging.getLogger("agent.server.acl_replication")

READ_NAME = "acl.replication"
WAIT = 30.0  # seconds a blocking read waits at the primary before answering unchanged
BACKOFF_MIN = 0.5
BACKOFF_MAX = 10.0
IDLE = 1.0  # seconds between two looks while this server does not lead
ZERO_TIME = "0001-01-01T00:00:00Z"

# ---------------------------------------------------------------- the primary's side (pure)


def _ids(links: tuple[ACLPolicyLink, ...]) -> list[str]:
    return [link.id for link in links]


def snapshot(t: Tables, *, tokens: bool) -> dict[str, Any]:
    """What a secondary needs: every policy and role, and (tokens=True) every global token, as wire maps."""
    out: dict[str, Any] = {
        "policies": [{"id": p.id, "name": p.name, "description": p.description, "rules": p.rules,
                      "datacenters": list(p.datacenters), "hash": p.hash}
                     for p in sorted(t.acl_policies.values(), key=lambda p: p.id)],
        "roles": [{"id": r.id, "name": r.name, "description": r.description, "policies": _ids(r.policies),
                   "hash": r.hash} for r in sorted(t.acl_roles.values(), key=lambda r: r.id)],
    }
    if tokens:
        out["tokens"] = [{"accessor_id": k.accessor_id, "secret_id": k.secret_id, "description": k.description,
                          "policies": _ids(k.policies), "roles": _ids(k.roles), "create_time": k.create_time,
                          "hash": k.hash}
                         for k in sorted(t.acl_tokens.values(), key=lambda k: k.accessor_id) if not k.local]
    return out


# ---------------------------------------------------------------- the secondary's side (pure)


def _links(ids: Any) -> tuple[ACLPolicyLink, ...]:
    return tuple(ACLPolicyLink(id=str(i)) for i in ids or ())


def _policy(d: dict[str, Any]) -> ACLPolicy:
    return ACLPolicy(id=str(d["id"]), name=str(d["name"]), description=str(d.get("description", "")),
                     rules=str(d.get("rules", "")), datacenters=tuple(str(x) for x in d.get("datacenters") or ()),
                     hash=str(d.get("hash", "")))


def _role(d: dict[str, Any]) -> ACLRole:
    return ACLRole(id=str(d["id"]), name=str(d["name"]), description=str(d.get("description", "")),
                   policies=_links(d.get("policies")), hash=str(d.get("hash", "")))


def _token(d: dict[str, Any]) -> ACLToken:
    return ACLToken(accessor_id=str(d["accessor_id"]), secret_id=str(d["secret_id"]),
                    description=str(d.get("description", "")), policies=_links(d.get("policies")),
                    local=False, create_time=float(d.get("create_time", 0.0)), hash=str(d.get("hash", "")),
                    roles=_links(d.get("roles")))


def _same_policy(a: ACLPolicy, b: ACLPolicy) -> bool:
    return (a.name, a.description, a.rules, a.datacenters, a.hash) == (b.name, b.description, b.rules,
                                                                        b.datacenters, b.hash)


def _same_role(a: ACLRole, b: ACLRole) -> bool:
    return (a.name, a.description, a.policies, a.hash) == (b.name, b.description, b.policies, b.hash)


def _same_token(a: ACLToken, b: ACLToken) -> bool:
    return (a.description, a.policies, a.roles, a.hash) == (b.description, b.policies, b.roles, b.hash)


def diff(t: Tables, remote: dict[str, Any]) -> list[c.Command]:
    """The commands that make the local tables hold `remote` (a `snapshot` of the primary), in a safe order.
    Without "tokens" in `remote`, tokens are left alone."""
    out: list[c.Command] = []
    policies = {p.id: p for p in map(_policy, remote.get("policies") or ())}
    roles = {r.id: r for r in map(_role, remote.get("roles") or ())}
    out += [c.ACLPolicyApply("delete", ACLPolicy(id=pid, name="")) for pid in sorted(t.acl_policies)
            if pid not in policies]
    for p in policies.values():
        old = t.acl_policies.get(p.id)
        if old is None:
            out.append(c.ACLPolicyApply("create", p))
        elif not _same_policy(old, p):
            out.append(c.ACLPolicyApply("update", p))
    out += [c.ACLRoleApply("delete", ACLRole(id=rid, name="")) for rid in sorted(t.acl_roles) if rid not in roles]
    for r in roles.values():
        old_r = t.acl_roles.get(r.id)
        if old_r is None:
            out.append(c.ACLRoleApply("create", r))
        elif not _same_role(old_r, r):
            out.append(c.ACLRoleApply("update", r))
    if "tokens" not in remote:
        return out
    tokens = {k.accessor_id: k for k in map(_token, remote.get("tokens") or ())}
    upserts: list[c.Command] = []
    for k in tokens.values():
        old_k = t.acl_tokens.get(k.accessor_id)
        if old_k is None:
            upserts.append(c.ACLTokenApply("create", k))
        elif old_k.local:
            continue  # a local token of ours with the same accessor: ours stays (the primary cannot have it)
        elif old_k.secret_id != k.secret_id:  # a secret never changes: this is another token, replace it
            out.append(c.ACLTokenApply("delete", ACLToken(accessor_id=k.accessor_id, secret_id="")))
            upserts.append(c.ACLTokenApply("create", k))
        elif not _same_token(old_k, k):
            upserts.append(c.ACLTokenApply("update", k))
    out += [c.ACLTokenApply("delete", ACLToken(accessor_id=a, secret_id="")) for a, k in sorted(t.acl_tokens.items())
            if not k.local and a not in tokens and a != ANONYMOUS_ACCESSOR]
    return out + upserts


# ---------------------------------------------------------------- the loop


def _rfc3339(at: float) -> str:
    if not at:
        return ZERO_TIME
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


@dataclass
class ReplicationStatus:
    enabled: bool = False
    running: bool = False
    source_datacenter: str = ""
    replication_type: str = ""
    replicated_index: int = 0
    last_success: float = 0.0
    last_error: float = 0.0
    last_error_message: str = ""

    def json(self) -> dict[str, Any]:
        """Consul's structs.ACLReplicationStatus (plus LastErrorMessage, which later Consul versions have)."""
        idx = self.replicated_index
        return {"Enabled": self.enabled, "Running": self.running, "SourceDatacenter": self.source_datacenter,
                "ReplicationType": self.replication_type, "ReplicatedIndex": idx, "ReplicatedRoleIndex": idx,
                "ReplicatedTokenIndex": idx if self.replication_type == "tokens" else 0,
                "LastSuccess": _rfc3339(self.last_success), "LastError": _rfc3339(self.last_error),
                "LastErrorMessage": self.last_error_message}


# read(index, wait, tokens) -> (value, index): the blocking read at the primary
ReadPrimary = Callable[[int, float, bool], Awaitable[tuple[Any, int]]]


class Replicator:
    def __init__(self, *, primary: str, tokens: bool, is_leader: Callable[[], bool],
                 tables: Callable[[], Tables], read: ReadPrimary, write: Callable[[bytes], Awaitable[object]],
                 clock: Callable[[], float] = time.time) -> None:
        self.status = ReplicationStatus(enabled=True, source_datacenter=primary,
                                        replication_type="tokens" if tokens else "policies")
        self._tokens = tokens
        self._is_leader = is_leader
        self._tables = tables
        self._read = read
        self._write = write
        self._clock = clock

    async def run(self) -> None:
        """Forever: while this server leads, replicate; else idle (Running false, the index forgotten)."""
        backoff = BACKOFF_MIN
        index = 0
        while True:
            if not self._is_leader():
                self.status.running = False
                index = 0  # a new term starts with a full read
                await asyncio.sleep(IDLE)
                continue
            self.status.running = True
            try:
                value, new_index = await self._read(index, WAIT if index else 0.0, self._tokens)
                if not isinstance(value, dict):
                    raise ValueError(f"unexpected answer to {READ_NAME}: {type(value).__name__}")
                if new_index < index:  # the primary's state went back (a restore): start over
                    index = 0
                    continue
                if not self._is_leader():  # lost leadership while waiting: the new leader replicates
                    continue
                applied = await self.apply(value)
                index = new_index
                self.status.replicated_index = new_index
                self.status.last_success = self._clock()
                if applied:
                    log.info("ACL replication: applied %d changes from %s (index %d)", applied,
                             self.status.source_datacenter, new_index)
                backoff = BACKOFF_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the primary unreachable, refused, a command refused: retry after a pause
                self.status.last_error = self._clock()
                self.status.last_error_message = str(exc) or type(exc).__name__
                log.warning("ACL replication from %s failed (retry in %.1fs): %s", self.status.source_datacenter,
                            backoff, self.status.last_error_message)
                index = 0
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def apply(self, remote: dict[str, Any]) -> int:
        """Propose `diff`'s commands one at a time (each sees the effect of the previous); how many."""
        cmds = diff(self._tables(), remote)
        for cmd in cmds:
            await self._write(c.encode(cmd))
        return len(cmds)


# ---------------------------------------------------------------- wiring to a server (agent.py)


def for_server(server: Any, primary: str, cfg: Any) -> Replicator:
    """A Replicator for `server` (a ConsulServer): reads the primary as acl.tokens.replication (cfg: the
    ACLConfig, read at each round so PUT /v1/agent/token/replication applies), writes through `server.write`
    as the server itself (no request token: nothing enforced in-process)."""

    async def read(index: int, wait: float, tokens: bool) -> tuple[Any, int]:
        value, meta = await _as(primary, str(cfg.replication),
                                lambda: server.read(READ_NAME, {"tokens": tokens}, "default", index, wait))
        return value, int(meta.index)

    return Replicator(primary=primary, tokens=bool(cfg.enable_token_replication),
                      is_leader=lambda: bool(server.is_leader), tables=lambda: server.store.tables, read=read,
                      write=server.write)


async def resolve_remote(server: Any, primary: str, secret: str) -> dict[str, Any] | None:
    """A token unknown here, asked of the primary ("acl.resolve" with ?stale there, as the token itself: knowing
    the secret is the proof). `server`: a ConsulServer or a client agent's backend (the same `read`). None when
    the primary does not know it or cannot be reached (then: "ACL not found")."""
    try:
        value, _ = await _as(primary, secret, lambda: server.read("acl.resolve", {"secret": secret}, "stale"))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # no path to the primary, a timeout: the token is unknown here
        log.debug("ACL: could not ask %s about a token: %s", primary, exc)
        return None
    return value if isinstance(value, dict) else None


async def _as(dc: str, token: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run `call` as a request aimed at datacenter `dc` carrying ACL token `token`."""
    from pyconsul.agent.server.acl_enforce import REQUEST_TOKEN
    from pyconsul.agent.server.common import REQUEST_DC

    dc_reset, tok_reset = REQUEST_DC.set(dc), REQUEST_TOKEN.set(token)
    try:
        return await call()
    finally:
        REQUEST_TOKEN.reset(tok_reset)
        REQUEST_DC.reset(dc_reset)
