"""The ACL tables (Consul 1.7's "acl-tokens", "acl-policies", "acl-roles"): apply, reads, Consul JSON. Pure.

Written by ACLTokenApply (18), ACLPolicyApply (19), ACLRoleApply (20) and ACLBootstrap (21). What the state
machine checks (the HTTP layer checks the request's shape and the rule syntax before proposing: http/acl.py):
- tokens: a create needs an accessor and a secret not in use; an update keeps the secret, the locality and the
  create index; every policy link (by ID, or by name) must name an existing policy (the table keeps IDs);
  every role link the same with roles; the anonymous token cannot be deleted.
- roles: names match ^[A-Za-z0-9_-]{1,256}$ and are unique (case-insensitively); policy links as for tokens.
  A token's rights are those of its policies and of its roles' policies.
- policies: names match ^[A-Za-z0-9_-]{1,128}$ and are unique (case-insensitively); the builtin
  global-management policy cannot be deleted, renamed, or given other rules or datacenters.
- bootstrap: once; refused afterwards ("ACL bootstrap no longer allowed (reset index: N)") unless the
  command's reset_index is N, the index of that bootstrap (Consul's acl-bootstrap-reset file).
Index names: "acl-tokens", "acl-policies", "acl-roles", "acl-token-bootstrap" (the Raft index of the last bootstrap).
A restore replaces the tables and sets every index name that either side had to the restore's index: a
bootstrap done before the restore stays done.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from pyconsul.agent.state.acl_defs import (
    ANONYMOUS_ACCESSOR,
    GLOBAL_MANAGEMENT_ID,
    GLOBAL_MANAGEMENT_NAME,
    ACLPolicy,
    ACLPolicyLink,
    ACLRole,
    ACLToken,
)
from pyconsul.agent.state.commands import ACLBootstrap, ACLPolicyApply, ACLRoleApply, ACLTokenApply
from pyconsul.agent.state.results import StateFailure
from pyconsul.agent.state.tables import Tables

__all__ = ["BOOTSTRAP_INDEX", "POLICIES", "ROLES", "TOKENS", "apply_bootstrap", "apply_policy", "apply_role",
           "apply_token", "policy_by_name", "policy_json", "policy_stub_json", "role_by_name", "role_json",
           "token_by_secret", "token_hash", "token_json", "token_policies", "token_stub_json", "valid_policy_name",
           "valid_role_name"]

TOKENS = "acl-tokens"
POLICIES = "acl-policies"
ROLES = "acl-roles"
BOOTSTRAP_INDEX = "acl-token-bootstrap"
REDACTED = "<hidden>"  # Consul's redactedToken
_POLICY_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ROLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}")


def valid_policy_name(name: str) -> bool:
    return _POLICY_NAME.fullmatch(name) is not None


def valid_role_name(name: str) -> bool:
    return _ROLE_NAME.fullmatch(name) is not None


# ---------------------------------------------------------------- writes


def _linked(links: tuple[ACLPolicyLink, ...], ids: Mapping[str, object],
            by_name: Callable[[str], ACLPolicy | ACLRole | None], what: str) -> tuple[ACLPolicyLink, ...]:
    """`links` by ID only, each once, in order; a link to no existing `what` (by ID or name) is refused."""
    out: list[ACLPolicyLink] = []
    seen: set[str] = set()
    for link in links:
        if link.id:
            if link.id not in ids:
                raise StateFailure(f"No such ACL {what} with ID {link.id!r}")
            oid = link.id
        else:
            found = by_name(link.name)
            if found is None:
                raise StateFailure(f"No such ACL {what} with name {link.name!r}")
            oid = found.id
        if oid not in seen:
            seen.add(oid)
            out.append(ACLPolicyLink(id=oid))
    return tuple(out)


def _links(t: Tables, links: tuple[ACLPolicyLink, ...]) -> tuple[ACLPolicyLink, ...]:
    return _linked(links, t.acl_policies, lambda name: policy_by_name(t, name), "policy")


def _role_links(t: Tables, links: tuple[ACLPolicyLink, ...]) -> tuple[ACLPolicyLink, ...]:
    return _linked(links, t.acl_roles, lambda name: role_by_name(t, name), "role")


def _delete(t: Tables, idx: int, table: str, key: str, index_name: str) -> bool:
    if key not in getattr(t, table):
        return False
    t.delete(table, key)
    t.bump(index_name, idx)
    return True


def _create_index(t: Tables, idx: int, op: str, kind: str, obj: ACLPolicy | ACLRole, old: ACLPolicy | ACLRole | None,
                  same_name: ACLPolicy | ACLRole | None, valid_name: Callable[[str], bool]) -> int | None:
    """What a policy's or a role's create or update checks alike (`kind`: "Policy" or "Role"): the create index
    it keeps, or None for an update of an object that does not exist."""
    if op not in ("create", "update"):
        raise StateFailure(f"unknown ACL {kind.lower()} operation {op!r}")
    if not obj.id:
        raise StateFailure(f"Invalid {kind}: missing ID")
    if not valid_name(obj.name):
        raise StateFailure(f"Invalid {kind}: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")
    if same_name is not None and same_name.id != obj.id:
        raise StateFailure(f"Invalid {kind}: A {kind} with Name {obj.name!r} already exists")
    if op == "create":
        if old is not None:
            raise StateFailure(f"Invalid {kind}: ID {obj.id!r} is already in use")
        return idx
    return None if old is None else old.create_index


def _put_token(t: Tables, idx: int, tok: ACLToken) -> None:
    t.put("acl_tokens", tok.accessor_id, tok)
    t.bump(TOKENS, idx)


def apply_token(t: Tables, idx: int, cmd: ACLTokenApply) -> bool:
    tok = cmd.token
    if cmd.op == "delete":
        if tok.accessor_id == ANONYMOUS_ACCESSOR:
            raise StateFailure("Delete operation not permitted on the anonymous token")
        return _delete(t, idx, "acl_tokens", tok.accessor_id, TOKENS)
    if not tok.accessor_id or not tok.secret_id:
        raise StateFailure("Invalid Token: missing AccessorID or SecretID")
    holder = t.acl_tokens_by_secret.get(tok.secret_id)
    if cmd.op == "create":
        if tok.accessor_id in t.acl_tokens:
            raise StateFailure("Invalid Token: AccessorID is already in use")
        if holder:
            raise StateFailure("Invalid Token: SecretID is already in use")
        _put_token(t, idx, _with(tok, _links(t, tok.policies), idx, idx, roles=_role_links(t, tok.roles)))
        return True
    if cmd.op == "update":
        old = t.acl_tokens.get(tok.accessor_id)
        if old is None:
            return False
        if old.secret_id != tok.secret_id:
            raise StateFailure("Changing a tokens SecretID is not permitted")
        if old.local != tok.local:
            raise StateFailure(f"Cannot toggle local mode of {tok.accessor_id}")
        _put_token(t, idx, _with(tok, _links(t, tok.policies), old.create_index, idx, old.create_time,
                                 roles=_role_links(t, tok.roles)))
        return True
    raise StateFailure(f"unknown ACL token operation {cmd.op!r}")


def _with(tok: ACLToken, links: tuple[ACLPolicyLink, ...], create: int, modify: int,
          create_time: float | None = None, *, roles: tuple[ACLPolicyLink, ...] = ()) -> ACLToken:
    return ACLToken(accessor_id=tok.accessor_id, secret_id=tok.secret_id, description=tok.description,
                    policies=links, local=tok.local,
                    create_time=tok.create_time if create_time is None else create_time,
                    hash=tok.hash, create_index=create, modify_index=modify, roles=roles)


def apply_role(t: Tables, idx: int, cmd: ACLRoleApply) -> bool:
    r = cmd.role
    if cmd.op == "delete":
        return _delete(t, idx, "acl_roles", r.id, ROLES)
    create = _create_index(t, idx, cmd.op, "Role", r, t.acl_roles.get(r.id), role_by_name(t, r.name),
                           valid_role_name)
    if create is None:
        return False
    t.put("acl_roles", r.id, ACLRole(id=r.id, name=r.name, description=r.description,
                                     policies=_links(t, r.policies), hash=r.hash, create_index=create,
                                     modify_index=idx))
    t.bump(ROLES, idx)
    return True


def apply_policy(t: Tables, idx: int, cmd: ACLPolicyApply) -> bool:
    p = cmd.policy
    if cmd.op == "delete":
        if p.id == GLOBAL_MANAGEMENT_ID:
            raise StateFailure("Delete of builtin global-management policy not permitted")
        return _delete(t, idx, "acl_policies", p.id, POLICIES)
    old = t.acl_policies.get(p.id)
    create = _create_index(t, idx, cmd.op, "Policy", p, old, policy_by_name(t, p.name), valid_policy_name)
    if create is None:
        return False
    if old is not None and cmd.op == "update" and p.id == GLOBAL_MANAGEMENT_ID:
        if p.name != old.name:
            raise StateFailure("Changing the Name for the builtin global-management policy is not permitted")
        if p.rules != old.rules:
            raise StateFailure("Changing the Rules for the builtin global-management policy is not permitted")
        if p.datacenters != old.datacenters:
            raise StateFailure("Changing the Datacenters of the builtin global-management policy is not permitted")
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


def role_by_name(t: Tables, name: str) -> ACLRole | None:
    ids = t.acl_roles_by_name.get(name.lower())
    return t.acl_roles[ids[0]] if ids else None


def token_policies(t: Tables, tok: ACLToken) -> list[ACLPolicy]:
    """The policies that still exist of the token and of its roles, each once, in link order."""
    links = list(tok.policies)
    for role_link in tok.roles:
        role = t.acl_roles.get(role_link.id)
        if role is not None:
            links += role.policies
    out: list[ACLPolicy] = []
    for link in links:
        p = t.acl_policies.get(link.id)
        if p is not None and p not in out:
            out.append(p)
    return out


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
    """Go's time.Time JSON form in UTC, with the fraction when there is one (microseconds; trailing zeros cut).
    Civil date from days since the epoch by Hinnant's algorithm: `datetime` would load `time` into this core."""
    us = round(ts * 1_000_000)
    secs, micro = divmod(us, 1_000_000)
    days, sod = divmod(secs, 86_400)
    z = days + 719_468
    era = (z if z >= 0 else z - 146_096) // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1_460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    frac = f".{micro:06d}".rstrip("0") if micro else ""
    return f"{year:04d}-{month:02d}-{day:02d}T{sod // 3600:02d}:{sod % 3600 // 60:02d}:{sod % 60:02d}{frac}Z"


