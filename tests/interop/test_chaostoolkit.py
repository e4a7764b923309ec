"""Chaos Toolkit (`chaos run`, with chaostoolkit-toxiproxy) drives our Toxiproxy server end to end:
chaos/experiments/toolkit/raft-latency.json against three servers whose Raft traffic goes through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT
from tests.integration.test_raft_cluster import http
from tests.integration.test_raft_through_toxiproxy import ProxiedCluster, proxied  # noqa: F401

pytestmark = pytest.mark.interop

EXPERIMENT = ROOT / "chaos" / "experiments" / "toolkit" / "raft-latency.json"
CHAOS = Path(sys.executable).parent / "chaos"


def run_chaos(tmp: Path, env: dict[str, str]) -> tuple[int, dict[str, object], str]:
    journal = tmp / "journal.json"
    cp = subprocess.run([str(CHAOS), "--no-version-check", "--log-file", str(tmp / "chaostoolkit.log"), "run",
                         "--journal-path", str(journal), str(EXPERIMENT)],
                        capture_output=True, text=True, timeout=300, cwd=tmp, stdin=subprocess.DEVNULL,
                        env={**os.environ, **env})
    return cp.returncode, json.loads(journal.read_text()), cp.stdout + cp.stderr


def test_the_toolkit_experiment_runs_and_rolls_back(proxied: ProxiedCluster, tmp_path: Path) -> None:  # noqa: F811
    assert CHAOS.is_file(), f"{CHAOS} missing: chaostoolkit is in the test extra of pyproject.toml"
    leader = json.loads(http(proxied.servers[0], "/v1/status/leader")[2])
    leader_port_ip = leader.rsplit(":", 1)[0]
    nodes = [f"rpc-node{i}" for i in (1, 2, 3)]
    # cut a follower other than node1: node1 serves the experiment's HTTP (through its proxy), and a server
    # whose Raft traffic is cut soon stops naming a leader, which the steady state would rightly report
    follower = next(n for i, n in enumerate(nodes, 1) if i != 1 and f"{proxied.ip}.{i}" != leader_port_ip)
    others = [n for n in nodes if n != follower]
    host = proxied.toxiproxy.url.split("//")[1].rsplit(":", 1)[0]
    env = {"TOXIPROXY_HOST": host, "TOXIPROXY_PORT": "8474", "CONSUL_HTTP_ADDR": proxied.http_proxy,
           "RPC_PROXY_A": others[0], "RPC_PROXY_B": others[1], "RPC_PROXY_C": follower}
    rc, journal, out = run_chaos(tmp_path, env)
    assert rc == 0, out
    assert journal["status"] == "completed" and journal["deviated"] is False, out
    states = journal["steady_states"]
    assert states["before"]["steady_state_met"] is True, states  # type: ignore[index]
    assert states["after"]["steady_state_met"] is True, states  # type: ignore[index]
    runs = {r["activity"]["name"]: r for r in journal["run"]}  # type: ignore[index, union-attr]
    assert all(r["status"] == "succeeded" for r in runs.values()), runs
    assert set(runs) >= {"latency-on-raft-to-a", "cut-raft-to-c", "a-write-commits-with-one-server-cut-off"}
    assert journal["rollbacks"][0]["status"] == "succeeded"  # type: ignore[index]
    # the toxics really were there during the run: the Toolkit's own log names them ...
    log = (tmp_path / "chaostoolkit.log").read_text()
    assert "raft-latency" in log
    # ... and the rollback healed every proxy
    state = proxied.toxiproxy.api("/proxies")
    assert all(p["enabled"] and p["toxics"] == [] for p in state.values()), state
    code, _, body = http(proxied.servers[2], "/v1/kv/chaostoolkit/cut?raw&consistent")
    assert (code, body) == (200, b"cut")


def test_the_steady_state_deviates_when_quorum_is_cut(proxied: ProxiedCluster, tmp_path: Path) -> None:  # noqa: F811
    """The same experiment must notice a broken cluster: with two of three servers' Raft cut off
    before it starts, its steady-state hypothesis fails and `chaos run` says so."""
    for name in ("rpc-node2", "rpc-node3"):
        proxied.toxiproxy.api(f"/proxies/{name}", "POST", {"enabled": False})
    host = proxied.toxiproxy.url.split("//")[1].rsplit(":", 1)[0]
    env = {"TOXIPROXY_HOST": host, "TOXIPROXY_PORT": "8474", "CONSUL_HTTP_ADDR": proxied.http_proxy}
    _, journal, out = run_chaos(tmp_path, env)
    # (chaostoolkit 1.19 still calls such a run "completed" and exits 0: the journal says what happened)
    assert journal["steady_states"]["before"]["steady_state_met"] is False, out  # type: ignore[index]
    assert journal["run"] == [], "the method must not run when the steady state is not met"
