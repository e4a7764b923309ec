"""Raft and HTTP traffic routed through our Toxiproxy server, so toxics hit consensus.

Each server advertises its RPC address as a proxy in front of its port 8300 (Consul's
`advertise_addrs.rpc`); every Raft message to a server then passes that server's proxy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness import AgentProc, Cluster, ToxiproxyProc, new_block, wait_for
from tests.integration.test_raft_cluster import http, leader_of

pytestmark = pytest.mark.integration


@dataclass
class ProxiedCluster:
    ip: str
    servers: list[AgentProc]
    toxiproxy: ToxiproxyProc
    http_proxy: str  # HOST:PORT of the proxy in front of node1's HTTP API

    def put(self, key: str, value: bytes, via: str | None = None, timeout: float = 15.0) -> tuple[int, float]:
        t0 = time.monotonic()
        code, _, body = http(_At(via or self.servers[0].http), f"/v1/kv/{key}", "PUT", value, timeout=timeout)
        assert code != 200 or body.strip() == b"true", body
        return code, time.monotonic() - t0

    def rpc_proxies(self) -> list[str]:
        return [f"rpc-node{i}" for i in range(1, len(self.servers) + 1)]


@dataclass
class _At:
    """Just enough of an AgentProc for http(): an address."""

    http: str


@pytest.fixture
def proxied(cluster: Cluster) -> Iterator[ProxiedCluster]:
    ip = new_block()
    proxies = [{"name": f"rpc-node{i}", "listen": f"{ip}.{i}:18300", "upstream": f"{ip}.{i}:8300"} for i in (1, 2, 3)]
    proxies.append({"name": "http-node1", "listen": f"{ip}.1:18500", "upstream": f"{ip}.1:8500"})
    conf = cluster.tmp / "proxies.json"
    conf.write_text(json.dumps(proxies))
    tp = cluster.toxiproxy(f"{ip}.100", f"--config={conf}")
    servers = []
    for i in (1, 2, 3):
        cfg = cluster.tmp / f"node{i}.json"
        cfg.write_text(json.dumps({"performance": {"raft_multiplier": 1},
                                   "advertise_addrs": {"rpc": f"{ip}.{i}:18300"}}))
        servers.append(cluster.agent(f"node{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", "-datacenter=BJ",
                                     f"-config-file={cfg}"))
    for p in servers[1:]:
        p.cli("join", f"{ip}.1")
    wait_for(lambda: leader_of(servers), 30, "one leader agreed by all servers")
    yield ProxiedCluster(ip, servers, tp, f"{ip}.1:18500")


def test_raft_peers_are_the_proxies_and_http_goes_through_one(proxied: ProxiedCluster) -> None:
    ip = proxied.ip
    peers = json.loads(http(proxied.servers[1], "/v1/status/peers")[2])
    assert sorted(peers) == [f"{ip}.{i}:18300" for i in (1, 2, 3)]
    assert proxied.put("through/http", b"v", via=proxied.http_proxy)[0] == 200
    code, _, body = http(_At(proxied.http_proxy), "/v1/kv/through/http?raw")
    assert (code, body) == (200, b"v")
    # the HTTP proxy down: the API is unreachable through it, and reachable again once it is back
    proxied.toxiproxy.api("/proxies/http-node1", "POST", {"enabled": False})
    with pytest.raises(OSError):
        http(_At(proxied.http_proxy), "/v1/status/leader", timeout=3)
    proxied.toxiproxy.api("/proxies/http-node1", "POST", {"enabled": True})
    assert http(_At(proxied.http_proxy), "/v1/status/leader")[0] == 200


def test_latency_on_raft_traffic_slows_every_commit(proxied: ProxiedCluster) -> None:
    code, base = proxied.put("lat/k", b"0")
    assert code == 200
    for name in proxied.rpc_proxies():  # every Raft message to every server: +200 ms
        proxied.toxiproxy.api(f"/proxies/{name}/toxics", "POST",
                              {"type": "latency", "stream": "upstream", "attributes": {"latency": 200}})
    took = [proxied.put(f"lat/k{i}", b"1")[1] for i in range(3)]
    # a commit needs AppendEntries out and its answer back: two delayed messages
    assert min(took) >= 0.38 and min(took) > base + 0.2, (base, took)
    assert leader_of(proxied.servers), "200 ms of latency must not cost the leader its lease"
    proxied.toxiproxy.api("/reset", "POST")
    fast = min(proxied.put(f"lat/f{i}", b"2")[1] for i in range(3))
    assert fast < 0.38, (fast, took)  # with the toxics every commit took >= 0.38 s (asserted above)


def test_raft_proxies_down_loses_the_leader_and_back_up_recovers(proxied: ProxiedCluster) -> None:
    assert proxied.put("cut/before", b"1")[0] == 200
    for name in proxied.rpc_proxies():
        proxied.toxiproxy.api(f"/proxies/{name}", "POST", {"enabled": False})

    def no_leader() -> bool:
        return all(json.loads(http(p, "/v1/status/leader")[2]) == "" for p in proxied.servers)

    wait_for(no_leader, 30, "every server to lose the leader once Raft traffic is cut")
    code, _ = proxied.put("cut/during", b"x", timeout=30)
    assert code != 200
    proxied.toxiproxy.api("/reset", "POST")  # Toxiproxy's reset enables every proxy again
    wait_for(lambda: leader_of(proxied.servers), 30, "a leader again once the proxies are back")
    assert proxied.put("cut/after", b"2")[0] == 200
    code, _, body = http(proxied.servers[2], "/v1/kv/cut/before?raw&consistent")
    assert (code, body) == (200, b"1")
