"""agent.cli (the `pyconsul` verbs): output formats, exit codes, error wording. No agent is started; HTTP is faked."""

from __future__ import annotations

import base64
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent import cli
from pyconsul.agent.cli import common, keyring, members
from pyconsul.agent.config import AgentConfig

MEMBERS: list[dict[str, Any]] = [
    {
        "Name": "n2",
        "Addr": "10.77.0.12",
        "Port": 8301,
        "Status": 1,
        "Tags": {
            "role": "consul",
            "dc": "bj",
            "segment": "",
            "build": "0.1.0:pyconsul",
            "vsn": "2",
            "port": "8300",
        },
    },
    {
        "Name": "c1",
        "Addr": "10.77.0.21",
        "Port": 8301,
        "Status": 4,
        "Tags": {"role": "node", "dc": "bj", "segment": "", "build": "0.1.0:pyconsul", "vsn": "2"},
    },
    {
        "Name": "n1",
        "Addr": "10.77.0.11",
        "Port": 8301,
        "Status": 1,
        "Tags": {"role": "consul", "dc": "bj", "build": "1.7.0:95fb95bf", "vsn": "2"},
    },
    {
        "Name": "e1",
        "Addr": "10.77.0.30",
        "Port": 8301,
        "Status": 3,
        "Tags": {"role": "node", "dc": "bj", "segment": "edge", "build": "1.7.0", "vsn": "2"},
    },
]

TABLE = [
    "Node  Address          Status  Type    Build  Protocol  DC  Segment",
    "c1    10.77.0.21:8301  failed  client  0.1.0  2         bj  <default>",
    "n1    10.77.0.11:8301  alive   server  1.7.0  2         bj  <all>",
    "n2    10.77.0.12:8301  alive   server  0.1.0  2         bj  <all>",
    "e1    10.77.0.30:8301  left    client  1.7.0  2         bj  edge",
]


Call = tuple[str, str, str, dict[str, str] | None, object]


def fake_api(monkeypatch: pytest.MonkeyPatch, respond: Callable[[str, str], Any]) -> list[Call]:
    calls: list[Call] = []

    def api_request(
        method: str,
        base_url: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: object = None,
        timeout: float = 30.0,
    ) -> Any:
        calls.append((method, base_url, path, query, body))
        return respond(method, path)

    monkeypatch.setattr(common, "api_request", api_request)
    return calls


def test_members_table() -> None:
    assert members.members_table(MEMBERS) == TABLE


def test_members_table_detailed_and_filter() -> None:
    lines = members.members_table(MEMBERS[:2], detailed=True, status="fail")
    assert lines == [
        "Node  Address          Status  Tags",
        "c1    10.77.0.21:8301  failed  build=0.1.0:pyconsul,dc=bj,role=node,segment=,vsn=2",
    ]
    assert members.members_table(MEMBERS, status="^le") == [
        "Node  Address          Status  Type    Build  Protocol  DC  Segment",
        "e1    10.77.0.30:8301  left    client  1.7.0  2         bj  edge",
    ]
    assert members.members_table(MEMBERS, status="leaving") == []


def test_members_ipv6_address() -> None:
    m = {"Name": "x", "Addr": "::1", "Port": 8301, "Status": 1, "Tags": {"role": "node"}}
    assert members.members_table([m])[1].startswith("x     [::1]:8301  alive   client  < 0.3")


def test_columnize_does_not_pad_last_column() -> None:
    assert common.columnize([["a", "bbb", "c"], ["aaaa", "b", ""]]) == ["a     bbb  c", "aaaa  b    "]


def test_members_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = fake_api(monkeypatch, lambda m, p: MEMBERS)
    assert cli.main(["members", "-wan", "-http-addr=http://10.0.0.1:8500"]) == 0
    assert capsys.readouterr().out.splitlines() == TABLE
    assert calls == [("GET", "http://10.0.0.1:8500", "/v1/agent/members", {"wan": "1"}, None)]
    assert cli.main(["members", "-status=leaving"]) == 2
    assert capsys.readouterr().out == ""
    assert cli.main(["members", "-status=("]) == 1
    assert capsys.readouterr().err.startswith("Failed to compile status regexp:")


