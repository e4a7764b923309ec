"""agent.config: presets, Consul JSON keys, flag mapping, merge order, validation messages."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyconsul.agent.gossip.config
import pyconsul.agent.raft.config
from pyconsul.agent.config import (
    AgentConfig,
    ConfigError,
    GossipConfig,
    Ports,
    RaftConfig,
    agent_flagset,
    build_config,
    load_config_dir,
    load_config_file,
    validate_paths,
)
from pyconsul.agent.netif import host_addresses

KEY16 = "pUqJrVyVRj5jsiYEkM/tFQ=="  # base64 of 16 bytes
KEY32 = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s="  # base64 of 32 bytes


def cli(line: str) -> tuple[AgentConfig, list[str]]:
    """Parse an `agent ...` command line the way `pyconsul agent` does."""
    args = line.split()
    assert args[0] == "agent"
    res = agent_flagset().parse(args[1:])
    assert res.positional == []
    return build_config(res.explicit)


def write(tmp_path: Path, name: str, doc: object) -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


# ---------------------------------------------------------------- presets


def test_lan_preset_matches_memberlist() -> None:
    assert dataclasses.astuple(GossipConfig.lan()) == (
        1.0,
        0.5,
        3,
        4,
        6,
        0.2,
        3,
        30.0,
        4,
        30.0,
        8,
        1400,
        10.0,
        0.0,
    )


def test_wan_preset_derives_from_lan() -> None:
    wan, lan = GossipConfig.wan(), GossipConfig.lan()
    assert (wan.probe_interval, wan.probe_timeout, wan.suspicion_mult) == (5.0, 3.0, 6)
    assert (wan.gossip_interval, wan.gossip_nodes, wan.push_pull_interval, wan.tcp_timeout) == (
        0.5,
        4,
        60.0,
        30.0,
    )
    assert (wan.indirect_checks, wan.retransmit_mult, wan.udp_buffer_size) == (
        lan.indirect_checks,
        lan.retransmit_mult,
        lan.udp_buffer_size,
    )


def test_local_preset() -> None:
    loc = GossipConfig.local()
    assert (loc.tcp_timeout, loc.indirect_checks, loc.retransmit_mult, loc.suspicion_mult) == (1.0, 1, 2, 3)
    assert (loc.push_pull_interval, loc.probe_timeout, loc.probe_interval, loc.gossip_interval) == (
        15.0,
        0.2,
        1.0,
        0.1,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"probe_interval": 0.0}, "gossip_lan.probe_interval: must be positive"),
        ({"gossip_nodes": 0}, "gossip_lan.gossip_nodes: must be at least 1"),
        ({"probe_timeout": 2.0}, "gossip_lan.probe_timeout: must not exceed probe_interval"),
        ({"udp_buffer_size": 100}, "gossip_lan.udp_buffer_size: must be at least 512"),
    ],
)
def test_gossip_validate_names_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(GossipConfig.lan(), **change).validate("gossip_lan.")  # type: ignore[arg-type]
    assert str(info.value) == message


def test_presets_are_valid_and_frozen() -> None:
    for preset in (GossipConfig.lan(), GossipConfig.wan(), GossipConfig.local()):
        preset.validate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        GossipConfig.lan().probe_interval = 2.0  # type: ignore[misc]


def test_defaults() -> None:
    cfg = AgentConfig(node_name="n")
    assert cfg.ports == Ports(dns=8600, http=8500, serf_lan=8301, serf_wan=8302, server=8300)
    assert (cfg.datacenter, cfg.bind_addr, cfg.client_addr, cfg.retry_interval) == (
        "dc1",
        "0.0.0.0",
        "127.0.0.1",
        30.0,
    )
    assert cfg.reconnect_timeout == cfg.reconnect_timeout_wan == 72 * 3600
    assert cfg.raft_multiplier == 5
    assert AgentConfig().node_name  # hostname


@pytest.mark.parametrize(
    ("server", "lot", "slo", "want_lot", "want_slo"),
    [
        (True, None, None, False, True),
        (False, None, None, True, False),
        (True, True, False, True, False),
        (False, False, True, False, True),
    ],
)
def test_effective_leave_flags(
    server: bool, lot: bool | None, slo: bool | None, want_lot: bool, want_slo: bool
) -> None:
    cfg = AgentConfig(node_name="n", server=server, leave_on_terminate=lot, skip_leave_on_interrupt=slo)
    assert (cfg.effective_leave_on_terminate, cfg.effective_skip_leave_on_interrupt) == (want_lot, want_slo)


@pytest.mark.parametrize(
    ("bind", "advertise", "interfaces", "want"),
    [
        ("10.77.0.11", None, [], "10.77.0.11"),
        ("0.0.0.0", "192.168.1.5", ["10.0.0.1"], "192.168.1.5"),
        ("0.0.0.0", None, ["127.0.0.1", "10.77.0.12"], "10.77.0.12"),
        ("0.0.0.0", None, ["127.0.0.1", "8.8.4.4", "172.17.0.1"], "172.17.0.1"),  # private preferred
        ("0.0.0.0", None, ["127.0.0.1", "169.254.1.1", "8.8.4.4"], "8.8.4.4"),
        ("0.0.0.0", None, ["127.0.0.1"], "127.0.0.1"),
        ("::", None, [], "127.0.0.1"),
        ("0.0.0.0", None, ["127.0.0.1", "::1", "fd00::2", "fe80::1%eth0", "10.77.0.13"], "10.77.0.13"),  # IPv4 only
    ],
)
def test_advertise(bind: str, advertise: str | None, interfaces: list[str], want: str) -> None:
    cfg = AgentConfig(node_name="n", bind_addr=bind, advertise_addr=advertise)
    assert cfg.advertise(lambda: interfaces) == want


def test_advertise_real_interfaces() -> None:
    assert AgentConfig(node_name="n").advertise()  # some address, never an exception


def test_host_addresses_lists_loopback() -> None:
    addrs = host_addresses()
    assert "127.0.0.1" in addrs
    assert all(ipaddress.ip_address(a) for a in addrs)  # every entry parses, link-local zones included


NETNS_SCRIPT = """
ip link set lo up
ip addr add 10.77.250.9/32 dev lo
ip addr add 10.77.250.10/32 dev lo
ip addr add fd00:77::5/128 dev lo
exec "$0" -c 'from pyconsul.agent.netif import host_addresses; print(" ".join(host_addresses()))'
"""


def test_host_addresses_secondary_and_ipv6() -> None:
    """In a private network namespace: a second IPv4 address on one interface (the old ioctl saw only
    the first) and an IPv6 address are both listed, in the kernel's order."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("needs root, unshare(1) and ip(8) for a private network namespace")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(["unshare", "-n", "sh", "-ec", NETNS_SCRIPT, sys.executable], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    addrs = proc.stdout.split()
    assert [a for a in addrs if a.startswith("10.77.250.")] == ["10.77.250.9", "10.77.250.10"]
    assert "fd00:77::5" in addrs and "127.0.0.1" in addrs


