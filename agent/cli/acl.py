"""`pyconsul acl bootstrap|token|policy|role ...`: Consul 1.7's ACL commands over /v1/acl/* (agent/http/acl.py).

The token comes from -token, else $CONSUL_HTTP_TOKEN / $PYCONSUL_HTTP_TOKEN (common.http_addr). Output is
Consul's "pretty" form, or the API's JSON with -format=json. Rules: `-rules=@file`, `-rules=-` (stdin) or
the text itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet, ParseResult

__all__ = ["COMMANDS", "cmd_acl"]

FORMATS = ("pretty", "json")


def _flagset(name: str, *, fmt: bool = True) -> FlagSet:
    fs = FlagSet(name)
    common.http_flags(fs)
    if fmt:
        fs.string("format", "pretty", "Output format {pretty|json}")
    return fs


def _call(res: ParseResult, method: str, path: str, body: object = None) -> Any:
    try:
        return common.api_request(method, common.http_addr(res), path, body=body)
    except ApiError as exc:
        raise CLIError(f"Failed {method} {path}: {exc}") from None


def _format(res: ParseResult) -> str:
    fmt = res.str("format")
    if fmt not in FORMATS:
        raise CLIError(f"Invalid format: {fmt}")
    return fmt


def _created(ts: str) -> str:
    return ts.replace("T", " ").replace("Z", " +0000 UTC")


def token_lines(t: Mapping[str, Any]) -> list[str]:
    lines = [f"AccessorID:       {t.get('AccessorID', '')}", f"SecretID:         {t.get('SecretID', '')}",
             f"Description:      {t.get('Description', '')}", f"Local:            {str(t.get('Local', False)).lower()}",
             f"Create Time:      {_created(str(t.get('CreateTime', '')))}"]
    for key in ("Policies", "Roles"):
        links = t.get(key) or []
        if links:
            lines.append(f"{key}:")
            lines += [f"   {p.get('ID', '')} - {p.get('Name', '')}" for p in links]
    return lines


def role_lines(r: Mapping[str, Any]) -> list[str]:
    lines = [f"ID:           {r.get('ID', '')}", f"Name:         {r.get('Name', '')}",
             f"Description:  {r.get('Description', '')}"]
    links = r.get("Policies") or []
    if links:
        lines.append("Policies:")
        lines += [f"   {p.get('ID', '')} - {p.get('Name', '')}" for p in links]
    return lines


def policy_lines(p: Mapping[str, Any], *, rules: bool = True) -> list[str]:
    lines = [f"ID:           {p.get('ID', '')}", f"Name:         {p.get('Name', '')}",
             f"Description:  {p.get('Description', '')}",
             f"Datacenters:  {', '.join(p.get('Datacenters') or [])}"]
    if rules:
        lines += ["Rules:", str(p.get("Rules", ""))]
    return lines


def _show(res: ParseResult, obj: Any, lines: list[str]) -> int:
    if _format(res) == "json":
        sys.stdout.write(json.dumps(obj, indent=4) + "\n")
    else:
        common.out(lines)
    return 0


def _show_list(res: ParseResult, items: list[Any], render: Any) -> int:
    if _format(res) == "json":
        sys.stdout.write(json.dumps(items, indent=4) + "\n")
        return 0
    lines: list[str] = []
    for i, item in enumerate(items):
        if i:
            lines.append("")
        lines += render(item)
    common.out(lines)
    return 0


def _rules(value: str) -> str:
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise CLIError(f"Failed to read rules from {value[1:]}: {exc.strerror}") from None
    return value


# ---------------------------------------------------------------- bootstrap


def cmd_bootstrap(args: Sequence[str]) -> int:
    fs = _flagset("acl bootstrap")
    res = common.parse(fs, args, "acl bootstrap [options]",
                       "The acl bootstrap command will request Consul to generate a new token with unlimited\n"
                       "  privileges to use for management purposes and output its details. This can only be done\n"
                       "  once and afterwards bootstrapping will be disabled.")
    common.no_args(res)
    try:
        tok = common.api_request("PUT", common.http_addr(res), "/v1/acl/bootstrap")
    except ApiError as exc:
        raise CLIError(f"Failed ACL bootstrapping: {exc}") from None
    return _show(res, tok, token_lines(tok))


# ---------------------------------------------------------------- what the verbs share


@dataclass(frozen=True)
class _Kind:
    """One ACL object kind: its API paths (/v1/acl/<name>, /v1/acl/<plural>), flag help and renderings."""

    name: str  # "token", "policy", "role"
    plural: str
    id_help: str  # the -id flag's help, less " to <verb>"
    lines: Callable[[Mapping[str, Any]], list[str]]  # one object, pretty
    list_lines: Callable[[Mapping[str, Any]], list[str]]  # one object of `list`, pretty
    by_name: bool = True  # -name may stand for -id (read, delete)


def _named(obj: Mapping[str, Any], lines: list[str]) -> list[str]:
    return [str(obj.get("Name", "")) + ":"] + ["   " + x for x in lines]


TOKEN = _Kind("token", "tokens", "The Accessor ID of the token", token_lines, token_lines, by_name=False)
POLICY = _Kind("policy", "policies", "The ID of the policy", policy_lines,
               lambda p: _named(p, policy_lines(p, rules=False)))
ROLE = _Kind("role", "roles", "The ID of the role", role_lines, lambda r: _named(r, role_lines(r)))


def _links(res: ParseResult, kind: str = "policy") -> list[dict[str, str]]:
    return [{"ID": i} for i in res.list(f"{kind}-id")] + [{"Name": n} for n in res.list(f"{kind}-name")]


def _merged(old: Mapping[str, Any], key: str, links: list[dict[str, str]]) -> list[dict[str, str]]:
    """The object's existing `key` links (by ID), then those of `links` it does not have yet."""
    have = [{"ID": p["ID"]} for p in old.get(key) or []]
    return have + [link for link in links if link not in have]


