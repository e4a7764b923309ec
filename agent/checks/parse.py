"""Check definitions -> CheckSpec: both key styles, Go durations, Consul 1.7's validation and messages.

Contract:
- `parse_check(d, service_id=..., allow_script=...)` takes one check definition as a JSON object: the
  HTTP API's CamelCase keys (`CheckID`, `TTL`, `HTTP`, `Args`, `AliasService`, `Interval`...) or the
  config files' snake_case keys (`check_id`, `ttl`, `args`, `alias_service`, `interval`...). Keys
  match as Go's JSON decoder matches them (case-insensitively), and underscores are ignored, so both
  styles and Consul's aliases (`ID`/`CheckID`/`check_id`, `ScriptArgs`/`script_args`/`Args`/`args`,
  `ServiceID`/`service_id`, `TLSSkipVerify`/`tls_skip_verify`, ...) land on the same field.
  Unknown keys are ignored, as Consul's decoder ignores them.
- Durations are Go duration strings ("10s", "1m30s") or numbers of nanoseconds (Go's time.Duration in
  JSON). A bad one is BadRequest("Request decode failed: time: invalid duration ...").
- Validation and messages are Consul 1.7's (structs.CheckType.Validate, wrapped as the agent
  endpoints wrap it: "Invalid check: ..."): "Interval and TTL cannot both be specified",
  "Interval must be > 0 for Script, HTTP, or TCP checks", "TTL must be not be set for Alias checks",
  "Interval must not be set for Alias checks", "TTL must be > 0 for TTL checks" (the answer to a
  definition with no type at all); "Missing check name"; "Bad check status". Where Consul would
  silently pick one of several types, we refuse ("Only one check type may be set ..."). Docker checks
  are refused as not supported; gRPC checks are accepted (kind "grpc") and always report critical,
  as pyconsul has no gRPC client: the service's health then says so instead of its registration failing.
- Interval-driven checks (script, HTTP, TCP) with an interval below MIN_INTERVAL (1 s) are clamped to
  it, as Consul's agent does (it logs a warning; so do we).
- Script checks (`Args`) are refused unless `allow_script`, with Consul's message. The caller decides
  `allow_script` from enable_script_checks (HTTP API and config files) and enable_local_script_checks
  (config files only).
- Service checks (`service_id` given): a missing CheckID defaults to Consul's "service:<id>" (with
  ":<n>" when the service has several checks; pass `index`/`count`), a missing Name to
  "Service '<name>' check" (pass `service_name`). Node checks need a Name; CheckID defaults to it.
- Bounds (documented in README "Limits"): strings MAX_STRING bytes, Body MAX_BODY, Args MAX_ARGS
  items, Header MAX_HEADERS names with MAX_HEADER_VALUES values each, durations below Go's
  time.Duration range (~292 years), SuccessBeforePassing/FailuresBeforeCritical 0..MAX_THRESHOLD.
Pure: no I/O.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from pyconsul.agent.checks.schedule import INTERVAL_KINDS
from pyconsul.agent.checks.spec import STATUSES, CheckKind, CheckSpec
from pyconsul.agent.errors import BadRequest
from pyconsul.agent.flags import parse_duration

log = logging.getLogger("agent.checks")

MIN_INTERVAL = 1.0  # Consul's checks.MinInterval
MAX_STRING = 8 * 1024
MAX_BODY = 64 * 1024
MAX_ARGS = 1024
MAX_HEADERS = 64
MAX_HEADER_VALUES = 64
MAX_THRESHOLD = 10_000
MAX_DURATION = (2**63 - 1) / 1e9  # Go's time.Duration range, in seconds

SCRIPTS_DISABLED = ("Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or "
                    "'enable_local_script_checks' to true")

# normalised key (lower case, no underscores) -> field
_KEYS: dict[str, str] = {
    "id": "id", "checkid": "id",
    "name": "name",
    "notes": "notes",
    "serviceid": "service_id",
    "status": "status",
    "args": "args", "scriptargs": "args",
    "http": "http",
    "header": "header",
    "method": "method",
    "body": "body",
    "tcp": "tcp",
    "interval": "interval",
    "timeout": "timeout",
    "ttl": "ttl",
    "tlsskipverify": "tls_skip_verify",
    "aliasnode": "alias_node",
    "aliasservice": "alias_service",
    "deregistercriticalserviceafter": "deregister_critical_service_after",
    "successbeforepassing": "success_before_passing",
    "failuresbeforecritical": "failures_before_critical",
    "grpc": "grpc",
    "grpcusetls": "grpc_use_tls",
    "dockercontainerid": "docker_container_id",
}
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 7230 token (method, header names)
_BAD_VALUE = re.compile(r"[\r\n\x00]")


def _decode_error(msg: str) -> BadRequest:
    return BadRequest(f"Request decode failed: {msg}")


def _invalid(msg: str) -> BadRequest:
    return BadRequest(f"Invalid check: {msg}")


def _fields(d: Mapping[Any, Any]) -> dict[str, Any]:
    """Map the definition's keys onto field names; the first spelling seen wins on a clash, except
    that a null value never hides a set one."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if not isinstance(key, str):
            continue
        name = _KEYS.get(key.replace("_", "").lower())
        if name is None or value is None:
            continue
        out.setdefault(name, value)
    return out