def test_presets_live_beside_their_cores() -> None:
    """agent.config re-exports the presets; the cores import them from their own packages."""
    assert GossipConfig is pyconsul.agent.gossip.config.GossipConfig
    assert RaftConfig is pyconsul.agent.raft.config.RaftConfig
    with pytest.raises(ConfigError, match=r"^gossip_wan\.probe_timeout: "):
        dataclasses.replace(pyconsul.agent.gossip.config.GossipConfig.wan(), probe_timeout=9.0).validate("gossip_wan.")


# ---------------------------------------------------------------- command lines


def test_guide_command_line_bj() -> None:
    cfg, warnings = cli(
        "agent -server -bootstrap-expect=3 -data-dir=/tmp/consul -node=n1 -bind=10.77.0.11 "
        "-client=0.0.0.0 -datacenter=BJ -ui"
    )
    assert (cfg.server, cfg.bootstrap_expect, cfg.data_dir, cfg.node_name) == (True, 3, "/tmp/consul", "n1")
    assert (cfg.bind_addr, cfg.client_addr, cfg.datacenter, cfg.ui) == ("10.77.0.11", "0.0.0.0", "bj", True)
    assert cfg.advertise() == "10.77.0.11"
    assert warnings == []


def test_guide_command_line_sh() -> None:
    cfg, _ = cli(
        "agent -server -bootstrap-expect 3 -data-dir /tmp/consul -node=n4 -bind=10.77.0.14 -datacenter SH -ui"
    )
    assert (cfg.datacenter, cfg.node_name, cfg.bootstrap_expect, cfg.bind_addr) == (
        "sh",
        "n4",
        3,
        "10.77.0.14",
    )


