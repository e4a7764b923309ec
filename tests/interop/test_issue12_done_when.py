"""Issue 12's "done when" through the three ways operators and programs use it: `pyconsul services register`
on an SH client plus a TTL check, the real py-consul client, and the real python-consul2 client (run in its own
interpreter, since both import as `consul`). Each service is seen passing from BJ with ?dc=sh&passing and is
gone from it within one TTL (plus sync slack) once its check stops being refreshed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import consul
import pytest

from tests.harness import Cluster, new_block, wait_for
from tests.interop.upstream_suites import SUITES, ensure_client

pytestmark = pytest.mark.interop

TTL = 3.0


def test_service_registered_three_ways_on_sh_is_found_from_bj_and_leaves_within_a_ttl(cluster: Cluster) -> None:
    ip = new_block()
    bj = cluster.agent("bj1", f"{ip}.1", "-server", "-bootstrap", "-datacenter=bj")
    sh = cluster.agent("sh1", f"{ip}.2", "-server", "-bootstrap", "-datacenter=sh")
    shc = cluster.agent("shc", f"{ip}.3", "-datacenter=sh", f"-join={ip}.2")
    bj.cli("join", "-wan", f"{ip}.2")
    for p in (bj, sh):
        wait_for(lambda p=p: p.api("/v1/status/leader"), 30, f"{p.name} leader")
    wait_for(lambda: bj.api("/v1/catalog/datacenters") == ["bj", "sh"], 30, "both DCs known")
    host, port = shc.http.rsplit(":", 1)

    # 1. the CLI, then a TTL check on the service
    shc.cli("services", "register", "-name=web", "-port=8080")
    c = consul.Consul(host=host, port=int(port))
    assert c.agent.check.register("web-ttl", consul.Check.ttl(f"{TTL:g}s"), service_id="web")
    assert c.agent.check.ttl_pass("web-ttl")
    # 2. py-consul
    assert c.agent.service.register("api", port=9090, check=consul.Check.ttl(f"{TTL:g}s"))
    assert c.agent.check.ttl_pass("service:api")
    # 3. python-consul2, in its own interpreter
    client_dir = ensure_client(SUITES["python-consul2"])
    script = textwrap.dedent(f"""
        import consul
        c = consul.Consul(host={host!r}, port={int(port)})
        assert c.agent.service.register("db", port=5432, check=consul.Check.ttl("{TTL:g}s"))
        assert c.agent.check.ttl_pass("service:db")
        print(consul.__file__)
    """)
    cp = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PYTHONPATH": str(client_dir)}, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip().startswith(str(client_dir)), f"python-consul2 was not the client: {cp.stdout}"

    bj_client = consul.Consul(host=bj.http.rsplit(":", 1)[0], port=int(bj.http.rsplit(":", 1)[1]))

    def passing_from_bj(name: str) -> list[str]:
        _, nodes = bj_client.health.service(name, dc="sh", passing=True)
        return [n["Node"]["Node"] for n in nodes]

    for name in ("web", "api", "db"):
        wait_for(lambda name=name: passing_from_bj(name) == ["shc"], 30, f"{name} passing in SH, seen from BJ")
        _, local = bj_client.health.service(name, passing=True)
        assert local == [], f"{name} is not in BJ's own catalog"
    for name in ("web", "api", "db"):  # no refresh since: each leaves ?passing within a TTL plus sync slack
        wait_for(lambda name=name: passing_from_bj(name) == [], TTL + 5, f"{name} gone from ?passing")
