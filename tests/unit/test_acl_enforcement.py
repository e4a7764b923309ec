"""ACL enforcement with fake authorizers: the token's extraction, the write and read rules of the server
(agent/server/acl_enforce.py), and the HTTP rules of the agent's own endpoints (agent/http/authz.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pyconsul.agent.acl.authz import ALLOW_ALL, DENY_ALL, Authorizer
from pyconsul.agent.errors import PermissionDenied
from pyconsul.agent.http import authz as http_authz
from pyconsul.agent.http.server import errors
from pyconsul.agent.httpd import web
from pyconsul.agent.server import acl_enforce as ae
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.query_defs import PreparedQueryDef


class Fake:
    """Allows a resource's names that start with one of its prefixes (read and write alike unless `ro`)."""

    def __init__(self, ro: tuple[str, ...] = (), manage: bool = False, **prefixes: tuple[str, ...]) -> None:
        self.p = prefixes
        self.ro = ro
        self.manage = manage

    def _ok(self, kind: str, name: str, write: bool = False) -> bool:
        if write and kind in self.ro:
            return False
        return any(name.startswith(p) for p in self.p.get(kind, ()))

    def acl_read(self) -> bool:
        return self.manage

    def acl_write(self) -> bool:
        return self.manage

    def snapshot(self) -> bool:
        return self.manage

    def agent_read(self, node: str) -> bool:
        return self._ok("agent", node)

    def agent_write(self, node: str) -> bool:
        return self._ok("agent", node, True)

    def event_read(self, name: str) -> bool:
        return self._ok("event", name)

    def event_write(self, name: str) -> bool:
        return self._ok("event", name, True)

    def key_read(self, key: str) -> bool:
        return self._ok("key", key)

    def key_list(self, prefix: str) -> bool:
        return self._ok("key", prefix)

    def key_write(self, key: str) -> bool:
        return self._ok("key", key, True)

    def key_write_prefix(self, prefix: str) -> bool:
        return self._ok("key", prefix, True)

    def keyring_read(self) -> bool:
        return self._ok("keyring", "")

    def keyring_write(self) -> bool:
        return self._ok("keyring", "", True)

    def node_read(self, node: str) -> bool:
        return self._ok("node", node)

    def node_write(self, node: str) -> bool:
        return self._ok("node", node, True)

    def operator_read(self) -> bool:
        return self._ok("operator", "")

    def operator_write(self) -> bool:
        return self._ok("operator", "", True)

    def query_read(self, name: str) -> bool:
        return self._ok("query", name)

    def query_write(self, name: str) -> bool:
        return self._ok("query", name, True)

    def service_read(self, name: str) -> bool:
        return self._ok("service", name)

    def service_write(self, name: str) -> bool:
        return self._ok("service", name, True)

    def session_read(self, node: str) -> bool:
        return self._ok("session", node)

    def session_write(self, node: str) -> bool:
        return self._ok("session", node, True)


class Lookup:
    def __init__(self) -> None:
        self.services = {("n1", "web1"): "web", ("n1", "db1"): "db"}
        self.checks = {("n1", "c-web"): "web", ("n1", "c-node"): ""}
        self.sessions = {"s1": "n1"}
        self.queries = {"q1": "other"}

    def service_name(self, node: str, service_id: str) -> str | None:
        return self.services.get((node, service_id))

    def check_service(self, node: str, check_id: str) -> str | None:
        return self.checks.get((node, check_id))

    def session_node(self, session_id: str) -> str | None:
        return self.sessions.get(session_id)

    def query_name(self, query_id: str) -> str | None:
        return self.queries.get(query_id)


def _allowed(authz: Authorizer, cmd: Any) -> bool:
    try:
        ae.check_write(authz, cmd, Lookup())
    except PermissionDenied as exc:
        assert str(exc) == "Permission denied"
        return False
    return True


# ---------------------------------------------------------------- writes


def test_kv_writes_need_key_write_and_a_recursive_delete_the_whole_prefix() -> None:
    a = Fake(key=("app/",))
    assert _allowed(a, c.KVSet("app/x", b"1"))
    assert not _allowed(a, c.KVSet("other/x", b"1"))
    assert not _allowed(a, c.KVCAS("other/x", b"1", 0, 0))
    assert not _allowed(a, c.KVDelete("other/x"))
    assert _allowed(a, c.KVDeleteTree("app/"))
    assert not _allowed(a, c.KVDeleteTree(""))  # the whole store: not within app/
    assert not _allowed(Fake(key=("app/",), ro=("key",)), c.KVSet("app/x", b"1"))  # read-only


