"""The serf tags an agent advertises (Consul's): what other agents learn about it through gossip --
its datacenter, node ID, role, and for servers the RPC port, Raft protocol and bootstrap settings.
bootstrap.py and autopilot.py read these tags back; the names are Consul's and are part of the protocol.
"""

from __future__ import annotations

from pyconsul.agent import __version__
from pyconsul.agent.config import AgentConfig

PROTOCOL = 2  # Consul protocol version we advertise (tag vsn)


def agent_tags(cfg: AgentConfig, node_id: str) -> dict[str, str]:
    tags = {
        "dc": cfg.datacenter,
        "segment": "",
        "id": node_id,
        "vsn": str(PROTOCOL),
        "vsn_min": "2",
        "vsn_max": "3",
        "build": f"{__version__}:pyconsul",
    }
    if cfg.server:
        tags.update(
            role="consul",
            port=str(cfg.rpc_advertise()[1]),
            raft_vsn="3",
            wan_join_port=str(cfg.ports.serf_wan),
            acls="0",
            ft_fs="1",
            ft_si="1",
        )
        if cfg.bootstrap_expect:
            tags["expect"] = str(cfg.bootstrap_expect)
        if cfg.bootstrap or cfg.dev:
            tags["bootstrap"] = "1"
    else:
        tags["role"] = "node"
    return tags
