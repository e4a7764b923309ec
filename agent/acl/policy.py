"""PolicyAuthorizer: the Authorizer (agent/acl/authz.py) of a token's policies, as Consul 1.7 decides. Pure.

For a named resource (key, service, node, agent, session, event, query) the rule that applies is the exact
rule for the name if there is one, else the longest prefix rule matching it. Several policies are merged
first: for the same exact name or the same prefix, `deny` wins, else the highest access (write > list >
read). The rule's access answers the question: `deny` refuses everything, `read` allows reads, `list` reads
and key listings, `write` everything. With no rule at all, the question goes to the parent authorizer:
the agent's default policy (`allow`: DEFAULT_ALLOW, everything but ACL management and snapshots; `deny`:
DENY_ALL). `acl`, `keyring`, `operator` are single rules; `snapshot` needs `acl = "write"` as in Consul.

Key listings: with acl.enable_key_list_policy off (Consul's default) a listing needs `read`; on, it needs
`list` (or `write`). Recursive KV deletes (key_write_prefix) need `write` on the prefix's own rule and on
every rule under the prefix (Consul's KeyWritePrefix).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyconsul.agent.acl.authz import DENY_ALL, Authorizer, Static
from pyconsul.agent.acl.rules import DENY, LEVEL, LIST, NAMED, READ, WRITE, Rules

DEFAULT_ALLOW: Authorizer = Static(True, False)  # acl.default_policy = "allow" (Consul's allowAll)


def merge_access(a: str | None, b: str) -> str:
    """Two rules for the same name: deny wins, else the higher access."""
    if a is None:
        return b
    if DENY in (a, b):
        return DENY
    return a if LEVEL[a] >= LEVEL[b] else b


def _allows(access: str, need: str) -> bool:
    if access == DENY:
        return False
    if access == WRITE:
        return True
    if need == READ:
        return True  # read or list
    return need == LIST and access == LIST


class _Table:
    """One resource's merged rules: exact names and prefixes (looked up longest first)."""

    def __init__(self) -> None:
        self.exact: dict[str, str] = {}
        self.prefix: dict[str, str] = {}
        self._lengths: list[int] = []

    def add(self, exact: Mapping[str, str], prefix: Mapping[str, str]) -> None:
        for name, access in exact.items():
            self.exact[name] = merge_access(self.exact.get(name), access)
        for name, access in prefix.items():
            self.prefix[name] = merge_access(self.prefix.get(name), access)
        self._lengths = sorted({len(p) for p in self.prefix}, reverse=True)

    def longest_prefix(self, name: str) -> str | None:
        for n in self._lengths:
            if n <= len(name):
                access = self.prefix.get(name[:n])
                if access is not None:
                    return access
        return None

    def lookup(self, name: str) -> str | None:
        access = self.exact.get(name)
        return access if access is not None else self.longest_prefix(name)

    def under(self, prefix: str) -> Iterable[str]:
        """The access of every rule (exact or prefix) whose name starts with `prefix`."""
        for table in (self.exact, self.prefix):
            for name, access in table.items():
                if name.startswith(prefix):
                    yield access


class PolicyAuthorizer:
    """The merged rules of some policies over a parent authorizer (the default policy)."""

    def __init__(self, rules: Iterable[Rules], parent: Authorizer = DENY_ALL, *,
                 key_list_policy: bool = False) -> None:
        self._t = {res: _Table() for res in NAMED}
        self._simple: dict[str, str] = {}
        for r in rules:
            for res in NAMED:
                self._t[res].add(r.exact.get(res, {}), r.prefix.get(res, {}))
            for res, access in r.simple.items():
                self._simple[res] = merge_access(self._simple.get(res), access)
        self._parent = parent
        self._key_list_policy = key_list_policy

    def _named(self, res: str, name: str, need: str) -> bool | None:
        access = self._t[res].lookup(name)
        return None if access is None else _allows(access, need)

    def _single(self, res: str, need: str) -> bool | None:
        access = self._simple.get(res)
        return None if access is None else _allows(access, need)

    # -- unnamed resources
    def acl_read(self) -> bool:
        d = self._single("acl", READ)
        return self._parent.acl_read() if d is None else d

    def acl_write(self) -> bool:
        d = self._single("acl", WRITE)
        return self._parent.acl_write() if d is None else d

    def snapshot(self) -> bool:
        d = self._single("acl", WRITE)
        return self._parent.snapshot() if d is None else d

    def keyring_read(self) -> bool:
        d = self._single("keyring", READ)
        return self._parent.keyring_read() if d is None else d

    def keyring_write(self) -> bool:
        d = self._single("keyring", WRITE)
        return self._parent.keyring_write() if d is None else d

    def operator_read(self) -> bool:
        d = self._single("operator", READ)
        return self._parent.operator_read() if d is None else d

    def operator_write(self) -> bool:
        d = self._single("operator", WRITE)
        return self._parent.operator_write() if d is None else d

    # -- named resources
    def agent_read(self, node: str) -> bool:
        d = self._named("agent", node, READ)
        return self._parent.agent_read(node) if d is None else d

    def agent_write(self, node: str) -> bool:
        d = self._named("agent", node, WRITE)
        return self._parent.agent_write(node) if d is None else d

    def event_read(self, name: str) -> bool:
        d = self._named("event", name, READ)
        return self._parent.event_read(name) if d is None else d

    def event_write(self, name: str) -> bool:
        d = self._named("event", name, WRITE)
        return self._parent.event_write(name) if d is None else d

    def key_read(self, key: str) -> bool:
        d = self._named("key", key, READ)
        return self._parent.key_read(key) if d is None else d

    def key_list(self, prefix: str) -> bool:
        if not self._key_list_policy:
            return self.key_read(prefix)
        d = self._named("key", prefix, LIST)
        return self._parent.key_list(prefix) if d is None else d

    def key_write(self, key: str) -> bool:
        d = self._named("key", key, WRITE)
        return self._parent.key_write(key) if d is None else d

    def key_write_prefix(self, prefix: str) -> bool:
        t = self._t["key"]
        if any(access != WRITE for access in t.under(prefix)):
            return False
        own = t.longest_prefix(prefix)
        if own is not None:
            return own == WRITE
        return self._parent.key_write_prefix(prefix)

    def node_read(self, node: str) -> bool:
        d = self._named("node", node, READ)
        return self._parent.node_read(node) if d is None else d

    def node_write(self, node: str) -> bool:
        d = self._named("node", node, WRITE)
        return self._parent.node_write(node) if d is None else d

    def query_read(self, name: str) -> bool:
        d = self._named("query", name, READ)
        return self._parent.query_read(name) if d is None else d

    def query_write(self, name: str) -> bool:
        d = self._named("query", name, WRITE)
        return self._parent.query_write(name) if d is None else d

    def service_read(self, name: str) -> bool:
        d = self._named("service", name, READ)
        return self._parent.service_read(name) if d is None else d

    def service_write(self, name: str) -> bool:
        d = self._named("service", name, WRITE)
        return self._parent.service_write(name) if d is None else d

    def session_read(self, node: str) -> bool:
        d = self._named("session", node, READ)
        return self._parent.session_read(node) if d is None else d

    def session_write(self, node: str) -> bool:
        d = self._named("session", node, WRITE)
        return self._parent.session_write(node) if d is None else d


