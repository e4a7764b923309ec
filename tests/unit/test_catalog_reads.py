"""Catalog and health reads (issue 12 item 4): the new fields in Consul 1.7's JSON shapes, ?tag / ?node-meta /
?filter / ?near selection through the named queries (server/queries.py), and per-table indexes: an unrelated
write does not move the index a blocking watcher compares with its ?index=."""

from __future__ import annotations

from typing import Any

import pytest

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.server import queries
from pyconsul.agent.state.commands import (
    CheckDef,
    CheckDefinition,
    Coord,
    CoordinateBatchUpdate,
    CoordinateUpdate,
    Deregister,
    KVSet,
    Register,
    ServiceAddress,
    ServiceDef,
)
from tests.unit.test_state_support import Harness


def reg(h: Harness, node: str, sid: str, name: str, *, tags: tuple[str, ...] = (), meta: dict[str, str] | None = None,
        status: str = "passing", port: int = 80, **svc: Any) -> Any:
    return h.do(Register(
        node, "10.0.0." + node[-1], node_meta=meta or {},
        service=ServiceDef(id=sid, service=name, tags=tags, port=port, **svc),
        checks=(CheckDef(name="serfHealth", status="passing"),
                CheckDef(check_id="svc:" + sid, name=sid, status=status, service_id=sid)),
        now=0.0))


def world() -> Harness:
    h = Harness()
    reg(h, "n1", "web1", "web", tags=("v1", "primary"), meta={"rack": "r1", "os": "linux"})
    reg(h, "n2", "web2", "web", tags=("v1",), meta={"rack": "r2", "os": "linux"}, status="warning")
    reg(h, "n3", "db1", "db", tags=("leader",), meta={"rack": "r1"}, port=5432)
    return h


def run(h: Harness, query: str, **args: Any) -> Any:
    return queries.run(h.store, query, args)


def index(h: Harness, query: str, **args: Any) -> int:
    return queries.index_of(h.store, query, args)


# ---------------------------------------------------------------- shapes


def test_new_service_and_check_fields_in_every_shape() -> None:
    h = Harness()
    definition = CheckDefinition(http="http://10.0.0.1:80/health", tls_skip_verify=True,
                                 header={"X-A": ("1", "2")}, method="POST", interval=10.0, timeout=1.5,
                                 deregister_critical_service_after=90.0)
    assert h.do(Register(
        "n1", "10.0.0.1",
        service=ServiceDef(id="web1", service="web", port=80, weights_passing=10, weights_warning=3,
                           enable_tag_override=True, tagged_addresses={
                               "lan": ServiceAddress("10.0.0.1", 80), "wan": ServiceAddress("1.2.3.4", 8080)}),
        checks=(CheckDef(check_id="http", name="http", service_id="web1", type="http", definition=definition),),
        now=0.0)) is True
    addrs = {"lan": {"Address": "10.0.0.1", "Port": 80}, "wan": {"Address": "1.2.3.4", "Port": 8080}}
    (cs,) = h.store.service_nodes("web")
    assert (cs["ServiceTaggedAddresses"], cs["ServiceWeights"], cs["ServiceEnableTagOverride"]) == (
        addrs, {"Passing": 10, "Warning": 3}, True)
    ns = h.store.node_services("n1")
    assert ns is not None
    svc = ns["Services"]["web1"]
    assert (svc["TaggedAddresses"], svc["Weights"], svc["EnableTagOverride"]) == (addrs, {"Passing": 10, "Warning": 3},
                                                                                   True)
    (entry,) = h.store.health_service_nodes("web")
    assert entry["Service"] == svc
    (check,) = entry["Checks"]
    assert check["Type"] == "http"
    assert check["Definition"] == {
        "Interval": "10s", "Timeout": "1.5s", "DeregisterCriticalServiceAfter": "1m30s",
        "HTTP": "http://10.0.0.1:80/health", "TLSSkipVerify": True, "Header": {"X-A": ["1", "2"]}, "Method": "POST"}
    assert h.store.health_checks(node="n1") == [check]
    listed = h.store.node_service_list("n1")
    assert listed["Node"]["Node"] == "n1" and listed["Services"] == [svc]