def test_every_flag_maps_to_a_field() -> None:
    cfg, _ = cli(
        "agent -node=a -node-id=0b8e5d6c-1f2a-4b3c-8d4e-5f6a7b8c9d0e -datacenter=dc2 -data-dir=/d -server "
        "-bootstrap -bind=10.0.0.1 -advertise=10.0.0.2 -advertise-wan=1.2.3.4 -client=0.0.0.0 "
        "-dns-port=-1 -http-port=18500 -serf-lan-port=18301 -serf-wan-port=18302 -server-port=18300 "
        "-join=j1 -join j2 -retry-join=r1 -retry-interval=5s -retry-max=3 -join-wan=w1 -retry-join-wan=rw1 "
        f"-retry-interval-wan=1m -retry-max-wan=2 -encrypt={KEY32} -log-level=debug -ui"
    )
    assert cfg.node_id == "0b8e5d6c-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
    assert (cfg.bootstrap, cfg.advertise_addr, cfg.advertise_addr_wan) == (True, "10.0.0.2", "1.2.3.4")
    assert cfg.ports == Ports(dns=-1, http=18500, serf_lan=18301, serf_wan=18302, server=18300)
    assert (cfg.start_join, cfg.retry_join, cfg.start_join_wan, cfg.retry_join_wan) == (
        ["j1", "j2"],
        ["r1"],
        ["w1"],
        ["rw1"],
    )
    assert (cfg.retry_interval, cfg.retry_max, cfg.retry_interval_wan, cfg.retry_max_wan) == (5.0, 3, 60.0, 2)
    assert (cfg.encrypt, cfg.log_level, cfg.ui) == (KEY32, "debug", True)


def test_dev_mode() -> None:
    cfg, _ = cli("agent -dev")
    assert (cfg.dev, cfg.server, cfg.bootstrap, cfg.ui) == (True, True, True, True)
    assert (cfg.bind_addr, cfg.client_addr, cfg.data_dir) == ("127.0.0.1", "127.0.0.1", None)
    assert cfg.gossip_lan == GossipConfig.local()
    assert cfg.gossip_wan == GossipConfig.wan()
    cfg, _ = cli("agent -dev -bind=127.0.0.2 -http-port=18500")
    assert (cfg.bind_addr, cfg.ports.http) == ("127.0.0.2", 18500)


# ---------------------------------------------------------------- files and merging


def test_file_keys_and_nested_objects(tmp_path: Path) -> None:
    doc = {
        "node_name": "n1",
        "datacenter": "BJ",
        "data_dir": "/opt/consul",
        "server": True,
        "bootstrap_expect": 3,
        "bind_addr": "10.77.0.11",
        "client_addr": "0.0.0.0",
        "ports": {"http": 18500, "dns": -1},
        "retry_join": ["10.77.0.12", "10.77.0.13"],
        "retry_interval": "10s",
        "retry_join_wan": "10.77.0.14",
        "encrypt": KEY16,
        "encrypt_verify_incoming": False,
        "ui_config": {"enabled": True},
        "performance": {"raft_multiplier": 1},
        "reconnect_timeout": "8h",
        "leave_on_terminate": True,
        "gossip_lan": {"probe_interval": "2s", "gossip_nodes": 5, "probe_timeout": 0.25},
        "gossip_wan": {"suspicion_mult": 8},
        "enable_debug": True,
        "node_id": None,
    }
    cfg, _ = validate_paths([write(tmp_path, "a.json", doc)])
    assert (cfg.node_name, cfg.datacenter, cfg.server, cfg.bootstrap_expect) == ("n1", "bj", True, 3)
    assert (cfg.ports.http, cfg.ports.dns, cfg.ports.serf_lan) == (18500, -1, 8301)
    assert (cfg.retry_join, cfg.retry_interval, cfg.retry_join_wan) == (
        ["10.77.0.12", "10.77.0.13"],
        10.0,
        ["10.77.0.14"],
    )
    assert (cfg.ui, cfg.raft_multiplier, cfg.reconnect_timeout, cfg.leave_on_terminate) == (
        True,
        1,
        28800.0,
        True,
    )
    assert cfg.encrypt_verify_incoming is False
    assert (cfg.gossip_lan.probe_interval, cfg.gossip_lan.gossip_nodes, cfg.gossip_lan.probe_timeout) == (
        2.0,
        5,
        0.25,
    )
    assert cfg.gossip_lan.retransmit_mult == 4
    assert cfg.gossip_wan.suspicion_mult == 8
    assert cfg.enable_debug is True and cfg.node_id is None


