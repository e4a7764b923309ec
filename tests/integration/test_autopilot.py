"""Autopilot's stable server introduction with real agents on loopback (issue 14 item 2): servers that join
an existing cluster come in as non-voters and are promoted once healthy for server_stabilization_time (1 s
here); a server the others refuse on RPC TLS (a client certificate under verify_server_hostname) stays a
non-voter, so it never weakens the quorum: with three real servers, one of them killed, writes go on."""

from __future__ import annotations

import datetime
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent.cli.tls import CertSpec, create_ca, create_cert
from tests.harness import AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration

STABILIZATION = 1.0


def _pki(d: Path) -> dict[str, str]:
    ca, ca_key = create_ca("consul", 30)
    files: dict[str, bytes] = {"ca": ca}
    for name in ("server", "client"):
        files[name], files[f"{name}_key"] = create_cert(CertSpec(name, "dc1", "consul", 30), ca, ca_key)
    out = {}
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
        out[name] = str(d / f"{name}.pem")
    return out


def _conf(tmp: Path, name: str, pki: dict[str, str], cert: str) -> str:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({
        "performance": {"raft_multiplier": 1}, "ca_file": pki["ca"], "cert_file": pki[cert],
        "key_file": pki[f"{cert}_key"], "verify_incoming": True, "verify_outgoing": True,
        "verify_server_hostname": True, "autopilot": {"server_stabilization_time": f"{STABILIZATION}s"}}))
    return f"-config-file={path}"


