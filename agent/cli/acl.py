"""`pyconsul acl bootstrap|token|policy|role ...`: Consul 1.7's ACL commands over /v1/acl/* (agent/http/acl.py).

The token comes from -token, else $CONSUL_HTTP_TOKEN / $PYCONSUL_HTTP_TOKEN (common.http_addr). Output is
Consul's "pretty" form, or the API's JSON with -format=json. Rules: `-rules=@file`, `-rules=-` (stdin) or
the text itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
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


# ---------------------------------------------------------------- tokens


def _links(res: ParseResult, kind: str = "policy") -> list[dict[str, str]]:
    return [{"ID": i} for i in res.list(f"{kind}-id")] + [{"Name": n} for n in res.list(f"{kind}-name")]


def _link_flags(fs: FlagSet, *, roles: bool = True) -> None:
    fs.string_list("policy-id", "ID of a policy to use. May be specified multiple times")
    fs.string_list("policy-name", "Name of a policy to use. May be specified multiple times")
    if roles:
        fs.string_list("role-id", "ID of a role to use for this token. May be specified multiple times")
        fs.string_list("role-name", "Name of a role to use for this token. May be specified multiple times")


def _token_id(res: ParseResult) -> str:
    tid = res.str("id")
    if not tid:
        raise CLIError("Must specify the -id parameter")
    return tid


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
    path = "/v1/acl/token/self" if res.bool("self") else f"/v1/acl/token/{_token_id(res)}"
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
    tid = _token_id(res)
    old = _call(res, "GET", f"/v1/acl/token/{tid}")
    body: dict[str, Any] = {"AccessorID": tid, "Description": res.str("description") or old.get("Description", ""),
                            "Local": old.get("Local", False)}
    for kind, key, merge in (("policy", "Policies", "merge-policies"), ("role", "Roles", "merge-roles")):
        links = _links(res, kind)
        if res.bool(merge) or not links:
            have = {p.get("ID") for p in old.get(key) or []}
            links = [{"ID": p["ID"]} for p in old.get(key) or []] + [
                link for link in links if link.get("ID") not in have]
        body[key] = links
    tok = _call(res, "PUT", f"/v1/acl/token/{tid}", body)
    return _show(res, tok, ["Token updated successfully.", *token_lines(tok)])


def cmd_token_delete(args: Sequence[str]) -> int:
    fs = _flagset("acl token delete", fmt=False)
    fs.string("id", "", "The Accessor ID of the token to delete")
    res = common.parse(fs, args, "acl token delete [options] -id TOKEN", "Delete an ACL token.")
    common.no_args(res)
    tid = _token_id(res)
    _call(res, "DELETE", f"/v1/acl/token/{tid}")
    common.out([f"Token \"{tid}\" deleted successfully"])
    return 0


def cmd_token_clone(args: Sequence[str]) -> int:
    fs = _flagset("acl token clone")
    fs.string("id", "", "The Accessor ID of the token to clone")
    fs.string("description", "", "A description of the new cloned token")
    res = common.parse(fs, args, "acl token clone [options]", "Clone an ACL token.")
    common.no_args(res)
    tok = _call(res, "PUT", f"/v1/acl/token/{_token_id(res)}/clone", {"Description": res.str("description")})
    return _show(res, tok, token_lines(tok))


def cmd_token_list(args: Sequence[str]) -> int:
    fs = _flagset("acl token list")
    res = common.parse(fs, args, "acl token list [options]", "List all the ACL tokens.")
    common.no_args(res)
    items = _call(res, "GET", "/v1/acl/tokens") or []
    return _show_list(res, items, token_lines)


TOKEN_COMMANDS: common.Table = {
    "create": (cmd_token_create, "Create an ACL token"),
    "read": (cmd_token_read, "Read an ACL token"),
    "update": (cmd_token_update, "Update an ACL token"),
    "delete": (cmd_token_delete, "Delete an ACL token"),
    "clone": (cmd_token_clone, "Clone an ACL token"),
    "list": (cmd_token_list, "List ACL tokens"),
}


def cmd_token(args: Sequence[str]) -> int:
    return common.run_group("acl token", TOKEN_COMMANDS, args, "Manage Consul's ACL tokens")


# ---------------------------------------------------------------- policies


def _policy_flags(fs: FlagSet) -> None:
    fs.string("name", "", "The name of the policy")
    fs.string("description", "", "A description of the policy")
    fs.string("rules", "", "The policy rules. May be prefixed with '@' to indicate that the value is a file path "
              "to load the rules from. '-' may also be given to indicate that the rules are available on stdin")
    fs.string_list("valid-datacenter", "Datacenter that the policy should be valid within. This flag may be "
                   "specified multiple times")


def _policy_id(res: ParseResult) -> str:
    """-id, or the ID of the policy named by -name."""
    pid = res.str("id")
    if pid:
        return pid
    name = res.str("name")
    if not name:
        raise CLIError("Must specify either the -id or -name parameters")
    p = _call(res, "GET", f"/v1/acl/policy/name/{name}")
    return str(p["ID"])


def cmd_policy_create(args: Sequence[str]) -> int:
    fs = _flagset("acl policy create")
    _policy_flags(fs)
    res = common.parse(fs, args, "acl policy create -name NAME [options]", "Create a new ACL policy.")
    common.no_args(res)
    if not res.str("name"):
        raise CLIError("Missing required '-name' flag")
    body = {"Name": res.str("name"), "Description": res.str("description"), "Rules": _rules(res.str("rules")),
            "Datacenters": res.list("valid-datacenter")}
    p = _call(res, "PUT", "/v1/acl/policy", body)
    return _show(res, p, policy_lines(p))


def cmd_policy_read(args: Sequence[str]) -> int:
    fs = _flagset("acl policy read")
    fs.string("id", "", "The ID of the policy to read")
    fs.string("name", "", "The name of the policy to read")
    res = common.parse(fs, args, "acl policy read [options] POLICY", "Read an ACL policy.")
    common.no_args(res)
    if res.str("id"):
        p = _call(res, "GET", f"/v1/acl/policy/{res.str('id')}")
    elif res.str("name"):
        p = _call(res, "GET", f"/v1/acl/policy/name/{res.str('name')}")
    else:
        raise CLIError("Must specify either the -id or -name parameters")
    return _show(res, p, policy_lines(p))


def cmd_policy_update(args: Sequence[str]) -> int:
    fs = _flagset("acl policy update")
    fs.string("id", "", "The ID of the policy to update")
    _policy_flags(fs)
    res = common.parse(fs, args, "acl policy update [options]", "Update an ACL policy.")
    common.no_args(res)
    pid = res.str("id")
    if not pid:
        raise CLIError("Must specify the -id parameter")
    old = _call(res, "GET", f"/v1/acl/policy/{pid}")
    body = {"ID": pid, "Name": res.str("name") or old.get("Name", ""),
            "Description": res.str("description") or old.get("Description", ""),
            "Rules": _rules(res.str("rules")) if res.str("rules") else old.get("Rules", ""),
            "Datacenters": res.list("valid-datacenter") or old.get("Datacenters") or []}
    p = _call(res, "PUT", f"/v1/acl/policy/{pid}", body)
    return _show(res, p, policy_lines(p))


def cmd_policy_delete(args: Sequence[str]) -> int:
    fs = _flagset("acl policy delete", fmt=False)
    fs.string("id", "", "The ID of the policy to delete")
    fs.string("name", "", "The name of the policy to delete")
    res = common.parse(fs, args, "acl policy delete [options]", "Delete an ACL policy.")
    common.no_args(res)
    pid = _policy_id(res)
    _call(res, "DELETE", f"/v1/acl/policy/{pid}")
    common.out([f"Policy \"{pid}\" deleted successfully"])
    return 0


def cmd_policy_list(args: Sequence[str]) -> int:
    fs = _flagset("acl policy list")
    res = common.parse(fs, args, "acl policy list [options]", "List all the ACL policies.")
    common.no_args(res)
    items = _call(res, "GET", "/v1/acl/policies") or []
    return _show_list(res, items, lambda p: [str(p.get("Name", "")) + ":"] + ["   " + x for x in
                                                                             policy_lines(p, rules=False)])


POLICY_COMMANDS: common.Table = {
    "create": (cmd_policy_create, "Create an ACL policy"),
    "read": (cmd_policy_read, "Read an ACL policy"),
    "update": (cmd_policy_update, "Update an ACL policy"),
    "delete": (cmd_policy_delete, "Delete an ACL policy"),
    "list": (cmd_policy_list, "List ACL policies"),
}


def cmd_policy(args: Sequence[str]) -> int:
    return common.run_group("acl policy", POLICY_COMMANDS, args, "Manage Consul's ACL policies")


# ---------------------------------------------------------------- roles


def _role_id(res: ParseResult) -> str:
    rid = res.str("id")
    if rid:
        return rid
    name = res.str("name")
    if not name:
        raise CLIError("Must specify either the -id or -name parameters")
    return str(_call(res, "GET", f"/v1/acl/role/name/{name}")["ID"])


def cmd_role_create(args: Sequence[str]) -> int:
    fs = _flagset("acl role create")
    fs.string("name", "", "The new role's name. This flag is required.")
    fs.string("description", "", "A description of the role")
    _link_flags(fs, roles=False)
    res = common.parse(fs, args, "acl role create -name NAME [options]", "Create a new ACL role.")
    common.no_args(res)
    if not res.str("name"):
        raise CLIError("Missing required '-name' flag")
    r = _call(res, "PUT", "/v1/acl/role", {"Name": res.str("name"), "Description": res.str("description"),
                                           "Policies": _links(res)})
    return _show(res, r, role_lines(r))


def cmd_role_read(args: Sequence[str]) -> int:
    fs = _flagset("acl role read")
    fs.string("id", "", "The ID of the role to read")
    fs.string("name", "", "The name of the role to read")
    res = common.parse(fs, args, "acl role read [options] ROLE", "Read an ACL role.")
    common.no_args(res)
    if res.str("id"):
        r = _call(res, "GET", f"/v1/acl/role/{res.str('id')}")
    elif res.str("name"):
        r = _call(res, "GET", f"/v1/acl/role/name/{res.str('name')}")
    else:
        raise CLIError("Must specify either the -id or -name parameters")
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
    rid = res.str("id")
    if not rid:
        raise CLIError("Must specify the -id parameter")
    old = _call(res, "GET", f"/v1/acl/role/{rid}")
    links = _links(res)
    if not res.bool("no-merge"):
        have = {p.get("ID") for p in old.get("Policies") or []}
        links = [{"ID": p["ID"]} for p in old.get("Policies") or []] + [
            link for link in links if link.get("ID") not in have]
    r = _call(res, "PUT", f"/v1/acl/role/{rid}", {"ID": rid, "Name": res.str("name") or old.get("Name", ""),
                                                  "Description": res.str("description") or old.get("Description", ""),
                                                  "Policies": links})
    return _show(res, r, role_lines(r))


def cmd_role_delete(args: Sequence[str]) -> int:
    fs = _flagset("acl role delete", fmt=False)
    fs.string("id", "", "The ID of the role to delete")
    fs.string("name", "", "The name of the role to delete")
    res = common.parse(fs, args, "acl role delete [options]", "Delete an ACL role.")
    common.no_args(res)
    rid = _role_id(res)
    _call(res, "DELETE", f"/v1/acl/role/{rid}")
    common.out([f"Role \"{rid}\" deleted successfully"])
    return 0


def cmd_role_list(args: Sequence[str]) -> int:
    fs = _flagset("acl role list")
    res = common.parse(fs, args, "acl role list [options]", "List all the ACL roles.")
    common.no_args(res)
    items = _call(res, "GET", "/v1/acl/roles") or []
    return _show_list(res, items, lambda r: [str(r.get("Name", "")) + ":"] + ["   " + x for x in role_lines(r)])


ROLE_COMMANDS: common.Table = {
    "create": (cmd_role_create, "Create an ACL role"),
    "read": (cmd_role_read, "Read an ACL role"),
    "update": (cmd_role_update, "Update an ACL role"),
    "delete": (cmd_role_delete, "Delete an ACL role"),
    "list": (cmd_role_list, "List ACL roles"),
}


def cmd_role(args: Sequence[str]) -> int:
    return common.run_group("acl role", ROLE_COMMANDS, args, "Manage Consul's ACL roles")


ACL_COMMANDS: common.Table = {
    "bootstrap": (cmd_bootstrap, "Bootstrap Consul's ACL system"),
    "token": (cmd_token, "Manage Consul's ACL tokens"),
    "policy": (cmd_policy, "Manage Consul's ACL policies"),
    "role": (cmd_role, "Manage Consul's ACL roles"),
}


def cmd_acl(args: Sequence[str]) -> int:
    return common.run_group("acl", ACL_COMMANDS, args, "Interact with Consul's ACLs")


COMMANDS: dict[str, tuple[common.Command, str]] = {"acl": (cmd_acl, "Interact with Consul's ACLs")}
