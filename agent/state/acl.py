"""The ACL tables (Consul 1.7's "acl-tokens" and "acl-policies" memdb tables): apply, reads, Consul JSON. Pure.

Written by ACLTokenApply (18), ACLPolicyApply (19) and ACLBootstrap (21). What the state machine checks (the
HTTP layer checks the request's shape and the rule syntax before proposing: http/acl.py):
- tokens: a create needs an accessor and a secret not in use; an update keeps the secret, the locality and the
  create index; every policy link (by ID, or by name) must name an existing policy (the table keeps IDs);
  the anonymous token cannot be deleted.
- policies: names match ^[A-Za-z0-9_-]{1,128}$ and are unique (case-insensitively); the builtin
  global-management policy cannot be deleted, renamed, or given other rules or datacenters.
- bootstrap: once; refused afterwards ("ACL bootstrap no longer allowed (reset index: N)") unless the
  command's reset_index is N, the index of that bootstrap (Consul's acl-bootstrap-reset file).
Index names: "acl-tokens", "acl-policies", "acl-token-bootstrap" (the Raft index of the last bootstrap).
A restore replaces the tables and sets every index name that either side had to the restore's index: a
bootstrap done before the restore stays done.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
from typing import Any

from pyconsul.agent.state.acl_defs import (
    ANONYMOUS_ACCESSOR,
    GLOBAL_MANAGEMENT_ID,
    GLOBAL_MANAGEMENT_NAME,
    ACLPolicy,
    ACLPolicyLink,
    ACLToken,
)
from pyconsul.agent.state.commands import ACLBootstrap, ACLPolicyApply, ACLTokenApply
from pyconsul.agent.state.results import StateFailure
from pyconsul.agent.state.tables import Tables

__all__ = ["BOOTSTRAP_INDEX", "POLICIES", "TOKENS", "apply_bootstrap", "apply_policy", "apply_token",
           "policy_by_name", "policy_json", "policy_stub_json", "token_by_secret", "token_hash", "token_json",
           "token_policies", "token_stub_json", "valid_policy_name"]

TOKENS = "acl-tokens"
POLICIES = "acl-policies"
BOOTSTRAP_INDEX = "acl-token-bootstrap"
REDACTED = "<hidden>"  # Consul's redactedToken
_POLICY_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def valid_policy_name(name: str) -> bool:
    return _POLICY_NAME.fullmatch(name) is not None


# ---------------------------------------------------------------- writes


def _links(t: Tables, links: tuple[ACLPolicyLink, ...]) -> tuple[ACLPolicyLink, ...]:
    out: list[ACLPolicyLink] = []
    seen: set[str] = set()
    for link in links:
        if link.id:
            if link.id not in t.acl_policies:
                raise StateFailure(f"No such ACL policy with ID {link.id!r}")
            pid = link.id
        else:
            policy = policy_by_name(t, link.name)
            if policy is None:
                raise StateFailure(f"No such ACL policy with name {link.name!r}")
            pid = policy.id
        if pid not in seen:
            seen.add(pid)
            out.append(ACLPolicyLink(id=pid))
    return tuple(out)


def _put_token(t: Tables, idx: int, tok: ACLToken) -> None:
    t.put("acl_tokens", tok.accessor_id, tok)
    t.bump(TOKENS, idx)


def apply_token(t: Tables, idx: int, cmd: ACLTokenApply) -> bool:
    tok = cmd.token
    if cmd.op == "delete":
        if tok.accessor_id == ANONYMOUS_ACCESSOR:
            raise StateFailure("Delete operation not permitted on the anonymous token")
        if tok.accessor_id not in t.acl_tokens:
            return False
        t.delete("acl_tokens", tok.accessor_id)
        t.bump(TOKENS, idx)
        return True
    if not tok.accessor_id or not tok.secret_id:
        raise StateFailure("Invalid Token: missing AccessorID or SecretID")
    holder = t.acl_tokens_by_secret.get(tok.secret_id)
    if cmd.op == "create":
        if tok.accessor_id in t.acl_tokens:
            raise StateFailure("Invalid Token: AccessorID is already in use")
        if holder:
            raise StateFailure("Invalid Token: SecretID is already in use")
        _put_token(t, idx, _with(tok, _links(t, tok.policies), idx, idx))
        return True
    if cmd.op == "update":
        old = t.acl_tokens.get(tok.accessor_id)
        if old is None:
            return False
        if old.secret_id != tok.secret_id:
            raise StateFailure("Changing a tokens SecretID is not permitted")
        if old.local != tok.local:
            raise StateFailure(f"Cannot toggle local mode of {tok.accessor_id}")
        _put_token(t, idx, _with(tok, _links(t, tok.policies), old.create_index, idx, old.create_time))
        return True
    raise StateFailure(f"unknown ACL token operation {cmd.op!r}")


def _with(tok: ACLToken, links: tuple[ACLPolicyLink, ...], create: int, modify: int,
          create_time: float | None = None) -> ACLToken:
    return ACLToken(accessor_id=tok.accessor_id, secret_id=tok.secret_id, description=tok.description,
                    policies=links, local=tok.local,
                    create_time=tok.create_time if create_time is None else create_time,
                    hash=tok.hash, create_index=create, modify_index=modify)


def apply_policy(t: Tables, idx: int, cmd: ACLPolicyApply) -> bool:
    p = cmd.policy
    old = t.acl_policies.get(p.id)
    if cmd.op == "delete":
        if p.id == GLOBAL_MANAGEMENT_ID:
            raise StateFailure("Delete of builtin global-management policy not permitted")
        if old is None:
            return False
        t.delete("acl_policies", p.id)
        t.bump(POLICIES, idx)
        return True
    if cmd.op not in ("create", "update"):
        raise StateFailure(f"unknown ACL policy operation {cmd.op!r}")
    if not p.id:
        raise StateFailure("Invalid Policy: missing ID")
    if not valid_policy_name(p.name):
        raise StateFailure("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")
    same_name = policy_by_name(t, p.name)
    if same_name is not None and same_name.id != p.id:
        raise StateFailure(f"Invalid Policy: A Policy with Name {p.name!r} already exists")
    if cmd.op == "create":
        if old is not None:
            raise StateFailure(f"Invalid Policy: ID {p.id!r} is already in use")
        create = idx
    else:
        if old is None:
            return False
        if p.id == GLOBAL_MANAGEMENT_ID:
            if p.name != old.name:
                raise StateFailure("Changing the Name for the builtin global-management policy is not permitted")
            if p.rules != old.rules:
                raise StateFailure("Changing the Rules for the builtin global-management policy is not permitted")
            if p.datacenters != old.datacenters:
                raise StateFailure("Changing the Datacenters of the builtin global-management policy is not "
                                   "permitted")
        create = old.create_index
    t.put("acl_policies", p.id, ACLPolicy(id=p.id, name=p.name, description=p.description, rules=p.rules,
                                          datacenters=p.datacenters, hash=p.hash, create_index=create,
                                          modify_index=idx))
    t.bump(POLICIES, idx)
    return True


def apply_bootstrap(t: Tables, idx: int, cmd: ACLBootstrap) -> bool:
    done = t.index.get(BOOTSTRAP_INDEX, 0)
    if done and cmd.reset_index != done:
        raise StateFailure(f"ACL bootstrap no longer allowed (reset index: {done})")
    if GLOBAL_MANAGEMENT_ID not in t.acl_policies:
        raise StateFailure(f"The {GLOBAL_MANAGEMENT_NAME} policy does not exist yet (no leader has set ACLs up)")
    apply_token(t, idx, ACLTokenApply("create", cmd.token))
    t.bump(BOOTSTRAP_INDEX, idx)
    return True


# ---------------------------------------------------------------- reads


def token_by_secret(t: Tables, secret: str) -> ACLToken | None:
    accessors = t.acl_tokens_by_secret.get(secret)
    return t.acl_tokens[accessors[0]] if accessors else None


def policy_by_name(t: Tables, name: str) -> ACLPolicy | None:
    ids = t.acl_policies_by_name.get(name.lower())
    return t.acl_policies[ids[0]] if ids else None


def token_policies(t: Tables, tok: ACLToken) -> list[ACLPolicy]:
    """The token's policies that still exist, in link order."""
    return [t.acl_policies[link.id] for link in tok.policies if link.id in t.acl_policies]