def test_txn_needs_every_operation() -> None:
    a = Fake(key=("app/",))
    ok = c.Txn((c.TxnOp("set", "app/a", b"1"), c.TxnOp("get", "app/b")), now=0.0)
    bad = c.Txn((c.TxnOp("set", "app/a", b"1"), c.TxnOp("get", "other/b")), now=0.0)
    assert _allowed(a, ok)
    assert not _allowed(a, bad)
    assert not _allowed(a, c.Txn((c.TxnOp("delete-tree", ""),), now=0.0))
    with pytest.raises(ae.TxnDenied) as denied:  # Consul: 409, one error per denied operation
        ae.check_write(a, bad, Lookup())
    assert [(e.op_index, e.what) for e in denied.value.result.errors] == [(1, "Permission denied")]


def test_catalog_register_and_deregister() -> None:
    svc = c.ServiceDef(id="web1", service="web")
    reg = c.Register("n1", "10.0.0.1", service=svc, now=0.0)
    assert _allowed(Fake(node=("n1",), service=("web",)), reg)
    assert not _allowed(Fake(node=("n1",)), reg)  # no service write
    assert not _allowed(Fake(service=("web",)), reg)  # no node write
    assert _allowed(Fake(service=("web",)), c.Register("n1", service=svc, skip_node_update=True, now=0.0))
    node_check = c.Register("n1", skip_node_update=True, checks=(c.CheckDef("n1", "c", "c"),), now=0.0)
    assert not _allowed(Fake(service=("web",)), node_check)
    assert _allowed(Fake(service=("web",)), c.Deregister("n1", service_id="web1", now=0.0))
    assert not _allowed(Fake(service=("web",)), c.Deregister("n1", service_id="db1", now=0.0))
    assert _allowed(Fake(service=("web",)), c.Deregister("n1", check_id="c-web", now=0.0))
    assert not _allowed(Fake(service=("web",)), c.Deregister("n1", check_id="c-node", now=0.0))
    assert not _allowed(Fake(service=("web",)), c.Deregister("n1", now=0.0))
    assert _allowed(Fake(node=("n1",)), c.Deregister("n1", now=0.0))


def test_sessions_coordinates_queries_restore() -> None:
    assert _allowed(Fake(session=("n1",)), c.SessionCreate("s2", "n1", now=0.0))
    assert not _allowed(Fake(session=("n2",)), c.SessionCreate("s2", "n1", now=0.0))
    assert not _allowed(Fake(session=("n2",)), c.SessionDestroy("s1", now=0.0))
    assert _allowed(Fake(session=("n1",)), c.SessionRenew("s1", now=0.0))
    upd = c.CoordinateBatchUpdate((c.CoordinateUpdate("n1", c.Coord()), c.CoordinateUpdate("n2", c.Coord())))
    assert not _allowed(Fake(node=("n1",)), upd)
    assert _allowed(Fake(node=("n",)), upd)
    create = c.PreparedQueryApply("create", PreparedQueryDef(id="q2", name="mine"))
    assert _allowed(Fake(query=("mine",)), create)
    assert not _allowed(Fake(query=("mine",)), c.PreparedQueryApply("update", PreparedQueryDef(id="q1", name="mine")))
    assert not _allowed(Fake(key=("",), node=("",), service=("",)), c.TombstoneReap(5))
    assert _allowed(Fake(manage=True), c.TombstoneReap(5))
    assert not _allowed(DENY_ALL, c.KVSet("a", b""))
    assert _allowed(ALLOW_ALL, c.KVDeleteTree(""))


def test_status_requests() -> None:
    with pytest.raises(PermissionDenied):
        ae.check_status(Fake(), "remove_peer", {})
    ae.check_status(Fake(operator=("",), ro=("operator",)), "raft_configuration", {})
    with pytest.raises(PermissionDenied):
        ae.check_status(Fake(operator=("",), ro=("operator",)), "remove_peer", {})
    ae.check_status(Fake(event=("deploy",)), "event_fire", {"name": "consul:event:deploy"})
    with pytest.raises(PermissionDenied):
        ae.check_status(Fake(event=("deploy",)), "event_fire", {"name": "consul:event:other"})
    ae.check_status(DENY_ALL, "leader", {})  # /v1/status/*: no ACL


