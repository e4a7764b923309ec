"""A running client agent (started as the gossip bench starts one) imports none of the modules
tests/unit/test_lean_agent.py LAZY lists: that test probes the imports of the agent verb and its config
statically; this one also covers what start-up and the first API request import (ACL set-up, config
validation, the HTTP handlers), read from the interpreter's own `-X importtime` report."""

from __future__ import annotations

import re
import sys

from tests.harness import AgentProc, Cluster, _died, new_block, wait_for
from tests.unit.test_lean_agent import LAZY

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.M)


def test_a_running_client_agent_leaves_unused_features_unimported(cluster: Cluster) -> None:
    ip = f"{new_block()}.1"
    argv = [sys.executable, "-m", "pyconsul.agent", "agent", "-node=lean", f"-bind={ip}", f"-client={ip}",
            f"-data-dir={cluster.tmp / 'lean'}"]
    p = AgentProc("lean", argv, cluster.tmp / "lean.log", ip=ip)
    cluster.procs.append(p)
    p.start({"PYTHONPROFILEIMPORTTIME": "1"})
    wait_for(lambda: p.api("/v1/agent/self") if p.running() else _died(p), 20, "agent HTTP")
    p.api("/v1/agent/members")
    p.stop()
    loaded = set(_IMPORTED.findall(p.log()))
    assert {"pyconsul.agent.agent", "pyconsul.agent.dns.server", "pyconsul.agent.http.server"} <= loaded
    # asyncio's attempts to import ssl are reported although agent/__init__.py made them fail (not loaded)
    bad = {name: why for name, why in LAZY.items() if name in loaded and name != "ssl"}
    assert not bad, f"imported by a running client agent although only needed for: {bad}"