def http(p: AgentProc, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://{p.http}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def voters(p: AgentProc) -> dict[str, bool]:
    code, body = http(p, "/v1/operator/raft/configuration")
    assert code == 200, body
    return {s["Node"]: s["Voter"] for s in json.loads(body)["Servers"]}


def health(p: AgentProc) -> dict[str, Any]:
    code, body = http(p, "/v1/operator/autopilot/health")
    assert code in (200, 429), body
    reply: dict[str, Any] = json.loads(body)
    assert (code == 200) == reply["Healthy"]
    return reply


def leader(ps: list[AgentProc]) -> str:
    seen = {http(p, "/v1/status/leader")[1] for p in ps}
    return str(json.loads(seen.pop())) if len(seen) == 1 and b'""' not in seen else ""


def test_joined_servers_are_non_voters_until_stable_and_a_rogue_one_never_votes(cluster: Cluster,
                                                                                 tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    ip = new_block()
    ps = [cluster.agent(f"s{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", _conf(tmp_path, f"s{i}", pki, "server"))
          for i in (1, 2, 3)]
    for p in ps[1:]:
        p.cli("join", f"{ip}.1")
    wait_for(lambda: leader(ps), 30, "a leader over TLS")
    assert voters(ps[0]) == {"s1": True, "s2": True, "s3": True}  # the bootstrap servers vote from the start
    conf = json.loads(http(ps[1], "/v1/operator/autopilot/configuration")[1])
    assert (conf["ServerStabilizationTime"], conf["LastContactThreshold"], conf["MaxTrailingLogs"]) == \
        ("1s", "200ms", 250)
    code, body = http(ps[1], "/v1/operator/autopilot/configuration", "PUT",
                      json.dumps({**conf, "LastContactThreshold": "0s"}).encode())
    assert code == 400 and b"LastContactThreshold" in body, (code, body)

    # a server with a client certificate: in the gossip pool and the Raft configuration, never a voter
    rogue = cluster.agent("rogue", f"{ip}.9", "-server", f"-join={ip}.1", _conf(tmp_path, "rogue", pki, "client"))
    wait_for(lambda: voters(ps[0]).get("rogue") is False, 20, "the rogue server added as a non-voter")

    def rogue_unhealthy_for_long() -> bool:
        h = health(ps[0])
        r = next((s for s in h["Servers"] if s["Name"] == "rogue"), None)
        if r is None or r["Healthy"]:
            return False
        since = datetime.datetime.fromisoformat(r["StableSince"]).timestamp()
        return time.time() - since >= 3 * STABILIZATION

    wait_for(rogue_unhealthy_for_long, 20, "the rogue server unhealthy for 3x the stabilization time")
    assert voters(ps[0])["rogue"] is False
    h = health(ps[1])  # (answered by the leader)
    assert h["Healthy"] is False and h["FailureTolerance"] == 1, h
    assert http(rogue, "/v1/kv/x?stale")[0] != 200  # it never received the log
    peers = ps[0].cli("operator", "raft", "list-peers").stdout.splitlines()
    assert [line.split()[4] for line in peers if line.startswith("rogue ")] == ["false"]

    # one of the three real servers dies (the leader): the other two are a quorum of the three voters
    name = leader(ps).split(":")[0]
    victim = next(p for p in ps if p.ip == name)
    victim.kill9()
    rest = [p for p in ps if p is not victim]
    wait_for(lambda: http(rest[0], "/v1/kv/after-kill", "PUT", b"1") == (200, b"true"), 30,
             "a write with one of the three real servers dead")

    # a good server joins: a non-voter first, a voter once it has been healthy for the stabilization time
    good = cluster.agent("s4", f"{ip}.4", "-server", f"-join={rest[0].ip}", _conf(tmp_path, "s4", pki, "server"))
    wait_for(lambda: voters(rest[0]).get("s4") is False, 20, "s4 added as a non-voter")
    wait_for(lambda: voters(rest[0]).get("s4") is True, 20, "s4 promoted to a voter")
    assert voters(rest[0])["rogue"] is False
    wait_for(lambda: http(good, "/v1/kv/after-kill?stale&raw") == (200, b"1"), 20, "s4 holds the log")
    assert http(good, "/v1/kv/after-s4", "PUT", b"1") == (200, b"true")


def test_settings_are_raft_state_a_new_leader_keeps_them(cluster: Cluster, tmp_path: Path) -> None:
    """PUT settings (through the CLI's set-config, on a follower), kill the leader: the new leader reports the
    same settings and indexes, not its config file's."""
    ip = new_block()
    conf = tmp_path / "ap.json"
    conf.write_text(json.dumps({"performance": {"raft_multiplier": 1},
                                "autopilot": {"server_stabilization_time": "1s", "max_trailing_logs": 300}}))
    ps = [cluster.agent(f"s{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=3", f"-config-file={conf}")
          for i in (1, 2, 3)]
    for p in ps[1:]:
        p.cli("join", f"{ip}.1")
    wait_for(lambda: leader(ps), 30, "a leader")

    def settings(p: AgentProc) -> dict[str, Any]:
        code, body = http(p, "/v1/operator/autopilot/configuration")
        assert code == 200, body
        out: dict[str, Any] = json.loads(body)
        return out

    def stored(p: AgentProc) -> dict[str, Any] | None:
        s = settings(p)
        return s if s["ModifyIndex"] else None

    seeded = wait_for(lambda: stored(ps[0]), 10, "the leader's config file settings in the state")
    assert (seeded["MaxTrailingLogs"], seeded["ServerStabilizationTime"]) == (300, "1s")
    name = leader(ps).split(":")[0]
    victim = next(p for p in ps if p.ip == name)
    rest = [p for p in ps if p is not victim]
    out = rest[0].cli("operator", "autopilot", "set-config", "-cleanup-dead-servers=false", "-max-trailing-logs=42",
                      "-last-contact-threshold=300ms").stdout
    assert out == "Configuration updated!\n"
    before = settings(rest[1])
    assert (before["CleanupDeadServers"], before["MaxTrailingLogs"], before["LastContactThreshold"]) == \
        (False, 42, "300ms")
    assert before["CreateIndex"] == seeded["CreateIndex"] and before["ModifyIndex"] > seeded["ModifyIndex"]
    stale = http(rest[0], f"/v1/operator/autopilot/configuration?cas={seeded['ModifyIndex']}", "PUT", b"{}")
    assert stale == (200, b"false")  # CAS on the old ModifyIndex

    victim.kill9()
    def new_leader() -> bool:
        now = leader(rest)
        return bool(now) and not now.startswith(name + ":")

    wait_for(new_leader, 30, "a new leader")
    assert settings(rest[0]) == before
    text = rest[1].cli("operator", "autopilot", "get-config").stdout
    assert "CleanupDeadServers = false\n" in text and "MaxTrailingLogs = 42\n" in text
