"""The server side of ACLs: named reads (server/queries.py registers them), forwarded and blocking like every read.

- "acl.resolve" {"secret"} -> {"token": token JSON, "policies": [policy JSON with Rules]} or None: what a
  TokenResolver needs (agent/acl/resolver.py); client agents ask it with ?stale.
- "acl.token_read" {"accessor"} -> token JSON or None; "acl.token_self" {"secret"} -> token JSON or None;
- "acl.token_list" {"policy": optional policy ID, "role": optional role ID} -> [token list stub JSON];
- "acl.policy_read" {"id"} / {"name"} -> policy JSON or None; "acl.policy_list" {} -> [policy stub JSON];
- "acl.role_read" {"id"} / {"name"} -> role JSON or None; "acl.role_list" {"policy": optional} -> [role JSON];
- "acl.bootstrap_index" {} -> the Raft index of the last bootstrap (0: never).
- "acl.replication" {"tokens": bool} -> acl/replication.py's snapshot (policies, roles, global tokens with
  their secrets): what a secondary datacenter's leader replicates; acl:write only (acl_enforce.py).
Every token JSON carries its SecretID: the HTTP layer redacts it for callers without acl:write.
Index names: "acl-tokens" (token reads), "acl-policies" (policy reads; token and role reads too, their links
show policies' names), "acl-roles" (role reads, token reads).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyconsul.agent.acl import replication
from pyconsul.agent.state import acl as acl_state
from pyconsul.agent.state.store import StateStore

__all__ = ["QUERIES", "WATCH", "resolve_local"]


def _s(a: dict[str, Any], key: str) -> str:
    v = a.get(key, "")
    return v if isinstance(v, str) else ""


def resolve_local(st: StateStore, secret: str) -> dict[str, Any] | None:
    t = st.tables
    tok = acl_state.token_by_secret(t, secret)
    if tok is None:
        return None
    return {"token": acl_state.token_json(t, tok),
            "policies": [acl_state.policy_json(p) for p in acl_state.token_policies(t, tok)]}


def _token_read(st: StateStore, a: dict[str, Any]) -> Any:
    tok = st.tables.acl_tokens.get(_s(a, "accessor"))
    return acl_state.token_json(st.tables, tok) if tok is not None else None


def _token_self(st: StateStore, a: dict[str, Any]) -> Any:
    tok = acl_state.token_by_secret(st.tables, _s(a, "secret"))
    return acl_state.token_json(st.tables, tok) if tok is not None else None


def _token_list(st: StateStore, a: dict[str, Any]) -> Any:
    t = st.tables
    policy, role = _s(a, "policy"), _s(a, "role")
    toks = sorted(t.acl_tokens.values(), key=lambda tok: (tok.create_index, tok.accessor_id))
    return [acl_state.token_stub_json(t, tok) for tok in toks
            if (not policy or any(link.id == policy for link in tok.policies))
            and (not role or any(link.id == role for link in tok.roles))]


def _role_read(st: StateStore, a: dict[str, Any]) -> Any:
    t = st.tables
    r = acl_state.role_by_name(t, _s(a, "name")) if "name" in a else t.acl_roles.get(_s(a, "id"))
    return acl_state.role_json(t, r) if r is not None else None


def _role_list(st: StateStore, a: dict[str, Any]) -> Any:
    t = st.tables
    policy = _s(a, "policy")
    rs = sorted(t.acl_roles.values(), key=lambda r: (r.create_index, r.id))
    return [acl_state.role_json(t, r) for r in rs if not policy or any(link.id == policy for link in r.policies)]


def _policy_read(st: StateStore, a: dict[str, Any]) -> Any:
    t = st.tables
    p = acl_state.policy_by_name(t, _s(a, "name")) if "name" in a else t.acl_policies.get(_s(a, "id"))
    return acl_state.policy_json(p) if p is not None else None


def _policy_list(st: StateStore, a: dict[str, Any]) -> Any:
    ps = sorted(st.tables.acl_policies.values(), key=lambda p: (p.create_index, p.id))
    return [acl_state.policy_stub_json(p) for p in ps]


def _tokens_index(st: StateStore, a: dict[str, Any]) -> int:
    return st.table_index(acl_state.TOKENS, acl_state.POLICIES, acl_state.ROLES)


def _roles_index(st: StateStore, a: dict[str, Any]) -> int:
    return st.table_index(acl_state.ROLES, acl_state.POLICIES)


def _policies_index(st: StateStore, a: dict[str, Any]) -> int:
    return st.table_index(acl_state.POLICIES)


Read = Callable[[StateStore, dict[str, Any]], Any]
QUERIES: dict[str, tuple[Read, Callable[[StateStore, dict[str, Any]], int]]] = {
    "acl.resolve": (lambda st, a: resolve_local(st, _s(a, "secret")), _tokens_index),
    "acl.token_read": (_token_read, _tokens_index),
    "acl.token_self": (_token_self, _tokens_index),
    "acl.token_list": (_token_list, _tokens_index),
    "acl.policy_read": (_policy_read, _policies_index),
    "acl.policy_list": (_policy_list, _policies_index),
    "acl.role_read": (_role_read, _roles_index),
    "acl.role_list": (_role_list, _roles_index),
    "acl.bootstrap_index": (lambda st, a: st.table_index(acl_state.BOOTSTRAP_INDEX),
                            lambda st, a: st.table_index(acl_state.BOOTSTRAP_INDEX)),
    replication.READ_NAME: (lambda st, a: replication.snapshot(st.tables, tokens=a.get("tokens") is True),
                            _tokens_index),
}

_TOK = frozenset({acl_state.TOKENS, acl_state.POLICIES, acl_state.ROLES})
_ROL = frozenset({acl_state.ROLES, acl_state.POLICIES})
_POL = frozenset({acl_state.POLICIES})
WATCH: dict[str, Callable[[StateStore, dict[str, Any]], frozenset[str]]] = {
    "acl.resolve": lambda st, a: _TOK,
    "acl.token_read": lambda st, a: _TOK,
    "acl.token_self": lambda st, a: _TOK,
    "acl.token_list": lambda st, a: _TOK,
    "acl.policy_read": lambda st, a: _POL,
    "acl.policy_list": lambda st, a: _POL,
    "acl.role_read": lambda st, a: _ROL,
    "acl.role_list": lambda st, a: _ROL,
    replication.READ_NAME: lambda st, a: _TOK,
}
