"""`pyconsul services register|deregister`: Consul 1.7's verbs for the local agent's services.

A service comes from flags (`-name -id -address -port -tag -meta -tagged-address`) or from definition
files (Consul config files holding a `service` object or a `services` list, JSON or HCL), never both.
Each service is one `PUT /v1/agent/service/register` (JSON in the API's CamelCase shape) or
`PUT /v1/agent/service/deregister/<id>`; output and errors are worded as Consul's.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet, ParseResult

MAX_DEFINITION_FILE = 4 * 1024 * 1024  # a service definition file larger than this is refused unread

# Config-file (snake_case) names of a service definition -> the agent API's field names. Consul decodes
# JSON field names case-insensitively, so `name` and `Name` are the same field; `tagged_addresses` is not.
_SERVICE_KEYS = {
    "id": "ID", "name": "Name", "tags": "Tags", "address": "Address", "port": "Port", "meta": "Meta",
    "tagged_addresses": "TaggedAddresses", "taggedaddresses": "TaggedAddresses", "weights": "Weights",
    "enable_tag_override": "EnableTagOverride", "enabletagoverride": "EnableTagOverride", "kind": "Kind",
    "check": "Check", "checks": "Checks", "token": "Token",
}
_ADDRESS_KEYS = {"address": "Address", "port": "Port"}
_WEIGHT_KEYS = {"passing": "Passing", "warning": "Warning"}


def _pairs(res: ParseResult, name: str) -> dict[str, str]:
    """A repeatable `-name k=v` flag as a map (Go's FlagMapValue: a later value wins)."""
    out: dict[str, str] = {}
    for item in res.list(name):
        if "=" not in item:
            raise CLIError(f'invalid value "{item}" for flag -{name}: Missing "=" value in argument: {item}')
        key, value = item.split("=", 1)
        out[key] = value
    return out


def parse_service_addr(value: str) -> dict[str, Any]:
    """`host:port` (or `[v6]:port`, or a bare host) -> {"Address", "Port"}, as Consul's ParseServiceAddr."""
    host, port = value, 0
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise CLIError(f"Invalid Tagged Address: address {value}: missing ']' in address")
        host, rest = value[1:end], value[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise CLIError(f"Invalid Tagged Address: address {value}: unexpected text after address")
            port = _port(rest[1:], value)
    elif value.count(":") == 1:
        host, raw = value.split(":", 1)
        port = _port(raw, value)
    return {"Address": host, "Port": port}


def _port(raw: str, value: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 65535:
        raise CLIError(f'Invalid Tagged Address: invalid port "{raw}" in address {value}')
    return int(raw)


def service_from_flags(res: ParseResult) -> dict[str, Any]:
    """The registration body the flags describe (empty fields left out, as Go's omitempty does)."""
    svc: dict[str, Any] = {"Name": res.str("name")}
    if res.str("id"):
        svc["ID"] = res.str("id")
    if res.str("address"):
        svc["Address"] = res.str("address")
    if res.int("port"):
        if not 0 <= res.int("port") <= 65535:
            raise CLIError(f"Invalid port {res.int('port')}: must be 0-65535")
        svc["Port"] = res.int("port")
    if res.list("tag"):
        svc["Tags"] = res.list("tag")
    meta = _pairs(res, "meta")
    if meta:
        svc["Meta"] = meta
    tagged = {k: parse_service_addr(v) for k, v in _pairs(res, "tagged-address").items()}
    if tagged:
        svc["TaggedAddresses"] = tagged
    return svc


def _rename(obj: Mapping[str, Any], table: Mapping[str, str]) -> dict[str, Any]:
    return {table.get(k.lower(), k) if isinstance(k, str) else k: v for k, v in obj.items()}


def api_service(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A config-file service definition -> the agent API's registration body.

    Field names are translated (snake_case or any case -> CamelCase); Meta keys are user data and kept;
    check definitions are passed on as written (the agent accepts both spellings of their keys).
    """
    svc = _rename(definition, _SERVICE_KEYS)
    tagged = svc.get("TaggedAddresses")
    if isinstance(tagged, Mapping):
        svc["TaggedAddresses"] = {k: _rename(v, _ADDRESS_KEYS) if isinstance(v, Mapping) else v
                                  for k, v in tagged.items()}
    if isinstance(svc.get("Weights"), Mapping):
        svc["Weights"] = _rename(svc["Weights"], _WEIGHT_KEYS)
    return svc


def _load_document(path: str) -> Any:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_DEFINITION_FILE:
            raise CLIError(f"Error: {path}: file is larger than {MAX_DEFINITION_FILE} bytes")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"Error: {path}: file is not valid UTF-8") from None
    except OSError as exc:
        raise CLIError(f"Error: open {path}: {(exc.strerror or str(exc)).lower()}") from None
    if p.suffix == ".hcl":
        from pyconsul.agent.config_hcl import HCLError, parse_hcl  # lazy: python-hcl2 is heavy to import

        try:
            return parse_hcl(text)
        except HCLError as exc:
            raise CLIError(f"Error: {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CLIError(f"Error: {path}: invalid JSON: {exc}") from None


def _as_list(value: Any) -> list[Any]:
    """`service` is one object, `services` a list (HCL blocks come out in the same shapes)."""
    if isinstance(value, list):
        return value
    return [value]


def services_from_file(path: str) -> list[dict[str, Any]]:
    """The service definitions of one config file (`service` and/or `services`), as API bodies."""
    doc = _load_document(path)
    if not isinstance(doc, dict):
        raise CLIError(f"Error: {path}: expected an object at the top level")
    found: list[dict[str, Any]] = []
    for key in ("service", "services"):
        for item in _as_list(doc.get(key)) if key in doc else []:
            if not isinstance(item, dict):
                raise CLIError(f"Error: {path}: {key}: expected an object, got {json.dumps(item)}")
            found.append(api_service(item))
    if not found:
        raise CLIError(f"Error: {path}: no service definition (a 'service' or 'services' key)")
    return found


def _flagset(name: str) -> FlagSet:
    fs = FlagSet(name)
    common.http_flags(fs)
    return fs


def cmd_register(args: Sequence[str]) -> int:
    fs = _flagset("services register")
    fs.string("id", "", "ID of the service to register for arg-based registration. If this isn't set, it will "
              "default to the -name value.")
    fs.string("name", "", "Name of the service to register for arg-based registration.")
    fs.string("address", "", "Address of the service to register for arg-based registration.")
    fs.int("port", 0, "Port of the service to register for arg-based registration.")
    fs.string_list("meta", "Metadata to set on the service, formatted as key=value. This flag may be specified "
                   "multiple times to set multiple meta fields.")
    fs.string_list("tag", "Tag to add to the service. This flag can be specified multiple times to set multiple "
                   "tags.")
    fs.string_list("tagged-address", "Tagged address to set on the service, formatted as key=value (the value "
                   "host:port). This flag may be specified multiple times to set multiple addresses.")
    res = common.parse(
        fs, args, "services register [options] [FILE...]",
        "Register one or more services using the local agent API. Services can be registered from standard\n"
        "  Consul configuration files (JSON or HCL) holding a 'service' object or a\n"
        "  'services' list, or using flags. The service is registered and the command returns. The caller must\n"
        "  remember to call \"pyconsul services deregister\" or a similar API to deregister the service when\n"
        "  complete.\n\n      $ pyconsul services register web.json\n      $ pyconsul services register "
        "-name=web -port=8080 -tag=v1")
    if not res.positional and not res.str("name"):
        raise CLIError("Service registration requires at least one argument or flags.")
    if res.positional and res.str("name"):
        raise CLIError("Service registration requires arguments or -id, not both.")
    if res.positional:
        svcs = [svc for path in res.positional for svc in services_from_file(path)]
    else:
        svcs = [service_from_flags(res)]
    base = common.http_addr(res)
    for svc in svcs:
        name = str(svc.get("Name", ""))
        try:
            common.api_request("PUT", base, "/v1/agent/service/register", body=svc)
        except ApiError as exc:
            raise CLIError(f"Error registering service {json.dumps(name)}: {exc}") from None
        print(f"Registered service: {name}")
    return 0


def cmd_deregister(args: Sequence[str]) -> int:
    fs = _flagset("services deregister")
    fs.string("id", "", "ID to deregister. This must not be set if arguments are given.")
    res = common.parse(
        fs, args, "services deregister [options] [FILE...]",
        "Deregister one or more services that were previously registered with the local agent. Services are\n"
        "  named by -id, or by the definition files used to register them (each service's ID, else its Name).\n\n"
        "      $ pyconsul services deregister web.json\n      $ pyconsul services deregister -id=web")
    if not res.positional and not res.str("id"):
        raise CLIError("Service deregistration requires at least one argument or -id.")
    if res.positional and res.str("id"):
        raise CLIError("Service deregistration requires arguments or -id, not both.")
    if res.positional:
        ids = [str(svc.get("ID") or svc.get("Name") or "") for p in res.positional for svc in services_from_file(p)]
    else:
        ids = [res.str("id")]
    base = common.http_addr(res)
    for sid in ids:
        if not sid:
            raise CLIError("Error: a service definition has neither an ID nor a Name")
        try:
            common.api_request("PUT", base, "/v1/agent/service/deregister/" + urllib.parse.quote(sid, safe=""))
        except ApiError as exc:
            raise CLIError(f"Error deregistering service {json.dumps(sid)}: {exc}") from None
        print(f"Deregistered service: {sid}")
    return 0


SERVICES_COMMANDS: common.Table = {
    "register": (cmd_register, "Register services with the local agent"),
    "deregister": (cmd_deregister, "Deregister services with the local agent"),
}


def cmd_services(args: Sequence[str]) -> int:
    return common.run_group("services", SERVICES_COMMANDS, args,
                            "Registers and deregisters services with the local agent.")