def _link_flags(fs: FlagSet, *, roles: bool = True) -> None:
    fs.string_list("policy-id", "ID of a policy to use. May be specified multiple times")
    fs.string_list("policy-name", "Name of a policy to use. May be specified multiple times")
    if roles:
        fs.string_list("role-id", "ID of a role to use for this token. May be specified multiple times")
        fs.string_list("role-name", "Name of a role to use for this token. May be specified multiple times")


def _need_id(res: ParseResult) -> str:
    oid = res.str("id")
    if not oid:
        raise CLIError("Must specify the -id parameter")
    return oid


def _by_name(res: ParseResult, kind: _Kind) -> Any:
    """The object -name names (-id not given)."""
    if not res.str("name"):
        raise CLIError("Must specify either the -id or -name parameters")
    return _call(res, "GET", f"/v1/acl/{kind.name}/name/{res.str('name')}")


def _read(kind: _Kind, args: Sequence[str]) -> int:
    """`acl policy|role read -id ID | -name NAME` (tokens: cmd_token_read)."""
    fs = _flagset(f"acl {kind.name} read")
    fs.string("id", "", f"{kind.id_help} to read")
    fs.string("name", "", f"The name of the {kind.name} to read")
    res = common.parse(fs, args, f"acl {kind.name} read [options] {kind.name.upper()}", f"Read an ACL {kind.name}.")
    common.no_args(res)
    obj = _call(res, "GET", f"/v1/acl/{kind.name}/{res.str('id')}") if res.str("id") else _by_name(res, kind)
    return _show(res, obj, kind.lines(obj))


def _update(res: ParseResult, kind: _Kind, body: Callable[[str, Mapping[str, Any]], dict[str, Any]]) -> Any:
    """Read the object -id names, PUT `body(id, old)` back; the answer."""
    oid = _need_id(res)
    old = _call(res, "GET", f"/v1/acl/{kind.name}/{oid}")
    return _call(res, "PUT", f"/v1/acl/{kind.name}/{oid}", body(oid, old))


def _delete(kind: _Kind, args: Sequence[str]) -> int:
    fs = _flagset(f"acl {kind.name} delete", fmt=False)
    fs.string("id", "", f"{kind.id_help} to delete")
    if kind.by_name:
        fs.string("name", "", f"The name of the {kind.name} to delete")
    synopsis = f"acl {kind.name} delete [options]" + ("" if kind.by_name else " -id TOKEN")
    res = common.parse(fs, args, synopsis, f"Delete an ACL {kind.name}.")
    common.no_args(res)
    oid = str(_by_name(res, kind)["ID"]) if kind.by_name and not res.str("id") else _need_id(res)
    _call(res, "DELETE", f"/v1/acl/{kind.name}/{oid}")
    common.out([f"{kind.name.title()} \"{oid}\" deleted successfully"])
    return 0