def token_hash(tok: ACLToken, policy_ids: tuple[str, ...]) -> str:
    """A digest of what the token grants and says (Consul's Hash field: it changes when they change)."""
    h = hashlib.blake2b(digest_size=32)
    for part in (tok.description, *policy_ids, "local" if tok.local else "global"):
        h.update(part.encode() + b"\0")
    return base64.b64encode(h.digest()).decode()


def policy_hash(p: ACLPolicy) -> str:
    h = hashlib.blake2b(digest_size=32)
    for part in (p.name, p.description, p.rules, *p.datacenters):
        h.update(part.encode() + b"\0")
    return base64.b64encode(h.digest()).decode()


def rfc3339(ts: float) -> str:
    """Go's time.Time JSON form in UTC, with nanoseconds when there are any."""
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    frac = f".{dt.microsecond:06d}".rstrip("0") if dt.microsecond else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (frac if frac != "." else "") + "Z"


def _links_json(t: Tables, tok: ACLToken) -> list[dict[str, str]]:
    return [{"ID": p.id, "Name": p.name} for p in token_policies(t, tok)]


def token_json(t: Tables, tok: ACLToken, *, redact: bool = False) -> dict[str, Any]:
    """Consul's ACLToken JSON. `redact`: SecretID becomes "<hidden>" (a caller without acl:write)."""
    out: dict[str, Any] = {"AccessorID": tok.accessor_id, "SecretID": REDACTED if redact else tok.secret_id,
                           "Description": tok.description}
    links = _links_json(t, tok)
    if links:
        out["Policies"] = links
    out.update({"Local": tok.local, "CreateTime": rfc3339(tok.create_time), "Hash": tok.hash,
                "CreateIndex": tok.create_index, "ModifyIndex": tok.modify_index})
    return out


def token_stub_json(t: Tables, tok: ACLToken, *, redact: bool = False) -> dict[str, Any]:
    """Consul's ACLTokenListStub JSON (GET /v1/acl/tokens)."""
    out = token_json(t, tok, redact=redact)
    out["Legacy"] = False
    return out


def policy_json(p: ACLPolicy) -> dict[str, Any]:
    return {"ID": p.id, "Name": p.name, "Description": p.description, "Rules": p.rules,
            "Datacenters": list(p.datacenters) or None, "Hash": p.hash, "CreateIndex": p.create_index,
            "ModifyIndex": p.modify_index}


def policy_stub_json(p: ACLPolicy) -> dict[str, Any]:
    """Consul's ACLPolicyListStub JSON (GET /v1/acl/policies): without Rules."""
    out = policy_json(p)
    del out["Rules"]
    return out
