"""Config keys of features pyconsul does not have yet: parsed and type-checked now, then ignored with a warning.

Consul's client test suites (and real deployments) start agents with keys such as `acl { enabled = true }`,
`acl_datacenter`, `ports { https = -1 }` or `verify_incoming`; refusing them would stop a whole suite
before any test runs. So every key below is accepted in JSON and HCL files and `-hcl` fragments, its value
is type-checked like any other key (a wrong type is still an error naming the key), and the agent prints
ONE warning per feature naming the keys it ignores: "ACLs are not built yet (issue 14): acl.enabled, ...".
A value that only turns the feature off (`false`, or `-1` for a port) gives no warning: nothing is lost.

When a feature lands, its keys move from LATER_KEYS into config.KEYS (and out of FEATURES).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

# str, int, bool, duration (Go string or seconds), list (of strings), map (string -> string),
# object (a free-form JSON object, or a list of them, kept as given).
Kind = Literal["str", "int", "bool", "duration", "list", "map", "object"]

# (key prefix, feature): the first matching prefix names the feature a key belongs to.
FEATURES: tuple[tuple[str, str], ...] = (
    ("acl", "these ACL keys are not built (the acl { } block's Consul 1.7 keys are)"),
    ("auto_encrypt", "auto_encrypt (certificates from the servers) is not built"),
    ("dns_config", "these DNS settings are not built (answers are cached until the catalog changes)"),
    ("connect", "Connect (service mesh) is not built"),
    ("ports.grpc", "gRPC (Connect/xDS) is not built"),
    ("addresses.grpc", "gRPC (Connect/xDS) is not built"),
    ("ports.sidecar_", "Connect (service mesh) is not built"),
    ("ports.expose_", "Connect (service mesh) is not built"),
    ("telemetry", "telemetry (metrics sinks) is not built"),
    ("ui_config.", "UI settings other than ui_config.enabled are not built"),
    ("ui_dir", "UI settings other than ui_config.enabled are not built"),
    ("ui_content_path", "UI settings other than ui_config.enabled are not built"),
    ("", "these keys are accepted but have no effect yet"),
)

LATER_KEYS: dict[str, Kind] = {
    # ACLs (issue 14); Consul 1.7 names plus the newer token names client suites use
    "acl_datacenter": "str", "acl_default_policy": "str", "acl_down_policy": "str",
    "acl_master_token": "str", "acl_agent_token": "str", "acl_agent_master_token": "str", "acl_token": "str",
    "acl_replication_token": "str", "acl_ttl": "duration", "acl_enforce_version_8": "bool",
    # TLS: the others are built (tlsutil.KEYS)
    "auto_encrypt.tls": "bool", "auto_encrypt.allow_tls": "bool",
    # DNS settings pyconsul does not have (the others are config.KEYS)
    "dns_config.use_cache": "bool", "dns_config.cache_max_age": "duration", "dns_config.disable_compression": "bool",
    # Connect, gRPC
    "connect.enabled": "bool", "connect.ca_provider": "str", "connect.ca_config": "object",
    "connect.enable_mesh_gateway_wan_federation": "bool",
    "ports.grpc": "int", "ports.grpc_tls": "int", "addresses.grpc": "str",
    "ports.sidecar_min_port": "int", "ports.sidecar_max_port": "int",
    "ports.expose_min_port": "int", "ports.expose_max_port": "int",
    # telemetry
    "telemetry.disable_hostname": "bool", "telemetry.statsd_address": "str", "telemetry.statsite_address": "str",
    "telemetry.dogstatsd_addr": "str", "telemetry.dogstatsd_tags": "list",
    "telemetry.prometheus_retention_time": "duration", "telemetry.metrics_prefix": "str",
    "telemetry.filter_default": "bool", "telemetry.prefix_filter": "list", "telemetry.circonus_api_token": "str",
    "telemetry.circonus_api_url": "str", "telemetry.circonus_submission_url": "str",
    # UI details (ui / ui_config.enabled are built)
    "ui_dir": "str", "ui_content_path": "str", "ui_config.dir": "str", "ui_config.content_path": "str",
    "ui_config.metrics_provider": "str", "ui_config.metrics_proxy": "object",
    # accepted, no effect yet
    "node_meta": "map", "disable_update_check": "bool", "disable_remote_exec": "bool",
    "disable_host_node_id": "bool", "disable_anonymous_signature": "bool", "disable_keyring_file": "bool",
    "enable_central_service_config": "bool", "enable_syslog": "bool", "syslog_facility": "str",
    "log_file": "str", "log_json": "bool", "log_rotate_bytes": "int", "log_rotate_duration": "duration",
    "rejoin_after_leave": "bool", "raft_protocol": "int", "session_ttl_min": "duration",
    "discard_check_output": "bool", "translate_wan_addrs": "bool",
    "server_name": "str", "addresses.http": "str", "http_config.response_headers": "map",
    "http_config.block_endpoints": "list", "http_config.allow_write_http_from": "list",
    "performance.leave_drain_time": "duration", "performance.rpc_hold_timeout": "duration",
    "limits.rpc_rate": "int", "limits.rpc_max_burst": "int",
    "watches": "object",
}


def feature_of(key: str) -> str:
    for prefix, feature in FEATURES:
        if key.startswith(prefix):
            return feature
    raise AssertionError("unreachable: the last prefix is empty")


def unbuilt_warnings(values: Mapping[str, object]) -> list[str]:
    """One warning per feature, naming the keys (in the order given) whose values ask for it."""
    by_feature: dict[str, list[str]] = {}
    for key, value in values.items():
        if value is False or value == -1:  # the feature stays off: nothing is ignored
            continue
        by_feature.setdefault(feature_of(key), []).append(key)
    return [f"{feature}: {', '.join(keys)} accepted and ignored" for feature, keys in by_feature.items()]
