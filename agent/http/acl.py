"""`/v1/acl/*` and `/v1/agent/token/*` while ACLs are off: 401 "ACL support disabled", as Consul 1.7.

pyconsul has no ACL system yet (issue 14). Consul, with `acl.enabled = false`, registers its ACL
endpoints anyway and every one of them answers `401 Unauthorized` with the plain body
`ACL support disabled` (no newline); clients rely on it (py-consul raises `ACLDisabled`, python-consul2
`ACLDisabled`) where a 404 would read as a missing resource. The paths and methods are Consul 1.7's
(agent/http_oss.go): a path outside them is a 404 and a listed path with another method a 405, as there.
A path that ends in `/` in Consul's table is a prefix (Go's ServeMux): it covers every path below it.

With ACLs enabled (`acl.enabled`, agent/acl) `register_enabled` serves the ACL system instead (Consul 1.7's
shapes; each needs the caller's token to grant what is listed, else 403 "Permission denied"):
- PUT /v1/acl/bootstrap (no token): the first management token, once; then 403 "Permission denied: ACL
  bootstrap no longer allowed (reset index: N)" (write N into <data_dir>/acl-bootstrap-reset to allow one more).
- tokens (acl:read to read and list, acl:write to change): PUT /v1/acl/token, GET|PUT|DELETE
  /v1/acl/token/<accessor>, PUT /v1/acl/token/<accessor>/clone, GET /v1/acl/tokens[?policy=<id>];
  GET /v1/acl/token/self needs only a valid token. SecretIDs read "<hidden>" without acl:write.
  An unknown accessor or secret: 403 "ACL not found" (Consul's).
- policies: PUT /v1/acl/policy, GET|PUT|DELETE /v1/acl/policy/<id>, GET /v1/acl/policy/name/<name>,
  GET /v1/acl/policies. Rules are checked (400 "Failed to parse ACL rules: ...").
- roles (a named set of policies tokens link to): PUT /v1/acl/role, GET|PUT|DELETE /v1/acl/role/<id>,
  GET /v1/acl/role/name/<name>, GET /v1/acl/roles[?policy=<id>]; tokens take `Roles` links too.
- PUT /v1/agent/token/<kind> (acl:write): acl_token|default, acl_agent_token|agent,
  acl_agent_master_token|agent_master, acl_replication_token|replication; saved in <data_dir>/acl-tokens.json
  with acl.enable_token_persistence.
- GET /v1/acl/replication (acl:read): acl/replication.py's status on a server of a secondary datacenter;
  elsewhere Enabled false.
- With primary_datacenter another datacenter (a secondary): bootstrap, policy and role writes and writes of
  global tokens (Local false) run as if asked with ?dc=<primary> (the answer is the primary's); local tokens
  are written here. Replication brings the primary's writes back (acl/replication.py).
- POST /v1/acl/login: 403 "ACL not found" (no auth method exists); POST /v1/acl/logout: 403 ("ACL not found"
  for an unknown token, else "Permission denied": no token comes from a login).
- legacy (pre-1.4) GET /v1/acl/list (acl:write; every token as {ID: its SecretID, Name: its Description, Type
  "management" when it holds global-management else "client", Rules "", indexes}) and PUT /v1/acl/destroy/<id>
  (acl:write; deletes the token whose SecretID is <id>, true even when none is; not the caller's own token).
- the other legacy token endpoints, binding rules, auth methods and rules/translate are not built: 404 with
  a message saying so.
Validation failures are 400 with Consul's message (Consul answers several with 500).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pyconsul.agent.acl import rules as acl_rules
from pyconsul.agent.acl.authz import Authorizer
from pyconsul.agent.acl.resolver import TokenResolver
from pyconsul.agent.errors import BadRequest, CommandRejected, NotFound, PermissionDenied
from pyconsul.agent.http import acl_off
from pyconsul.agent.http.acl_off import ENDPOINTS
from pyconsul.agent.http.api import Backend, decode_json, json_response, read_meta_headers, read_query
from pyconsul.agent.httpd import web
from pyconsul.agent.ids import uuid4
from pyconsul.agent.server.acl_enforce import REQUEST_TOKEN
from pyconsul.agent.server.common import REQUEST_DC, remote_dc
from pyconsul.agent.state import acl as acl_state
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.acl_defs import GLOBAL_MANAGEMENT_ID, ACLPolicy, ACLPolicyLink, ACLRole, ACLToken

# The paths and methods (ENDPOINTS) and their answer while ACLs are off live in http/acl_off.py.


def register(app: web.Application, resolver: TokenResolver | None = None, backend: Backend | None = None, *,
             data_dir: str | None = None) -> None:
    if resolver is not None and resolver.enabled() and backend is not None:
        register_enabled(app, resolver, backend, data_dir=data_dir)
        return
    acl_off.register(app)


# ---------------------------------------------------------------------------------------------- ACLs enabled

NOT_FOUND = "ACL not found"
BOOTSTRAP_RESET_FILE = "acl-bootstrap-reset"
TOKENS_FILE = "acl-tokens.json"
MAX_DESCRIPTION = 1024  # bytes of a token or policy description (README "Limits")
MAX_LINKS = 256  # policy links of one token
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# PUT /v1/agent/token/<kind>: Consul's names (both spellings) -> the acl.tokens key
AGENT_TOKEN_KINDS = {"acl_token": "default", "default": "default", "acl_agent_token": "agent", "agent": "agent",
                     "acl_agent_master_token": "agent_master", "agent_master": "agent_master",
                     "acl_replication_token": "replication", "replication": "replication"}
NOT_BUILT = "is not built in pyconsul (issue 14): use the /v1/acl/token and /v1/acl/policy endpoints"


def request_secret(request: web.Request) -> str:
    """The request's token as Consul's parseToken finds it: ?token=, X-Consul-Token, Authorization: Bearer."""
    tok = request.query.get("token", "") if "token" in request.query else ""
    if not tok:
        tok = request.headers.get("X-Consul-Token", "")
    if not tok:
        parts = request.headers.get("Authorization", "").split(" ")
        if len(parts) == 2 and parts[0].lower() == "bearer":
            tok = parts[1].strip()
    return tok


def _body(raw: bytes) -> dict[str, Any]:
    body = decode_json(raw, empty={})
    if not isinstance(body, dict):
        raise BadRequest("Request decode failed: expected a JSON object")
    return {k.lower(): v for k, v in body.items() if isinstance(k, str)}


def _str(b: dict[str, Any], key: str, field: str, limit: int = MAX_DESCRIPTION) -> str:
    v = b.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadRequest(f"Request decode failed: {field} must be a string")
    if len(v.encode()) > limit:
        raise BadRequest(f"Request decode failed: {field} longer than {limit} bytes")
    return v


def _links(b: dict[str, Any], key: str = "policies", what: str = "policy") -> tuple[ACLPolicyLink, ...]:
    raw = b.get(key) or []
    if not isinstance(raw, list) or len(raw) > MAX_LINKS:
        raise BadRequest(f"Request decode failed: {key.title()} must be a list of at most {MAX_LINKS} links")
    out = []
    for link in raw:
        if not isinstance(link, dict):
            raise BadRequest(f"Request decode failed: a {what} link is an object with ID or Name")
        low = {k.lower(): v for k, v in link.items() if isinstance(k, str)}
        pid, name = low.get("id") or "", low.get("name") or ""
        if not isinstance(pid, str) or not isinstance(name, str) or not (pid or name):
            raise BadRequest(f"Request decode failed: a {what} link needs an ID or a Name (strings)")
        out.append(ACLPolicyLink(id=pid, name="" if pid else name))
    return tuple(out)


def _no_roles(b: dict[str, Any]) -> None:
    """Refuse what pyconsul does not build (service identities, expiration) rather than ignore it."""
    if b.get("serviceidentities"):
        raise BadRequest("ServiceIdentities are not supported by pyconsul yet (issue 14)")
    if b.get("expirationtime") or b.get("expirationttl"):
        raise BadRequest("Token expiration is not supported by pyconsul yet (issue 14)")


def _hash_token(tok: ACLToken) -> str:
    links = (*tok.policies, *(ACLPolicyLink("role:" + r.id, r.name) for r in tok.roles))
    return acl_state.token_hash(tok, tuple(link.id or "name:" + link.name for link in links))


def _hash_policy(p: ACLPolicy) -> str:
    return acl_state.policy_hash(p)


def _redacted(tok: dict[str, Any], authz: Authorizer) -> dict[str, Any]:
    if authz.acl_write():
        return tok
    return {**tok, "SecretID": acl_state.REDACTED}


def register_enabled(app: web.Application, resolver: TokenResolver, backend: Backend, *,
                     data_dir: str | None = None) -> None:
    r = app.router

    async def caller(request: web.Request) -> tuple[str, Authorizer]:
        secret = request_secret(request)
        return secret, await resolver.resolve(secret)

    async def need(request: web.Request, allowed: Callable[[Authorizer], bool]) -> Authorizer:
        _, authz = await caller(request)
        if not allowed(authz):
            raise PermissionDenied()
        return authz

    async def write(cmd: c.Command, *, as_leader: bool = False) -> Any:
        """Propose `cmd`; a state-machine refusal is the client's fault here (400)."""
        reset = REQUEST_TOKEN.set(None) if as_leader else None
        try:
            return await backend.write(c.encode(cmd))
        except CommandRejected as exc:
            if "ACL bootstrap no longer allowed" in exc.message:
                raise PermissionDenied(f"Permission denied: {exc.message}") from None
            raise BadRequest(exc.message) from None
        finally:
            if reset is not None:
                REQUEST_TOKEN.reset(reset)

    async def read(name: str, args: dict[str, Any], mode: str = "default") -> Any:
        value, _ = await backend.read(name, args, mode)
        return value

    Handler = Callable[[web.Request], Awaitable[web.Response]]

    def to_primary(handler: Handler, local: Callable[[web.Request], Awaitable[bool]] | None = None) -> Handler:
        """In a secondary datacenter, `handler` runs aimed at the primary (as with ?dc=<primary>) unless the
        request names a datacenter itself or `local(request)` says the object is a local token."""
        async def run(request: web.Request) -> web.Response:
            primary, here = resolver.primary_datacenter, resolver.datacenter
            if not primary or primary == here or remote_dc(here) or (local is not None and await local(request)):
                return await handler(request)
            reset = REQUEST_DC.set(primary)
            try:
                return await handler(request)
            finally:
                REQUEST_DC.reset(reset)
        return run

    async def local_body(request: web.Request) -> bool:
        try:
            return _body(await request.read()).get("local") is True
        except BadRequest:
            return False  # the handler answers it

    async def local_existing(request: web.Request) -> bool:
        try:
            tok = await read("acl.token_read", {"accessor": request.match_info["accessor"]})
        except PermissionDenied:
            return False  # the handler answers it
        return isinstance(tok, dict) and tok.get("Local") is True

    async def bootstrap(request: web.Request) -> web.Response:
        reset_index = 0
        if data_dir:
            path = Path(data_dir) / BOOTSTRAP_RESET_FILE
            try:
                reset_index = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                reset_index = 0
        tok = ACLToken(accessor_id=uuid4(), secret_id=uuid4(),
                       description="Bootstrap Token (Global Management)",
                       policies=(ACLPolicyLink(id=GLOBAL_MANAGEMENT_ID),), create_time=time.time())
        tok = _replace_hash(tok)
        # anyone may ask (the state machine allows one bootstrap), so the write carries no caller token
        await write(c.ACLBootstrap(tok, reset_index), as_leader=True)
        if data_dir and reset_index:
            (Path(data_dir) / BOOTSTRAP_RESET_FILE).unlink(missing_ok=True)
        reset = REQUEST_TOKEN.set(tok.secret_id)  # read back as the new token: it may read itself
        try:
            out = await read("acl.token_self", {"secret": tok.secret_id})
        finally:
            REQUEST_TOKEN.reset(reset)
        if not isinstance(out, dict):
            raise NotFound(NOT_FOUND)
        return json_response({"ID": tok.secret_id, **out})  # ID: the legacy field, Consul 1.7 sends it too

    # ------------------------------------------------------------ tokens

    def token_from(b: dict[str, Any], accessor: str, secret: str, *, local: bool, create_time: float) -> ACLToken:
        _no_roles(b)
        tok = ACLToken(accessor_id=accessor, secret_id=secret, description=_str(b, "description", "Description"),
                       policies=_links(b), local=local, create_time=create_time,
                       roles=_links(b, "roles", "role"))
        return _replace_hash(tok)

    async def token_create(request: web.Request) -> web.Response:
        await need(request, lambda a: a.acl_write())
        b = _body(await request.read())
        accessor = _str(b, "accessorid", "AccessorID", 64) or uuid4()
        secret = _str(b, "secretid", "SecretID", 64) or uuid4()
        for value, field in ((accessor, "AccessorID"), (secret, "SecretID")):
            if not _UUID.fullmatch(value):
                raise BadRequest(f"Invalid Token: {field} is not a valid UUID")
        local = b.get("local", False)
        if not isinstance(local, bool):
            raise BadRequest("Request decode failed: Local must be a boolean")
        tok = token_from(b, accessor, secret, local=local, create_time=time.time())
        await write(c.ACLTokenApply("create", tok))
        out = await read("acl.token_read", {"accessor": tok.accessor_id})
        return json_response(out)

    async def existing_token(accessor: str) -> dict[str, Any]:
        out = await read("acl.token_read", {"accessor": accessor})
        if not isinstance(out, dict):
            raise PermissionDenied(NOT_FOUND)
        return out

    async def token_get(request: web.Request) -> web.Response:
        authz = await need(request, lambda a: a.acl_read())
        accessor = request.match_info["accessor"]
        value, meta = await read_query(request, backend, "acl.token_read", {"accessor": accessor})
        if not isinstance(value, dict):
            raise PermissionDenied(NOT_FOUND)
        return json_response(_redacted(value, authz), 200, read_meta_headers(meta))

    async def token_self(request: web.Request) -> web.Response:
        secret = request_secret(request)
        token, _ = await resolver.identity(secret)
        if token is None:
            raise PermissionDenied(NOT_FOUND)
        return json_response(token)

    async def token_update(request: web.Request) -> web.Response:
        await need(request, lambda a: a.acl_write())
        accessor = request.match_info["accessor"]
        b = _body(await request.read())
        given = _str(b, "accessorid", "AccessorID", 64)
        if given and given != accessor:
            raise BadRequest("Token Accessor ID in URL and payload do not match")
        old = await existing_token(accessor)
        secret = _str(b, "secretid", "SecretID", 64)
        if secret and secret != old["SecretID"]:
            raise BadRequest("Changing a tokens SecretID is not permitted")
        local = b.get("local", old["Local"])
        if local != old["Local"]:
            raise BadRequest(f"Cannot toggle local mode of {accessor}")
        created = _parse_time(old.get("CreateTime", ""))
        tok = token_from(b, accessor, old["SecretID"], local=bool(old["Local"]), create_time=created)
        await write(c.ACLTokenApply("update", tok))
        return json_response(await existing_token(accessor))

    async def token_delete(request: web.Request) -> web.Response:
        secret, authz = await caller(request)
        if not authz.acl_write():
            raise PermissionDenied()
        accessor = request.match_info["accessor"]
        tok = await read("acl.token_read", {"accessor": accessor})
        if isinstance(tok, dict) and tok.get("SecretID") == secret:
            raise BadRequest("Deletion of the request's authorization token is not permitted")
        await write(c.ACLTokenApply("delete", ACLToken(accessor_id=accessor, secret_id="")))
        return json_response(True)

    async def token_clone(request: web.Request) -> web.Response:
        await need(request, lambda a: a.acl_write())
        old = await existing_token(request.match_info["accessor"])
        b = _body(await request.read())
        desc = _str(b, "description", "Description") or str(old.get("Description", ""))
        links = tuple(ACLPolicyLink(id=str(p["ID"])) for p in old.get("Policies") or [])
        roles = tuple(ACLPolicyLink(id=str(r["ID"])) for r in old.get("Roles") or [])
        tok = _replace_hash(ACLToken(accessor_id=uuid4(), secret_id=uuid4(), description=desc,
                                     policies=links, local=bool(old.get("Local")), create_time=time.time(),
                                     roles=roles))
        await write(c.ACLTokenApply("create", tok))
        return json_response(await existing_token(tok.accessor_id))

    async def token_list(request: web.Request) -> web.Response:
        authz = await need(request, lambda a: a.acl_read())
        args = {k: request.query.get(k, "") for k in ("policy", "role") if request.query.get(k)}
        value, meta = await read_query(request, backend, "acl.token_list", args)
        rows = [_redacted(t, authz) for t in value or []]
        return json_response(rows, 200, read_meta_headers(meta))

    # ------------------------------------------------------------ policies and roles

    def object_routes(kind: str, plural: str, parse: Callable[[dict[str, Any], str], Any],
                      apply: Callable[[str, Any], c.Command], blank: Callable[[str], Any],
                      list_filters: tuple[str, ...] = ()) -> None:
        """Policies and roles alike: PUT /v1/acl/<kind>, GET /v1/acl/<plural>[?<list_filters>], GET
        /v1/acl/<kind>/name/<name>, GET|PUT|DELETE /v1/acl/<kind>/<id>. `parse(body, id)` checks a request's
        object, `apply(op, obj)` is its command, `blank(id)` the object a delete names."""
        title, read_cmd = kind.title(), f"acl.{kind}_read"

        async def create(request: web.Request) -> web.Response:
            await need(request, lambda a: a.acl_write())
            b = _body(await request.read())
            if b.get("id"):
                raise BadRequest(f"Cannot specify ID when creating {kind}")
            obj = parse(b, uuid4())
            await write(apply("create", obj))
            return json_response(await read(read_cmd, {"id": obj.id}))

        async def get(request: web.Request) -> web.Response:
            await need(request, lambda a: a.acl_read())
            name = request.match_info.get("name")
            args = {"name": name} if name is not None else {"id": request.match_info["id"]}
            value, meta = await read_query(request, backend, read_cmd, args)
            if not isinstance(value, dict):
                raise PermissionDenied(NOT_FOUND)
            return json_response(value, 200, read_meta_headers(meta))

        async def update(request: web.Request) -> web.Response:
            await need(request, lambda a: a.acl_write())
            oid = request.match_info["id"]
            b = _body(await request.read())
            if b.get("id") and b["id"] != oid:
                raise BadRequest(f"{title} ID in URL and payload do not match")
            if not isinstance(await read(read_cmd, {"id": oid}), dict):
                raise BadRequest(f"Cannot find {kind} {oid!r}")
            await write(apply("update", parse(b, oid)))
            return json_response(await read(read_cmd, {"id": oid}))

        async def delete(request: web.Request) -> web.Response:
            await need(request, lambda a: a.acl_write())
            await write(apply("delete", blank(request.match_info["id"])))
            return json_response(True)

        async def list_all(request: web.Request) -> web.Response:
            await need(request, lambda a: a.acl_read())
            args = {k: request.query.get(k, "") for k in list_filters if request.query.get(k)}
            value, meta = await read_query(request, backend, f"acl.{kind}_list", args)
            return json_response(value or [], 200, read_meta_headers(meta))

        r.add_put(f"/v1/acl/{kind}", to_primary(create))
        r.add_get(f"/v1/acl/{plural}", list_all)
        r.add_get(f"/v1/acl/{kind}/name/{{name}}", get)
        r.add_get(f"/v1/acl/{kind}/{{id}}", get)
        r.add_put(f"/v1/acl/{kind}/{{id}}", to_primary(update))
        r.add_delete(f"/v1/acl/{kind}/{{id}}", to_primary(delete))

    def policy_from(b: dict[str, Any], pid: str) -> ACLPolicy:
        name = _str(b, "name", "Name", 128)
        if not acl_state.valid_policy_name(name):
            raise BadRequest("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")
        rules = b.get("rules", "") or ""
        if not isinstance(rules, str):
            raise BadRequest("Request decode failed: Rules must be a string")
        try:
            acl_rules.validate(rules)
        except acl_rules.RulesError as exc:
            raise BadRequest(str(exc)) from None
        dcs = b.get("datacenters") or []
        if not isinstance(dcs, list) or not all(isinstance(d, str) for d in dcs) or len(dcs) > 64:
            raise BadRequest("Request decode failed: Datacenters must be a list of strings")
        p = ACLPolicy(id=pid, name=name, description=_str(b, "description", "Description"), rules=rules,
                      datacenters=tuple(dcs))
        return ACLPolicy(id=p.id, name=p.name, description=p.description, rules=p.rules,
                         datacenters=p.datacenters, hash=_hash_policy(p))

    def role_from(b: dict[str, Any], rid: str) -> ACLRole:
        name = _str(b, "name", "Name", 256)
        if not acl_state.valid_role_name(name):
            raise BadRequest("Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed")
        _no_roles(b)
        r = ACLRole(id=rid, name=name, description=_str(b, "description", "Description"), policies=_links(b))
        return ACLRole(id=r.id, name=r.name, description=r.description, policies=r.policies,
                       hash=acl_state.role_hash(r))

    # ------------------------------------------------------------ the agent's tokens, replication, the rest

    async def agent_token(request: web.Request) -> web.Response:
        await need(request, lambda a: a.acl_write())
        kind = AGENT_TOKEN_KINDS.get(request.match_info["kind"])
        if kind is None:
            raise NotFound(f"Token {request.match_info['kind']!r} is unknown")
        b = _body(await request.read())
        secret = _str(b, "token", "Token", 256)
        resolver.set_token(kind, secret)
        if resolver.cfg.enable_token_persistence and data_dir:
            save_tokens(Path(data_dir), resolver)
        return web.Response(status=200)

    async def replication(request: web.Request) -> web.Response:
        await need(request, lambda a: a.acl_read())
        if resolver.replication_status is not None:
            return json_response(resolver.replication_status())
        zero = "0001-01-01T00:00:00Z"
        return json_response({"Enabled": False, "Running": False, "SourceDatacenter": "", "ReplicationType": "",
                              "ReplicatedIndex": 0, "ReplicatedRoleIndex": 0, "ReplicatedTokenIndex": 0,
                              "LastSuccess": zero, "LastError": zero})

    async def login(request: web.Request) -> web.Response:
        raise PermissionDenied(NOT_FOUND)  # no auth method exists (Consul: an unknown method is "ACL not found")

    async def logout(request: web.Request) -> web.Response:
        await resolver.identity(request_secret(request))  # an unknown token: 403 "ACL not found"
        raise PermissionDenied()  # no token was made by a login, so none may log out (Consul's answer)

    async def not_built(request: web.Request) -> web.Response:
        return web.Response(status=404, text=f"{request.path} {NOT_BUILT}\n")

    # ------------------------------------------------------------ legacy (pre-1.4) list and destroy

    def legacy(tok: dict[str, Any]) -> dict[str, Any]:
        """A token in the legacy shape: ID is the SecretID; a token holding global-management is "management"."""
        ids = {str(p.get("ID")) for p in tok.get("Policies") or []}
        kind = "management" if GLOBAL_MANAGEMENT_ID in ids else "client"
        return {"ID": tok.get("SecretID", ""), "Name": tok.get("Description", ""), "Type": kind, "Rules": "",
                "CreateIndex": tok.get("CreateIndex", 0), "ModifyIndex": tok.get("ModifyIndex", 0)}

    async def legacy_list(request: web.Request) -> web.Response:
        await need(request, lambda a: a.acl_write())  # the answer holds secrets: management only
        value, meta = await read_query(request, backend, "acl.token_list", {})
        return json_response([legacy(t) for t in value or []], 200, read_meta_headers(meta))

    async def legacy_destroy(request: web.Request) -> web.Response:
        secret, authz = await caller(request)
        if not authz.acl_write():
            raise PermissionDenied()
        target = request.match_info["secret"]
        if target == secret:
            raise BadRequest("Deletion of the request's authorization token is not permitted")
        for tok in await read("acl.token_list", {}) or []:
            if tok.get("SecretID") == target:
                await write(c.ACLTokenApply("delete", ACLToken(accessor_id=str(tok["AccessorID"]), secret_id="")))
                break
        return json_response(True)

    r.add_put("/v1/acl/bootstrap", to_primary(bootstrap))
    r.add_put("/v1/acl/token", to_primary(token_create, local_body))
    r.add_get("/v1/acl/tokens", token_list)
    r.add_get("/v1/acl/token/self", token_self)
    r.add_put("/v1/acl/token/{accessor}/clone", to_primary(token_clone, local_existing))
    r.add_get("/v1/acl/token/{accessor}", token_get)
    r.add_put("/v1/acl/token/{accessor}", to_primary(token_update, local_existing))
    r.add_delete("/v1/acl/token/{accessor}", to_primary(token_delete, local_existing))
    object_routes("policy", "policies", policy_from, c.ACLPolicyApply, lambda oid: ACLPolicy(id=oid, name=""))
    object_routes("role", "roles", role_from, c.ACLRoleApply, lambda oid: ACLRole(id=oid, name=""), ("policy",))
    r.add_put("/v1/agent/token/{kind}", agent_token)
    r.add_get("/v1/acl/replication", replication)
    r.add_post("/v1/acl/login", login)
    r.add_post("/v1/acl/logout", logout)
    r.add_get("/v1/acl/list", legacy_list)
    r.add_put("/v1/acl/destroy/{secret}", to_primary(legacy_destroy))
    built = {"/v1/acl/list", "/v1/acl/destroy/",
             "/v1/acl/bootstrap", "/v1/acl/token", "/v1/acl/tokens", "/v1/acl/policy", "/v1/acl/policies",
             "/v1/acl/replication", "/v1/acl/role", "/v1/acl/roles", "/v1/acl/login", "/v1/acl/logout"}
    for path, methods in ENDPOINTS:
        if path in built:
            continue
        route = path + "{rest:.*}" if path.endswith("/") else path
        for method in methods:
            r.add_route(method, route, not_built)