def test_defaults_and_omitempty() -> None:
    h = Harness()
    reg(h, "n1", "web1", "web")
    (cs,) = h.store.service_nodes("web")
    assert "ServiceTaggedAddresses" not in cs  # omitempty in Consul
    assert (cs["ServiceWeights"], cs["ServiceEnableTagOverride"]) == ({"Passing": 1, "Warning": 1}, False)
    (entry,) = h.store.health_service_nodes("web")
    assert "TaggedAddresses" not in entry["Service"]
    assert all(c["Type"] == "" and c["Definition"] == {} for c in entry["Checks"])
    assert h.store.node_service_list("ghost") == {"Node": None, "Services": None}


def test_changed_definition_or_weights_is_a_change() -> None:
    h = Harness()
    reg(h, "n1", "web1", "web")
    before = index(h, "health.service", name="web")
    reg(h, "n1", "web1", "web")  # the same again: nothing moves
    assert index(h, "health.service", name="web") == before
    reg(h, "n1", "web1", "web", weights_passing=5)
    assert index(h, "health.service", name="web") > before
    (cs,) = h.store.service_nodes("web")
    assert cs["ServiceWeights"] == {"Passing": 5, "Warning": 1}


# ---------------------------------------------------------------- selection


def test_tags_all_must_match_case_insensitively() -> None:
    h = world()
    assert [x["ServiceID"] for x in run(h, "catalog.service", name="web", tags=["v1"])] == ["web1", "web2"]
    assert [x["ServiceID"] for x in run(h, "catalog.service", name="web", tags=["V1", "PRIMARY"])] == ["web1"]
    assert run(h, "catalog.service", name="web", tags=["v1", "nope"]) == []
    assert run(h, "catalog.service", name="web", tags=[""]) == []  # ?tag= (empty) matches no instance
    assert [x["ServiceID"] for x in run(h, "catalog.service", name="web", tag="primary")] == ["web1"]  # old arg
    assert [e["Service"]["ID"] for e in run(h, "health.service", name="web", tags=["v1", "primary"])] == ["web1"]


def test_node_meta_selects_on_every_endpoint() -> None:
    h = world()
    r1 = {"rack": "r1"}
    assert [n["Node"] for n in run(h, "catalog.nodes", node_meta=r1)] == ["n1", "n3"]
    assert [n["Node"] for n in run(h, "catalog.nodes", node_meta={"rack": "r1", "os": "linux"})] == ["n1"]
    assert run(h, "catalog.nodes", node_meta={"os": ""}) == []  # key present with another value
    assert run(h, "catalog.services", node_meta={"rack": "r2"}) == {"web": ["v1"]}
    assert run(h, "catalog.services") == {"db": ["leader"], "web": ["primary", "v1"]}
    assert [x["Node"] for x in run(h, "catalog.service", name="web", node_meta={"rack": "r2"})] == ["n2"]
    assert [e["Node"]["Node"] for e in run(h, "health.service", name="web", node_meta=r1)] == ["n1"]
    assert [c["CheckID"] for c in run(h, "health.state", state="passing", node_meta={"rack": "r1"})] == [
        "serfHealth", "svc:web1", "serfHealth", "svc:db1"]
    assert [c["Node"] for c in run(h, "health.checks", name="web", node_meta={"rack": "r2"})] == ["n2"]


