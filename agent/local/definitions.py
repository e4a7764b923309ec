"""Service definitions of the local agent: parsing, validation and JSON shapes (Consul 1.7). Pure.

One parser for both sources, because Go decodes JSON field names case-insensitively and Consul's config
loader maps snake_case onto the same fields: a key is matched after lower-casing it and dropping
underscores (`EnableTagOverride`, `enable_tag_override` and `enabletagoverride` are one field). The values
of user maps (`Meta`, `TaggedAddresses`) keep their keys.

    parse_service(body, allow_script=False) -> ServiceDefinition(service, checks)

Errors are BadRequest with Consul's messages ("Missing service name", "Invalid Weights: ...",
"Invalid Service Meta: ...", "Request decode failed: ..."); check definitions go through
agent.checks.parse.parse_check (helper of the check runners), which gives the check messages.

Bounds (README "Limits"): MAX_TAGS tags, MAX_CHECKS checks per service, Consul's metadata limits
(64 pairs, keys of at most 128 characters matching [A-Za-z0-9_-], values of at most 512, no "consul-"
key prefix), IDs and names of at most MAX_NAME characters; check definitions have parse.py's bounds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyconsul.agent.checks.spec import CheckSpec
from pyconsul.agent.errors import BadRequest
from pyconsul.agent.state.commands import CheckDefinition, ServiceAddress, ServiceDef

__all__ = [
    "MAX_CHECKS",
    "MAX_NAME",
    "MAX_TAGS",
    "LocalService",
    "ServiceDefinition",
    "check_definition",
    "normalize",
    "parse_check_definition",
    "parse_service",
    "quote",
    "service_from_json",
    "service_json",
    "to_service_def",
]

MAX_TAGS = 256
MAX_CHECKS = 64
MAX_NAME = 512
META_MAX_PAIRS = 64
META_KEY_MAX = 128
META_VALUE_MAX = 512
_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")

DECODE = "Request decode failed"


def quote(s: str) -> str:
    """Go's %q, as Consul's messages quote IDs ("web", not 'web')."""
    return json.dumps(s, ensure_ascii=False)


def _k(key: str) -> str:
    return key.replace("_", "").lower()


def normalize(d: Mapping[str, Any]) -> dict[str, Any]:
    """Keys folded (lower case, no underscores); the first spelling wins on a clash."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(key, str):
            out.setdefault(_k(key), value)
    return out


@dataclass(frozen=True, slots=True)
class LocalService:
    """A service of this agent (Consul's NodeService without Connect)."""

    id: str
    name: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    tagged_addresses: dict[str, ServiceAddress] = field(default_factory=dict)
    weights_passing: int = 1
    weights_warning: int = 1
    enable_tag_override: bool = False


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    service: LocalService
    checks: tuple[CheckSpec, ...] = ()


# ---------------------------------------------------------------- field readers


def _str(d: Mapping[str, Any], key: str, label: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadRequest(f"{DECODE}: {label} must be a string")
    if len(v) > MAX_NAME and label in ("ID", "Name"):
        raise BadRequest(f"{DECODE}: {label} is longer than {MAX_NAME} characters")
    return v


def _int(d: Mapping[str, Any], key: str, label: str, lo: int, hi: int) -> int:
    v = d.get(key)
    if v is None:
        return 0
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        got = {str: "a string", bool: "a boolean", float: "a fraction", list: "a list", dict: "an object"}
        raise BadRequest(f"{DECODE}: {label} must be an integer, got {got.get(type(v), type(v).__name__)}")
    if not lo <= v <= hi:
        raise BadRequest(f"{DECODE}: {label} {v} is out of range ({lo}-{hi})")
    return v


def _bool(d: Mapping[str, Any], key: str, label: str) -> bool:
    v = d.get(key)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise BadRequest(f"{DECODE}: {label} must be a boolean")
    return v


def _tags(d: Mapping[str, Any]) -> tuple[str, ...]:
    v = d.get("tags")
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(t, str) for t in v):
        raise BadRequest(f"{DECODE}: Tags must be a list of strings")
    if len(v) > MAX_TAGS:
        raise BadRequest(f"{DECODE}: more than {MAX_TAGS} Tags")
    return tuple(v)


def _meta(d: Mapping[str, Any]) -> dict[str, str]:
    v = d.get("meta")
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise BadRequest(f"{DECODE}: Meta must be a map of strings")
    if len(v) > META_MAX_PAIRS:
        raise BadRequest(f"Invalid Service Meta: Service metadata cannot contain more than {META_MAX_PAIRS} "
                         "key/value pairs")
    for key, value in v.items():
        why = ""
        if not key:
            why = "Key cannot be blank"
        elif not _META_KEY.match(key):
            why = "Key contains invalid characters"
        elif len(key) > META_KEY_MAX:
            why = f"Key is too long (limit: {META_KEY_MAX} characters)"
        elif key.startswith("consul-"):
            why = "Key prefix 'consul-' is reserved for internal use"
        elif len(value) > META_VALUE_MAX:
            why = f"Value is too long (limit: {META_VALUE_MAX} characters)"
        if why:
            raise BadRequest(f"Invalid Service Meta: Couldn't load metadata pair ('{key}', '{value[:64]}'): {why}")
    return dict(v)