def test_token_on_the_wire() -> None:
    assert ae.write_args(b"x", "") == b"x"  # no token: the bytes as before
    assert ae.split_write(ae.write_args(b"x", "t")) == (b"x", "t")
    assert ae.split_write(b"x") == (b"x", "")
    assert ae.split_write([b"x", "t" * (ae.MAX_TOKEN + 1)]) is None
    assert ae.split_write({"a": 1}) is None
    assert ae.read_token({"token": "t"}) == "t"
    assert ae.read_token({"token": 5}) == ""


# ---------------------------------------------------------------- reads


def test_kv_listings_never_show_keys_the_token_cannot_read() -> None:
    a = Fake(key=("app/",))
    entries = [{"Key": "app/a"}, {"Key": "secret/b"}, {"Key": "app/c"}]
    assert ae.filter_read(a, "kv.list", entries) == [{"Key": "app/a"}, {"Key": "app/c"}]
    assert ae.filter_read(a, "kv.keys", ["app/a", "secret/", "secret/b"]) == ["app/a"]
    assert ae.filter_read(a, "kv.get", {"Key": "secret/b"}) is None
    assert ae.filter_read(a, "kv.get", {"Key": "app/a"}) == {"Key": "app/a"}
    assert ae.filter_read(a, "kv.get", None) is None


def test_single_key_read_denied_whether_or_not_the_key_exists() -> None:
    # Consul 1.7 KVS.Get: no key:read on the key is "Permission denied"; listings are filtered instead
    a = Fake(key=("app/",))
    with pytest.raises(PermissionDenied):
        ae.check_read(a, "kv.get", {"key": "secret/b"})
    with pytest.raises(PermissionDenied):
        ae.check_read(a, "snapshot", {})
    ae.check_read(a, "kv.get", {"key": "app/a"})
    ae.check_read(a, "kv.list", {"prefix": "secret/"})
    ae.check_read(a, "kv.keys", {"prefix": ""})


def test_prepared_query_tokens_hidden_unless_management() -> None:
    # Consul's redactPreparedQueryTokens: a stored Token reads "<hidden>" to a caller without acl:write
    queries = [{"Name": "web", "Token": "s3cret"}, {"Name": "web-none", "Token": ""}, {"Name": "db", "Token": "t"}]
    reader = Fake(query=("web",))
    assert ae.filter_read(reader, "query.list", queries) == [{"Name": "web", "Token": "<hidden>"},
                                                              {"Name": "web-none", "Token": ""}]
    assert ae.filter_read(reader, "query.get", queries[:1]) == [{"Name": "web", "Token": "<hidden>"}]
    explained = ae.filter_read(reader, "query.explain", {"Query": queries[0]})
    assert explained == {"Query": {"Name": "web", "Token": "<hidden>"}}
    assert ae.filter_read(Fake(manage=True, query=("",)), "query.list", queries) == queries
    assert queries[0]["Token"] == "s3cret"  # the stored answer is not modified in place


