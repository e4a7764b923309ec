"""The Authorizer contract: what enforcement asks, whatever decides it. Pure; no I/O.

Consul 1.7's acl.Authorizer, reduced to the resources pyconsul has. Each method answers one question for
one resource name; `*_list`/`*_write_prefix` cover KV listings and recursive deletes. Enforcement code
(HTTP routes, server RPC, DNS, blocking queries) depends only on this protocol. Policy-based authorizers
(rules, longest prefix wins, exact beats prefix) implement it in agent/acl/; `ALLOW_ALL` is what an agent
with ACLs disabled uses, `MANAGE_ALL` what a management token gets, `DENY_ALL` the base of default deny.
"""

from __future__ import annotations

from typing import Protocol


class Authorizer(Protocol):
    def acl_read(self) -> bool: ...
    def acl_write(self) -> bool: ...
    def agent_read(self, node: str) -> bool: ...
    def agent_write(self, node: str) -> bool: ...
    def event_read(self, name: str) -> bool: ...
    def event_write(self, name: str) -> bool: ...
    def key_read(self, key: str) -> bool: ...
    def key_list(self, prefix: str) -> bool: ...
    def key_write(self, key: str) -> bool: ...
    def key_write_prefix(self, prefix: str) -> bool: ...
    def keyring_read(self) -> bool: ...
    def keyring_write(self) -> bool: ...
    def node_read(self, node: str) -> bool: ...
    def node_write(self, node: str) -> bool: ...
    def operator_read(self) -> bool: ...
    def operator_write(self) -> bool: ...
    def query_read(self, name: str) -> bool: ...
    def query_write(self, name: str) -> bool: ...
    def service_read(self, name: str) -> bool: ...
    def service_write(self, name: str) -> bool: ...
    def session_read(self, node: str) -> bool: ...
    def session_write(self, node: str) -> bool: ...
    def snapshot(self) -> bool: ...


class Static:
    """Every question the same answer; ACL management and snapshots only when `manage` (policy.DEFAULT_ALLOW)."""

    def __init__(self, answer: bool, manage: bool) -> None:
        self._a = answer
        self._m = manage

    def acl_read(self) -> bool:
        return self._m

    def acl_write(self) -> bool:
        return self._m

    def snapshot(self) -> bool:
        return self._m

    def keyring_read(self) -> bool:
        return self._a

    def keyring_write(self) -> bool:
        return self._a

    def operator_read(self) -> bool:
        return self._a

    def operator_write(self) -> bool:
        return self._a

    def _name(self, _name: str) -> bool:
        return self._a

    agent_read = agent_write = event_read = event_write = _name
    key_read = key_list = key_write = key_write_prefix = _name
    node_read = node_write = query_read = query_write = _name
    service_read = service_write = session_read = session_write = _name


ALLOW_ALL: Authorizer = Static(True, True)  # ACLs disabled: everything, as without an ACL system
MANAGE_ALL: Authorizer = Static(True, True)  # a management token
DENY_ALL: Authorizer = Static(False, False)