def test_merge_order_files_then_flags(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    write(d, "20-b.json", {"node_name": "from-b", "retry_join": ["b"]})
    write(d, "10-a.json", {"node_name": "from-a", "retry_join": ["a"], "data_dir": "/x", "log_level": "warn"})
    (d / "README.txt").write_text("ignored")
    (d / "sub").mkdir()
    extra = write(tmp_path, "extra.json", {"retry_join": ["c"], "datacenter": "file"})
    res = agent_flagset().parse(
        ["-config-dir", str(d), "-config-file", extra, "-retry-join=flag", "-node=from-flag"]
    )
    cfg, _ = build_config(res.explicit)
    assert cfg.node_name == "from-flag"
    assert cfg.retry_join == ["a", "b", "c", "flag"]
    assert (cfg.datacenter, cfg.log_level, cfg.data_dir) == ("file", "warn", "/x")
    assert cfg.config_files == [str(d / "10-a.json"), str(d / "20-b.json"), extra]


def test_load_config_dir_lexical(tmp_path: Path) -> None:
    write(tmp_path, "b.json", {"server": True})
    write(tmp_path, "a.json", {"server": False})
    assert load_config_dir(tmp_path) == [
        (str(tmp_path / "a.json"), {"server": False}),
        (str(tmp_path / "b.json"), {"server": True}),
    ]


@pytest.mark.parametrize(
    ("value", "want"),
    [("3", 3), (3.0, 3), ("+2", 2)],
)
def test_weakly_typed_integers(tmp_path: Path, value: object, want: int) -> None:
    assert load_config_file(write(tmp_path, "a.json", {"bootstrap_expect": value})) == {
        "bootstrap_expect": want
    }


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"bootstrap_expect": "three"}, 'bootstrap_expect: expected an integer, got "three"'),
        ({"bootstrap_expect": True}, "bootstrap_expect: expected an integer, got true"),
        ({"server": "yes"}, 'server: expected a boolean, got "yes"'),
        ({"node_name": 7}, "node_name: expected a string, got 7"),
        ({"retry_join": [1, 2]}, "retry_join: expected a list of strings, got [1, 2]"),
        ({"retry_interval": "soon"}, 'retry_interval: invalid duration "soon"'),
        ({"retry_interval": [1]}, "retry_interval: expected a duration, got [1]"),
        ({"ports": 8500}, "ports: expected an object, got 8500"),
        ({"ports": {"gopher": 70}}, "ports.gopher: unknown configuration key"),
        ({"ports": {"https": "x"}}, 'ports.https: expected an integer, got "x"'),
        ({"acl": {"tokens": {"master": 1}}}, "acl.tokens.master: expected a string, got 1"),
        ({"acl": {"tokens": "x"}}, 'acl.tokens: expected an object, got "x"'),
        ({"node_meta": {"rack": 1}}, 'node_meta: expected an object of strings, got {"rack": 1}'),
        ({"ports": {"http": "x"}}, 'ports.http: expected an integer, got "x"'),
        ({"gossip_lan": {"probe_interval": "1x"}}, 'gossip_lan.probe_interval: invalid duration "1x"'),
        (
            {"performance": {"raft_multiplier": "a"}},
            'performance.raft_multiplier: expected an integer, got "a"',
        ),
        ({"ui_config": {"enabled": 2}}, "ui_config.enabled: expected a boolean, got 2"),
        ({"services": [1]}, "services: expected an object or a list of objects, got [1]"),
    ],
)
def test_bad_key_messages(tmp_path: Path, doc: dict[str, object], reason: str) -> None:
    path = write(tmp_path, "a.json", doc)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(info.value) == f"Error parsing {path}: {reason}"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            '{"server": true,}',
            "invalid JSON at line 1 column 17: Expecting property name enclosed in double quotes",
        ),
        ('{\n  "server": tru\n}', "invalid JSON at line 2 column 13: Expecting value"),
        ("", "invalid JSON at line 1 column 1: Expecting value"),
        ("[1]", "top level: expected an object, got [1]"),
    ],
)
def test_invalid_json_messages(tmp_path: Path, text: str, reason: str) -> None:
    path = write(tmp_path, "a.json", text)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(info.value) == f"Error parsing {path}: {reason}"


