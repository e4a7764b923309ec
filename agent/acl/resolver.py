"""TokenResolver: a request's secret -> its Authorizer (Consul 1.7's ACLResolver, agent/consul/acl.go).

Contract (common to HTTP routes, server RPC handlers and DNS):
- `enabled()`: acl.enabled. While off, `resolve` answers ALLOW_ALL for any secret.
- `await resolve(secret)`: None or "" -> the agent's acl.tokens.default, else the anonymous token; the
  acl.tokens.agent_master secret -> agent:write on this node and node:read (no server asked); any other
  secret is looked up (`lookup`). Unknown secret -> PermissionDenied("ACL not found").
- `await identity(secret)`: the same, plus the token's JSON (None for agent_master / a missing anonymous
  token), for GET /v1/acl/token/self and SecretID redaction.
- Lookups: `lookup(secret)` returns {"token": <Consul token JSON>, "policies": [<policy JSON with Rules>]} or
  None. Servers pass a lookup that reads their own state (no cache: always current); client agents one that
  asks a server (caching=True): an answer is kept acl.token_ttl seconds (the policies' rules acl.policy_ttl,
  by ID and ModifyIndex). When the servers cannot be reached (Unavailable, NoLeader, RequestTimeout) the
  acl.down_policy decides: "extend-cache"/"async-cache" use a cached answer however old (else deny), "allow"
  allows everything but ACL management, "deny" denies everything.
- Compiled authorizers are cached by (policy IDs, ModifyIndexes): rule text is parsed once per version.
- Tokens set by PUT /v1/agent/token/<kind> replace the configured ones (`set_token`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pyconsul.agent.acl import rules as rules_mod
from pyconsul.agent.acl.authz import ALLOW_ALL, DENY_ALL, Authorizer
from pyconsul.agent.acl.config import ACLConfig
from pyconsul.agent.acl.policy import DEFAULT_ALLOW, PolicyAuthorizer
from pyconsul.agent.errors import NoLeader, PermissionDenied, RequestTimeout, Unavailable

__all__ = ["ANONYMOUS_SECRET", "Lookup", "TokenResolver"]

ANONYMOUS_SECRET = "anonymous"
ACL_NOT_FOUND = "ACL not found"
MAX_CACHED = 10_000  # tokens (and compiled authorizers) a resolver keeps (README "Limits")

Lookup = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass
class _Entry:
    at: float
    answer: dict[str, Any] | None


class TokenResolver:
    def __init__(self, cfg: ACLConfig, lookup: Lookup, *, node_name: str = "", caching: bool = False,
                 clock: Callable[[], float] = time.monotonic, data_dir: str | None = None) -> None:
        self.cfg = cfg
        self.data_dir = data_dir  # where PUT /v1/agent/token/* persists tokens (acl.enable_token_persistence)
        self._lookup = lookup
        self._node = node_name
        self._caching = caching
        self._clock = clock
        self._tokens: OrderedDict[str, _Entry] = OrderedDict()
        self._compiled: OrderedDict[tuple[tuple[str, int], ...], Authorizer] = OrderedDict()
        self._rules: OrderedDict[tuple[str, int], rules_mod.Rules] = OrderedDict()
        # ACL replication (acl/replication.py), set by the agent: where ACL writes go (http/acl.py forwards
        # policy, role and global token writes there) and the status GET /v1/acl/replication shows
        self.datacenter = ""
        self.primary_datacenter = ""
        self.replication_status: Callable[[], dict[str, Any]] | None = None

    def enabled(self) -> bool:
        return self.cfg.enabled

    # ------------------------------------------------------------ the agent's own tokens

    def default_token(self) -> str:
        return self.cfg.default

    def agent_token(self) -> str:
        """The token for the agent's own writes (anti-entropy, coordinates): acl.tokens.agent, else default."""
        return self.cfg.agent or self.cfg.default

    def set_token(self, kind: str, secret: str) -> None:
        """kind: one of config.TOKEN_KINDS (PUT /v1/agent/token/<kind>)."""
        setattr(self.cfg, kind, secret)

    def base(self) -> Authorizer:
        """What a token's rules do not decide: acl.default_policy."""
        return DENY_ALL if self.cfg.default_policy == "deny" else DEFAULT_ALLOW

    # ------------------------------------------------------------ resolution

    async def resolve(self, secret: str | None) -> Authorizer:
        return (await self.identity(secret))[1]

    async def identity(self, secret: str | None) -> tuple[dict[str, Any] | None, Authorizer]:
        if not self.cfg.enabled:
            return None, ALLOW_ALL
        secret = secret or self.cfg.default or ANONYMOUS_SECRET
        if self.cfg.agent_master and secret == self.cfg.agent_master:
            return None, self._agent_master()
        try:
            answer = await self._fetch(secret)
        except (Unavailable, NoLeader, RequestTimeout):
            down = self._down(secret)
            if isinstance(down, _Entry):
                answer = down.answer
            else:
                return None, down
        if answer is None:
            if secret == ANONYMOUS_SECRET:  # no leader has created it yet: the default policy alone
                return None, self.base()
            raise PermissionDenied(ACL_NOT_FOUND)
        return answer.get("token"), self._authorizer(answer.get("policies") or [])

    async def _fetch(self, secret: str) -> dict[str, Any] | None:
        if self._caching:
            entry = self._tokens.get(secret)
            if entry is not None and self._clock() - entry.at < min(self.cfg.token_ttl, self.cfg.policy_ttl):
                return entry.answer
        answer = await self._lookup(secret)
        if self._caching:
            self._tokens[secret] = _Entry(self._clock(), answer)
            self._tokens.move_to_end(secret)
            while len(self._tokens) > MAX_CACHED:
                self._tokens.popitem(last=False)
        return answer

    def _down(self, secret: str) -> _Entry | Authorizer:
        """acl.down_policy while the servers cannot be asked."""
        policy = self.cfg.down_policy
        if policy in ("extend-cache", "async-cache"):
            entry = self._tokens.get(secret)
            return entry if entry is not None else DENY_ALL
        return DEFAULT_ALLOW if policy == "allow" else DENY_ALL

    def forget(self, secret: str | None = None) -> None:
        """Drop cached answers (one secret, or all): the next resolve asks again."""
        if secret is None:
            self._tokens.clear()
        else:
            self._tokens.pop(secret, None)

    def _authorizer(self, policies: list[dict[str, Any]]) -> Authorizer:
        key = tuple((str(p.get("ID", "")), int(p.get("ModifyIndex", 0))) for p in policies)
        authz = self._compiled.get(key)
        if authz is None:
            authz = PolicyAuthorizer([self._compile(p) for p in policies], self.base(),
                                     key_list_policy=self.cfg.enable_key_list_policy)
            self._compiled[key] = authz
            while len(self._compiled) > MAX_CACHED:
                self._compiled.popitem(last=False)
        return authz

    def _compile(self, policy: dict[str, Any]) -> rules_mod.Rules:
        key = (str(policy.get("ID", "")), int(policy.get("ModifyIndex", 0)))
        parsed = self._rules.get(key)
        if parsed is None:
            try:
                parsed = rules_mod.parse(str(policy.get("Rules") or ""))
            except rules_mod.RulesError:
                parsed = rules_mod.Rules()  # stored rules were checked on write; a bad one grants nothing
            self._rules[key] = parsed
            while len(self._rules) > MAX_CACHED:
                self._rules.popitem(last=False)
        return parsed

    def _agent_master(self) -> Authorizer:
        node = self._node.replace("\\", "\\\\").replace('"', '\\"')
        text = f'agent "{node}" {{ policy = "write" }}\nnode_prefix "" {{ policy = "read" }}\n'
        return PolicyAuthorizer([rules_mod.parse(text)], DENY_ALL)
