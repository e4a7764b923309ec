"""agent/local/definitions.py: service definitions in both key styles, Consul's messages for bad ones."""

from __future__ import annotations

from typing import Any

import pytest

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.local.definitions import (
    MAX_TAGS,
    LocalService,
    parse_service,
    service_from_json,
    service_json,
    to_service_def,
)
from pyconsul.agent.state.commands import ServiceAddress


def test_http_camel_case_body() -> None:
    d = parse_service({
        "ID": "web1", "Name": "web", "Tags": ["a", "b"], "Address": "10.0.0.1", "Port": 8080,
        "Meta": {"version": "1"}, "TaggedAddresses": {"wan": {"Address": "1.2.3.4", "Port": 80}},
        "Weights": {"Passing": 3, "Warning": 1}, "EnableTagOverride": True,
        "Check": {"TTL": "10s"}, "Checks": [{"HTTP": "http://x/", "Interval": "5s"}],
    }, allow_script=False)
    s = d.service
    assert s == LocalService("web1", "web", ("a", "b"), "10.0.0.1", 8080, {"version": "1"},
                             {"wan": ServiceAddress("1.2.3.4", 80)}, 3, 1, True)
    assert [c.check_id for c in d.checks] == ["service:web1:1", "service:web1:2"]
    assert [c.kind for c in d.checks] == ["ttl", "http"]
    assert all(c.service_id == "web1" and c.name == "Service 'web' check" for c in d.checks)


def test_config_file_snake_case_is_the_same_definition() -> None:
    camel = parse_service({"Name": "db", "Port": 5432, "EnableTagOverride": True, "Check": {"TTL": "30s"}},
                          allow_script=False)
    snake = parse_service({"name": "db", "port": 5432, "enable_tag_override": True, "check": {"ttl": "30s"}},
                          allow_script=False)
    assert camel == snake
    assert camel.service.id == "db" and camel.checks[0].check_id == "service:db"


@pytest.mark.parametrize(("body", "message"), [
    ({"Port": 80}, "Missing service name"),
    ({"Name": "x", "Port": "80"}, "Request decode failed: Port must be an integer, got a string"),
    ({"Name": "x", "Port": 70000}, "Request decode failed: Port 70000 is out of range (0-65535)"),
    ({"Name": "x", "Tags": "a"}, "Request decode failed: Tags must be a list of strings"),
    ({"Name": "x", "Address": "0.0.0.0"}, "Invalid service address"),
    ({"Name": "x", "Weights": {"Passing": 0, "Warning": 1}}, "Invalid Weights: Passing must be greater than 0"),
    ({"Name": "x", "Weights": {"Passing": 1, "Warning": -1}},
     "Invalid Weights: Warning must be greater or equal than 0"),
    ({"Name": "x", "Meta": {"consul-x": "1"}},
     "Invalid Service Meta: Couldn't load metadata pair ('consul-x', '1'): "
     "Key prefix 'consul-' is reserved for internal use"),
    ({"Name": "x", "Meta": {"a b": "1"}}, "Key contains invalid characters"),
    ({"Name": "x", "Meta": {f"k{i}": "v" for i in range(65)}}, "cannot contain more than 64 key/value pairs"),
    ({"Name": "x", "Tags": ["t"] * (MAX_TAGS + 1)}, f"more than {MAX_TAGS} Tags"),
    ({"Name": "x", "Check": {"Interval": "bogus", "HTTP": "http://x"}}, "invalid duration"),
    ({"Name": "x", "Check": {"Interval": "10s"}}, "Invalid check"),
    ({"Name": "x", "Check": {"Args": ["/bin/true"], "Interval": "10s"}}, "Scripts are disabled on this agent"),
    ({"Name": "x", "Checks": {"TTL": "1s"}}, "Checks must be a list"),
    ({"Name": "x", "Kind": "connect-proxy"}, "Invalid service kind"),
    ([1], "expected a JSON object"),
])
def test_bad_definitions_get_consul_messages(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_service(body, allow_script=False)
    assert message in str(err.value)


def test_script_check_allowed_only_when_enabled() -> None:
    d = parse_service({"Name": "x", "Check": {"Args": ["/bin/true"], "Interval": "10s"}}, allow_script=True)
    assert d.checks[0].kind == "script" and d.checks[0].args == ("/bin/true",)


def test_json_round_trip_and_catalog_def() -> None:
    s = parse_service({"ID": "w", "Name": "web", "Tags": ["x"], "Port": 1, "Meta": {"a": "b"},
                       "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 2}}}, allow_script=False).service
    j = service_json(s)
    assert j["Service"] == "web" and j["Weights"] == {"Passing": 1, "Warning": 1} and j["Tags"] == ["x"]
    assert j["TaggedAddresses"] == {"lan": {"Address": "10.0.0.1", "Port": 2}}
    assert service_from_json(j) == s
    sd = to_service_def(s)
    assert (sd.id, sd.service, sd.port, sd.tagged_addresses) == ("w", "web", 1, {"lan": ServiceAddress("10.0.0.1", 2)})
    empty = service_json(parse_service({"Name": "n"}, allow_script=False).service)
    assert empty["Tags"] == [] and empty["Meta"] == {} and "TaggedAddresses" not in empty


def test_readme_limits_match_the_code() -> None:
    from pathlib import Path

    from pyconsul.agent.local import definitions, persist, state

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| What")}
    assert rows["Service definitions: `Tags` / checks per service / `ID` and `Name` length"] == (
        f"{definitions.MAX_TAGS} / {definitions.MAX_CHECKS} / {definitions.MAX_NAME} characters")
    assert rows["Service `Meta`: pairs / key length / value length"].startswith(
        f"{definitions.META_MAX_PAIRS} / {definitions.META_KEY_MAX} / {definitions.META_VALUE_MAX} ")
    assert rows["A persisted service or check file read at start"] == f"{persist.MAX_FILE // 1024 // 1024} MiB"
    assert rows["Services / checks of one agent"] == f"{state.MAX_SERVICES} / {state.MAX_CHECKS}"
