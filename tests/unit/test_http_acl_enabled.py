"""/v1/acl/* with ACLs on (agent/http/acl.py) over a state store in process: Consul's shapes, the rights each
endpoint needs, redaction, and bad input answered 400 (never 500)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent.acl import leader
from pyconsul.agent.acl.config import ACLConfig
from pyconsul.agent.acl.resolver import TokenResolver
from pyconsul.agent.errors import CommandRejected
from pyconsul.agent.http import acl
from pyconsul.agent.http.server import errors
from pyconsul.agent.httpd import web
from pyconsul.agent.server import queries
from pyconsul.agent.server.acl_reads import resolve_local
from pyconsul.agent.server.common import ReadMeta
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.results import StateError
from pyconsul.agent.state.store import StateStore


class Backend:
    def __init__(self) -> None:
        self.st = StateStore()
        self.i = 0
        for cmd in leader.missing(self.st.tables, "root", 1.0):
            self._apply(c.encode(cmd))

    def _apply(self, data: bytes) -> Any:
        self.i += 1
        result = self.st.apply(self.i, data)
        if isinstance(result, StateError):
            raise CommandRejected(result.message)
        return result

    async def write(self, data: bytes) -> Any:
        return self._apply(data)

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, ReadMeta]:
        return queries.run(self.st, name, args), ReadMeta(queries.index_of(self.st, name, args), True, 0)

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        return None


class World:
    def __init__(self, tmp: Path) -> None:
        self.backend = Backend()

        async def lookup(secret: str) -> dict[str, Any] | None:
            return resolve_local(self.backend.st, secret)

        cfg = ACLConfig(enabled=True, default_policy="deny", enable_token_persistence=True)
        self.resolver = TokenResolver(cfg, lookup, data_dir=str(tmp))
        self.app = web.Application(middlewares=[errors])
        acl.register(self.app, self.resolver, self.backend, data_dir=str(tmp))

    def call(self, method: str, path: str, body: Any = None, token: str = "") -> tuple[int, Any]:
        handler, match = self.app.router.resolve(method, path.split("?")[0])
        headers = web.Headers({"x-consul-token": token} if token else {})
        req = web.Request(self.app, method, path, (1, 1), headers, "127.0.0.1")
        req.match_info = match
        req._body = (body if isinstance(body, bytes) else json.dumps(body).encode()) if body is not None else b""
        resp = asyncio.run(handler(req))  # type: ignore[arg-type]
        raw = resp.body or b""
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode().strip()


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def test_bootstrap_is_refused_after_the_master_token(w: World) -> None:
    code, out = w.call("PUT", "/v1/acl/bootstrap")
    assert code == 403 and out.startswith("Permission denied: ACL bootstrap no longer allowed (reset index: ")


def test_policy_and_token_lifecycle_with_consuls_shapes(w: World) -> None:
    code, p = w.call("PUT", "/v1/acl/policy", {"Name": "app", "Rules": 'key_prefix "app/" { policy = "read" }'},
                     token="root")
    assert code == 200 and set(p) == {"ID", "Name", "Description", "Rules", "Datacenters", "Hash", "CreateIndex",
                                      "ModifyIndex"}
    assert w.call("GET", "/v1/acl/policy/name/app", token="root")[1]["ID"] == p["ID"]
    code, t = w.call("PUT", "/v1/acl/token", {"Description": "d", "Policies": [{"Name": "app"}]}, token="root")
    assert code == 200 and t["Policies"] == [{"ID": p["ID"], "Name": "app"}] and t["Local"] is False
    code, t2 = w.call("PUT", f"/v1/acl/token/{t['AccessorID']}", {"Description": "new"}, token="root")
    assert code == 200 and t2["Description"] == "new" and "Policies" not in t2 and t2["SecretID"] == t["SecretID"]
    assert t2["CreateIndex"] == t["CreateIndex"] < t2["ModifyIndex"]
    code, clone = w.call("PUT", f"/v1/acl/token/{t['AccessorID']}/clone", {}, token="root")
    assert code == 200 and clone["AccessorID"] != t["AccessorID"] and clone["Description"] == "new"
    assert w.call("GET", "/v1/acl/token/self", token=t["SecretID"])[1]["AccessorID"] == t["AccessorID"]
    assert w.call("DELETE", f"/v1/acl/token/{t['AccessorID']}", token="root") == (200, True)
    assert w.call("GET", f"/v1/acl/token/{t['AccessorID']}", token="root") == (403, "ACL not found")
    assert w.call("DELETE", f"/v1/acl/policy/{p['ID']}", token="root") == (200, True)


def test_rights_and_redaction(w: World) -> None:
    w.call("PUT", "/v1/acl/policy", {"Name": "reader", "Rules": 'acl = "read"'}, token="root")
    _, reader = w.call("PUT", "/v1/acl/token", {"Policies": [{"Name": "reader"}]}, token="root")
    r = reader["SecretID"]
    assert w.call("GET", "/v1/acl/tokens")[0] == 403  # anonymous, default deny
    code, listed = w.call("GET", "/v1/acl/tokens", token=r)
    assert code == 200 and {x["SecretID"] for x in listed} == {"<hidden>"}
    assert w.call("GET", f"/v1/acl/token/{reader['AccessorID']}", token=r)[1]["SecretID"] == "<hidden>"
    assert w.call("PUT", "/v1/acl/policy", {"Name": "x"}, token=r)[0] == 403
    assert w.call("GET", "/v1/acl/token/self", token="nope") == (403, "ACL not found")
    code, out = w.call("DELETE", f"/v1/acl/token/{reader['AccessorID']}", token="root")
    assert code == 200
    # one's own token cannot be deleted
    root_acc = next(x["AccessorID"] for x in w.call("GET", "/v1/acl/tokens", token="root")[1]
                    if x["SecretID"] == "root")
    code, out = w.call("DELETE", f"/v1/acl/token/{root_acc}", token="root")
    assert code == 400 and "authorization token" in out


@pytest.mark.parametrize(("method", "path", "body", "message"), [
    ("PUT", "/v1/acl/policy", b"{nope", "Request decode failed"),
    ("PUT", "/v1/acl/policy", [1], "expected a JSON object"),
    ("PUT", "/v1/acl/policy", {"Name": "bad name"}, "invalid Name"),
    ("PUT", "/v1/acl/policy", {"Name": "ok", "Rules": "key {"}, "Failed to parse ACL rules"),
    ("PUT", "/v1/acl/policy", {"Name": "global-management"}, "already exists"),
    ("PUT", "/v1/acl/policy", {"Name": "ok", "Datacenters": "dc1"}, "Datacenters"),
    ("PUT", "/v1/acl/policy", {"Name": "ok", "ID": "x"}, "Cannot specify ID"),
    ("PUT", "/v1/acl/token", {"Policies": [{"Name": "missing"}]}, "No such ACL policy with name"),
    ("PUT", "/v1/acl/token", {"Policies": "x"}, "Policies"),
    ("PUT", "/v1/acl/token", {"Policies": [{}]}, "needs an ID or a Name"),
    ("PUT", "/v1/acl/token", {"AccessorID": "not-a-uuid"}, "not a valid UUID"),
    ("PUT", "/v1/acl/token", {"Description": 5}, "Description must be a string"),
    ("PUT", "/v1/acl/token", {"Description": "x" * 2000}, "longer than"),
    ("PUT", "/v1/acl/token", {"ServiceIdentities": [{"ServiceName": "web"}]}, "not supported"),
    ("PUT", "/v1/acl/token", {"Roles": [{"Name": "r"}]}, "No such ACL role with name"),
    ("PUT", "/v1/acl/role", {"Name": "r", "Policies": [{"ID": "nope"}]}, "No such ACL policy with ID"),
    ("PUT", "/v1/acl/role", {"Name": "bad name"}, "Invalid Role: invalid Name"),
    ("PUT", "/v1/acl/token", {"Local": "yes"}, "Local must be a boolean"),
    ("PUT", "/v1/acl/token/00000000-0000-0000-0000-000000000002", {"SecretID": "other"}, "SecretID"),
    ("PUT", "/v1/acl/token/00000000-0000-0000-0000-000000000002", {"AccessorID": "x"}, "do not match"),
    ("DELETE", "/v1/acl/token/00000000-0000-0000-0000-000000000002", None, "anonymous token"),
    ("DELETE", "/v1/acl/policy/00000000-0000-0000-0000-000000000001", None, "builtin global-management"),
    ("PUT", "/v1/acl/policy/00000000-0000-0000-0000-000000000001", {"Name": "global-management", "Rules": ""},
     "Changing the Rules"),
])
def test_bad_input_is_400_with_a_message(w: World, method: str, path: str, body: Any, message: str) -> None:
    code, out = w.call(method, path, body, token="root")
    assert code == 400 and message in out


def test_agent_token_is_set_and_persisted(w: World, tmp_path: Path) -> None:
    assert w.call("PUT", "/v1/agent/token/acl_agent_token", {"Token": "agent-secret"}, token="root")[0] == 200
    assert w.resolver.agent_token() == "agent-secret"
    assert json.loads((tmp_path / "acl-tokens.json").read_text()) == {"agent": "agent-secret"}
    assert (tmp_path / "acl-tokens.json").stat().st_mode & 0o777 == 0o600
    fresh = TokenResolver(ACLConfig(enabled=True), w.resolver._lookup)
    acl.load_tokens(tmp_path, fresh)
    assert fresh.cfg.agent == "agent-secret"
    assert w.call("PUT", "/v1/agent/token/nope", {"Token": "x"}, token="root")[0] == 404
    assert w.call("PUT", "/v1/agent/token/default", {"Token": "x"})[0] == 403


def test_legacy_list_and_destroy(w: World) -> None:
    _, t = w.call("PUT", "/v1/acl/token", {"Description": "app"}, token="root")
    code, listed = w.call("GET", "/v1/acl/list", token="root")
    assert code == 200
    by_id = {x["ID"]: x for x in listed}
    assert by_id["root"]["Type"] == "management"
    assert by_id[t["SecretID"]]["Type"] == "client" and by_id[t["SecretID"]]["Name"] == "app"
    assert set(by_id[t["SecretID"]]) == {"ID", "Name", "Type", "Rules", "CreateIndex", "ModifyIndex"}
    assert w.call("GET", "/v1/acl/list")[0] == 403  # anonymous, default deny
    assert w.call("PUT", f"/v1/acl/destroy/{t['SecretID']}")[0] == 403
    assert w.call("PUT", "/v1/acl/destroy/root", token="root")[0] == 400  # one's own token
    assert w.call("PUT", f"/v1/acl/destroy/{t['SecretID']}", token="root") == (200, True)
    assert t["SecretID"] not in {x["ID"] for x in w.call("GET", "/v1/acl/list", token="root")[1]}
    assert w.call("GET", f"/v1/acl/token/{t['AccessorID']}", token="root") == (403, "ACL not found")


def test_unbuilt_endpoints_say_so(w: World) -> None:
    code, out = w.call("PUT", "/v1/acl/create", {}, token="root")
    assert code == 404 and "not built" in out
    assert w.call("GET", "/v1/acl/replication", token="root")[1]["Enabled"] is False
    assert w.call("POST", "/v1/acl/login", {"AuthMethod": "x", "BearerToken": "y"}) == (403, "ACL not found")
    assert w.call("POST", "/v1/acl/logout", token="nope") == (403, "ACL not found")
    assert w.call("POST", "/v1/acl/logout", token="root") == (403, "Permission denied")


def test_roles_grant_their_policies_to_linked_tokens(w: World) -> None:
    _, p = w.call("PUT", "/v1/acl/policy", {"Name": "kv", "Rules": 'key_prefix "app/" { policy = "write" }'},
                  token="root")
    code, role = w.call("PUT", "/v1/acl/role", {"Name": "app-role", "Policies": [{"Name": "kv"}]}, token="root")
    assert code == 200 and role["Policies"] == [{"ID": p["ID"], "Name": "kv"}]
    assert set(role) == {"ID", "Name", "Description", "Policies", "Hash", "CreateIndex", "ModifyIndex"}
    assert w.call("PUT", "/v1/acl/role", {"Name": "APP-role"}, token="root")[0] == 400  # names are unique
    _, tok = w.call("PUT", "/v1/acl/token", {"Roles": [{"Name": "app-role"}]}, token="root")
    assert tok["Roles"] == [{"ID": role["ID"], "Name": "app-role"}] and "Policies" not in tok
    authz = asyncio.run(w.resolver.resolve(tok["SecretID"]))
    assert authz.key_write("app/x") and not authz.key_write("b")
    assert w.call("GET", "/v1/acl/role/name/app-role", token="root")[1]["ID"] == role["ID"]
    assert [r["ID"] for r in w.call("GET", f"/v1/acl/roles?policy={p['ID']}", token="root")[1]] == [role["ID"]]
    listed = w.call("GET", f"/v1/acl/tokens?role={role['ID']}", token="root")[1]
    assert [t["AccessorID"] for t in listed] == [tok["AccessorID"]]
    code, upd = w.call("PUT", f"/v1/acl/role/{role['ID']}", {"Name": "app-role"}, token="root")
    assert code == 200 and "Policies" not in upd
    w.resolver.forget()
    authz = asyncio.run(w.resolver.resolve(tok["SecretID"]))
    assert not authz.key_write("app/x")  # the role lost its policy
    assert w.call("DELETE", f"/v1/acl/role/{role['ID']}", token="root") == (200, True)
    assert w.call("GET", f"/v1/acl/role/{role['ID']}", token="root") == (403, "ACL not found")
    assert "Roles" not in w.call("GET", f"/v1/acl/token/{tok['AccessorID']}", token="root")[1]
