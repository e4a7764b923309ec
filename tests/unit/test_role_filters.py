"""The role's filter plugin (playbooks/roles/pyconsul/filter_plugins/pyconsul.py): pure functions over the
inventory, table-driven. Servers per datacenter, retry_join / retry_join_wan, bootstrap_expect, the WAN names,
the inventory problems of bad inventories (the same ones tests/lab/bad_inventories feeds to site.yml), the
restart order and the verify views."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "pyconsul" / "filter_plugins" / "pyconsul.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pyconsul_role_filters", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


f = _load()

# The guide's topology (inventories/bj_sh): BJ node1-3 servers, SH node4 server and node5 client.
GUIDE: dict[str, dict[str, Any]] = {
    "node1": {"ansible_host": "10.77.0.11", "pyconsul_datacenter": "bj"},
    "node2": {"ansible_host": "10.77.0.12", "pyconsul_datacenter": "bj"},
    "node3": {"ansible_host": "10.77.0.13", "pyconsul_datacenter": "bj"},
    "node4": {"ansible_host": "10.77.0.14", "pyconsul_datacenter": "sh"},
    "node5": {"ansible_host": "10.77.0.15", "pyconsul_datacenter": "sh", "pyconsul_server": False},
}


def members(hostvars: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = f.members(list(hostvars), hostvars)
    return result


# ------------------------------------------------------------------ members


@pytest.mark.parametrize(
    ("hv", "want"),
    [
        ({}, {"dc": "dc1", "server": True, "addr": "h", "node": "h", "expect": None}),
        ({"ansible_host": "10.0.0.1"}, {"addr": "10.0.0.1"}),
        ({"ansible_host": "10.0.0.1", "pyconsul_bind_addr": "10.0.0.2"}, {"addr": "10.0.0.2"}),
        ({"pyconsul_datacenter": "BJ"}, {"dc": "bj"}),
        ({"pyconsul_server": "no"}, {"server": False}),
        ({"pyconsul_server": "False"}, {"server": False}),
        ({"pyconsul_server": "yes"}, {"server": True}),
        ({"pyconsul_server": 0}, {"server": False}),
        ({"pyconsul_node_name": "n-1"}, {"node": "n-1"}),
        ({"pyconsul_bootstrap_expect": "3"}, {"expect": 3}),
        ({"pyconsul_bind_addr": None, "ansible_host": "10.0.0.3"}, {"addr": "10.0.0.3"}),
    ],
)
def test_member_fields_and_their_fall_backs(hv: dict[str, Any], want: dict[str, Any]) -> None:
    (m,) = f.members(["h"], {"h": hv})
    assert m["name"] == "h"
    assert {k: m[k] for k in want} == want


def test_members_keep_inventory_order_and_only_the_given_hosts() -> None:
    ms = f.members(["node3", "node1"], GUIDE)
    assert [m["name"] for m in ms] == ["node3", "node1"]


# ------------------------------------------------------------------ per-host derivations


@pytest.mark.parametrize(
    ("host", "servers", "join", "join_wan", "expect"),
    [
        ("node1", ["node1", "node2", "node3"], ["10.77.0.12", "10.77.0.13"], ["10.77.0.14"], 3),
        ("node2", ["node1", "node2", "node3"], ["10.77.0.11", "10.77.0.13"], ["10.77.0.14"], 3),
        ("node4", ["node4"], [], ["10.77.0.11", "10.77.0.12", "10.77.0.13"], 1),
        ("node5", ["node4"], ["10.77.0.14"], [], 0),  # a client: LAN joins only, no bootstrap_expect
    ],
)
def test_guide_topology(host: str, servers: list[str], join: list[str], join_wan: list[str], expect: int) -> None:
    ms = members(GUIDE)
    me = next(m for m in ms if m["name"] == host)
    assert [m["name"] for m in f.servers(ms, me["dc"])] == servers
    assert f.retry_join(ms, me["dc"], host) == join
    assert f.retry_join_wan(ms, me["dc"], me["server"]) == join_wan
    assert f.bootstrap_expect(ms, me["dc"], me["server"]) == expect


@pytest.mark.parametrize(
    ("hostvars", "dc", "want"),
    [
        ({"a": {}}, "dc1", 1),
        ({"a": {}, "b": {}, "c": {}}, "dc1", 3),
        ({"a": {}, "b": {"pyconsul_server": False}}, "dc1", 1),
        ({"a": {"pyconsul_datacenter": "x"}, "b": {"pyconsul_datacenter": "y"}}, "X", 1),  # dc compared lower-case
        ({"a": {"pyconsul_datacenter": "x"}}, "y", 0),
    ],
)
def test_servers_per_datacenter(hostvars: dict[str, dict[str, Any]], dc: str, want: int) -> None:
    ms = members(hostvars)
    assert len(f.servers(ms, dc)) == want
    assert f.bootstrap_expect(ms, dc, True) == want
    assert f.bootstrap_expect(ms, dc, "false") == 0


def test_three_datacenters_wan_joins_and_names() -> None:
    hv: dict[str, dict[str, Any]] = {
        "a1": {"pyconsul_datacenter": "a", "ansible_host": "10.0.1.1"},
        "a2": {"pyconsul_datacenter": "a", "ansible_host": "10.0.1.2", "pyconsul_server": False},
        "b1": {"pyconsul_datacenter": "b", "ansible_host": "10.0.2.1", "pyconsul_node_name": "bee"},
        "c1": {"pyconsul_datacenter": "c", "ansible_host": "10.0.3.1"}}
    ms = members(hv)
    assert f.datacenters(ms) == ["a", "b", "c"]
    assert f.retry_join_wan(ms, "a", True) == ["10.0.2.1", "10.0.3.1"]
    assert f.retry_join_wan(ms, "b", True) == ["10.0.1.1", "10.0.3.1"]
    assert f.retry_join_wan(ms, "a", False) == []
    assert f.retry_join(ms, "a", "a2") == ["10.0.1.1"]
    assert f.wan_names(ms) == ["a1.a", "bee.b", "c1.c"]


# ------------------------------------------------------------------ bad inventories


def _problems(hostvars: dict[str, dict[str, Any]], play: list[str] | None = None) -> list[str]:
    result: list[str] = f.inventory_problems(members(hostvars), play or list(hostvars), "pyconsul")
    return result


def test_the_guide_topology_has_no_problems() -> None:
    assert _problems(GUIDE) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # tests/lab/bad_inventories/bootstrap_expect.yml
        ({h: {"pyconsul_bootstrap_expect": 5} for h in ("node1", "node2", "node3")},
         ["node1: bootstrap_expect=5 cannot be met: datacenter bj has 3 server(s) (node1, node2, node3)",
          "node2: bootstrap_expect=5 cannot be met: datacenter bj has 3 server(s) (node1, node2, node3)",
          "node3: bootstrap_expect=5 cannot be met: datacenter bj has 3 server(s) (node1, node2, node3)"]),
        # tests/lab/bad_inventories/no_server.yml
        ({"node4": {"pyconsul_server": False}},
         ["datacenter sh has no server (its hosts node4, node5 all set pyconsul_server: false): give every"
          " datacenter 1, 3 or 5 servers"]),
        # tests/lab/bad_inventories/duplicate_address.yml
        ({"node3": {"ansible_host": "10.77.0.12"}},
         ["node2 and node3 share the address 10.77.0.12: every agent needs its own bind address (ansible_host"
          " or pyconsul_bind_addr)"]),
        ({"node2": {"pyconsul_node_name": "node1"}},
         ["node1 and node2 share the node name node1 (pyconsul_node_name)"]),
        ({"node5": {"ansible_host": "node5.example"}},
         ["node5: address node5.example is not an IP address; set ansible_host (or pyconsul_bind_addr) to the"
          " host's IP"]),
        ({"node1": {"pyconsul_bootstrap_expect": 1}},
         ["node1: bootstrap_expect=1 is at most half of the 3 servers of datacenter bj and could bootstrap two"
          " separate clusters"]),
        ({"node1": {"pyconsul_bootstrap_expect": 2}}, []),  # a majority: fine
        ({"node4": {"ansible_host": "fe80::1"}}, []),  # IPv6 is an IP
    ],
)
def test_bad_inventories_name_every_problem(change: dict[str, dict[str, Any]], expected: list[str]) -> None:
    hv = {h: {**v, **change.get(h, {})} for h, v in GUIDE.items()}
    assert _problems(hv) == expected


def test_a_play_host_outside_the_cluster_group_is_a_problem() -> None:
    assert _problems(GUIDE, [*GUIDE, "stray"]) == [
        "stray is not in the inventory group pyconsul (pyconsul_cluster_group): put every agent of the cluster"
        " under that group"]


def test_every_problem_at_once_is_reported() -> None:
    hv: dict[str, dict[str, Any]] = {
        "a": {"ansible_host": "10.0.0.1"},
        "b": {"ansible_host": "10.0.0.1", "pyconsul_datacenter": "x", "pyconsul_server": False}}
    problems = _problems(hv)
    assert len(problems) == 2
    assert problems[0].startswith("datacenter x has no server")
    assert problems[1].startswith("a and b share the address 10.0.0.1")


# ------------------------------------------------------------------ facts registered in the run


def _run_facts(**per_host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h: dict(v) for h, v in per_host.items()}


def test_restart_order_is_clients_then_followers_then_leaders() -> None:
    def me(server: bool, rpc: str, seen: str | None, restart: Any = True) -> dict[str, Any]:
        hv: dict[str, Any] = {"_pyconsul_restart": restart, "_pyconsul_self": {"server": server, "rpc_addr": rpc}}
        if seen is not None:
            hv["_pyconsul_leader_seen"] = {"json": seen}
        return hv

    hv = _run_facts(
        lead=me(True, "10.0.0.1:8300", "10.0.0.1:8300"),
        fol=me(True, "10.0.0.2:8300", "10.0.0.1:8300"),
        down=me(True, "10.0.0.3:8300", None),  # its agent did not answer: not known to lead
        cli=me(False, "10.0.0.4:8300", "10.0.0.1:8300"),
        idle=me(True, "10.0.0.5:8300", "10.0.0.1:8300", restart=False),
        new={},  # started in this run: no restart mark at all
    )
    assert f.restart_order(list(hv), hv) == ["cli", "fol", "down", "lead"]


def test_deployed_keys_and_leader_views_read_what_each_host_printed() -> None:
    hv = _run_facts(
        a={"_pyconsul_probe": {"stdout": json.dumps({"encrypt": "k1"})},
           "_pyconsul_verify": {"stdout": json.dumps({"leader": "10.0.0.1:8300"})}},
        b={"_pyconsul_probe": {"stdout": json.dumps({"encrypt": ""})},
           "_pyconsul_verify": {"stdout": json.dumps({"leader": "10.0.0.9:8300"})}},
        c={"_pyconsul_probe": {"skipped": True}, "_pyconsul_verify": {"skipped": True}},
        d={"pyconsul_datacenter": "other"},
    )
    assert f.deployed_keys(list(hv), hv) == {"a": "k1", "b": ""}
    views = f.leader_views(list(hv), hv)
    assert views == {"a": "10.0.0.1:8300", "b": "10.0.0.9:8300"}
    ms = members({"a": {}, "b": {}, "c": {}, "d": {"pyconsul_datacenter": "other"}})
    assert f.leaders_by_dc(views, ms) == {"dc1": 2, "other": 0}
    assert f.leaders_by_dc({"a": "x", "b": "x"}, ms) == {"dc1": 1, "other": 0}


def test_a_probe_that_printed_no_object_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        f.deployed_keys(["a"], {"a": {"_pyconsul_probe": {"stdout": "[]"}}})


@pytest.mark.parametrize(("value", "want"), [(True, True), ("yes", True), ("On", True), (1, True), ("1", True),
                                              (False, False), ("no", False), ("off", False), (0, False), ("", False),
                                              (2, False), ("maybe", False)])
def test_bool_matches_ansible(value: Any, want: bool) -> None:
    assert f.to_bool(value) is want


def test_the_plugin_exports_every_filter() -> None:
    names = set(f.FilterModule().filters())
    assert names == {n for n in names if n.startswith("pyconsul_")}
    assert {"pyconsul_members", "pyconsul_retry_join", "pyconsul_retry_join_wan", "pyconsul_bootstrap_expect",
            "pyconsul_inventory_problems", "pyconsul_restart_order"} <= names