def test_catalog_health_session_coordinate_reads_filtered() -> None:
    a = Fake(node=("n1",), service=("web",), session=("n1",))
    assert ae.filter_read(a, "catalog.nodes", [{"Node": "n1"}, {"Node": "n2"}]) == [{"Node": "n1"}]
    assert ae.filter_read(a, "catalog.services", {"web": [], "db": []}) == {"web": []}
    # the DNS cache's batched index check: a token may learn the indexes of the services it can read
    assert ae.filter_read(a, "health.service_indexes", {"web": 7, "db": 9}) == {"web": 7}
    rows = [{"Node": "n1", "ServiceName": "web"}, {"Node": "n1", "ServiceName": "db"},
            {"Node": "n2", "ServiceName": "web"}, {"Node": "n1", "ServiceName": ""}]
    assert ae.filter_read(a, "health.state", rows) == [rows[0], rows[3]]
    hs = [{"Node": {"Node": "n1"}, "Service": {"Service": "web"}},
          {"Node": {"Node": "n2"}, "Service": {"Service": "web"}}]
    assert ae.filter_read(a, "health.service", hs) == hs[:1]
    node = {"Node": {"Node": "n1"}, "Services": {"web1": {"Service": "web"}, "db1": {"Service": "db"}}}
    assert ae.filter_read(a, "catalog.node", node)["Services"] == {"web1": {"Service": "web"}}
    assert ae.filter_read(a, "catalog.node", {"Node": {"Node": "n2"}, "Services": {}}) is None
    assert ae.filter_read(a, "session.list", [{"Node": "n1"}, {"Node": "n2"}]) == [{"Node": "n1"}]
    assert ae.filter_read(a, "coordinate.nodes", [{"Node": "n2"}]) == []
    executed = {"query": {}, "result": {"Nodes": hs, "Service": "web"}}
    assert ae.filter_read(a, "query.execute", executed)["result"]["Nodes"] == hs[:1]
    assert ae.filter_read(a, "query.list", [{"Name": "x"}]) == []
    with pytest.raises(PermissionDenied):
        ae.filter_read(a, "snapshot", {"state": b""})
    assert ae.filter_read(Fake(manage=True), "snapshot", {"state": b""}) == {"state": b""}


# ---------------------------------------------------------------- HTTP


def _req(app: web.Application, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes = b"") -> web.Request:
    raw = path
    req = web.Request(app, method, raw, (1, 1), web.Headers({k.lower(): v for k, v in (headers or {}).items()}),
                      "127.0.0.1")
    req._body = body
    return req


def test_token_precedence_as_consuls_parse_token() -> None:
    app = web.Application()
    hdr = {"X-Consul-Token": "hdr", "Authorization": "Bearer bear"}
    assert http_authz.request_token(_req(app, "GET", "/v1/kv/a?token=q", hdr)) == "q"
    assert http_authz.request_token(_req(app, "GET", "/v1/kv/a", hdr)) == "hdr"
    assert http_authz.request_token(_req(app, "GET", "/v1/kv/a", {"Authorization": "Bearer bear"})) == "bear"
    assert http_authz.request_token(_req(app, "GET", "/v1/kv/a", {"Authorization": "Basic abc"})) == ""
    assert http_authz.request_token(_req(app, "GET", "/v1/kv/a")) == ""
    with pytest.raises(PermissionDenied):
        http_authz.request_token(_req(app, "GET", "/v1/kv/a", {"X-Consul-Token": "x" * 1000}))


class Resolver:
    def __init__(self, tokens: dict[str, Authorizer], on: bool = True) -> None:
        self.tokens = tokens
        self.on = on
        self.seen: list[str | None] = []

    async def resolve(self, secret: str | None) -> Authorizer:
        self.seen.append(secret)
        if secret and secret not in self.tokens:
            raise PermissionDenied("ACL not found")
        return self.tokens.get(secret or "", DENY_ALL)

    def enabled(self) -> bool:
        return self.on

    def default_token(self) -> str:
        return ""


def _app(resolver: Resolver | None) -> tuple[web.Application, list[str | None]]:
    app = web.Application(middlewares=[errors])
    tokens_seen: list[str | None] = []

    async def ok(request: web.Request) -> web.Response:
        tokens_seen.append(ae.REQUEST_TOKEN.get())
        return web.Response(text="ok")

    async def members(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps([{"Name": "n1"}, {"Name": "n2"}]), content_type="application/json")

    app.router.add_get("/v1/operator/keyring", ok)
    app.router.add_put("/v1/agent/join/{addr}", ok)
    app.router.add_put("/v1/snapshot", ok)
    app.router.add_get("/v1/status/leader", ok)
    app.router.add_get("/v1/kv/{key:.*}", ok)
    app.router.add_get("/v1/agent/members", members)
    app.router.add_put("/v1/agent/service/register", ok)
    http_authz.configure(app, resolver, "n1")
    return app, tokens_seen


def _run(app: web.Application, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes = b"") -> web.Response:
    handler, match = app.router.resolve(method, path.partition("?")[0])
    req = _req(app, method, path, headers, body)
    req.match_info = dict(match or {})
    return asyncio.run(handler(req))  # type: ignore[arg-type]