def _links_json(table: Mapping[str, ACLPolicy | ACLRole], links: tuple[ACLPolicyLink, ...]) -> list[dict[str, str]]:
    """ID and name of each linked policy (or role) that still exists."""
    return [{"ID": o.id, "Name": o.name} for o in (table.get(link.id) for link in links) if o is not None]


def token_json(t: Tables, tok: ACLToken, *, redact: bool = False) -> dict[str, Any]:
    """Consul's ACLToken JSON. `redact`: SecretID becomes "<hidden>" (a caller without acl:write)."""
    out: dict[str, Any] = {"AccessorID": tok.accessor_id, "SecretID": REDACTED if redact else tok.secret_id,
                           "Description": tok.description}
    links = _links_json(t.acl_policies, tok.policies)
    if links:
        out["Policies"] = links
    roles = _links_json(t.acl_roles, tok.roles)
    if roles:
        out["Roles"] = roles
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


def role_json(t: Tables, r: ACLRole) -> dict[str, Any]:
    """Consul's ACLRole JSON (a deleted policy drops out of Policies)."""
    out: dict[str, Any] = {"ID": r.id, "Name": r.name, "Description": r.description}
    links = _links_json(t.acl_policies, r.policies)
    if links:
        out["Policies"] = links
    out.update({"Hash": r.hash, "CreateIndex": r.create_index, "ModifyIndex": r.modify_index})
    return out


def role_hash(r: ACLRole) -> str:
    h = hashlib.blake2b(digest_size=32)
    for part in (r.name, r.description, *(link.id or "name:" + link.name for link in r.policies)):
        h.update(part.encode() + b"\0")
    return base64.b64encode(h.digest()).decode()
