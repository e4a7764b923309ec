"""The catalog and health HTTP routes against a fake backend: register bodies (new fields, bad types, the
body's Datacenter deciding where the write goes), and the named reads and arguments each read route sends
(?tag repeated, ?node-meta, ?filter checked before any wait, ?near=_agent, ?passing, bad states)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import pytest

from pyconsul.agent.http import api
from pyconsul.agent.http.server import make_app
from pyconsul.agent.httpd import h1
from pyconsul.agent.server.common import REQUEST_DC, ReadMeta
from pyconsul.agent.state import commands as c


class FakeBackend:
    def __init__(self) -> None:
        self.writes: list[tuple[str, c.Command]] = []  # (REQUEST_DC at write time, command)
        self.reads: list[tuple[str, dict[str, Any], int]] = []

    async def write(self, data: bytes) -> Any:
        self.writes.append((REQUEST_DC.get(), c.decode(data)))
        return True

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]:
        self.reads.append((name, args, index))
        return [], ReadMeta(7, True, 0)

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        return ""


class FakeAgent:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"agent API {name} not expected here")


def call(requests: list[tuple[str, str, Any]]) -> tuple[FakeBackend, list[tuple[int, bytes]]]:
    backend = FakeBackend()
    out: list[tuple[int, bytes]] = []

    async def main() -> None:
        app = make_app(FakeAgent(), backend, "dc1", "me")
        server = await h1.serve(app, "127.0.0.1", 0)
        try:
            for method, path, body in requests:
                raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
                             + raw)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ")[1])
                length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n")
                                  if ln.lower().startswith(b"content-length")))
                out.append((status, await reader.readexactly(length)))
                writer.close()
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    return backend, out


FULL = {
    "Node": "n1", "Address": "10.0.0.1", "NodeMeta": {"rack": "r1"}, "TaggedAddresses": {"wan": "1.2.3.4"},
    "Service": {
        "ID": "web1", "Service": "web", "Tags": ["v1"], "Port": 80, "EnableTagOverride": True,
        "Weights": {"Passing": 10, "Warning": 2},
        "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}, "wan": {"address": "1.2.3.4", "port": 8080}},
    },
    "Check": {"CheckID": "http", "Name": "web http", "ServiceID": "web1", "Status": "passing", "Type": "http",
              "Definition": {"HTTP": "http://10.0.0.1/", "Interval": "10s", "Timeout": 2000000000,
                             "TLSSkipVerify": True, "Header": {"X-A": ["b"]}, "Method": "GET",
                             "DeregisterCriticalServiceAfter": "1m30s"}},
    "Checks": [{"Name": "serfHealth", "Status": "passing"}],
}


def test_register_carries_every_field() -> None:
    backend, out = call([("PUT", "/v1/catalog/register", FULL)])
    assert out == [(200, b"true")]
    ((dc, cmd),) = backend.writes
    assert dc == "dc1" and isinstance(cmd, c.Register)
    assert (cmd.node, cmd.address, cmd.datacenter, cmd.node_meta, cmd.tagged_addresses) == (
        "n1", "10.0.0.1", "dc1", {"rack": "r1"}, {"wan": "1.2.3.4"})
    svc = cmd.service
    assert svc is not None
    assert (svc.weights_passing, svc.weights_warning, svc.enable_tag_override) == (10, 2, True)
    assert svc.tagged_addresses == {"lan": c.ServiceAddress("10.0.0.1", 80), "wan": c.ServiceAddress("1.2.3.4", 8080)}
    http, serf = cmd.checks
    assert (http.check_id, http.type, http.service_id, serf.check_id, serf.node) == (
        "http", "http", "web1", "serfHealth", "n1")
    assert http.definition == c.CheckDefinition(http="http://10.0.0.1/", tls_skip_verify=True, header={"X-A": ("b",)},
                                                method="GET", interval=10.0, timeout=2.0,
                                                deregister_critical_service_after=90.0)


def test_register_weights_defaults_and_skip_node_update() -> None:
    body = {"Node": "n1", "SkipNodeUpdate": True,
            "Service": {"Service": "web", "Weights": {"Passing": 0, "Warning": 5}}}
    backend, out = call([("PUT", "/v1/catalog/register", body)])
    assert out == [(200, b"true")]
    (_, cmd), = backend.writes
    assert isinstance(cmd, c.Register) and cmd.skip_node_update and cmd.address == ""
    assert cmd.service is not None and (cmd.service.id, cmd.service.weights_passing, cmd.service.weights_warning) == (
        "web", 1, 1)  # Consul: invalid weights become the defaults


@pytest.mark.parametrize(("patch", "message"), [
    ({"Service": {"Service": "web", "Weights": {"Passing": "1"}}}, "Service.Weights.Passing must be an integer"),
    ({"Service": {"Service": "web", "Weights": []}}, "Service.Weights must be an object"),
    ({"Service": {"Service": "web", "EnableTagOverride": "yes"}}, "Service.EnableTagOverride must be a boolean"),
    ({"Service": {"Service": "web", "TaggedAddresses": {"lan": "10.0.0.1"}}}, "Service.TaggedAddresses must map"),
    ({"Service": {"Service": "web", "TaggedAddresses": {"lan": {"Port": 70000}}}}, "Port must be a port number"),
    ({"Service": {"Service": "web", "Port": "80"}}, "Service.Port must be an integer"),
    ({"Check": {"Name": "c", "Type": 5}}, "Check.Type must be a string"),
    ({"Check": {"Name": "c", "Definition": {"Interval": "ten"}}}, 'time: invalid duration "ten"'),
    ({"Check": {"Name": "c", "Definition": {"Interval": -1}}}, "Check.Definition.Interval out of range"),
    ({"Check": {"Name": "c", "Definition": {"Header": {"a": "b"}}}}, "Header must map names to lists"),
    ({"Check": {"Name": "c", "Definition": {"TLSSkipVerify": 1}}}, "TLSSkipVerify must be a boolean"),
    ({"Checks": {"Name": "c"}}, "Checks must be a list"),
    ({"Checks": [{"Name": f"c{i}"} for i in range(65)]}, "Too many checks"),
    ({"Address": ""}, "Missing node address"),
    ({"SkipNodeUpdate": "true"}, "SkipNodeUpdate must be a boolean"),
])
def test_register_bad_types_are_400(patch: dict[str, Any], message: str) -> None:
    backend, ((status, body),) = call([("PUT", "/v1/catalog/register", {"Node": "n1", "Address": "a", **patch})])
    assert status == 400 and message in body.decode(), body
    assert backend.writes == []


def test_body_datacenter_decides_where_writes_go() -> None:
    backend, out = call([
        ("PUT", "/v1/catalog/register", {"Datacenter": "SH", "Node": "n1", "Address": "a"}),
        ("PUT", "/v1/catalog/register?dc=sh", {"Node": "n2", "Address": "a"}),  # Consul ignores ?dc here
        ("PUT", "/v1/catalog/deregister", {"Datacenter": "sh", "Node": "n1"}),
        ("PUT", "/v1/catalog/deregister", {"Node": "n1", "ServiceID": "web1"}),
    ])
    assert [s for s, _ in out] == [200] * 4
    assert [(dc, type(cmd).__name__, getattr(cmd, "datacenter", None)) for dc, cmd in backend.writes] == [
        ("sh", "Register", "sh"), ("dc1", "Register", "dc1"), ("sh", "Deregister", None),
        ("dc1", "Deregister", None)]


def test_read_routes_send_their_named_query_and_arguments() -> None:
    flt = quote('Service.Tags contains "v1"')
    backend, out = call([
        ("GET", "/v1/catalog/nodes?node-meta=rack:r1&node-meta=os&near=_agent&filter=Meta.rack%20%3D%3D%20r1", None),
        ("GET", "/v1/catalog/services?node-meta=a:b:c", None),
        ("GET", "/v1/catalog/service/web?tag=v1&tag=primary&near=n9", None),
        ("GET", "/v1/catalog/node/n1", None),
        ("GET", "/v1/catalog/node-services/n1?filter=Port%20%3D%3D%2080", None),
        ("GET", "/v1/health/node/n1", None),
        ("GET", "/v1/health/checks/web?node-meta=rack:r1", None),
        ("GET", "/v1/health/state/critical", None),
        ("GET", f"/v1/health/service/web?passing&tag=v1&filter={flt}&index=5&wait=1ms", None),
        ("GET", "/v1/health/service/web?passing=false", None),
        ("GET", "/v1/health/service/web?passing=1", None),
    ])
    assert all(s == 200 for s, _ in out), out
    assert [(n, a) for n, a, _ in backend.reads] == [
        ("catalog.nodes", {"node_meta": {"rack": "r1", "os": ""}, "filter": "Meta.rack == r1", "near": "me"}),
        ("catalog.services", {"node_meta": {"a": "b:c"}}),
        ("catalog.service", {"tags": ["v1", "primary"], "near": "n9", "name": "web"}),
        ("catalog.node", {"node": "n1"}),
        ("catalog.node_services", {"filter": "Port == 80", "node": "n1"}),
        ("health.node", {"node": "n1"}),
        ("health.checks", {"node_meta": {"rack": "r1"}, "name": "web"}),
        ("health.state", {"state": "critical"}),
        ("health.service", {"tags": ["v1"], "filter": 'Service.Tags contains "v1"', "passing": True, "name": "web"}),
        ("health.service", {"name": "web"}),
        ("health.service", {"passing": True, "name": "web"}),
    ]
    assert backend.reads[8][2] == 5  # blocking index passed through


@pytest.mark.parametrize(("path", "message"), [
    ("/v1/health/state/bogus", "Invalid state: bogus"),
    ("/v1/health/state/", "Missing check state"),
    ("/v1/health/service/", "Missing service name"),
    ("/v1/health/checks/", "Missing service name"),
    ("/v1/health/node/", "Missing node name"),
    ("/v1/catalog/service/", "Missing service name"),
    ("/v1/catalog/node-services/", "Missing node name"),
    ("/v1/health/service/web?passing=maybe", "Invalid value for ?passing"),
    ("/v1/health/service/web?filter=Service.Nope%20%3D%3D%201&index=9&wait=10m",
     'Selector "Service.Nope" is not valid'),
    ("/v1/catalog/nodes?filter=Meta%20%3D%3D", "1:8 (7): no match found"),
    ("/v1/catalog/service/web?" + "&".join(["tag=x"] * (api.MAX_TAGS + 1)), "Too many ?tag parameters"),
    ("/v1/catalog/nodes?" + "&".join(f"node-meta=k{i}:v" for i in range(api.MAX_NODE_META + 1)),
     "Too many ?node-meta parameters"),
])
def test_bad_read_parameters_are_400_before_any_read(path: str, message: str) -> None:
    backend, ((status, body),) = call([("GET", path, None)])
    assert status == 400 and message in body.decode(), body
    assert backend.reads == []  # refused before the server (and before any blocking wait)


def test_readme_documents_the_limits_of_these_routes() -> None:
    from pathlib import Path

    from pyconsul.agent import filter as flt
    from pyconsul.agent.filter import regex
    from pyconsul.agent.http import catalog

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| What")}
    assert rows["Catalog and health reads: `?tag` / `?node-meta` parameters"] == (
        f"{api.MAX_TAGS} / {api.MAX_NODE_META}")
    assert rows["`?filter=` expression: length / parenthesis nesting / match expressions / `matches` pattern"] == (
        f"{flt.MAX_EXPRESSION_LENGTH} characters / {flt.MAX_NESTING} / {flt.MAX_MATCHES} / "
        f"{regex.MAX_PATTERN_LENGTH} characters")
    assert rows["`PUT /v1/catalog/register`: checks in one request / `Definition` durations"] == (
        f"{catalog.MAX_REGISTER_CHECKS} / under {catalog.MAX_DURATION / (365 * 86400):g} years")
    for endpoint in ("/v1/catalog/node-services/<n>", "/v1/health/checks/<s>", "/v1/health/state/<state>"):
        assert f"`GET {endpoint}`" in readme


def test_parameters_of_later_versions_are_ignored_as_consul_1_7_does() -> None:
    """?peer= (peering, Consul 1.14) and ?merge-central-config mean nothing to Consul 1.7, whose handlers ignore
    parameters they do not read: the same read, with the same arguments, as without them."""
    backend, out = call([
        ("GET", "/v1/health/service/web?peer=non-existent-peer", None),
        ("GET", "/v1/catalog/service/web?peer=unknown-peer&merge-central-config", None),
        ("GET", "/v1/health/service/web", None),
        ("GET", "/v1/catalog/service/web", None),
    ])
    assert [s for s, _ in out] == [200, 200, 200, 200], out
    assert [(n, a) for n, a, _ in backend.reads[:2]] == [(n, a) for n, a, _ in backend.reads[2:]]


def test_connect_reads_answer_an_empty_list_with_the_services_read(monkeypatch: pytest.MonkeyPatch) -> None:
    async def read(self: FakeBackend, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]:
        self.reads.append((name, args, index))
        return [{"Node": "n1", "ServiceName": "web"}], ReadMeta(7, True, 0)

    monkeypatch.setattr(FakeBackend, "read", read)
    backend, out = call([
        ("GET", "/v1/catalog/connect/web?index=3&wait=1ms", None),
        ("GET", "/v1/health/connect/web?passing", None),
        ("GET", "/v1/health/connect/", None),
    ])
    assert out[:2] == [(200, b"[]"), (200, b"[]")]
    assert out[2][0] == 400 and b"Missing service name" in out[2][1]
    assert [(n, a, i) for n, a, i in backend.reads] == [
        ("catalog.service", {"name": "web"}, 3), ("health.service", {"passing": True, "name": "web"}, 0)]
