"""ACL records (Consul 1.7's structs.ACLToken, ACLPolicy and ACLRole): what the "acl_tokens", "acl_policies" and
"acl_roles" tables keep and the bodies of the ACL commands (Raft command types 18 to 21).

Frozen dataclasses of wire types only (state/wire.py): persisted in the Raft log and in snapshots, so a field is
never renamed and a field added later must have a default. A token links policies by ID; names are looked up
when the token is read (a renamed policy shows its new name, a deleted one drops out), as Consul does.
This module imports nothing from the state package (commands.py imports it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ANONYMOUS_ACCESSOR", "ANONYMOUS_SECRET", "GLOBAL_MANAGEMENT_ID", "GLOBAL_MANAGEMENT_NAME", "ACLPolicy",
           "ACLPolicyLink", "ACLRole", "ACLToken"]

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
GLOBAL_MANAGEMENT_NAME = "global-management"
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET = "anonymous"


@dataclass(frozen=True, slots=True)
class ACLPolicyLink:
    """A link to a policy (or, in ACLToken.roles, to a role), as a request gives it: by ID, or by name (the state
    machine finds the ID)."""

    id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class ACLToken:
    accessor_id: str
    secret_id: str
    description: str = ""
    policies: tuple[ACLPolicyLink, ...] = ()  # in the table: IDs only (name "")
    local: bool = False
    create_time: float = 0.0  # Unix seconds, stamped by the proposer
    hash: str = ""  # base64, computed by the proposer over the token's fields
    create_index: int = 0
    modify_index: int = 0
    roles: tuple[ACLPolicyLink, ...] = ()  # links to roles (in the table: IDs only); added with roles


@dataclass(frozen=True, slots=True)
class ACLRole:
    """Consul 1.5+'s ACLRole: a named set of policies that tokens link to."""

    id: str
    name: str
    description: str = ""
    policies: tuple[ACLPolicyLink, ...] = ()
    hash: str = ""
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class ACLPolicy:
    id: str
    name: str
    description: str = ""
    rules: str = ""
    datacenters: tuple[str, ...] = ()
    hash: str = ""
    create_index: int = 0
    modify_index: int = 0
