"""A validated health-check definition, as the local agent runs it. Pure data; no I/O.

This is the contract between the parts of the agent that deal with checks:
- agent/local/ parses check definitions (HTTP bodies and config files, Consul 1.7 shapes and error
  messages) into CheckSpec and owns the local check table, persistence and anti-entropy;
- agent/checks/ schedules and runs them (TTL, HTTP, TCP, script, alias) and reports every result
  through a CheckSink.
Durations are seconds (float); 0 means "not set" (the runner applies Consul's defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

CheckKind = Literal["ttl", "http", "tcp", "script", "alias", "grpc"]
Status = Literal["passing", "warning", "critical", "maintenance"]
STATUSES = ("passing", "warning", "critical")


@dataclass(frozen=True, slots=True)
class CheckSpec:
    check_id: str
    name: str
    kind: CheckKind
    service_id: str = ""  # "" = a node-level check
    notes: str = ""
    status: str = "critical"  # the initial status (Consul's default: critical)
    output: str = ""
    interval: float = 0.0  # http, tcp, script
    timeout: float = 0.0  # http, tcp, script; 0 = Consul's default (10 s)
    ttl: float = 0.0  # ttl
    http: str = ""
    method: str = ""  # "" = GET
    header: dict[str, tuple[str, ...]] = field(default_factory=dict)
    body: str = ""
    tls_skip_verify: bool = False
    tcp: str = ""  # host:port
    args: tuple[str, ...] = ()  # script
    grpc: str = ""  # grpc: host:port[/service]; accepted and reported critical (no gRPC client in pyconsul)
    grpc_use_tls: bool = False
    alias_node: str = ""  # alias: "" = this agent's node
    alias_service: str = ""  # alias: a service ID
    deregister_critical_service_after: float = 0.0
    success_before_passing: int = 0
    failures_before_critical: int = 0


class CheckSink(Protocol):
    """Where a runner reports results. Called on the event loop; must not block."""

    def update_check(self, check_id: str, status: str, output: str) -> None: ...
