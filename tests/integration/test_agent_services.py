"""The agent's own services and checks with real agents: HTTP registration reaching the catalog through
anti-entropy, TTL checks, maintenance, persistence across a restart, repair of catalog edits, config-file
services and reload, and bad input (script checks refused by default)."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.harness import AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration

FAST = {"performance": {"raft_profile": "fast"}}


def http(p: AgentProc, path: str, method: str = "GET", body: Any = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(f"http://{p.http}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def put(p: AgentProc, path: str, body: Any = None) -> None:
    code, text = http(p, path, "PUT", body)
    assert code == 200, f"{path}: {code} {text}"


def _server(cluster: Cluster, ip: str, *extra: str) -> AgentProc:
    conf = cluster.tmp / "fast.json"
    conf.write_text(json.dumps(FAST))
    s = cluster.agent("srv", f"{ip}.1", "-server", "-bootstrap-expect=1", f"-config-file={conf}", *extra)
    wait_for(lambda: s.api("/v1/status/leader"), 30, "a leader")
    return s


def _catalog_ids(p: AgentProc, name: str) -> list[tuple[str, str]]:
    return [(x["Node"], x["ServiceID"]) for x in p.api(f"/v1/catalog/service/{name}")]


def _health_status(p: AgentProc, name: str, check_id: str) -> str | None:
    for entry in p.api(f"/v1/health/service/{name}"):
        for c in entry["Checks"]:
            if c["CheckID"] == check_id:
                return str(c["Status"])
    return None


def test_register_on_a_client_reaches_the_catalog_with_ttl_and_maintenance(cluster: Cluster) -> None:
    ip = new_block()
    s = _server(cluster, ip)
    c = cluster.agent("cli", f"{ip}.2", f"-join={ip}.1")
    put(c, "/v1/agent/service/register", {"Name": "web", "ID": "web1", "Port": 8080, "Tags": ["v1"],
                                           "Meta": {"team": "a"}, "Check": {"TTL": "30s", "CheckID": "web-ttl"}})
    assert c.api("/v1/agent/services")["web1"]["Port"] == 8080
    stats = c.api("/v1/agent/self")["Stats"]["agent"]
    assert (stats["services"], stats["checks"], stats["check_ttls"]) == ("1", "1", "1")
    wait_for(lambda: _catalog_ids(s, "web") == [("cli", "web1")], 30, "web1 in the catalog")
    assert _health_status(s, "web", "web-ttl") == "critical"  # Consul's initial status
    code, _ = http(c, "/v1/agent/health/service/id/web1?format=text")
    assert code == 503

    put(c, "/v1/agent/check/pass/web-ttl?note=all+good")
    wait_for(lambda: _health_status(s, "web", "web-ttl") == "passing", 15, "TTL pass in the catalog")
    assert [e["Service"]["ID"] for e in s.api("/v1/health/service/web?passing")] == ["web1"]
    code, text = http(c, "/v1/agent/health/service/name/web")
    assert code == 200 and json.loads(text)[0]["AggregatedStatus"] == "passing"

    put(c, "/v1/agent/check/fail/web-ttl")
    wait_for(lambda: s.api("/v1/health/service/web?passing") == [], 15, "web gone from ?passing")
    put(c, "/v1/agent/check/update/web-ttl", {"Status": "warning", "Output": "slow"})
    wait_for(lambda: _health_status(s, "web", "web-ttl") == "warning", 15, "warning in the catalog")
    assert http(c, "/v1/agent/health/service/id/web1")[0] == 429

    put(c, "/v1/agent/service/maintenance/web1?enable=true&reason=deploy")
    wait_for(lambda: _health_status(s, "web", "_service_maintenance:web1") == "critical", 15, "maintenance")
    code, text = http(c, "/v1/agent/health/service/id/web1")
    assert code == 503 and json.loads(text)["AggregatedStatus"] == "maintenance"
    notes = c.api("/v1/agent/checks")["_service_maintenance:web1"]["Notes"]
    assert notes == "deploy"
    put(c, "/v1/agent/service/maintenance/web1?enable=false")
    put(c, "/v1/agent/maintenance?enable=true")
    wait_for(lambda: any(x["CheckID"] == "_node_maintenance" for x in s.api("/v1/health/node/cli")), 15,
             "node maintenance in the catalog")
    put(c, "/v1/agent/maintenance?enable=false")

    put(c, "/v1/agent/service/deregister/web1")
    wait_for(lambda: _catalog_ids(s, "web") == [], 15, "web1 deregistered")
    assert all(x["CheckID"] in ("serfHealth",) for x in s.api("/v1/health/node/cli"))


def test_survives_restart_and_catalog_edits_are_repaired(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCONSUL_TEST_AE_INTERVAL", "1")  # full anti-entropy syncs every 1-2 s
    ip = new_block()
    s = _server(cluster, ip)
    put(s, "/v1/agent/service/register", {"Name": "db", "Port": 5432, "Check": {"TTL": "1h"}})
    put(s, "/v1/agent/check/register", {"Name": "disk", "TTL": "1h"})
    put(s, "/v1/agent/check/warn/disk?note=80%25")
    wait_for(lambda: _catalog_ids(s, "db") == [("srv", "db")], 30, "db in the catalog")

    # someone edits the catalog behind the agent's back: the local state wins
    put(s, "/v1/catalog/deregister", {"Node": "srv", "ServiceID": "db"})
    put(s, "/v1/catalog/register", {"Node": "srv", "Address": f"{ip}.1",
                                    "Service": {"Service": "stray", "ID": "stray"}})
    wait_for(lambda: _catalog_ids(s, "db") == [("srv", "db")] and _catalog_ids(s, "stray") == [], 20,
             "anti-entropy restored db and removed stray")

    s.stop()
    s.start({"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    wait_for(lambda: s.api("/v1/agent/services"), 30, "agent back with its services")
    assert set(s.api("/v1/agent/services")) == {"db"}
    disk = s.api("/v1/agent/checks")["disk"]
    assert (disk["Status"], disk["Output"]) == ("warning", "80%")
    wait_for(lambda: _catalog_ids(s, "db") == [("srv", "db")], 30, "db in the catalog after restart")


def test_config_file_services_and_reload(cluster: Cluster) -> None:
    ip = new_block()
    conf_dir = cluster.tmp / "conf.d"
    conf_dir.mkdir()
    (conf_dir / "fast.json").write_text(json.dumps(FAST))
    (conf_dir / "web.json").write_text(json.dumps({"service": {"name": "web", "port": 80,
                                                               "check": {"ttl": "10m"}}}))
    s = cluster.agent("srv", f"{ip}.1", "-server", "-bootstrap-expect=1", f"-config-dir={conf_dir}")
    wait_for(lambda: s.api("/v1/status/leader"), 30, "a leader")
    assert set(s.api("/v1/agent/services")) == {"web"}
    wait_for(lambda: _catalog_ids(s, "web") == [("srv", "web")], 30, "web in the catalog")

    (conf_dir / "web.json").unlink()
    (conf_dir / "api.json").write_text(json.dumps({"services": [{"name": "api", "port": 81}],
                                                   "checks": [{"name": "mem", "ttl": "10m"}]}))
    put(s, "/v1/agent/reload")
    assert set(s.api("/v1/agent/services")) == {"api"} and "mem" in s.api("/v1/agent/checks")
    wait_for(lambda: _catalog_ids(s, "web") == [] and _catalog_ids(s, "api") == [("srv", "api")], 20,
             "catalog follows the reload")

    (conf_dir / "db.json").write_text(json.dumps({"service": {"name": "db"}}))
    s.signal(signal.SIGHUP)
    wait_for(lambda: "db" in s.api("/v1/agent/services"), 15, "SIGHUP reload")

    (conf_dir / "bad.json").write_text(json.dumps({"service": {"port": 1}}))
    code, text = http(s, "/v1/agent/reload", "PUT")
    assert code == 500 and "Missing service name" in text
    assert set(s.api("/v1/agent/services")) == {"api", "db"}, "a failed reload changes nothing"
    assert s.running()


def test_bad_input_and_script_checks_refused_by_default(cluster: Cluster, tmp_path: Path) -> None:
    ip = new_block()
    s = _server(cluster, ip)
    marker = tmp_path / "pwned"
    script = {"Name": "evil", "Args": ["/bin/touch", str(marker)], "Interval": "1s"}
    code, text = http(s, "/v1/agent/check/register", "PUT", script)
    assert code == 400 and "Scripts are disabled on this agent" in text
    code, text = http(s, "/v1/agent/service/register", "PUT", {"Name": "x", "Check": script})
    assert code == 400 and "Scripts are disabled" in text
    assert s.api("/v1/agent/checks") == {} and s.api("/v1/agent/services") == {}

    cases = [
        ("/v1/agent/service/register", {"Port": 80}, 400, "Missing service name"),
        ("/v1/agent/service/register", {"Name": "x", "Port": "80"}, 400, "Port must be an integer"),
        ("/v1/agent/service/register", {"Name": "x", "Check": {"HTTP": "http://x", "Interval": "soon"}}, 400,
         "invalid duration"),
        ("/v1/agent/service/register", {"Name": "x", "Check": {"Interval": "10s"}}, 400, "Invalid check"),
        ("/v1/agent/service/register", b"{nope", 400, "Request decode failed"),
        ("/v1/agent/check/register", {"TTL": "10s"}, 400, "Missing check name"),
        ("/v1/agent/check/pass/nope", None, 404, 'Unknown check ID "nope"'),
        ("/v1/agent/check/deregister/nope", None, 404, 'Unknown check ID "nope"'),
        ("/v1/agent/service/deregister/nope", None, 404, 'Unknown service ID "nope"'),
        ("/v1/agent/service/maintenance/nope?enable=true", None, 404, 'No service registered with ID "nope"'),
        ("/v1/agent/maintenance", None, 400, "Missing value for enable"),
    ]
    for path, body, want, message in cases:
        code, text = http(s, path, "PUT", body)
        assert (code, message in text) == (want, True), (path, code, text)
    for path, want, message in [
        ("/v1/agent/service/nope", 404, "unknown service ID: nope"),
        ("/v1/agent/health/service/id/nope", 404, "ServiceId nope not found"),
        ("/v1/agent/health/service/name/nope", 404, "ServiceName nope Not Found"),
        ("/v1/agent/services?filter=" + urllib.parse.quote("Service =="), 400, "1:11 (10): no match found"),
        ("/v1/agent/checks?filter=" + urllib.parse.quote("Nope == 1"), 400, "Selector"),
    ]:
        code, text = http(s, path)
        assert (code, message in text) == (want, True), (path, code, text)

    put(s, "/v1/agent/service/register", {"Name": "web", "Tags": ["blue"]})
    put(s, "/v1/agent/service/register", {"Name": "api", "Tags": ["green"]})
    flt = urllib.parse.quote('"blue" in Tags')
    assert set(s.api(f"/v1/agent/services?filter={flt}")) == {"web"}

    # hash-based blocking on one service: answers when the service changes
    h = s.api("/v1/agent/service/web")["ContentHash"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(s.api, f"/v1/agent/service/web?hash={h}&wait=20s", "GET", None, 30.0)
        put(s, "/v1/agent/service/register", {"Name": "api", "Tags": ["green", "v2"]})  # another service
        with pytest.raises(concurrent.futures.TimeoutError):
            fut.result(timeout=0.5)  # still blocked
        put(s, "/v1/agent/service/register", {"Name": "web", "Tags": ["blue"], "Port": 81})
        changed = fut.result(timeout=10)
    assert changed["Port"] == 81 and changed["ContentHash"] != h
    assert not marker.exists(), "no command ran"


def test_service_on_a_sh_client_is_found_from_bj_and_leaves_passing_within_a_ttl(cluster: Cluster) -> None:
    """Issue 12's "done when", over HTTP: a service with a TTL check on an SH client, seen from BJ with
    ?dc=sh&passing, and gone from ?passing within one TTL once updates stop."""
    ip = new_block()
    bj = cluster.agent("bj1", f"{ip}.1", "-server", "-bootstrap", "-datacenter=bj")
    sh = cluster.agent("sh1", f"{ip}.2", "-server", "-bootstrap", "-datacenter=sh")
    shc = cluster.agent("shc", f"{ip}.3", "-datacenter=sh", f"-join={ip}.2")
    bj.cli("join", "-wan", f"{ip}.2")
    for p in (bj, sh):
        wait_for(lambda p=p: p.api("/v1/status/leader"), 30, f"{p.name} leader")
    wait_for(lambda: bj.api("/v1/catalog/datacenters") == ["bj", "sh"], 30, "both DCs known")

    put(shc, "/v1/agent/service/register", {"Name": "web", "Port": 8080, "Check": {"TTL": "3s"}})
    put(shc, "/v1/agent/check/pass/service:web")

    def passing_from_bj() -> list[str]:
        return [e["Node"]["Node"] for e in bj.api("/v1/health/service/web?dc=sh&passing")]

    wait_for(lambda: passing_from_bj() == ["shc"], 30, "web passing in SH, seen from BJ")
    assert bj.api("/v1/health/service/web?passing") == [], "not in BJ's own catalog"
    wait_for(lambda: passing_from_bj() == [], 3 + 5, "web gone from ?passing within a TTL (plus sync slack)")
    assert _health_status(sh, "web", "service:web") == "critical"


def test_a_service_critical_past_deregister_critical_service_after_is_reaped(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """deregister_critical_service_after with a real agent. Consul's reap interval (30 s) and least timeout
    (1 min) are shortened to 1 s by the test-only PYCONSUL_TEST_REAP_INTERVAL."""
    monkeypatch.setenv("PYCONSUL_TEST_REAP_INTERVAL", "1")
    ip = new_block()
    s = _server(cluster, ip)
    put(s, "/v1/agent/service/register", {"Name": "web", "Port": 80,
                                          "Check": {"TTL": "1s", "DeregisterCriticalServiceAfter": "2s"}})
    put(s, "/v1/agent/service/register", {"Name": "db", "Port": 5432, "Check": {"TTL": "1s"}})  # not reaped
    put(s, "/v1/agent/check/pass/service:web")
    put(s, "/v1/agent/check/pass/service:db")
    wait_for(lambda: _catalog_ids(s, "web") == [("srv", "web")], 30, "web in the catalog")
    wait_for(lambda: _health_status(s, "web", "service:web") == "critical", 15, "web's TTL expired")
    assert "web" in s.api("/v1/agent/services"), "not reaped as soon as it turns critical"
    wait_for(lambda: "web" not in s.api("/v1/agent/services"), 15, "web reaped from the agent")
    wait_for(lambda: _catalog_ids(s, "web") == [], 15, "web gone from the catalog")
    assert "service:web" not in s.api("/v1/agent/checks")
    assert _health_status(s, "db", "service:db") == "critical" and "db" in s.api("/v1/agent/services")