def _string(f: dict[str, Any], name: str, limit: int = MAX_STRING) -> str:
    v = f.get(name, "")
    if not isinstance(v, str):
        raise _decode_error(f"{name} must be a string")
    if len(v.encode("utf-8", "surrogatepass")) > limit:
        raise _decode_error(f"{name} is longer than {limit} bytes")
    return v


def _bool(f: dict[str, Any], name: str) -> bool:
    v = f.get(name, False)
    if not isinstance(v, bool):
        raise _decode_error(f"{name} must be a boolean")
    return v


def _int(f: dict[str, Any], name: str) -> int:
    v = f.get(name, 0)
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise _decode_error(f"{name} must be an integer")
    n = int(v)
    if not 0 <= n <= MAX_THRESHOLD:
        raise _invalid(f"{name} must be between 0 and {MAX_THRESHOLD}")
    return n


def _duration(f: dict[str, Any], name: str) -> float:
    v = f.get(name)
    if v is None:
        return 0.0
    if isinstance(v, bool):
        raise _decode_error(f"{name} must be a duration")
    if isinstance(v, int | float):
        seconds = float(v) / 1e9  # Go: a JSON number is a time.Duration, nanoseconds
    elif isinstance(v, str):
        if len(v) > 64:
            raise _decode_error(f'time: invalid duration "{v[:64]}..."')
        try:
            seconds = parse_duration(v)
        except ValueError as e:
            raise _decode_error(str(e)) from None
    else:
        raise _decode_error(f"{name} must be a duration")
    if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION:
        raise _decode_error(f'time: invalid duration "{v}"')
    return seconds


def _args(f: dict[str, Any]) -> tuple[str, ...]:
    v = f.get("args", [])
    if not isinstance(v, list | tuple) or not all(isinstance(a, str) for a in v):
        raise _decode_error("Args must be a list of strings")
    if len(v) > MAX_ARGS:
        raise _decode_error(f"Args has more than {MAX_ARGS} items")
    for a in v:
        if len(a.encode("utf-8", "surrogatepass")) > MAX_STRING or "\x00" in a:
            raise _decode_error(f"an Args item is longer than {MAX_STRING} bytes or holds a NUL byte")
    return tuple(v)