def _list(kind: _Kind, args: Sequence[str]) -> int:
    fs = _flagset(f"acl {kind.name} list")
    res = common.parse(fs, args, f"acl {kind.name} list [options]", f"List all the ACL {kind.plural}.")
    common.no_args(res)
    items = _call(res, "GET", f"/v1/acl/{kind.plural}") or []
    return _show_list(res, items, kind.list_lines)


def _group(kind: _Kind, verbs: Mapping[str, common.Command]) -> tuple[common.Command, str]:
    """`acl <kind> <verb>` with the shared verbs read (policy, role), delete and list added."""
    every: dict[str, common.Command] = {**verbs, "delete": partial(_delete, kind), "list": partial(_list, kind)}
    if kind.by_name:
        every["read"] = partial(_read, kind)
    table: common.Table = {v: (f, f"List ACL {kind.plural}" if v == "list" else f"{v.title()} an ACL {kind.name}")
                           for v, f in every.items()}
    about = f"Manage Consul's ACL {kind.plural}"
    return partial(common.run_group, f"acl {kind.name}", table, description=about), about


# ---------------------------------------------------------------- tokens


def cmd_token_create(args: Sequence[str]) -> int:
    fs = _flagset("acl token create")
    fs.string("description", "", "A description of the token")
    _link_flags(fs)
    fs.bool("local", False, "Create this as a datacenter local token")
    fs.string("accessor", "", "Create the token with this Accessor ID. It must be a UUID.")
    fs.string("secret", "", "Create the token with this Secret ID. It must be a UUID.")
    res = common.parse(fs, args, "acl token create [options]", "Create a new ACL token.")
    common.no_args(res)
    body: dict[str, Any] = {"Description": res.str("description"), "Policies": _links(res),
                            "Roles": _links(res, "role"), "Local": res.bool("local")}
    if res.str("accessor"):
        body["AccessorID"] = res.str("accessor")
    if res.str("secret"):
        body["SecretID"] = res.str("secret")
    tok = _call(res, "PUT", "/v1/acl/token", body)
    return _show(res, tok, token_lines(tok))


def cmd_token_read(args: Sequence[str]) -> int:
    fs = _flagset("acl token read")
    fs.string("id", "", "The Accessor ID of the token to read")
    fs.bool("self", False, "Indicates that the current HTTP token should be read by secret ID instead of "
            "expecting a -id option")
    res = common.parse(fs, args, "acl token read [options] -id TOKENID", "Read an ACL token.")
    common.no_args(res)
    path = "/v1/acl/token/self" if res.bool("self") else f"/v1/acl/token/{_need_id(res)}"
    tok = _call(res, "GET", path)
    return _show(res, tok, token_lines(tok))


def cmd_token_update(args: Sequence[str]) -> int:
    fs = _flagset("acl token update")
    fs.string("id", "", "The Accessor ID of the token to update")
    fs.string("description", "", "A description of the token")
    _link_flags(fs)
    fs.bool("merge-policies", False, "Merge the new policies with the existing policies")
    fs.bool("merge-roles", False, "Merge the new roles with the existing roles")
    res = common.parse(fs, args, "acl token update [options]", "Update an ACL token.")
    common.no_args(res)

    def body(tid: str, old: Mapping[str, Any]) -> dict[str, Any]:
        out = {"AccessorID": tid, "Description": res.str("description") or old.get("Description", ""),
               "Local": old.get("Local", False)}
        for kind, key, merge in (("policy", "Policies", "merge-policies"), ("role", "Roles", "merge-roles")):
            links = _links(res, kind)
            out[key] = _merged(old, key, links) if res.bool(merge) or not links else links
        return out

    tok = _update(res, TOKEN, body)
    return _show(res, tok, ["Token updated successfully.", *token_lines(tok)])


def cmd_token_clone(args: Sequence[str]) -> int:
    fs = _flagset("acl token clone")
    fs.string("id", "", "The Accessor ID of the token to clone")
    fs.string("description", "", "A description of the new cloned token")
    res = common.parse(fs, args, "acl token clone [options]", "Clone an ACL token.")
    common.no_args(res)
    tok = _call(res, "PUT", f"/v1/acl/token/{_need_id(res)}/clone", {"Description": res.str("description")})
    return _show(res, tok, token_lines(tok))