def _tagged_addresses(d: Mapping[str, Any]) -> dict[str, ServiceAddress]:
    v = d.get("taggedaddresses")
    if v is None:
        return {}
    if not isinstance(v, dict) or len(v) > META_MAX_PAIRS:
        raise BadRequest(f"{DECODE}: TaggedAddresses must be a map of {{Address, Port}} objects")
    out: dict[str, ServiceAddress] = {}
    for tag, addr in v.items():
        if not isinstance(addr, dict):
            raise BadRequest(f"{DECODE}: TaggedAddresses[{tag}] must be an object with Address and Port")
        a = normalize(addr)
        out[str(tag)] = ServiceAddress(_str(a, "address", f"TaggedAddresses[{tag}].Address"),
                                       _int(a, "port", f"TaggedAddresses[{tag}].Port", 0, 65535))
    return out


def _weights(d: Mapping[str, Any]) -> tuple[int, int]:
    v = d.get("weights")
    if v is None:
        return 1, 1
    if not isinstance(v, dict):
        raise BadRequest(f"{DECODE}: Weights must be an object with Passing and Warning")
    w = normalize(v)
    passing = _int(w, "passing", "Weights.Passing", -(2**31), 2**31 - 1)
    warning = _int(w, "warning", "Weights.Warning", -(2**31), 2**31 - 1)
    if passing < 1:
        raise BadRequest("Invalid Weights: Passing must be greater than 0")
    if warning < 0:
        raise BadRequest("Invalid Weights: Warning must be greater or equal than 0")
    return passing, warning


def _is_any(addr: str) -> bool:
    return addr in ("0.0.0.0", "::", "[::]", "0:0:0:0:0:0:0:0")


# ---------------------------------------------------------------- services


def parse_service(body: Any, *, allow_script: bool) -> ServiceDefinition:
    """A service definition (HTTP body or config-file entry) -> validated service and its checks."""
    if not isinstance(body, dict):
        raise BadRequest(f"{DECODE}: expected a JSON object")
    d = normalize(body)
    name = _str(d, "name", "Name")
    kind = _str(d, "kind", "Kind")
    if kind:
        raise BadRequest(f"Invalid service kind {quote(kind)}: pyconsul has no Connect proxies or gateways yet")
    sid = _str(d, "id", "ID") or name
    address = _str(d, "address", "Address")
    port = _int(d, "port", "Port", 0, 65535)
    tags = _tags(d)
    tagged = _tagged_addresses(d)
    eto = _bool(d, "enabletagoverride", "EnableTagOverride")
    meta = _meta(d)
    if not name:
        raise BadRequest("Missing service name")
    if _is_any(address):
        raise BadRequest("Invalid service address")
    passing, warning = _weights(d)
    svc = LocalService(sid, name, tags, address, port, meta, tagged, passing, warning, eto)
    raw_checks: list[Any] = []
    if d.get("check") is not None:
        raw_checks.append(d["check"])
    if d.get("checks") is not None:
        if not isinstance(d["checks"], list):
            raise BadRequest(f"{DECODE}: Checks must be a list of check objects")
        raw_checks.extend(d["checks"])
    if len(raw_checks) > MAX_CHECKS:
        raise BadRequest(f"{DECODE}: more than {MAX_CHECKS} checks in one service")
    from pyconsul.agent.checks.parse import parse_check  # here: parse.py logs (and logging loads threading)

    checks = [parse_check(raw, service_id=sid, service_name=name, index=i, count=len(raw_checks),
                          allow_script=allow_script) for i, raw in enumerate(raw_checks)]
    return ServiceDefinition(svc, tuple(checks))


def parse_check_definition(body: Any, *, allow_script: bool) -> CheckSpec:
    """A check definition (/v1/agent/check/register, config-file `check`) -> CheckSpec."""
    from pyconsul.agent.checks.parse import parse_check

    if not isinstance(body, dict):
        raise BadRequest(f"{DECODE}: expected a JSON object")
    return parse_check(body, allow_script=allow_script)


def service_json(s: LocalService) -> dict[str, Any]:
    """api.AgentService as /v1/agent/services shows it (empty Tags/Meta as [] and {})."""
    out: dict[str, Any] = {
        "ID": s.id,
        "Service": s.name,
        "Tags": list(s.tags),
        "Meta": dict(s.meta),
        "Port": s.port,
        "Address": s.address,
        "Weights": {"Passing": s.weights_passing, "Warning": s.weights_warning},
        "EnableTagOverride": s.enable_tag_override,
    }
    if s.tagged_addresses:
        out["TaggedAddresses"] = {k: {"Address": a.address, "Port": a.port} for k, a in s.tagged_addresses.items()}
    return out


def service_from_json(d: Mapping[str, Any]) -> LocalService:
    """The inverse of service_json (persisted files); BadRequest if it does not validate."""
    return parse_service({**d, "Name": d.get("Service", "")}, allow_script=False).service


def to_service_def(s: LocalService) -> ServiceDef:
    """What anti-entropy registers in the catalog."""
    return ServiceDef(s.id, s.name, s.tags, s.address, dict(s.meta), s.port, dict(s.tagged_addresses),
                      s.weights_passing, s.weights_warning, s.enable_tag_override)


def check_definition(spec: CheckSpec) -> CheckDefinition:
    """The catalog's view of how a check runs (Consul's HealthCheckDefinition)."""
    return CheckDefinition(spec.http, spec.tls_skip_verify, dict(spec.header), spec.method, spec.tcp,
                           spec.interval, spec.timeout, spec.deregister_critical_service_after)
