"""HCL config (agent/config_hcl.py through python-hcl2), keys of features not built yet (agent/config_schema.py),
-hcl fragments, -dev with -bootstrap-expect, and -pid-file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pyconsul.agent.cli.agent import remove_pid_file, write_pid_file
from pyconsul.agent.cli.common import CLIError
from pyconsul.agent.config import ConfigError, build_config, load_config_file, parse_config_object
from pyconsul.agent.config_hcl import HCLError, parse_hcl

CONSUL_STYLE = """
# a Consul 1.7-style agent file
datacenter = "BJ"
server     = true
bootstrap_expect = 3
retry_join = ["10.0.0.1", "10.0.0.2"]   // a list
ports {
  dns   = 8600
  https = -1
}
performance { raft_multiplier = 1 }
acl {
  enabled        = true
  default_policy = "deny"
  tokens { master = "root" }
}
/* a block comment */
gossip_lan = { probe_interval = "500ms" }
"""


def test_consul_style_blocks_become_json_objects() -> None:
    doc = parse_hcl(CONSUL_STYLE)
    assert doc == {
        "datacenter": "BJ", "server": True, "bootstrap_expect": 3, "retry_join": ["10.0.0.1", "10.0.0.2"],
        "ports": {"dns": 8600, "https": -1}, "performance": {"raft_multiplier": 1},
        "acl": {"enabled": True, "default_policy": "deny", "tokens": {"master": "root"}},
        "gossip_lan": {"probe_interval": "500ms"},
    }


def test_hcl_and_json_give_the_same_flat_keys(tmp_path: Path) -> None:
    (tmp_path / "a.hcl").write_text(CONSUL_STYLE)
    (tmp_path / "a.json").write_text(json.dumps(parse_hcl(CONSUL_STYLE)))
    flat = load_config_file(tmp_path / "a.hcl")
    assert flat == load_config_file(tmp_path / "a.json")
    assert flat["ports.dns"] == 8600 and flat["raft_multiplier"] == 1 and flat["gossip_lan.probe_interval"] == 0.5
    assert flat["acl.tokens.master"] == "root"  # the acl block is built (agent/acl/config.py)


def test_repeated_service_and_check_blocks_become_lists() -> None:
    doc = parse_hcl("""
service {
  name = "web"
  port = 80
  tags = ["a", "b"]
  check { http = "http://localhost/health"
          interval = "10s" }
  check { ttl = "30s" }
}
service { name = "db" }
services = [ { name = "cache", meta = { "a-b" = "x" } } ]
check { id = "c1"
  ttl = "5s" }
