"""What servers and client agents share without importing Raft or the store (client agents stay
light: they never load agent.raft.core, agent.raft.storage or agent.state.store)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pyconsul.agent.errors import DatacenterUnavailable, NoPathToDatacenter

RPC_HOLD_TIMEOUT = 7.0  # Consul: how long a request waits for a leader before "No cluster leader"
BULK_RATE = 4 * 1024 * 1024  # bytes/s: a forwarded write's timeout grows by its size at this rate (a restore)


# A forwarded `snapshot` read serialises, sends and decodes the whole state (hundreds of MiB: seconds each, on a
# slow machine more than RPC_HOLD_TIMEOUT): it may take this much longer. A dead server still fails it at once.
SNAPSHOT_READ_EXTRA = 120.0


def read_time(name: str) -> float:
    """Extra seconds a forwarded read of query `name` may take."""
    return SNAPSHOT_READ_EXTRA if name == "snapshot" else 0.0


def bulk_time(n: int) -> float:
    """Extra seconds a forwarded request of `n` bytes may take (streamed, then committed in pieces); none for
    requests under BULK_RATE bytes (every ordinary write)."""
    return n / BULK_RATE if n > BULK_RATE else 0.0


@dataclass(frozen=True, slots=True)
class ReadMeta:
    index: int
    known_leader: bool
    last_contact_ms: int


# The datacenter an HTTP request targets (`?dc=`), set by the HTTP layer for the request's task; ""
# means the local one. Servers and client backends read it to forward across the WAN (Consul's
# forwardDC). Requests arriving over server RPC run in a fresh context, so they are always local.
REQUEST_DC: ContextVar[str] = ContextVar("pyconsul_request_dc", default="")


def remote_dc(local: str) -> str:
    """The request's target datacenter when it is not `local`, else ""."""
    dc = REQUEST_DC.get()
    return dc if dc and dc != local else ""


def pick_dc_server(wan_members: Callable[[], Iterable[Any]], dc: str, rng: random.Random) -> str:
    """The server-RPC address of a random alive server of datacenter `dc`, from the WAN pool.
    NoPathToDatacenter (HTTP 400) when no WAN member was ever of that datacenter (the client named a
    datacenter that does not exist); DatacenterUnavailable (500) when it is known but none is alive."""
    servers = [m for m in wan_members() if m.tags.get("role") == "consul" and m.tags.get("dc") == dc]
    choices = [f"{m.addr}:{m.tags.get('port', '8300')}" for m in servers if m.status == 1]
    if not choices:
        raise DatacenterUnavailable(dc) if servers else NoPathToDatacenter(dc)
    return rng.choice(choices)