def test_agent_endpoints_need_their_acl() -> None:
    res = Resolver({"ring": Fake(keyring=("",), ro=("keyring",)), "agent": Fake(agent=("n1",)),
                    "nodes": Fake(node=("n1",)), "mgmt": Fake(manage=True), "svc": Fake(service=("web",))})
    app, _ = _app(res)
    denied = _run(app, "GET", "/v1/operator/keyring")
    assert denied.status == 403 and denied.body == b"Permission denied\n"
    assert _run(app, "GET", "/v1/operator/keyring", {"X-Consul-Token": "ring"}).status == 200
    assert _run(app, "PUT", "/v1/agent/join/127.0.0.1", {"X-Consul-Token": "ring"}).status == 403
    assert _run(app, "PUT", "/v1/agent/join/127.0.0.1", {"X-Consul-Token": "agent"}).status == 200
    assert _run(app, "PUT", "/v1/snapshot", {"X-Consul-Token": "agent"}).status == 403
    assert _run(app, "PUT", "/v1/snapshot", {"X-Consul-Token": "mgmt"}).status == 200
    assert _run(app, "GET", "/v1/status/leader").status == 200  # no ACL, as Consul
    assert _run(app, "GET", "/v1/kv/x?token=nope").status == 403  # unknown token: "ACL not found"
    members = _run(app, "GET", "/v1/agent/members", {"Authorization": "Bearer nodes"})
    assert json.loads(members.body) == [{"Name": "n1"}]
    reg = b'{"Name": "web", "Port": 80}'
    assert _run(app, "PUT", "/v1/agent/service/register", {"X-Consul-Token": "svc"}, reg).status == 200
    other = b'{"name": "db"}'
    assert _run(app, "PUT", "/v1/agent/service/register", {"X-Consul-Token": "svc"}, other).status == 403


def test_acls_off_allow_everything_without_resolving_and_the_token_still_travels() -> None:
    res = Resolver({}, on=False)
    app, seen = _app(res)
    assert _run(app, "GET", "/v1/operator/keyring").status == 200
    assert _run(app, "GET", "/v1/kv/x", {"X-Consul-Token": "t"}).status == 200
    assert res.seen == []  # never resolved
    assert seen == ["", "t"]  # "" = anonymous: the answering server resolves it (if its ACLs are on)
    assert ae.REQUEST_TOKEN.get() is None


def test_agent_self_redaction() -> None:
    info = {"Config": {"NodeName": "n1"}, "DebugConfig": {"EncryptKey": "abc", "ACLTokens": {"AgentToken": "s"},
                                                          "ACLDefaultPolicy": "deny", "EmptyToken": ""}}
    out = http_authz.redact(info)
    assert out["DebugConfig"]["EncryptKey"] == "hidden"
    assert out["DebugConfig"]["ACLTokens"] == "hidden"
    assert out["DebugConfig"]["ACLDefaultPolicy"] == "deny"
    assert out["DebugConfig"]["EmptyToken"] == ""
    assert out["Config"] == {"NodeName": "n1"}


# ---------------------------------------------------------------- the token on forwarded requests


class _Transport:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def request(self, address: str, method: str, args: Any, timeout: float = 10.0) -> Any:
        self.sent.append((method, args))
        if method.startswith("read"):
            return {"value": None, "index": 1}
        from pyconsul.agent.state.results import reply_to_wire
        return reply_to_wire(True)


def test_forwarded_requests_carry_the_callers_token_or_the_agent_token() -> None:
    from pyconsul.agent.server.forwarding import Forwarder

    t = _Transport()
    fwd = Forwarder(t, "dc1")

    async def go() -> None:
        await fwd.write("a", b"cmd", to_leader=True)  # an in-process caller, no agent token: bytes as before
        fwd.agent_token = lambda: "agent-secret"
        await fwd.write("a", b"cmd", to_leader=True)
        ae.REQUEST_TOKEN.set("user-secret")
        await fwd.write("a", b"cmd", to_leader=False)
        await fwd.read("a", "kv.get", {"key": "k"}, "default", 0, 0.0, to_leader=True)
        await fwd.status("a", "remove_peer", {"id": "x"}, to_leader=True)

    asyncio.run(go())
    assert t.sent[0] == ("apply", b"cmd")
    assert t.sent[1] == ("apply", [b"cmd", "agent-secret"])
    assert t.sent[2] == ("apply_forward", [b"cmd", "user-secret"])
    assert t.sent[3][1]["token"] == "user-secret"
    assert t.sent[4][1]["token"] == "user-secret"


