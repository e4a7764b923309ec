"""checks/parse.py: both key styles, Go durations, Consul 1.7's validation messages, the script gate."""

from __future__ import annotations

from typing import Any

import pytest

from pyconsul.agent.checks.parse import MIN_INTERVAL, SCRIPTS_DISABLED, parse_check
from pyconsul.agent.errors import BadRequest


def bad(d: dict[str, Any], **kw: Any) -> str:
    kw.setdefault("allow_script", True)
    with pytest.raises(BadRequest) as e:
        parse_check(d, **kw)
    return e.value.message


def test_http_check_camel_case() -> None:
    s = parse_check({"CheckID": "web-http", "Name": "web", "HTTP": "http://127.0.0.1:8080/health",
                     "Method": "POST", "Header": {"X-A": ["1", "2"]}, "Body": "{}", "Interval": "10s",
                     "Timeout": "1s", "TLSSkipVerify": True, "ServiceID": "web1", "Notes": "n",
                     "Status": "passing", "DeregisterCriticalServiceAfter": "90m",
                     "SuccessBeforePassing": 2, "FailuresBeforeCritical": 3}, allow_script=False)
    assert (s.check_id, s.name, s.kind, s.service_id) == ("web-http", "web", "http", "web1")
    assert (s.method, s.header, s.body, s.tls_skip_verify) == ("POST", {"X-A": ("1", "2")}, "{}", True)
    assert (s.interval, s.timeout, s.deregister_critical_service_after) == (10.0, 1.0, 5400.0)
    assert (s.status, s.notes, s.success_before_passing, s.failures_before_critical) == ("passing", "n", 2, 3)


def test_snake_case_config_file_keys() -> None:
    s = parse_check({"check_id": "c1", "name": "mem", "args": ["/bin/true"], "interval": "1m30s",
                     "service_id": "db", "tls_skip_verify": True, "deregister_critical_service_after": "1m",
                     "success_before_passing": 1, "failures_before_critical": 4}, allow_script=True)
    assert (s.check_id, s.kind, s.args, s.interval, s.service_id) == ("c1", "script", ("/bin/true",), 90.0, "db")
    assert (s.deregister_critical_service_after, s.failures_before_critical) == (60.0, 4)
    s2 = parse_check({"ID": "x", "Name": "n", "ScriptArgs": ["a"], "Interval": "5s"}, allow_script=True)
    assert s2.args == ("a",)
    assert parse_check({"name": "n", "script_args": ["a"], "interval": "5s"}, allow_script=True).args == ("a",)


def test_defaults_ttl_alias_tcp() -> None:
    s = parse_check({"Name": "ttl", "TTL": "15s"}, allow_script=False)
    assert (s.check_id, s.kind, s.ttl, s.status, s.interval) == ("ttl", "ttl", 15.0, "critical", 0.0)
    t = parse_check({"name": "db", "tcp": "127.0.0.1:5432", "interval": "10s"}, allow_script=False)
    assert (t.kind, t.tcp, t.timeout) == ("tcp", "127.0.0.1:5432", 0.0)
    a = parse_check({"Name": "al", "AliasService": "web", "AliasNode": "n2"}, allow_script=False)
    assert (a.kind, a.alias_service, a.alias_node) == ("alias", "web", "n2")
    assert parse_check({"name": "al", "alias_node": "n2"}, allow_script=False).kind == "alias"


def test_durations_as_nanoseconds() -> None:
    s = parse_check({"Name": "ttl", "TTL": 30_000_000_000}, allow_script=False)
    assert s.ttl == 30.0


def test_interval_below_one_second_is_clamped() -> None:
    s = parse_check({"Name": "h", "HTTP": "http://x/", "Interval": "100ms"}, allow_script=False)
    assert s.interval == MIN_INTERVAL


def test_consul_validation_messages() -> None:
    need_interval = "Invalid check: Interval must be > 0 for Script, HTTP, or TCP checks"
    no_ttl = "Invalid check: TTL must be > 0 for TTL checks"
    assert bad({"HTTP": "http://x/", "Interval": "1s"}) == "Missing check name"
    assert bad({"Name": "n", "HTTP": "http://x/"}) == need_interval
    assert bad({"Name": "n", "TCP": "a:1", "Interval": "-1s"}) == need_interval
    assert bad({"Name": "n", "TTL": "1s", "Interval": "1s"}) == \
        "Invalid check: Interval and TTL cannot both be specified"
    assert bad({"Name": "n"}) == no_ttl
    assert bad({"Name": "n", "Script": "echo hi", "Interval": "1s"}) == no_ttl
    assert bad({"Name": "n", "AliasService": "w", "TTL": "1s"}) == \
        "Invalid check: TTL must be not be set for Alias checks"
    assert bad({"Name": "n", "AliasService": "w", "Interval": "1s"}) == \
        "Invalid check: Interval must not be set for Alias checks"
    assert bad({"Name": "n", "TTL": "1s", "Status": "great"}) == "Bad check status"
    assert bad({"TTL": "1s", "Status": "great"}, service_id="web") == \
        "Status for checks must 'passing', 'warning', 'critical'"
    assert bad({"Name": "n", "TTL": "soon"}) == 'Request decode failed: time: invalid duration "soon"'
    assert bad({"Name": "n", "HTTP": "http://x/", "TCP": "a:1", "Interval": "1s"}).startswith(
        "Invalid check: Only one check type may be set")
    assert "not supported" in bad({"Name": "n", "DockerContainerID": "c1", "Args": ["true"], "Interval": "1s"})


