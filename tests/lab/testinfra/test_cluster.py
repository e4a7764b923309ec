"""A deployed cluster, checked on its hosts (see conftest.py for how to run these).

Per host: the agent's ports listen (8300 and 8302 on servers, 8301 and 8500 everywhere; 8600, DNS, is not
checked here: test_dns.py resolves through it where the role forwards DNS), its service runs, its config validates.
Per cluster: one leader per datacenter, Raft peers == bootstrap_expect, every agent of a
datacenter agrees on the leader and sees the datacenter's members, `members -wan` lists every
server of every datacenter from each side, and a KV write survives a rolling restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.lab.testinfra.conftest import Agent

ROOT = Path(__file__).resolve().parents[3]


def poll(fn: Any, timeout: float = 30.0, interval: float = 0.5) -> Any:
    """Call fn until it returns without AssertionError; re-raise the last one at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


# ------------------------------------------------------------------ per host


def test_agent_ports_listen(host: Any, agent: Agent) -> None:
    tcp = [8301, agent.http_port] + ([8300, 8302] if agent.server else [])
    udp = [8301] + ([8302] if agent.server else [])
    for port in tcp:
        assert host.socket(f"tcp://{agent.addr}:{port}").is_listening, f"{agent.name}: tcp {port}"
    for port in udp:
        assert host.socket(f"udp://{agent.addr}:{port}").is_listening, f"{agent.name}: udp {port}"


def test_agent_service_runs(host: Any, agent: Agent) -> None:
    if host.file("/run/systemd/system").is_directory:
        assert host.service("pyconsul").is_running
        assert host.service("pyconsul").is_enabled
    else:
        out = host.run(f"{agent.venv}/bin/supervisorctl -c /etc/pyconsul/supervisord.conf status pyconsul")
        assert "RUNNING" in out.stdout, out.stdout + out.stderr


def test_agent_config_validates(host: Any, agent: Agent) -> None:
    cmd = host.run(f"{agent.venv}/bin/pyconsul validate /etc/pyconsul/agent.d")
    assert cmd.rc == 0, cmd.stdout + cmd.stderr
    cfg = json.loads(host.file("/etc/pyconsul/agent.d/config.json").content_string)
    assert cfg["datacenter"] == agent.dc
    assert cfg["server"] is agent.server
    assert cfg["bind_addr"] == agent.addr
    assert cfg.get("encrypt"), "gossip encryption is on"


def test_agent_runs_as_its_own_user_and_owns_its_files(host: Any, agent: Agent) -> None:
    user = host.user("pyconsul")
    assert user.exists and user.shell == "/usr/sbin/nologin" and user.uid != 0
    if host.file("/run/systemd/system").is_directory:
        pid = host.check_output("systemctl show -p MainPID --value pyconsul")
    else:
        pid = host.check_output(f"{agent.venv}/bin/supervisorctl -c /etc/pyconsul/supervisord.conf pid pyconsul")
        assert host.file(f"/proc/{host.file('/run/pyconsul/supervisord.pid').content_string.strip()}").user == \
            "pyconsul", "supervisord switches to the agent's user"
    assert host.file(f"/proc/{pid.strip()}").user == "pyconsul", f"{agent.name}: the agent runs as root"
    config = host.file("/etc/pyconsul/agent.d/config.json")
    assert (config.user, config.mode) == ("pyconsul", 0o640)
    data = host.file("/var/lib/pyconsul")
    assert (data.user, data.group, data.mode) == ("pyconsul", "pyconsul", 0o700)
    assert host.check_output("find /var/lib/pyconsul /var/log/pyconsul ! -user pyconsul") == ""


# ------------------------------------------------------------------ per cluster


def test_one_leader_per_datacenter(datacenters: dict[str, list[Agent]]) -> None:
    for dc, members in datacenters.items():
        reporter = next((a for a in members if a.server), members[0])
        conf = reporter.get("/v1/operator/raft/configuration")
        leaders = [s for s in conf["Servers"] if s["Leader"]]
        assert len(leaders) == 1, f"{dc}: {conf['Servers']}"
        leader_addr = leaders[0]["Address"]
        for a in members:  # clients too: every agent of the datacenter knows the same leader
            assert a.get("/v1/status/leader") == leader_addr, f"{a.name} in {dc}"


def test_raft_peers_equal_bootstrap_expect(agents: list[Agent]) -> None:
    for a in agents:
        if not a.server:
            continue
        peers = a.get("/v1/status/peers")
        assert len(peers) == a.expect, f"{a.name}: peers {peers}, bootstrap_expect {a.expect}"
        conf = a.get("/v1/operator/raft/configuration")
        assert sum(1 for s in conf["Servers"] if s["Voter"]) == a.expect


def test_lan_members_of_each_datacenter(agents: list[Agent], everyone: list[Agent]) -> None:
    for a in agents:
        want = {b.name for b in everyone if b.dc == a.dc}
        alive = {m["Name"] for m in a.get("/v1/agent/members") if m["Status"] == 1}
        assert alive == want, f"{a.name} in {a.dc} sees {sorted(alive)}, the inventory has {sorted(want)}"


def test_members_wan_lists_all_servers_from_each_side(agents: list[Agent], everyone: list[Agent]) -> None:
    want = {a.wan_name for a in everyone if a.server}
    for a in agents:
        if not a.server:
            continue
        alive = {m["Name"] for m in a.get("/v1/agent/members?wan=1") if m["Status"] == 1}
        assert alive == want, f"{a.name} sees WAN {sorted(alive)}"
        out = a.host.check_output(f"{a.venv}/bin/pyconsul members -wan -http-addr={a.addr}:{a.http_port}")
        for name in want:
            assert name in out, f"{name} missing from `members -wan` on {a.name}:\n{out}"


def test_kv_write_survives_rolling_restart(datacenters: dict[str, list[Agent]], inventory: str) -> None:
    """Write in BJ (or the first datacenter), restart every agent with rolling_restart.yml,
    read the value back from every server of that datacenter."""
    if os.environ.get("PYCONSUL_SKIP_ROLLING_RESTART"):
        pytest.skip("PYCONSUL_SKIP_ROLLING_RESTART is set")
    dc = "bj" if "bj" in datacenters else sorted(datacenters)[0]
    servers = [a for a in datacenters[dc] if a.server]
    if not servers:
        pytest.skip(f"no server of datacenter {dc} among --hosts")
    key, value = f"testinfra/rolling-restart/{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    status, text = servers[0].http("PUT", f"/v1/kv/{key}", value)
    assert (status, text.strip()) == (200, "true"), text

    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/rolling_restart.yml", "-i", inventory],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]

    for a in servers:
        def read(a: Agent = a) -> None:
            status, text = a.http("GET", f"/v1/kv/{key}?raw")
            assert status == 200 and text.strip() == value, f"{a.name}: {status} {text}"
        poll(read)
    servers[0].http("DELETE", f"/v1/kv/{key}")