def test_rpc_handlers_enforce_the_token_they_received() -> None:
    from pyconsul.agent.server.rpc import RPCMethods

    class Local:
        is_leader = True
        leader_id = "me"

        def __init__(self) -> None:
            self.tokens: list[str | None] = []

        def acl_enabled(self) -> bool:
            return True

        async def check_write(self, data: bytes) -> None:
            self.tokens.append(ae.REQUEST_TOKEN.get())
            if ae.REQUEST_TOKEN.get() != "good":
                raise PermissionDenied()

        async def apply_local(self, data: bytes) -> Any:
            return True

        async def read(self, *a: Any) -> Any:
            self.tokens.append(ae.REQUEST_TOKEN.get())
            from pyconsul.agent.server.common import ReadMeta
            return None, ReadMeta(1, True, 0)

    local = Local()
    rpc = RPCMethods(local)  # type: ignore[arg-type]

    async def call(method: str, args: Any) -> Any:
        return await asyncio.create_task(rpc.dispatch(method, args))  # a task per request, as the transport

    with pytest.raises(PermissionDenied):
        asyncio.run(call("apply", b"cmd"))  # a raw client without a token: anonymous, refused
    asyncio.run(call("apply", [b"cmd", "good"]))
    asyncio.run(call("read", {"name": "kv.get", "args": {}, "token": "r"}))
    assert local.tokens == ["", "good", "r"]


def test_with_token_backend_runs_reads_under_the_token() -> None:
    seen: list[str | None] = []

    class B:
        async def read(self, *a: Any) -> Any:
            seen.append(ae.REQUEST_TOKEN.get())
            return None, None

    async def go() -> None:
        await ae.WithToken(B(), lambda: "dflt").read("catalog.nodes", {})

    asyncio.run(go())
    assert seen == ["dflt"]


def test_txn_get_tree_results_leave_out_unreadable_keys() -> None:
    from pyconsul.agent.state.results import TxnResult
    from pyconsul.agent.state.tables import KVEntry

    res = TxnResult(results=(KVEntry("app/a"), KVEntry("app/secret/b")))
    a = Fake(key=("app/a",))
    out = ae.filter_write_result(a, res)
    assert isinstance(out, TxnResult) and [e.key for e in out.results] == ["app/a"]
    assert ae.filter_write_result(a, True) is True


def test_local_check_updates_need_the_checks_service_or_node_write_and_events_are_filtered() -> None:
    class Svc:
        name = "web"

    class Chk:
        def __init__(self, service_name: str) -> None:
            self.service_name = service_name

    class Local:
        def services(self) -> dict[str, Any]:
            return {"web1": Svc()}

        def checks(self) -> dict[str, Any]:
            return {"c-web": Chk("web"), "c-node": Chk("")}

    res = Resolver({"svc": Fake(service=("web",)), "node": Fake(node=("n1",)), "ev": Fake(event=("dep",))})
    app = web.Application(middlewares=[errors])

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def events(request: web.Request) -> web.Response:
        body = json.dumps([{"Name": "deploy"}, {"Name": "secret"}])
        return web.Response(text=body, content_type="application/json")

    app.router.add_put("/v1/agent/check/pass/{id}", ok)
    app.router.add_put("/v1/agent/service/deregister/{id}", ok)
    app.router.add_get("/v1/event/list", events)
    http_authz.configure(app, res, "n1", Local())
    hdr = {"X-Consul-Token": "svc"}
    assert _run(app, "PUT", "/v1/agent/check/pass/c-web", hdr).status == 200
    assert _run(app, "PUT", "/v1/agent/check/pass/c-node", hdr).status == 403
    assert _run(app, "PUT", "/v1/agent/check/pass/c-node", {"X-Consul-Token": "node"}).status == 200
    assert _run(app, "PUT", "/v1/agent/check/pass/unknown", hdr).status == 200  # the handler answers 404
    assert _run(app, "PUT", "/v1/agent/service/deregister/web1", hdr).status == 200
    assert _run(app, "PUT", "/v1/agent/service/deregister/web1", {"X-Consul-Token": "node"}).status == 403
    listed = _run(app, "GET", "/v1/event/list", {"X-Consul-Token": "ev"})
    assert json.loads(listed.body) == [{"Name": "deploy"}]
