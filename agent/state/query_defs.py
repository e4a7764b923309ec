"""Prepared-query definitions (Consul 1.7's structs.PreparedQuery): the record the "prepared_queries" table
keeps and the body of the PreparedQueryApply command (Raft command type 17).

Frozen dataclasses of wire types only (state/wire.py): they are persisted in the Raft log and in snapshots, so a
field is never renamed and a field added later must have a default. Nothing here validates: the HTTP layer
parses and checks a request (http/query.py), the state machine checks what needs the state
(state/prepared_queries.py). This module imports nothing from the state package (commands.py imports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TEMPLATE_NAME_PREFIX_MATCH", "PreparedQueryDef", "QueryFailover", "QueryTemplate", "ServiceQuery"]

TEMPLATE_NAME_PREFIX_MATCH = "name_prefix_match"  # the one template type Consul 1.7 knows


@dataclass(frozen=True, slots=True)
class QueryTemplate:
    """Template.Type "" = not a template; else "name_prefix_match" with an optional Regexp."""

    type: str = ""
    regexp: str = ""
    remove_empty_tags: bool = False


@dataclass(frozen=True, slots=True)
class QueryFailover:
    """Service.Failover: the NearestN other datacenters by WAN round-trip time, then Datacenters in order."""

    nearest_n: int = 0
    datacenters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    service: str = ""
    failover: QueryFailover = field(default_factory=QueryFailover)
    only_passing: bool = False
    ignore_check_ids: tuple[str, ...] = ()
    near: str = ""
    tags: tuple[str, ...] = ()  # "!tag" excludes instances with that tag
    node_meta: dict[str, str] = field(default_factory=dict)
    service_meta: dict[str, str] = field(default_factory=dict)
    connect: bool = False  # kept for the JSON shape; always False here (no Connect yet)


@dataclass(frozen=True, slots=True)
class PreparedQueryDef:
    id: str
    name: str = ""
    session: str = ""
    token: str = ""
    template: QueryTemplate = field(default_factory=QueryTemplate)
    service: ServiceQuery = field(default_factory=ServiceQuery)
    dns_ttl: str = ""  # DNS.TTL, a Go duration as the client sent it ("" = the agent's default)
    create_index: int = 0
    modify_index: int = 0