def test_keyring_lines() -> None:
    data = [
        {"WAN": True, "Datacenter": "", "Segment": "", "Keys": {"K2": 2, "K1": 1}, "NumNodes": 2},
        {"WAN": False, "Datacenter": "bj", "Segment": "", "Keys": {"K1": 3}, "NumNodes": 3},
        {"WAN": False, "Datacenter": "bj", "Segment": "alpha", "Keys": {"K1": 1}, "NumNodes": 1},
    ]
    assert keyring.keyring_lines(data) == [
        "==> Gathering installed encryption keys...",
        "",
        "WAN:",
        "  K1 [1/2]",
        "  K2 [2/2]",
        "",
        "bj (LAN):",
        "  K1 [3/3]",
        "",
        "bj (LAN) [alpha]:",
        "  K1 [1/1]",
    ]


@pytest.mark.parametrize(
    ("args", "method", "body"),
    [
        (["-install=NEW"], "POST", {"Key": "NEW"}),
        (["-use", "NEW"], "PUT", {"Key": "NEW"}),
        (["-remove=OLD"], "DELETE", {"Key": "OLD"}),
    ],
)
def test_keyring_changes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    method: str,
    body: object,
) -> None:
    calls = fake_api(monkeypatch, lambda m, p: None)
    assert cli.main(["keyring", *args]) == 0
    assert calls == [(method, "http://127.0.0.1:8500", "/v1/operator/keyring", None, body)]
    assert capsys.readouterr().out.startswith("==> ")


@pytest.mark.parametrize("args", [[], ["-list", "-install=K"], ["-relay-factor=6", "-list"]])
def test_keyring_needs_exactly_one_operation(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    fake_api(monkeypatch, lambda m, p: [])
    assert cli.main(["keyring", *args]) == 1


def test_info(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    stats = {"serf_lan": {"members": "3", "encrypted": "false"}, "agent": {"version": "0.1.0"}}
    fake_api(monkeypatch, lambda m, p: {"Config": {}, "Stats": stats})
    assert cli.main(["info"]) == 0
    assert capsys.readouterr().out == (
        "agent:\n\tversion = 0.1.0\nserf_lan:\n\tencrypted = false\n\tmembers = 3\n"
    )


def test_join_counts_successes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def respond(method: str, path: str) -> Any:
        if path.endswith("bad"):
            raise common.ApiError("Unexpected response code: 500 (no route)")
        return None

    calls = fake_api(monkeypatch, respond)
    assert cli.main(["join", "-wan", "10.0.0.1", "bad"]) == 0
    out, err = capsys.readouterr()
    assert out == "Successfully joined cluster by contacting 1 nodes.\n"
    assert err == "Error joining address 'bad': Unexpected response code: 500 (no route)\n"
    assert calls[0][2:4] == ("/v1/agent/join/10.0.0.1", {"wan": "1"})
    assert cli.main(["join", "bad"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "Failed to join any nodes."
    assert cli.main(["join"]) == 1


def test_leave_and_force_leave(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = fake_api(monkeypatch, lambda m, p: None)
    assert cli.main(["leave"]) == 0
    assert capsys.readouterr().out == "Graceful leave complete\n"
    assert cli.main(["force-leave", "-prune", "n 3"]) == 0
    assert calls[-1][:4] == ("PUT", "http://127.0.0.1:8500", "/v1/agent/force-leave/n%203", {"prune": "1"})
    assert cli.main(["force-leave"]) == 1


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("127.0.0.1:8500", "http://127.0.0.1:8500"),
        ("http://10.77.0.11:8500", "http://10.77.0.11:8500"),
        ("https://consul.example:8501/", "https://consul.example:8501"),
        ("localhost:18500", "http://localhost:18500"),
        ("[::1]:8500", "http://[::1]:8500"),
    ],
)
def test_parse_http_addr(value: str, url: str) -> None:
    assert common.parse_http_addr(value) == url


@pytest.mark.parametrize("value", ["", "unix:///tmp/consul.sock", "ftp://x:1"])
def test_parse_http_addr_rejects(value: str) -> None:
    with pytest.raises(common.CLIError):
        common.parse_http_addr(value)


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, "127.0.0.1:8500"),
        ({"PYCONSUL_HTTP_ADDR": "b:2"}, "b:2"),
        ({"CONSUL_HTTP_ADDR": "a:1", "PYCONSUL_HTTP_ADDR": "b:2"}, "a:1"),
    ],
)
def test_default_http_addr(env: dict[str, str], want: str) -> None:
    assert common.default_http_addr(env) == want