def _replace_hash(tok: ACLToken) -> ACLToken:
    return ACLToken(accessor_id=tok.accessor_id, secret_id=tok.secret_id, description=tok.description,
                    policies=tok.policies, local=tok.local, create_time=tok.create_time, hash=_hash_token(tok),
                    roles=tok.roles)


def _parse_time(text: str) -> float:
    import datetime

    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def save_tokens(data_dir: Path, resolver: TokenResolver) -> None:
    """<data_dir>/acl-tokens.json (Consul's file and keys), mode 0600, replaced atomically."""
    cfg = resolver.cfg
    doc = {k: getattr(cfg, k) for k in ("agent", "agent_master", "default", "replication") if getattr(cfg, k)}
    tmp = data_dir / (TOKENS_FILE + ".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.chmod(0o600)
    tmp.replace(data_dir / TOKENS_FILE)


def load_tokens(data_dir: Path, resolver: TokenResolver) -> None:
    """Tokens saved by PUT /v1/agent/token/* replace the configured ones (acl.enable_token_persistence)."""
    try:
        doc = json.loads((data_dir / TOKENS_FILE).read_text())
    except (OSError, ValueError):
        return
    if isinstance(doc, dict):
        for kind in ("agent", "agent_master", "default", "replication"):
            value = doc.get(kind)
            if isinstance(value, str) and value:
                resolver.set_token(kind, value)