def test_hcl_loaded_in_dir_and_as_file(tmp_path: Path) -> None:
    path = write(tmp_path, "agent.hcl", "server = true\n")
    for source in (path, str(tmp_path)):
        cfg, _ = build_config({"config-file": [source], "data-dir": str(tmp_path)})
        assert cfg.server is True and cfg.config_files == [path]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        validate_paths([str(tmp_path / "nope.json")])
    assert str(info.value) == f"Error reading {tmp_path / 'nope.json'}: no such file or directory"


# ---------------------------------------------------------------- semantic validation


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("agent -server", "data_dir: must be specified"),
        ("agent -data-dir=/d -bootstrap-expect=3", "bootstrap_expect requires server mode"),
        (
            "agent -data-dir=/d -server -bootstrap-expect=3 -bootstrap",
            "bootstrap_expect and bootstrap are mutually exclusive",
        ),
        ("agent -data-dir=/d -bootstrap", "bootstrap requires server mode"),
        ("agent -data-dir=/d -server -bootstrap-expect=-1", "bootstrap_expect: must not be negative"),
        ("agent -data-dir=/d -encrypt=notbase64!", "encrypt: not valid base64"),
        ("agent -data-dir=/d -encrypt=AAAA", "encrypt: key must be 16, 24 or 32 bytes, got 3"),
        ("agent -data-dir=/d -datacenter=b.j", 'datacenter: "b.j" must match [a-z0-9_-]+'),
        ("agent -data-dir=/d -node=", "node_name: must not be empty"),
        ("agent -data-dir=/d -node=" + "x" * 129, "node_name: must be at most 128 characters"),
        ("agent -data-dir=/d -node-id=abc", 'node_id: must be a UUID, got "abc"'),
        ("agent -data-dir=/d -http-port=0", "ports.http: 0 is not a valid port"),
        ("agent -data-dir=/d -serf-lan-port=-1", "ports.serf_lan: -1 is not a valid port"),
        ("agent -data-dir=/d -server-port=70000", "ports.server: 70000 is not a valid port"),
        ("agent -data-dir=/d -bind=myhost", 'bind_addr: not an IP address: "myhost"'),
        ("agent -data-dir=/d -client=localhost",
         'client_addr: not an IP address or a space-separated list of them: "localhost"'),
        ("agent -data-dir=/d -retry-interval=0s", "retry_interval: must be positive"),
        ("agent -data-dir=/d -retry-max-wan=-1", "retry_max_wan: must not be negative"),
        ("agent -data-dir=/d -log-level=loud", 'log_level: unknown level "loud"'),
    ],
)
def test_semantic_errors(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cli(line)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"reconnect_timeout": "1h"}, "reconnect_timeout: must be at least 8h0m0s"),
        ({"performance": {"raft_multiplier": 11}}, "performance.raft_multiplier: must be between 1 and 10"),
        ({"gossip_wan": {"retransmit_mult": 0}}, "gossip_wan.retransmit_mult: must be at least 1"),
        ({"advertise_addrs": {"rpc": "node1:8300"}}, 'advertise_addrs.rpc: expected IP:PORT, got "node1:8300"'),
        ({"advertise_addrs": {"rpc": "10.77.0.11"}}, 'advertise_addrs.rpc: expected IP:PORT, got "10.77.0.11"'),
    ],
)
def test_semantic_errors_from_files(tmp_path: Path, doc: dict[str, object], message: str) -> None:
    path = write(tmp_path, "a.json", {"data_dir": "/d", **doc})
    with pytest.raises(ConfigError) as info:
        validate_paths([path])
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("expect", "fragment"),
    [
        (1, "same as bootstrap mode"),
        (2, "cannot tolerate any failure"),
        (3, None),
        (4, "even number"),
        (5, None),
    ],
)
def test_bootstrap_expect_warnings(expect: int, fragment: str | None) -> None:
    _, warnings = cli(f"agent -server -data-dir=/d -bootstrap-expect={expect}")
    if fragment is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and fragment in warnings[0]


