"""Catalog semantics (Consul 1.7): register, unchanged re-registers, cascading deregister, indexes, JSON."""

from __future__ import annotations

import pytest

from pyconsul.agent.state.commands import CheckDef, Deregister, KVLock, Register, ServiceDef
from pyconsul.agent.state.results import StateError
from tests.unit.test_state_support import Harness

NODE_ID = "11111111-2222-3333-4444-555555555555"


def full_register(h: Harness, node: str = "n1", sid: str = "web1", name: str = "web",
                  tags: tuple[str, ...] = ("v1",), status: str = "passing") -> object:
    return h.do(Register(
        node, "10.0.0.1", id=NODE_ID if node == "n1" else "", datacenter="dc1",
        tagged_addresses={"lan": "10.0.0.1"}, node_meta={"rack": "r1"},
        service=ServiceDef(id=sid, service=name, tags=tags, address="10.0.0.9", meta={"m": "1"}, port=8080),
        checks=(CheckDef(name="serfHealth", status="passing"),
                CheckDef(check_id="svc:" + sid, name="web alive", status=status, service_id=sid, output="ok")),
        now=0.0))


def test_register_and_read_shapes() -> None:
    h = Harness()
    assert full_register(h) is True
    assert h.store.last_changed == {"nodes", "services", "checks", "service.web"}
    assert h.store.nodes() == [{
        "ID": NODE_ID, "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "10.0.0.1"}, "Meta": {"rack": "r1"}, "CreateIndex": 1, "ModifyIndex": 1}]
    assert h.store.services() == {"web": ["v1"]}
    (cs,) = h.store.service_nodes("web")
    assert {k: cs[k] for k in ("ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "ServiceID",
                               "ServiceName", "ServiceTags", "ServiceAddress", "ServicePort", "ServiceMeta",
                               "CreateIndex", "ModifyIndex")} == {
        "ID": NODE_ID, "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "10.0.0.1"}, "NodeMeta": {"rack": "r1"}, "ServiceID": "web1",
        "ServiceName": "web", "ServiceTags": ["v1"], "ServiceAddress": "10.0.0.9", "ServicePort": 8080,
        "ServiceMeta": {"m": "1"}, "CreateIndex": 1, "ModifyIndex": 1}
    ns = h.store.node_services("n1")
    assert ns is not None and ns["Node"]["Node"] == "n1"
    assert ns["Services"]["web1"]["Service"] == "web" and ns["Services"]["web1"]["Port"] == 8080
    assert h.store.node_services("nope") is None
    checks = h.store.health_checks(node="n1")
    assert [(c["CheckID"], c["ServiceName"], c["ServiceTags"]) for c in checks] == [
        ("serfHealth", "", []), ("svc:web1", "web", ["v1"])]
    (entry,) = h.store.health_service_nodes("web")
    assert entry["Node"]["Node"] == "n1" and entry["Service"]["ID"] == "web1" and len(entry["Checks"]) == 2


def test_unchanged_reregister_writes_nothing() -> None:
    h = Harness()
    full_register(h)
    before = h.store.snapshot()
    assert full_register(h) is True
    assert h.store.last_changed == frozenset() and h.store.snapshot() == before
    full_register(h, status="warning")  # only the check changed
    assert h.store.last_changed == {"checks", "service.web"}
    (c,) = h.store.health_checks(service="web")
    assert (c["Status"], c["CreateIndex"], c["ModifyIndex"]) == ("warning", 1, 3)


@pytest.mark.parametrize(
    ("cmd", "message"),
    [
        (Register("", "10.0.0.1", now=0.0), "Must provide node"),
        (Register("n2", "", now=0.0), "Must provide address if SkipNodeUpdate is not set"),
        (Register("n2", "a", service=ServiceDef(id="x"), now=0.0), "Must provide service name with ID"),
        (Register("n2", "a", checks=(CheckDef(name="c", service_id="nosuch"),), now=0.0),
         "Missing service registration"),
        (Register("n2", "a", checks=(CheckDef(name="c", node="elsewhere"),), now=0.0), "Missing node registration"),
        (Register("n2", "a", skip_node_update=True, service=ServiceDef(service="s"), now=0.0),
         None),  # SkipNodeUpdate creates a node that does not exist yet (Consul's RegisterRequest.ChangesNode)
        (Register("n2", "a", id=NODE_ID.replace("1", "9"), now=0.0), None),  # a fresh ID is fine
    ],
)
def test_register_is_all_or_nothing(cmd: Register, message: str | None) -> None:
    h = Harness()
    full_register(h)
    before = h.store.snapshot()
    result = h.do(cmd)
    if message is None:
        assert result is True
        return
    assert result == StateError(message)
    assert h.store.snapshot() == before  # n2 was not left behind


def test_node_id_rename_and_conflict() -> None:
    h = Harness()
    full_register(h)
    assert h.do(Register("n1", "10.0.0.1", id="99999999-2222-3333-4444-555555555555", now=0.0)) == StateError(
        f"Node name n1 is reserved by node {NODE_ID} with name n1")
    assert h.do(Register("n1-renamed", "10.0.0.2", id=NODE_ID, now=0.0)) is True
    assert [n["Node"] for n in h.store.nodes()] == ["n1-renamed"]
    assert h.store.service_nodes("web") == []  # the old name's registrations went with it


def test_deregister_cascades() -> None:
    h = Harness()
    full_register(h)
    full_register(h, sid="web2", tags=("v2",))
    h.do(Register("n2", "10.0.0.2", service=ServiceDef(service="db"), now=0.0))
    h.session("s1", "n1")
    assert h.do(KVLock("lock", b"", session="s1", now=0.0)) is True

    assert h.do(Deregister("n1", service_id="web2", now=0.0)) is True
    assert [c["CheckID"] for c in h.store.health_checks(node="n1")] == ["serfHealth", "svc:web1"]
    assert h.store.services() == {"db": [], "web": ["v1"]}

    assert h.do(Deregister("n1", check_id="svc:web1", now=0.0)) is True
    assert [c["CheckID"] for c in h.store.health_checks(node="n1")] == ["serfHealth"]

    assert h.do(Deregister("n1", now=1.0)) is True  # the node: services, checks, sessions, locks
    assert [n["Node"] for n in h.store.nodes()] == ["n2"]
    assert h.store.services() == {"db": []}
    assert h.store.health_checks() == []
    assert h.store.session_list() == []
    lock = h.store.kv_get("lock")
    assert lock is not None and lock.session == ""
    assert {"nodes", "services", "checks", "sessions", "kvs"} <= h.store.last_changed

    before = h.store.snapshot()
    assert h.do(Deregister("ghost", now=2.0)) is True and h.store.snapshot() == before
    assert h.do(Deregister("", now=2.0)) == StateError("Must provide node")


def test_service_index_and_extinction() -> None:
    h = Harness()
    full_register(h)  # 1
    h.do(Register("n2", "10.0.0.2", service=ServiceDef(service="db"), now=0.0))  # 2
    assert h.store.service_index("web") == 1 and h.store.service_index("db") == 2
    full_register(h, status="critical")  # 3: a service check changed
    assert h.store.service_index("web") == 3 and h.store.service_index("db") == 2
    h.do(Register("n1", "10.0.0.1", id=NODE_ID, datacenter="dc1", tagged_addresses={"lan": "10.0.0.1"},
                  node_meta={"rack": "r1"}, checks=(CheckDef(name="serfHealth", status="warning"),), now=0.0))  # 4
    assert h.store.service_index("web") == 4  # a node-level check touches every service of the node
    assert h.store.nodes()[0]["ModifyIndex"] == 1 and h.store.table_index("nodes") == 2  # n1 itself unchanged
    h.do(Register("n1", "10.0.0.7", id=NODE_ID, now=0.0))  # 5: the node changed
    assert h.store.service_index("web") == 5 and h.store.service_index("db") == 2
    h.do(Deregister("n1", service_id="web1", now=0.0))  # 6: last instance of web
    assert h.store.service_index("web") == 6 and h.store.table_index("service_last_extinction") == 6
    assert "service.web" in h.store.last_changed and h.store.table_index("service.web") == 0


def test_tag_filter_and_passing_only() -> None:
    h = Harness()
    full_register(h, node="n1", sid="a", tags=("Primary",))
    full_register(h, node="n2", sid="b", tags=("replica",), status="warning")
    assert [s["ServiceID"] for s in h.store.service_nodes("web", tag="primary")] == ["a"]
    assert [s["ServiceID"] for s in h.store.service_nodes("WEB")] == ["a", "b"]
    assert [e["Service"]["ID"] for e in h.store.health_service_nodes("web", passing_only=True)] == ["a"]
    assert [c["CheckID"] for c in h.store.health_checks(state="warning")] == ["svc:b"]
    assert len(h.store.health_checks(state="any")) == 4


def test_defaults_check_id_from_name_and_status_critical() -> None:
    h = Harness()
    h.do(Register("n1", "10.0.0.1", checks=(CheckDef(name="mem"),), now=0.0))
    (c,) = h.store.health_checks()
    assert (c["CheckID"], c["Status"], c["Node"]) == ("mem", "critical", "n1")