""")
    assert doc == {
        "services": [
            {"name": "web", "port": 80, "tags": ["a", "b"],
             "checks": [{"http": "http://localhost/health", "interval": "10s"}, {"ttl": "30s"}]},
            {"name": "db"},
            {"name": "cache", "meta": {"a-b": "x"}},
        ],
        "check": {"id": "c1", "ttl": "5s"},
    }


def test_quoted_names_in_a_block_read_as_the_object_consul_means() -> None:
    # HCL1 (Consul) allows them, HCL2 only in objects: parse_hcl rewrites the block `NAME {` to `NAME = {`
    doc = parse_hcl('dns_config {\n  service_ttl {\n    "*" = "5s"\n    "web" = "1s"\n  }\n  node_ttl = "3s"\n}\n'
                    'node_meta { "rack-id" = "r1" }\n'
                    'service { name = "a"\n  meta { "k-1" = "v" } }\nservice { name = "b" }\n')
    assert doc == {"dns_config": {"service_ttl": {"*": "5s", "web": "1s"}, "node_ttl": "3s"},
                   "node_meta": {"rack-id": "r1"},
                   "services": [{"name": "a", "meta": {"k-1": "v"}}, {"name": "b"}]}


def test_one_service_block_stays_an_object_and_list_keys_stay_lists() -> None:
    assert parse_hcl('service { name = "web" }') == {"service": {"name": "web"}}
    assert parse_hcl('checks { ttl = "1s" }') == {"checks": [{"ttl": "1s"}]}


def test_values_strings_numbers_heredocs() -> None:
    doc = parse_hcl('s = "q \\"x\\" ${y}"\nf = 1.5\ne = 1e3\nn = -1\nh = <<EOT\nhello\nEOT\nz = null\n')
    assert doc == {"s": 'q "x" ${y}', "f": 1.5, "e": 1000.0, "n": -1, "h": "hello", "z": None}


@pytest.mark.parametrize(("text", "fragment"), [
    ("server = ", "invalid HCL at line 1 column"),
    ('ports { dns = 1', "invalid HCL at line 1 column"),
    ('ports { dns = 1 }\nports { http = 2 }', "ports: 2 blocks, expected one"),
    ('service "web" { port = 1 }', "service: block labels are not supported"),
    ('node_meta { "a-b" 1 }', "invalid HCL at line 1 column 13"),
    ('"k" = 1', "invalid HCL at line 1 column 1"),
])
def test_bad_hcl_messages(text: str, fragment: str) -> None:
    with pytest.raises(HCLError) as info:
        parse_hcl(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_hcl_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "x.hcl"
    path.write_text("ports { http = \"many\" }\n")
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(info.value) == f'Error parsing {path}: ports.http: expected an integer, got "many"'
    path.write_text("bogus_key = 1\n")
    with pytest.raises(ConfigError, match="bogus_key: unknown configuration key"):
        load_config_file(path)
    path.write_text("ports { http = 1 + 2 }\n")  # expressions are not evaluated: the key's type check says so
    with pytest.raises(ConfigError, match=r'ports.http: expected an integer, got "\$\{1 \+ 2\}"'):
        load_config_file(path)


def test_unbuilt_features_warn_once_per_feature_naming_the_keys(tmp_path: Path) -> None:
    doc = {"primary_datacenter": "dc1", "acl": {"enabled": True, "tokens": {"agent": "t"}},
           "ports": {"grpc": -1}, "auto_encrypt": {"tls": True, "allow_tls": False},
           "connect": {"enabled": True, "ca_config": {"x": 1}},
           "telemetry": {"prometheus_retention_time": "1m"}, "recursors": ["1.1.1.1"],
           "dns_config": {"allow_stale": True, "use_cache": True}, "node_meta": {"rack": "r1"}}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    cfg, warnings = build_config({"config-file": [str(tmp_path / "a.json")], "data-dir": str(tmp_path)})
    assert cfg.ignored["telemetry.prometheus_retention_time"] == 60.0
    assert cfg.ignored["connect.ca_config"] == {"x": 1}
    acl = [w for w in warnings if "ACL" in w]  # the acl block and primary_datacenter are built (agent/acl)
    assert acl == [] and cfg.primary_datacenter == "dc1"
    assert cfg.acl.enabled and cfg.acl.agent == "t"
    tls = [w for w in warnings if w.startswith("auto_encrypt")]  # TLS is built (agent/tlsutil.py); this is not
    assert len(tls) == 1 and "auto_encrypt.tls" in tls[0]
    assert "allow_tls" not in tls[0]  # false: the feature stays off, nothing is ignored
    assert not any("ports.grpc" in w for w in warnings)  # -1: off
    assert any("Connect" in w and "connect.enabled, connect.ca_config" in w for w in warnings)
    assert any("DNS" in w and "dns_config.use_cache" in w for w in warnings)
    assert not any("recursors" in w or "allow_stale" in w for w in warnings)  # built (issue 13): no warning
    assert any("node_meta" in w for w in warnings)


def test_disabled_features_give_no_warning(tmp_path: Path) -> None:
    flat = parse_config_object({"acl": {"enabled": False}, "ports": {"https": -1, "grpc_tls": -1}})
    assert flat == {"acl.enabled": False, "ports.https": -1, "ignored:ports.grpc_tls": -1}
    (tmp_path / "a.json").write_text(json.dumps({"acl": {"enabled": False}, "ports": {"https": -1}}))
    _, warnings = build_config({"config-file": [str(tmp_path / "a.json")], "data-dir": str(tmp_path)})
    assert warnings == []


def test_hcl_fragments_come_after_files_and_flags(tmp_path: Path) -> None:
    (tmp_path / "a.hcl").write_text('datacenter = "file"\nlog_level = "DEBUG"\nretry_join = ["a"]\n')
    cfg, _ = build_config({"config-file": [str(tmp_path / "a.hcl")], "datacenter": "flag",
                           "data-dir": str(tmp_path), "hcl": ['datacenter = "frag"', 'retry_join = ["b"]']})
    assert cfg.datacenter == "frag" and cfg.log_level == "DEBUG" and cfg.retry_join == ["a", "b"]
    with pytest.raises(ConfigError) as info:
        build_config({"hcl": ["server = "], "data-dir": str(tmp_path)})
    assert str(info.value).startswith("Error parsing -hcl fragment 1: invalid HCL at line 1")


def test_dev_accepts_bootstrap_expect_1_like_consul() -> None:
    cfg, warnings = build_config({"dev": True, "bootstrap-expect": 1})
    assert cfg.dev and cfg.bootstrap and cfg.bootstrap_expect == 0
    assert any("bootstrap_expect = 1 in -dev mode" in w for w in warnings)
    with pytest.raises(ConfigError, match="bootstrap_expect = 3 is not allowed in dev mode"):
        build_config({"dev": True, "bootstrap-expect": 3})


def test_pid_file_written_and_removed(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.pid")
    cfg, _ = build_config({"dev": True, "pid-file": path})
    assert cfg.pid_file == path
    write_pid_file(path)
    assert Path(path).read_text() == f"{os.getpid()}\n"
    remove_pid_file(path)
    assert not os.path.exists(path)
    Path(path).write_text("999999\n")  # another agent's: left alone
    remove_pid_file(path)
    assert Path(path).exists()
    with pytest.raises(CLIError, match="Could not write pid file"):
        write_pid_file(str(tmp_path / "missing" / "agent.pid"))


def test_built_keys_are_not_also_listed_as_unbuilt() -> None:
    from pyconsul.agent.config import KEYS
    from pyconsul.agent.config_schema import LATER_KEYS

    # a feature that lands moves its keys from config_schema.LATER_KEYS to config.KEYS
    assert not set(KEYS) & set(LATER_KEYS)


def test_config_format_decides_for_every_file(tmp_path: Path) -> None:
    (tmp_path / "agent.conf").write_text('datacenter = "fmt"\n')
    (tmp_path / "b.json").write_text('log_level = "DEBUG"\n')  # HCL in a .json file: -config-format wins
    cfg, _ = build_config({"config-file": [str(tmp_path)], "config-format": "hcl", "data-dir": str(tmp_path)})
    assert cfg.datacenter == "fmt" and cfg.log_level == "DEBUG"
    assert cfg.config_files == [str(tmp_path / "agent.conf"), str(tmp_path / "b.json")]
    with pytest.raises(ConfigError, match="invalid JSON"):
        build_config({"config-file": [str(tmp_path / "agent.conf")], "config-format": "json", "data-dir": "/x"})
    with pytest.raises(ConfigError, match='-config-format: must be "json" or "hcl", got "yaml"'):
        build_config({"config-format": "yaml", "data-dir": "/x"})
    with pytest.raises(ConfigError, match=r"b\.json: invalid JSON"):  # by extension: agent.conf skipped, b.json JSON
        build_config({"config-file": [str(tmp_path)], "data-dir": str(tmp_path)})