# ---------------------------------------------------------------- policies


def _policy_flags(fs: FlagSet) -> None:
    fs.string("name", "", "The name of the policy")
    fs.string("description", "", "A description of the policy")
    fs.string("rules", "", "The policy rules. May be prefixed with '@' to indicate that the value is a file path "
              "to load the rules from. '-' may also be given to indicate that the rules are available on stdin")
    fs.string_list("valid-datacenter", "Datacenter that the policy should be valid within. This flag may be "
                   "specified multiple times")


def _need_name(res: ParseResult) -> str:
    if not res.str("name"):
        raise CLIError("Missing required '-name' flag")
    return res.str("name")


def cmd_policy_create(args: Sequence[str]) -> int:
    fs = _flagset("acl policy create")
    _policy_flags(fs)
    res = common.parse(fs, args, "acl policy create -name NAME [options]", "Create a new ACL policy.")
    common.no_args(res)
    body = {"Name": _need_name(res), "Description": res.str("description"), "Rules": _rules(res.str("rules")),
            "Datacenters": res.list("valid-datacenter")}
    p = _call(res, "PUT", "/v1/acl/policy", body)
    return _show(res, p, policy_lines(p))


def cmd_policy_update(args: Sequence[str]) -> int:
    fs = _flagset("acl policy update")
    fs.string("id", "", "The ID of the policy to update")
    _policy_flags(fs)
    res = common.parse(fs, args, "acl policy update [options]", "Update an ACL policy.")
    common.no_args(res)
    p = _update(res, POLICY, lambda pid, old: {
        "ID": pid, "Name": res.str("name") or old.get("Name", ""),
        "Description": res.str("description") or old.get("Description", ""),
        "Rules": _rules(res.str("rules")) if res.str("rules") else old.get("Rules", ""),
        "Datacenters": res.list("valid-datacenter") or old.get("Datacenters") or []})
    return _show(res, p, policy_lines(p))


# ---------------------------------------------------------------- roles


def cmd_role_create(args: Sequence[str]) -> int:
    fs = _flagset("acl role create")
    fs.string("name", "", "The new role's name. This flag is required.")
    fs.string("description", "", "A description of the role")
    _link_flags(fs, roles=False)
    res = common.parse(fs, args, "acl role create -name NAME [options]", "Create a new ACL role.")
    common.no_args(res)
    r = _call(res, "PUT", "/v1/acl/role", {"Name": _need_name(res), "Description": res.str("description"),
                                           "Policies": _links(res)})
    return _show(res, r, role_lines(r))


def cmd_role_update(args: Sequence[str]) -> int:
    fs = _flagset("acl role update")
    fs.string("id", "", "The ID of the role to update")
    fs.string("name", "", "The role's new name")
    fs.string("description", "", "The role's new description")
    _link_flags(fs, roles=False)
    fs.bool("no-merge", False, "Replace the role's policies with those given instead of adding to them")
    res = common.parse(fs, args, "acl role update [options]", "Update an ACL role.")
    common.no_args(res)
    r = _update(res, ROLE, lambda rid, old: {
        "ID": rid, "Name": res.str("name") or old.get("Name", ""),
        "Description": res.str("description") or old.get("Description", ""),
        "Policies": _links(res) if res.bool("no-merge") else _merged(old, "Policies", _links(res))})
    return _show(res, r, role_lines(r))


ACL_COMMANDS: common.Table = {
    "bootstrap": (cmd_bootstrap, "Bootstrap Consul's ACL system"),
    "token": _group(TOKEN, {"create": cmd_token_create, "read": cmd_token_read, "update": cmd_token_update,
                            "clone": cmd_token_clone}),
    "policy": _group(POLICY, {"create": cmd_policy_create, "update": cmd_policy_update}),
    "role": _group(ROLE, {"create": cmd_role_create, "update": cmd_role_update}),
}


def cmd_acl(args: Sequence[str]) -> int:
    return common.run_group("acl", ACL_COMMANDS, args, "Interact with Consul's ACLs")


COMMANDS: dict[str, tuple[common.Command, str]] = {"acl": (cmd_acl, "Interact with Consul's ACLs")}