def test_http_addr_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "http://10.9.9.9:1234")
    calls = fake_api(monkeypatch, lambda m, p: None)
    assert cli.main(["leave"]) == 0
    assert calls[0][1] == "http://10.9.9.9:1234"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["members"],
            'Error retrieving members: Get "http://127.0.0.1:1/v1/agent/members": '
            "dial tcp 127.0.0.1:1: connect: connection refused",
        ),
        (
            ["leave"],
            'Error leaving: Put "http://127.0.0.1:1/v1/agent/leave": '
            "dial tcp 127.0.0.1:1: connect: connection refused",
        ),
        (
            ["info"],
            'Error querying agent: Get "http://127.0.0.1:1/v1/agent/self": '
            "dial tcp 127.0.0.1:1: connect: connection refused",
        ),
    ],
)
def test_connection_refused_is_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main([*argv, "-http-addr=127.0.0.1:1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == message + "\n"


def test_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"data_dir": "/opt/consul", "server": True, "bootstrap_expect": 3}))
    assert cli.main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == "Configuration is valid!\n"
    assert cli.main(["validate", "-quiet", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""
    bad = tmp_path / "bad.json"
    bad.write_text('{"bootstrap_expect": "three"}')
    assert cli.main(["validate", str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    reason = 'bootstrap_expect: expected an integer, got "three"'
    assert err == f"Config validation failed: Error parsing {bad}: {reason}\n"
    assert cli.main(["validate"]) == 1


def test_keygen_is_32_random_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keygen"]) == 0
    first = capsys.readouterr().out
    assert len(base64.b64decode(first.strip(), validate=True)) == 32
    cli.main(["keygen"])
    assert capsys.readouterr().out != first


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Pyconsul v0.1.0"
    assert lines[1].startswith("Protocol 2 spoken by default, understands 2 to 3")
    assert cli.main(["--version"]) == 0


def test_usage_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Usage: pyconsul [--version] [--help] <command> [<args>]")
    for verb in (
        "agent",
        "members",
        "join",
        "leave",
        "force-leave",
        "keygen",
        "keyring",
        "info",
        "version",
        "validate",
    ):
        assert f"\n    {verb} " in err
    assert cli.main(["-h"]) == 0
    assert "Available commands are:" in capsys.readouterr().out
    assert cli.main(["bogus"]) == 1
    assert capsys.readouterr().err.startswith("Error: unknown command 'bogus'")


@pytest.mark.parametrize("verb", sorted(cli.COMMANDS))
def test_every_verb_has_help(capsys: pytest.CaptureFixture[str], verb: str) -> None:
    assert cli.main([verb, "-h"]) == 0
    assert capsys.readouterr().out.startswith(f"Usage: pyconsul {verb}")


def test_bad_flag_prints_error_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["members", "-nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flag provided but not defined: -nope\n\nUsage: pyconsul members")


def test_agent_runs_with_built_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[AgentConfig] = []

    def run_agent(cfg: AgentConfig) -> int:
        seen.append(cfg)
        return 7

    monkeypatch.setitem(sys.modules, "pyconsul.agent.agent", types.SimpleNamespace(run_agent=run_agent))
    assert cli.main(["agent", "-server", "-bootstrap-expect=2", "-data-dir=/d", "-datacenter=BJ"]) == 7
    assert seen[0].datacenter == "bj" and seen[0].bootstrap_expect == 2
    assert "==> WARNING:" in capsys.readouterr().err


def test_stale_reads_test_switch_is_a_file_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    seen: list[AgentConfig] = []

    def run_agent(cfg: AgentConfig) -> int:
        seen.append(cfg)
        return 0

    monkeypatch.setitem(sys.modules, "pyconsul.agent.agent", types.SimpleNamespace(run_agent=run_agent))
    assert cli.main(["agent", "-server", f"-data-dir={tmp_path}"]) == 0
    assert seen[-1].debug_stale_reads is False
    assert "TEST_STALE_READS" not in capsys.readouterr().err
    (tmp_path / "TEST_STALE_READS").touch()
    assert cli.main(["agent", "-server", f"-data-dir={tmp_path}"]) == 0
    assert seen[-1].debug_stale_reads is True
    err = capsys.readouterr().err
    assert "==> WARNING: TEST_STALE_READS is set" in err and "NOT linearizable" in err


def test_agent_config_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["agent", "-bootstrap-expect=3", "-data-dir=/d"]) == 1
    assert capsys.readouterr().err == "bootstrap_expect requires server mode\n"


def test_unexpected_exception_is_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(method: str, path: str) -> Any:
        raise RuntimeError("kaput")

    fake_api(monkeypatch, boom)
    assert cli.main(["members"]) == 1
    err = capsys.readouterr().err
    assert err == "Error: RuntimeError: kaput\n"
