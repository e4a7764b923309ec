"""The `acl { ... }` config block (Consul 1.7's keys): ACLConfig and its key table (merged into config.KEYS).

    acl {
      enabled = true                      # default false: no ACL system, /v1/acl/* answers 401
      default_policy = "deny"             # "allow" (default) | "deny": what a token's rules do not decide
      down_policy = "extend-cache"        # "extend-cache" (default) | "async-cache" | "allow" | "deny"
      enable_token_persistence = true     # tokens set by PUT /v1/agent/token/* survive a restart
      token_ttl = "30s"  policy_ttl = "30s"  role_ttl = "30s"   # client agents' cache lifetimes
      enable_key_list_policy = false      # true: KV listings need `list` rather than `read`
      enable_token_replication = false    # secondaries replicate global tokens too (acl/replication.py)
      tokens { master = "..." agent = "..." default = "..." agent_master = "..." replication = "..." }
      # (initial_management and agent_recovery, Consul 1.11's names, are master and agent_master)
    }
"""

from __future__ import annotations

from dataclasses import dataclass

from pyconsul.agent.config_schema import Kind

__all__ = ["DEFAULT_POLICIES", "DOWN_POLICIES", "KEYS", "TOKEN_KINDS", "ACLConfig", "ACLConfigError"]

DEFAULT_POLICIES = ("allow", "deny")
DOWN_POLICIES = ("extend-cache", "async-cache", "allow", "deny")
TOKEN_KINDS = ("master", "agent", "default", "agent_master", "replication")

KEYS: dict[str, Kind] = {
    "acl.enabled": "bool", "acl.default_policy": "str", "acl.down_policy": "str",
    "acl.enable_token_persistence": "bool", "acl.token_ttl": "duration", "acl.policy_ttl": "duration",
    "acl.role_ttl": "duration", "acl.enable_key_list_policy": "bool",
    "acl.enable_token_replication": "bool",
    **{f"acl.tokens.{k}": "str" for k in TOKEN_KINDS},
    # Consul 1.11's names for master and agent_master, which client suites use (py-consul's fixtures)
    "acl.tokens.initial_management": "str", "acl.tokens.agent_recovery": "str",
}
ALIASES = {"initial_management": "master", "agent_recovery": "agent_master"}


class ACLConfigError(ValueError):
    pass


@dataclass
class ACLConfig:
    enabled: bool = False
    default_policy: str = "allow"
    down_policy: str = "extend-cache"
    enable_token_persistence: bool = False
    token_ttl: float = 30.0
    policy_ttl: float = 30.0
    role_ttl: float = 30.0
    enable_key_list_policy: bool = False
    enable_token_replication: bool = False
    master: str = ""
    agent: str = ""
    default: str = ""
    agent_master: str = ""
    replication: str = ""

    def set_key(self, key: str, value: object) -> None:
        """Set one flat key ("acl.enabled", "acl.tokens.agent", ...) of KEYS."""
        name = key.removeprefix("acl.").removeprefix("tokens.")
        setattr(self, ALIASES.get(name, name), value)

    def validate(self) -> None:
        if self.default_policy not in DEFAULT_POLICIES:
            raise ACLConfigError(f"acl.default_policy: must be one of {', '.join(DEFAULT_POLICIES)}, "
                                 f"got {self.default_policy!r}")
        if self.down_policy not in DOWN_POLICIES:
            raise ACLConfigError(f"acl.down_policy: must be one of {', '.join(DOWN_POLICIES)}, "
                                 f"got {self.down_policy!r}")
        for key in ("token_ttl", "policy_ttl", "role_ttl"):
            if getattr(self, key) < 0:
                raise ACLConfigError(f"acl.{key}: must not be negative")
