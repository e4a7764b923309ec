"""Prepared queries, the pure parts: request validation (http/query.parse_query), the table's rules
(state/prepared_queries.apply), resolution and templates, one-datacenter execution on a real state store,
and the failover planning and loop (server/prepared_query) with a fake backend."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import pytest

from pyconsul.agent.errors import BadRequest, NoPathToDatacenter
from pyconsul.agent.gossip.coordinate import Coordinate
from pyconsul.agent.http.query import parse_query
from pyconsul.agent.server import prepared_query
from pyconsul.agent.server.common import REQUEST_DC
from pyconsul.agent.state import commands as c
from pyconsul.agent.state import prepared_queries as pq
from pyconsul.agent.state.query_defs import PreparedQueryDef, QueryFailover, QueryTemplate, ServiceQuery
from pyconsul.agent.state.query_template import TemplateError, compile_template, render
from pyconsul.agent.state.results import StateError
from pyconsul.agent.state.store import StateStore

ID1 = "11111111-1111-4111-8111-111111111111"
ID2 = "22222222-2222-4222-8222-222222222222"
ID3 = "33333333-3333-4333-8333-333333333333"


class Store:
    """A StateStore with a running Raft index."""

    def __init__(self) -> None:
        self.st = StateStore()
        self.i = 0

    def apply(self, cmd: c.Command) -> Any:
        self.i += 1
        return self.st.apply(self.i, c.encode(cmd))

    def put(self, q: PreparedQueryDef, op: str = "create") -> Any:
        return self.apply(c.PreparedQueryApply(op, q))

    def register(self, node: str, status: str = "passing", tags: tuple[str, ...] = (), *, sid: str = "web",
                 node_meta: dict[str, str] | None = None, meta: dict[str, str] | None = None,
                 check_id: str = "svc") -> None:
        svc = c.ServiceDef(id=sid, service="web", tags=tags, meta=meta or {})
        chk = c.CheckDef(check_id=check_id, name=check_id, status=status, node=node, service_id=sid)
        assert self.apply(c.Register(node, "10.0.0.1", node_meta=node_meta or {}, service=svc, checks=(chk,),
                                     now=0.0)) is True


def q(qid: str = ID1, name: str = "web", **svc: Any) -> PreparedQueryDef:
    return PreparedQueryDef(id=qid, name=name, service=ServiceQuery(**{"service": "web", **svc}))


# ---------------------------------------------------------------- request validation


@pytest.mark.parametrize(("body", "message"), [
    ({"Name": "x"}, "Must provide a Service name to query"),
    ({"Service": {"Service": "web"}}, "Must be bound to a session"),
    ({"Name": "x", "Token": "<hidden>", "Service": {"Service": "web"}}, "Bad Token '<hidden>'"),
    ({"Name": "x", "Service": {"Service": "web", "Failover": {"NearestN": -2}}}, "Bad NearestN '-2', must be >= 0"),
    ({"Name": "x", "Service": {"Service": "web"}, "DNS": {"TTL": "5"}}, "Bad DNS TTL '5': time: missing unit"),
    ({"Name": "x", "Service": {"Service": "web"}, "DNS": {"TTL": "-5s"}}, "DNS TTL '-5s', must be >=0"),
    ({"Name": "x", "Service": {"Service": "web", "NodeMeta": {"bad key": "v"}}}, "Key contains invalid characters"),
    ({"Name": "x", "Service": {"Service": "web", "NodeMeta": {"k": "v" * 513}}}, "Value is too long"),
    ({"Name": "x", "Service": {"Service": "web", "Connect": True}}, "Connect is not supported"),
    ({"Name": "x", "Service": {"Service": "web", "Tags": "a"}}, "Tags must be a list of strings"),
    ({"Name": "x", "Service": {"Service": "web", "Tags": ["t"] * 65}}, "more than 64"),
    ({"Name": 5, "Service": {"Service": "web"}}, "Name must be a string"),
    ({"Name": "x" * 1025, "Service": {"Service": "web"}}, "longer than 1024"),
    ([], "expected a JSON object"),
])
def test_bad_bodies_are_refused_with_consuls_message(body: Any, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_query(body, ID1)
    assert message in str(exc.value)


def test_body_fields_match_case_insensitively() -> None:
    got = parse_query({"name": "n", "service": {"service": "web", "onlypassing": True, "tags": ["a"],
                                                 "failover": {"nearestn": 2, "datacenters": ["x"]},
                                                 "NodeMeta": {"Rack": "1"}}, "dns": {"ttl": "3s"},
                       "template": {"type": "name_prefix_match", "regexp": "^n(.*)$", "removeemptytags": True}},
                      ID1)
    assert got == PreparedQueryDef(
        id=ID1, name="n", template=QueryTemplate("name_prefix_match", "^n(.*)$", True),
        service=ServiceQuery(service="web", only_passing=True, tags=("a",), node_meta={"Rack": "1"},
                             failover=QueryFailover(2, ("x",))), dns_ttl="3s")
    assert parse_query({"Session": "s", "Service": {"Service": "web"}}, ID1).session == "s"  # no name: a session


# ---------------------------------------------------------------- the table's rules


def test_create_update_delete_and_indexes() -> None:
    s = Store()
    assert s.put(q()) is True
    assert s.st.last_changed == frozenset({pq.INDEX}) and s.st.table_index(pq.INDEX) == 1
    assert s.put(q(only_passing=True), "update") is True
    rec = pq.get(s.st.tables, ID1.upper())  # IDs match case-insensitively
    assert rec is not None and rec.service.only_passing and (rec.create_index, rec.modify_index) == (1, 2)
    assert s.put(q(ID2, "other"), "update") is False  # unknown ID: nothing happens
    assert s.put(PreparedQueryDef(id=ID2), "delete") is False and s.st.last_changed == frozenset()
    assert isinstance(s.put(q()), StateError)  # create of an ID in use
    assert s.put(PreparedQueryDef(id=ID1), "delete") is True
    assert pq.list_all(s.st.tables) == [] and s.st.table_index(pq.INDEX) == 6


@pytest.mark.parametrize(("second", "message"), [
    (q(ID2, "WEB"), "name 'WEB' aliases an existing query name"),
    (q(ID2, ID1), f"name '{ID1}' aliases an existing query ID"),
    (dataclasses.replace(q(ID2, "x"), session="nope"), 'invalid session "nope"'),
    (dataclasses.replace(q(ID2, "x"), template=QueryTemplate("regexp")),
     "failed compiling template: Bad Template.Type"),
    (dataclasses.replace(q(ID2, "x"), template=QueryTemplate("name_prefix_match", "(a")),
     "failed compiling template: Bad Regexp"),
    (dataclasses.replace(q("not-a-uuid", "x")), "Bad query ID"),
])
def test_conflicts_are_refused(second: PreparedQueryDef, message: str) -> None:
    s = Store()
    assert s.put(q()) is True
    res = s.put(second)
    assert isinstance(res, StateError) and message in res.message
    assert len(pq.list_all(s.st.tables)) == 1


def test_one_unnamed_template_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Store()
    tpl = QueryTemplate("name_prefix_match")
    assert s.put(dataclasses.replace(q(ID1, ""), template=tpl)) is True
    res = s.put(dataclasses.replace(q(ID2, ""), template=tpl))
    assert isinstance(res, StateError) and "empty name already exists" in res.message
    assert s.put(dataclasses.replace(q(ID1, ""), template=tpl, dns_ttl="1s"), "update") is True  # itself: fine
    monkeypatch.setattr(pq, "MAX_QUERIES", 1)
    res = s.put(q(ID3, "more"))
    assert isinstance(res, StateError) and "Too many prepared queries" in res.message


def test_a_query_goes_with_its_session_and_survives_a_snapshot() -> None:
    s = Store()
    assert s.apply(c.Register("n1", "10.0.0.1", now=0.0)) is True
    assert s.apply(c.SessionCreate(ID3, "n1", now=0.0)) == ID3
    assert s.put(dataclasses.replace(q(ID1, ""), session=ID3)) is True
    assert s.put(q(ID2, "kept")) is True
    copy = StateStore.restore(s.st.snapshot())
    assert pq.list_all(copy.tables) == pq.list_all(s.st.tables)
    assert copy.snapshot() == s.st.snapshot()
    assert s.apply(c.SessionDestroy(ID3, now=1.0)) is True
    assert [x.id for x in pq.list_all(s.st.tables)] == [ID2]
    assert pq.INDEX in s.st.last_changed


def test_the_command_round_trips() -> None:
    cmd = c.PreparedQueryApply("create", dataclasses.replace(
        q(node_meta={"a": "b"}, tags=("x", "!y"), failover=QueryFailover(1, ("dc2",))),
        template=QueryTemplate("name_prefix_match", "^(.*)$", True), dns_ttl="5s"))
    data = c.encode(cmd)
    assert data[:2] == bytes((0x92, 17)) and c.decode(data) == cmd


# ---------------------------------------------------------------- resolve and templates


def test_resolve_by_id_name_and_longest_template_prefix() -> None:
    s = Store()
    s.put(q(ID1, "web"))
    s.put(dataclasses.replace(q(ID2, "geo-"), service=ServiceQuery(service="${name.suffix}"),
                              template=QueryTemplate("name_prefix_match")))
    s.put(dataclasses.replace(q(ID3, "geo-db-"), service=ServiceQuery(service="db-${name.suffix}"),
                              template=QueryTemplate("name_prefix_match")))
    t = s.st.tables
    assert pq.resolve(t, ID1) == pq.resolve(t, "WEB") == pq.get(t, ID1)
    found = pq.resolve(t, "geo-api")
    assert found is not None and found.service.service == "api" and found.id == ID2
    found = pq.resolve(t, "geo-db-main")
    assert found is not None and found.service.service == "db-main"
    assert pq.resolve(t, "nothing") is None
    with pytest.raises(pq.QueryError, match="only be resolved up by name"):
        pq.resolve(t, ID2)


def tpl(service: ServiceQuery, regexp: str = "", name: str = "pre-", remove: bool = False) -> PreparedQueryDef:
    return PreparedQueryDef(id=ID1, name=name, service=service,
                            template=QueryTemplate("name_prefix_match", regexp, remove))


def test_template_rendering() -> None:
    svc = ServiceQuery(service="${match(1)}-${ match(2) }", near="${name.full}",
                       tags=("${name.prefix}", "${match(9)}", "$${literal}"), node_meta={"k": "${name.suffix}"},
                       failover=QueryFailover(0, ("${match(0)}",)))
    out = render(compile_template(tpl(svc, r"^pre-(\w+)-(\w+)$")), "pre-web-blue")
    assert out.service.service == "web-blue" and out.service.near == "pre-web-blue"
    assert out.service.tags == ("pre-", "", "${literal}") and out.service.node_meta == {"k": "web-blue"}
    assert out.service.failover.datacenters == ("pre-web-blue",)
    no_match = render(compile_template(tpl(svc, r"^x$")), "pre-a-b")
    assert no_match.service.service == "-"  # no match: every group is ""
    removed = render(compile_template(tpl(svc, r"^pre-(\w+)-(\w+)$", remove=True)), "pre-web-blue")
    assert removed.service.tags == ("pre-", "${literal}")


@pytest.mark.parametrize(("svc", "regexp", "message"), [
    (ServiceQuery(service="${name.full"), "", "Bad format '${name.full' in Service.Service"),
    (ServiceQuery(service="${1 + 2}"), "", "Bad format"),
    (ServiceQuery(service="web", tags=("${name.nope}",)), "", "Bad evaluation for '${name.nope}' in Service.Tags[0]"),
    (ServiceQuery(service="web"), r"(a)\1", "Bad Regexp"),  # RE2 has no backreferences
    (ServiceQuery(service="web"), r"(a+)+$", "Bad Regexp"),  # refused: could backtrack for long
])
def test_bad_templates(svc: ServiceQuery, regexp: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("$", r"\$").replace("[", r"\[").replace("+", r"\+")):
        compile_template(tpl(svc, regexp))


# ---------------------------------------------------------------- execution in one datacenter


def run(s: Store, query: PreparedQueryDef, **kw: Any) -> dict[str, Any]:
    return pq.execute(s.st.tables, query, "dc1", random.Random(7), **kw)


def names(res: dict[str, Any]) -> list[str]:
    return [n["Node"]["Node"] for n in res["Nodes"]]


def test_execute_keeps_healthy_instances_and_filters() -> None:
    s = Store()
    s.register("n1", "passing", ("v1", "Primary"), node_meta={"rack": "a"}, meta={"ver": "1"})
    s.register("n2", "warning", ("v1",), node_meta={"rack": "b"})
    s.register("n3", "critical", ("v1",))
    s.register("n4", "passing", ("v1", "canary"))
    s.apply(c.Register("n4", "10.0.0.1", checks=(c.CheckDef("serfHealth", "Serf", "critical", "n4"),), now=0.0))
    s.register("n5", "critical", ("v1",), check_id="flaky")
    assert set(names(run(s, q()))) == {"n1", "n2"}  # critical service check out, serfHealth critical node out
    assert set(names(run(s, q(ignore_check_ids=("flaky", "serfHealth"))))) == {"n1", "n2", "n4", "n5"}
    assert names(run(s, q(only_passing=True))) == ["n1"]
    assert set(names(run(s, q(tags=("V1", "!primary"))))) == {"n2"}
    assert names(run(s, q(tags=("primary",)))) == ["n1"]
    assert names(run(s, q(node_meta={"rack": "b"}))) == ["n2"]
    assert names(run(s, q(service_meta={"ver": "1"}))) == ["n1"]
    assert len(run(s, q(), limit=1)["Nodes"]) == 1
    res = run(s, dataclasses.replace(q(service="nothing"), dns_ttl="9s"))
    assert res == {"Service": "nothing", "Nodes": [], "DNS": {"TTL": "9s"}, "Datacenter": "dc1", "Failovers": 0}


def test_execute_sorts_by_rtt_from_near_and_puts_near_first() -> None:
    s = Store()
    for i, node in enumerate(("far", "mid", "near", "client")):
        s.register(node)
        vec = (float(i) * 0.01 if node != "client" else 0.02,) + (0.0,) * 7
        s.apply(c.CoordinateBatchUpdate((c.CoordinateUpdate(node, c.Coord(vec, 0.1, 0.0, 1e-5)),)))
    # far at 0.00, mid at 0.01, near at 0.02 (= client's own coordinate), client at 0.02
    out = names(run(s, q(), near="mid"))
    assert out[0] == "mid" and set(out) == {"far", "mid", "near", "client"}
    out = names(run(s, q(), near="near"))
    assert out[0] == "near" and out[-1] == "far"
    # remote execution does not sort; an unknown Near changes nothing
    assert sorted(names(run(s, q(), near="mid", sort=False))) == ["client", "far", "mid", "near"]
    assert len(run(s, q(), near="nobody")["Nodes"]) == 4


# ---------------------------------------------------------------- failover


def coord(x: float) -> dict[str, Any]:
    return Coordinate((x,) + (0.0,) * 7, 0.1, 0.0, 1e-5).to_json()


MAPS = [
    {"Datacenter": "dc1", "Coordinates": [{"Node": "s1", "Coord": coord(0.0)}]},
    {"Datacenter": "far", "Coordinates": [{"Node": "f1", "Coord": coord(0.3)}, {"Node": "f2", "Coord": coord(0.5)}]},
    {"Datacenter": "near", "Coordinates": [{"Node": "n1", "Coord": coord(0.01)}]},
    {"Datacenter": "blind", "Coordinates": []},
]


def test_datacenters_by_distance_and_failover_order() -> None:
    nearest = prepared_query.datacenters_by_distance(MAPS, "dc1")
    assert nearest == ["near", "far", "blind"]
    assert prepared_query.datacenters_by_distance(MAPS, "near")[0] == "dc1"
    assert prepared_query.failover_targets(2, ["blind", "near", "unknown"], nearest) == ["near", "far", "blind"]
    assert prepared_query.failover_targets(0, ["far", "unknown", "far"], nearest) == ["far"]
    assert prepared_query.failover_targets(1, [], nearest) == ["near"]


class FakeBackend:
    def __init__(self, local: list[Any], remote: dict[str, Any], failover: dict[str, Any]) -> None:
        self.local, self.remote, self.failover = local, remote, failover
        self.asked: list[str] = []

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]:
        dc = REQUEST_DC.get()
        if name == "query.execute":
            result = {"Service": "web", "Nodes": self.local, "DNS": {"TTL": ""}, "Datacenter": "dc1", "Failovers": 0}
            wire = {"service": {"service": "web", "failover": self.failover}}
            return {"query": wire, "result": result}, "meta"
        assert name == "query.execute_remote" and args["query"]["service"]["service"] == "web"
        self.asked.append(dc)
        got = self.remote[dc]
        if isinstance(got, Exception):
            raise got
        return {"Service": "web", "Nodes": got, "DNS": {"TTL": ""}, "Datacenter": dc, "Failovers": 0}, "m2"


async def maps() -> list[dict[str, Any]]:
    return MAPS


def execute(b: FakeBackend) -> tuple[dict[str, Any], Any]:
    return asyncio.run(prepared_query.execute(b, maps, "dc1", "web", agent_node="me"))


def test_failover_loop() -> None:
    b = FakeBackend([], {"near": NoPathToDatacenter("near"), "far": [], "blind": ["x"]},
                    {"nearest_n": 3, "datacenters": []})
    res, meta = execute(b)
    assert (res["Datacenter"], res["Nodes"], res["Failovers"], meta) == ("blind", ["x"], 3, "meta")
    assert b.asked == ["near", "far", "blind"] and REQUEST_DC.get() == ""
    b = FakeBackend([], {"far": ["y"]}, {"nearest_n": 0, "datacenters": ["unknown", "far"]})
    res, _ = execute(b)
    assert (res["Datacenter"], res["Failovers"], b.asked) == ("far", 1, ["far"])
    b = FakeBackend(["here"], {}, {"nearest_n": 3, "datacenters": ["far"]})  # local instances: no failover
    res, _ = execute(b)
    assert (res["Datacenter"], res["Failovers"], b.asked) == ("dc1", 0, [])
    b = FakeBackend([], {"far": []}, {"nearest_n": 0, "datacenters": ["far"]})  # nobody has one
    res, _ = execute(b)
    assert (res["Datacenter"], res["Nodes"], res["Failovers"]) == ("far", [], 1)


def test_readme_limits_rows_match_the_code() -> None:
    from pathlib import Path

    from pyconsul.agent.filter.regex import MAX_PATTERN_LENGTH
    from pyconsul.agent.http import query as query_http

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("|")}
    key = ("`POST /v1/query`, `PUT /v1/query/<id>`: body / entries of each list (`Tags`, `Datacenters`, "
           "`IgnoreCheckIDs`) / characters of a string")
    assert rows[key] == f"{query_http.MAX_QUERY_BODY // 1024} KiB / {query_http.MAX_LIST} / {query_http.MAX_STRING}"
    assert rows["Prepared queries in a datacenter"] == str(pq.MAX_QUERIES)
    assert rows["Prepared query `Template.Regexp`"] == f"{MAX_PATTERN_LENGTH} characters, RE2 syntax"


@pytest.mark.parametrize(("raw", "want"), [("", 0), ("3", 3), ("+3", 3), ("-2", 0), ("0", 0)])
def test_limit_parameter(raw: str, want: int) -> None:
    from types import SimpleNamespace

    from pyconsul.agent.http.query import _limit

    assert _limit(SimpleNamespace(query={"limit": raw})) == want  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["x", "5_0", " 5", "1.5", "99999999999999999999"])
def test_bad_limit_is_refused_as_go_would(raw: str) -> None:
    from types import SimpleNamespace

    from pyconsul.agent.http.query import _limit

    with pytest.raises(BadRequest, match=r"Bad limit: strconv\.Atoi"):
        _limit(SimpleNamespace(query={"limit": raw}))  # type: ignore[arg-type]