def test_dns_and_http_can_be_disabled() -> None:
    cfg, _ = cli("agent -data-dir=/d -dns-port=-1 -http-port=-1")
    assert (cfg.ports.dns, cfg.ports.http) == (-1, -1)


def test_unknown_flag_key_is_rejected() -> None:
    with pytest.raises(ConfigError):
        build_config({"no-such-flag": 1})


def test_raft_profile_key_selects_timing(tmp_path: Path) -> None:
    from pyconsul.agent.config import RaftConfig, load_config_file

    good = tmp_path / "fast.json"
    good.write_text('{"performance": {"raft_profile": "fast"}}')
    flat = load_config_file(good)
    assert flat["raft_profile"] == "fast"
    cfg = AgentConfig(data_dir="/x", server=True, raft_profile="fast")
    assert cfg.raft_config() == RaftConfig.fast()
    assert AgentConfig(data_dir="/x", raft_multiplier=1).raft_config() == RaftConfig.consul(1)
    with pytest.raises(ConfigError, match='raft_profile: must be "consul" or "fast"'):
        AgentConfig(data_dir="/x", raft_profile="turbo").validate()


def test_stale_reads_is_no_flag_and_no_config_key(tmp_path: Path) -> None:
    from pyconsul.agent.config import ConfigError, agent_flagset, build_config
    from pyconsul.agent.flags import FlagError

    with pytest.raises(FlagError, match="debug-stale-reads"):
        agent_flagset().parse(["-server", "-debug-stale-reads", "-data-dir", str(tmp_path)])
    f = tmp_path / "c.json"
    f.write_text('{"debug_stale_reads": true}')
    with pytest.raises(ConfigError, match="debug_stale_reads: unknown configuration key"):
        build_config({"config-file": [str(f)], "data-dir": str(tmp_path)})
    assert build_config({"data-dir": str(tmp_path)})[0].debug_stale_reads is False


def test_client_addr_accepts_a_space_separated_list(tmp_path: Path) -> None:
    from pyconsul.agent.config import ConfigError, build_config

    cfg, _ = build_config({"client": "10.77.0.11 127.0.0.1", "data-dir": str(tmp_path)})
    assert cfg.client_addrs() == ["10.77.0.11", "127.0.0.1"]
    with pytest.raises(ConfigError, match="client_addr: not an IP address or a space-separated list"):
        build_config({"client": "10.77.0.11 localhost", "data-dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="client_addr"):
        build_config({"client": "  ", "data-dir": str(tmp_path)})


def test_advertise_addrs_rpc_is_what_other_servers_dial(tmp_path: Path) -> None:
    path = write(tmp_path, "a.json", {"data_dir": "/d", "bind_addr": "10.77.0.11", "server": True,
                                      "advertise_addrs": {"rpc": "10.77.0.11:18300"}})
    cfg, _ = validate_paths([path])
    assert cfg.rpc_advertise() == ("10.77.0.11", 18300)
    assert cfg.ports.server == 8300  # we still listen on our own port
    plain, _ = validate_paths([write(tmp_path, "b.json", {"data_dir": "/d", "bind_addr": "10.77.0.11"})])
    assert plain.rpc_advertise() == ("10.77.0.11", 8300)