def test_grpc_checks_are_accepted() -> None:
    s = parse_check({"Name": "g", "GRPC": "127.0.0.1:50051/svc", "GRPCUseTLS": True, "Interval": "100ms"},
                    allow_script=False)
    assert (s.kind, s.grpc, s.grpc_use_tls, s.interval) == ("grpc", "127.0.0.1:50051/svc", True, MIN_INTERVAL)
    assert parse_check({"name": "g", "grpc": "h:1", "interval": "5s", "grpc_use_tls": False},
                       allow_script=False).kind == "grpc"


@pytest.mark.parametrize("d", [
    {"Name": 3, "TTL": "1s"},
    {"Name": "n", "TTL": True},
    {"Name": "n", "TTL": "99999999999h"},
    {"Name": "n", "Args": "echo hi", "Interval": "1s"},
    {"Name": "n", "Args": ["x"] * 2000, "Interval": "1s"},
    {"Name": "n", "HTTP": "http://x/", "Interval": "1s", "Header": {"X": [1]}},
    {"Name": "n", "HTTP": "http://x/", "Interval": "1s", "Header": {"X": ["a\r\nInjected: 1"]}},
    {"Name": "n", "HTTP": "http://x/", "Interval": "1s", "Header": {"Bad Name": ["a"]}},
    {"Name": "n", "HTTP": "http://x/", "Interval": "1s", "Method": "GET /x"},
    {"Name": "n", "HTTP": "http://x/", "Interval": "1s", "Body": "x" * (65 * 1024)},
    {"Name": "n", "TTL": "1s", "SuccessBeforePassing": -1},
    {"Name": "n", "TTL": "1s", "FailuresBeforeCritical": "3"},
    {"Name": "n", "TTL": "1s", "TLSSkipVerify": "yes"},
])
def test_bad_input_is_a_bad_request(d: dict[str, Any]) -> None:
    assert bad(d)


def test_scripts_refused_unless_allowed() -> None:
    d = {"Name": "evil", "Args": ["/bin/sh", "-c", "touch /tmp/pwned"], "Interval": "10s"}
    assert bad(d, allow_script=False) == SCRIPTS_DISABLED
    assert SCRIPTS_DISABLED.startswith("Scripts are disabled on this agent; to enable, configure")
    assert parse_check(d, allow_script=True).kind == "script"
    assert bad({"name": "evil", "args": ["id"], "interval": "10s"}, allow_script=False) == SCRIPTS_DISABLED


def test_service_check_defaults() -> None:
    s = parse_check({"TTL": "10s"}, service_id="web1", service_name="web", allow_script=False)
    assert (s.check_id, s.name, s.service_id) == ("service:web1", "Service 'web' check", "web1")
    s2 = parse_check({"TTL": "10s", "ServiceID": "other"}, service_id="web1", index=1, count=2, allow_script=False)
    assert (s2.check_id, s2.service_id) == ("service:web1:2", "web1")


def test_null_values_are_unset() -> None:
    s = parse_check({"Name": "n", "TTL": "5s", "HTTP": None, "Interval": None, "Args": None}, allow_script=False)
    assert s.kind == "ttl"


def test_readme_limits_are_the_codes() -> None:
    from pathlib import Path

    from pyconsul.agent.checks import parse, runner, schedule

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| ") and line.count("|") >= 4}
    assert rows["Health check output kept (script output, HTTP body, TTL update)"] == \
        f"{schedule.BUF_SIZE // 1024} KiB"
    assert rows["Check definitions: string fields / `Body` / `Args` items / `Header` names, values per name"] == \
        (f"{parse.MAX_STRING // 1024} KiB / {parse.MAX_BODY // 1024} KiB / {parse.MAX_ARGS} / "
         f"{parse.MAX_HEADERS}, {parse.MAX_HEADER_VALUES}")
    assert rows["Check definitions: `SuccessBeforePassing`, `FailuresBeforeCritical`"] == \
        f"0 to {parse.MAX_THRESHOLD}"
    assert rows["HTTP check requests in flight"].startswith(f"{runner.HTTP_WORKERS} worker threads")
    assert "30 s for scripts" in readme and schedule.DEFAULT_SCRIPT_TIMEOUT == 30.0
    assert "10 s for HTTP and TCP" in readme and schedule.DEFAULT_TIMEOUT == 10.0