def _header(f: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    v = f.get("header", {})
    if not isinstance(v, Mapping):
        raise _decode_error("Header must be a map of lists of strings")
    if len(v) > MAX_HEADERS:
        raise _decode_error(f"Header has more than {MAX_HEADERS} names")
    out: dict[str, tuple[str, ...]] = {}
    for k, vals in v.items():
        if not isinstance(k, str) or not _TOKEN.match(k):
            raise _decode_error(f"Header name {k!r} is not a valid HTTP header name")
        if isinstance(vals, str):
            vals = [vals]
        if not isinstance(vals, list | tuple) or not all(isinstance(x, str) for x in vals):
            raise _decode_error("Header must be a map of lists of strings")
        if len(vals) > MAX_HEADER_VALUES:
            raise _decode_error(f"Header {k} has more than {MAX_HEADER_VALUES} values")
        for x in vals:
            if _BAD_VALUE.search(x) or len(x.encode("utf-8", "surrogatepass")) > MAX_STRING:
                raise _decode_error(f"Header {k} has a value with a line break, a NUL byte or over "
                                    f"{MAX_STRING} bytes")
        out[k] = tuple(vals)
    return out


def parse_check(d: Mapping[str, Any], *, service_id: str = "", allow_script: bool, service_name: str = "",
                index: int = 0, count: int = 1) -> CheckSpec:
    """One check definition -> a validated CheckSpec, or BadRequest with Consul's message."""
    if not isinstance(d, Mapping):
        raise _decode_error("a check definition must be a JSON object")
    f = _fields(d)
    check_id = _string(f, "id")
    name = _string(f, "name")
    notes = _string(f, "notes")
    status = _string(f, "status")
    own_service = _string(f, "service_id")
    args = _args(f)
    http = _string(f, "http")
    header = _header(f)
    method = _string(f, "method")
    body = _string(f, "body", MAX_BODY)
    tcp = _string(f, "tcp")
    interval = _duration(f, "interval")
    timeout = _duration(f, "timeout")
    ttl = _duration(f, "ttl")
    tls_skip_verify = _bool(f, "tls_skip_verify")
    alias_node = _string(f, "alias_node")
    alias_service = _string(f, "alias_service")
    dereg = _duration(f, "deregister_critical_service_after")
    success_before_passing = _int(f, "success_before_passing")
    failures_before_critical = _int(f, "failures_before_critical")
    grpc = _string(f, "grpc")
    grpc_use_tls = _bool(f, "grpc_use_tls")
    docker = _string(f, "docker_container_id")

    sid = service_id or own_service
    if service_id:
        if not check_id:
            check_id = f"service:{service_id}" + (f":{index + 1}" if count > 1 else "")
        if not name:
            name = f"Service '{service_name or service_id}' check"
    elif not name:
        raise BadRequest("Missing check name")
    if not check_id:
        check_id = name
    if status and status not in STATUSES:
        raise BadRequest("Bad check status" if not service_id
                         else "Status for checks must 'passing', 'warning', 'critical'")
    if method and not _TOKEN.match(method):
        raise _decode_error(f"Method {method!r} is not a valid HTTP method")

    # structs.CheckType.Validate (Consul 1.7), in its order.
    is_script = bool(args)
    is_alias = bool(alias_node or alias_service)
    interval_check = is_script or bool(http) or bool(tcp) or bool(grpc)
    if interval > 0 and ttl > 0:
        raise _invalid("Interval and TTL cannot both be specified")
    if interval_check and interval <= 0:
        raise _invalid("Interval must be > 0 for Script, HTTP, or TCP checks")
    if is_alias:
        if ttl > 0:
            raise _invalid("TTL must be not be set for Alias checks")
        if interval > 0:
            raise _invalid("Interval must not be set for Alias checks")
    if not interval_check and not is_alias and ttl <= 0:
        raise _invalid("TTL must be > 0 for TTL checks")
    if docker:
        raise _invalid("Docker checks are not supported by pyconsul")
    candidates: tuple[tuple[CheckKind, bool], ...] = (
        ("script", is_script), ("http", bool(http)), ("tcp", bool(tcp)), ("grpc", bool(grpc)), ("alias", is_alias),
        ("ttl", ttl > 0))
    kinds = [k for k, on in candidates if on]
    if len(kinds) != 1:
        raise _invalid("Only one check type may be set: one of Args, HTTP, TCP, GRPC, TTL or AliasService/AliasNode")
    kind = kinds[0]
    if kind == "script" and not allow_script:
        raise BadRequest(SCRIPTS_DISABLED)
    if kind in INTERVAL_KINDS and interval < MIN_INTERVAL:
        log.warning("check %r has interval below minimum of %gs; using %gs", check_id, MIN_INTERVAL, MIN_INTERVAL)
        interval = MIN_INTERVAL
    return CheckSpec(
        check_id=check_id, name=name, kind=kind, service_id=sid, notes=notes, status=status or "critical",
        interval=interval if kind in INTERVAL_KINDS else 0.0,
        timeout=max(timeout, 0.0) if kind in INTERVAL_KINDS else 0.0,
        ttl=ttl if kind == "ttl" else 0.0,
        http=http, method=method, header=header, body=body, tls_skip_verify=tls_skip_verify, tcp=tcp, args=args,
        grpc=grpc, grpc_use_tls=grpc_use_tls,
        alias_node=alias_node, alias_service=alias_service, deregister_critical_service_after=max(dereg, 0.0),
        success_before_passing=success_before_passing, failures_before_critical=failures_before_critical,
    )
