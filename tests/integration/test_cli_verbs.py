"""The issue-12 verbs against a real agent: `lock` (mutual exclusion, a semaphore of 2), `watch` with a
handler, `monitor`, `services register|deregister` and `maint`. Every `pyconsul` process started here
is tracked by PID and stopped at the end; the commands they run wait for a release file the test
creates, so none outlives its test."""

from __future__ import annotations

import base64
import json
import signal
import sys
import urllib.error
from pathlib import Path

import pytest

from tests.harness import ROOT, AgentProc, Cluster, Proc, new_block, wait_for

pytestmark = pytest.mark.integration


def _server(cluster: Cluster) -> AgentProc:
    ip = new_block()
    a = cluster.agent("s1", f"{ip}.1", "-server", "-bootstrap")
    wait_for(lambda: a.api("/v1/status/leader"), 40, "a leader")
    return a


def _pyconsul(cluster: Cluster, agent: AgentProc, name: str, *args: str) -> Proc:
    p = Proc(name, [sys.executable, "-m", "pyconsul.agent", *args], cluster.tmp / f"{name}.log")
    p.start({"PYTHONPATH": str(ROOT), "CONSUL_HTTP_ADDR": agent.http, "SHELL": "/bin/sh"})
    cluster.procs.append(p)
    return p


def _holder(tmp: Path, who: str) -> str:
    """A child command: note the start, wait for its release file, note the end."""
    out, release = tmp / "events", tmp / f"release-{who}"
    return (f"echo start {who} >> {out}; while [ ! -e {release} ]; do sleep 0.05; done; "
            f"echo end {who} >> {out}")


def _events(tmp: Path) -> list[str]:
    try:
        return (tmp / "events").read_text().splitlines()
    except FileNotFoundError:
        return []


def _keys(agent: AgentProc, prefix: str) -> list[str]:
    try:
        return list(agent.api(f"/v1/kv/{prefix}?keys") or [])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


def _sessions(agent: AgentProc) -> int:
    return len(agent.api("/v1/session/list") or [])


def _exited(p: Proc) -> int | None:
    return p.popen.poll() if p.popen is not None else None


def test_lock_excludes_a_second_holder(cluster: Cluster) -> None:
    a = _server(cluster)
    tmp = cluster.tmp
    try:
        one = _pyconsul(cluster, a, "lock-1", "lock", "svc/leader", _holder(tmp, "1"))
        wait_for(lambda: _events(tmp) == ["start 1"], 20, "the first holder to start")
        two = _pyconsul(cluster, a, "lock-2", "lock", "svc/leader", _holder(tmp, "2"))
        wait_for(lambda: _sessions(a) == 2, 20, "the second process contending (its session exists)")
        wait_for(lambda: a.api("/v1/kv/svc/leader/.lock")[0]["Session"], 10, "the lock key held")
        assert _events(tmp) == ["start 1"]  # the second waits while the first holds the lock
        (tmp / "release-1").touch()
        wait_for(lambda: _events(tmp) == ["start 1", "end 1", "start 2"], 20, "the second holder after the first")
        assert one.popen is not None and wait_for(lambda: _exited(one) is not None, 20, "lock-1 exit") is not None
        assert one.popen.returncode == 0
        (tmp / "release-2").touch()
        wait_for(lambda: _exited(two) is not None, 20, "lock-2 exit")
        assert two.popen is not None and two.popen.returncode == 0
        assert _events(tmp) == ["start 1", "end 1", "start 2", "end 2"]
        wait_for(lambda: _sessions(a) == 0, 10, "both sessions destroyed")
        assert _keys(a, "svc/") == []  # the lock key deleted
    finally:
        for who in ("1", "2"):
            (tmp / f"release-{who}").touch()