def test_passing_and_states() -> None:
    h = world()
    assert [e["Service"]["ID"] for e in run(h, "health.service", name="web", passing=True)] == ["web1"]
    assert [c["CheckID"] for c in run(h, "health.state", state="warning")] == ["svc:web2"]
    assert len(run(h, "health.state", state="any")) == 6
    assert run(h, "health.state", state="critical") == []
    with pytest.raises(BadRequest, match="Invalid state: bogus"):
        run(h, "health.state", state="bogus")
    assert [c["CheckID"] for c in run(h, "health.checks", name="WEB")] == ["svc:web1", "svc:web2"]
    assert [c["CheckID"] for c in run(h, "health.node", node="n3")] == ["serfHealth", "svc:db1"]


@pytest.mark.parametrize(("name", "args", "expr", "want"), [
    ("catalog.nodes", {}, "Meta.rack == r1", ["n1", "n3"]),
    ("catalog.nodes", {}, 'Node matches "^n[12]$" and Meta.os == linux', ["n1", "n2"]),
    ("catalog.service", {"name": "web"}, "ServiceTags contains primary", ["n1"]),
    ("catalog.service", {"name": "web"}, "NodeMeta.rack != r1", ["n2"]),
    ("health.service", {"name": "web"}, "Checks.Status == warning", ["n2"]),
    ("health.service", {"name": "web"}, "Service.Port == 80 and Node.Meta.rack == r1", ["n1"]),
    ("health.node", {"node": "n2"}, "ServiceName == web", ["n2"]),
    ("health.checks", {"name": "web"}, "Status != passing", ["n2"]),
    ("health.state", {"state": "any"}, "CheckID == serfHealth and Node != n1", ["n2", "n3"]),
])
def test_filter_applies_to_the_consul_shape(name: str, args: dict[str, Any], expr: str, want: list[str]) -> None:
    h = world()
    rows = run(h, name, **args, filter=expr)

    def node_of(r: dict[str, Any]) -> str:
        return r["Node"]["Node"] if isinstance(r["Node"], dict) else r["Node"]

    assert [node_of(r) for r in rows] == want


def test_filter_on_maps_and_service_list() -> None:
    h = world()
    assert run(h, "catalog.services", filter="ServicePort == 5432") == {"db": ["leader"]}
    assert run(h, "catalog.services", filter='NodeMeta.rack == r1 and ServiceTags contains "v1"') == {
        "web": ["primary", "v1"]}
    reg(h, "n1", "api1", "api", port=9000)
    node = run(h, "catalog.node", node="n1", filter="Port == 9000")
    assert list(node["Services"]) == ["api1"]
    assert [s["ID"] for s in run(h, "catalog.node_services", node="n1", filter="Service != api")["Services"]] == [
        "web1"]


@pytest.mark.parametrize(("name", "args", "expr", "message"), [
    ("catalog.nodes", {}, "Meta.rack ==", "Failed to create boolean expression evaluator: 1:13 (12): no match found"),
    ("health.service", {"name": "web"}, "Service.Foo == x", 'Selector "Service.Foo" is not valid (at offset 0)'),
    ("catalog.service", {"name": "web"}, "ServicePort == http", 'Failed to coerce value "http"'),
    ("health.state", {"state": "any"}, "Status matches \"(\"", "Failed to compile regular expression"),
])
def test_unusable_filter_is_bad_request_with_position(name: str, args: dict[str, Any], expr: str,
                                                      message: str) -> None:
    h = world()
    with pytest.raises(BadRequest) as err:
        run(h, name, **args, filter=expr)
    assert message in str(err.value)


def coord(x: float) -> Coord:
    return Coord(vec=(x,) + (0.0,) * 7, error=0.1)


def test_near_sorts_by_estimated_rtt() -> None:
    h = world()
    reg(h, "n4", "web4", "web", tags=("v1",))
    h.do(CoordinateBatchUpdate((CoordinateUpdate("n2", coord(0.0)), CoordinateUpdate("n4", coord(0.001)),
                                CoordinateUpdate("n1", coord(0.05)))))
    assert [r["Node"] for r in run(h, "catalog.nodes", near="n2")] == ["n2", "n4", "n1", "n3"]  # n3: none, last
    assert [e["Node"]["Node"] for e in run(h, "health.service", name="web", near="n2")] == ["n2", "n4", "n1"]
    assert [r["Node"] for r in run(h, "catalog.service", name="web", near="n1")] == ["n1", "n4", "n2"]
    assert [c["Node"] for c in run(h, "health.checks", name="web", near="n4")] == ["n4", "n2", "n1"]
    # a source without a coordinate, or none given: the usual order
    assert [r["Node"] for r in run(h, "catalog.service", name="web", near="n3")] == ["n1", "n2", "n4"]
    assert [r["Node"] for r in run(h, "catalog.nodes")] == ["n1", "n2", "n3", "n4"]


# ---------------------------------------------------------------- per-table indexes (blocking queries)


WATCHED = [
    ("health.service", {"name": "web"}),
    ("catalog.service", {"name": "web"}),
    ("health.checks", {"name": "web"}),
]


@pytest.mark.parametrize(("name", "args"), WATCHED)
def test_unrelated_writes_do_not_move_a_service_watch(name: str, args: dict[str, Any]) -> None:
    h = world()
    before = index(h, name, **args)
    h.do(KVSet("some/key", b"v"))
    reg(h, "n3", "db1", "db", tags=("leader", "new"), meta={"rack": "r1"}, port=5432)  # another service
    reg(h, "n5", "db5", "db")  # another node, with another service
    h.do(Deregister("n5", now=0.0))
    assert index(h, name, **args) == before
    reg(h, "n2", "web2", "web", tags=("v1",), meta={"rack": "r2", "os": "linux"}, status="critical")
    assert index(h, name, **args) > before


def test_table_indexes_of_the_other_reads() -> None:
    h = world()
    names = [("catalog.nodes", {}), ("catalog.services", {}), ("catalog.node", {"node": "n1"}),
             ("catalog.node_services", {"node": "n1"}), ("health.node", {"node": "n1"}),
             ("health.state", {"state": "any"})]
    before = {n: index(h, n, **a) for n, a in names}
    h.do(KVSet("k", b"v"))
    assert {n: index(h, n, **a) for n, a in names} == before  # KV writes move none of them
    h.do(Register("n1", "", skip_node_update=True, checks=(CheckDef(name="serfHealth", status="critical"),),
                  now=0.0))
    after = {n: index(h, n, **a) for n, a in names}
    moved = {n for n in after if after[n] != before[n]}
    assert moved == {"health.node", "health.state"}  # a check changed: only the check reads


def test_node_meta_reads_include_the_nodes_table() -> None:
    h = world()
    plain = index(h, "catalog.services")
    with_meta = index(h, "catalog.services", node_meta={"rack": "r1"})
    h.do(Register("n2", "10.0.0.2", node_meta={"rack": "r9"}, now=0.0))  # only node data changed
    assert index(h, "catalog.services") == plain
    assert index(h, "catalog.services", node_meta={"rack": "r1"}) > with_meta


def test_skip_node_update_keeps_the_node_and_creates_a_missing_one() -> None:
    h = world()
    node_index = index(h, "catalog.nodes")
    assert h.do(Register("n1", "192.0.2.1", node_meta={"rack": "elsewhere"}, skip_node_update=True,
                         service=ServiceDef(id="api1", service="api", port=9000), now=0.0)) is True
    assert index(h, "catalog.nodes") == node_index  # the node record was not touched
    (n1,) = [n for n in run(h, "catalog.nodes") if n["Node"] == "n1"]
    assert (n1["Address"], n1["Meta"]) == ("10.0.0.1", {"rack": "r1", "os": "linux"})
    assert [x["Node"] for x in run(h, "catalog.service", name="api")] == ["n1"]
    assert h.do(Register("n9", "10.0.0.9", skip_node_update=True, service=ServiceDef(service="api"), now=0.0)) is True
    assert [x["Node"] for x in run(h, "catalog.service", name="api")] == ["n1", "n9"]