def test_semaphore_admits_two(cluster: Cluster) -> None:
    a = _server(cluster)
    tmp = cluster.tmp
    try:
        procs = [_pyconsul(cluster, a, f"sem-{w}", "lock", "-n=2", "jobs", _holder(tmp, w)) for w in "abc"]
        wait_for(lambda: len(_events(tmp)) == 2 and _sessions(a) == 3, 20, "two holders and a third contender")
        started = {line.split()[1] for line in _events(tmp)}
        waiting = ({"a", "b", "c"} - started).pop()
        doc = json.loads(base64.b64decode(a.api("/v1/kv/jobs/.lock")[0]["Value"]))
        assert doc["Limit"] == 2 and len(doc["Holders"]) == 2
        assert len(_events(tmp)) == 2  # the third is still waiting
        first = sorted(started)[0]
        (tmp / f"release-{first}").touch()
        wait_for(lambda: f"start {waiting}" in _events(tmp), 20, "the third admitted after a release")
        for w in "abc":
            (tmp / f"release-{w}").touch()
        wait_for(lambda: all(_exited(p) is not None for p in procs), 20, "every lock process to exit")
        assert [p.popen.returncode if p.popen else None for p in procs] == [0, 0, 0]
        wait_for(lambda: _sessions(a) == 0, 10, "every session destroyed")
        assert _keys(a, "jobs/") == []  # contender keys deleted; the last one out deleted .lock
    finally:
        for w in "abc":
            (tmp / f"release-{w}").touch()


def test_watch_key_runs_handler_on_change(cluster: Cluster) -> None:
    a = _server(cluster)
    out = cluster.tmp / "watch.out"
    a.cli("kv", "put", "cfg/x", "v1")
    w = _pyconsul(cluster, a, "watch", "watch", "-type=key", "-key=cfg/x",
                  f'cat >> {out}; echo " index=$CONSUL_INDEX" >> {out}')

    def seen() -> list[dict[str, object]]:
        text = out.read_text() if out.exists() else ""
        return [json.loads(line.split(" index=")[0]) for line in text.replace("\n index=", " index=").splitlines()]

    wait_for(lambda: [e["Value"] for e in seen()] == ["djE="], 20, "the handler run for the first value")
    a.cli("kv", "put", "cfg/x", "v2")
    wait_for(lambda: [e["Value"] for e in seen()] == ["djE=", "djI="], 20, "the handler run after a change")
    assert "index=" in out.read_text()
    w.signal(signal.SIGTERM)
    wait_for(lambda: _exited(w) is not None, 10, "watch to exit on SIGTERM")
    assert w.popen is not None and w.popen.returncode == 0


def test_watch_without_handler_prints_once(cluster: Cluster) -> None:
    a = _server(cluster)
    a.cli("kv", "put", "cfg/y", "hello")
    cp = a.cli("watch", "-type=keyprefix", "-prefix=cfg/")
    data = json.loads(cp.stdout)
    assert [e["Key"] for e in data] == ["cfg/y"]
    cp = a.cli("watch", "-type=nodes", "-key=x", check=False)
    assert cp.returncode == 1 and "Invalid parameters: [key]" in cp.stderr


def test_monitor_shows_log_lines(cluster: Cluster) -> None:
    a = _server(cluster)
    m = _pyconsul(cluster, a, "monitor", "monitor", "-log-level=debug")

    def logged() -> bool:
        a.cli("join", "127.0.0.1:1", check=False)  # a failed join logs a warning on the agent
        return "Failed to join 127.0.0.1" in m.log()

    wait_for(logged, 20, "the agent's log line in the monitor's output", interval=0.5)
    m.signal(signal.SIGINT)
    wait_for(lambda: _exited(m) is not None, 10, "monitor to exit on SIGINT")
    assert m.popen is not None and m.popen.returncode == 0


def test_services_register_maint_deregister(cluster: Cluster, tmp_path: Path) -> None:
    a = _server(cluster)
    assert a.cli("services", "register", "-name=web", "-port=8080", "-tag=v1").stdout == "Registered service: web\n"
    f = tmp_path / "db.json"
    f.write_text(json.dumps({"service": {"name": "db", "id": "db1", "port": 5432,
                                         "check": {"ttl": "30s", "check_id": "db-ttl"}}}))
    a.cli("services", "register", str(f))
    svcs = a.api("/v1/agent/services")
    assert svcs["web"]["Port"] == 8080 and svcs["web"]["Tags"] == ["v1"] and svcs["db1"]["Service"] == "db"
    assert "db-ttl" in a.api("/v1/agent/checks")
    a.cli("maint", "-enable", "-service=web", "-reason=deploy")
    assert a.cli("maint").stdout == "Service:\n  ID:     web\n  Reason: deploy\n\n"
    a.cli("maint", "-disable", "-service=web")
    assert a.cli("maint").stdout == ""
    assert a.cli("services", "deregister", str(f)).stdout == "Deregistered service: db1\n"
    a.cli("services", "deregister", "-id=web")
    assert a.api("/v1/agent/services") == {}
    assert a.cli("reload").stdout == "Configuration reload triggered\n"
