"""ACL rules (agent/acl/rules.py) and the PolicyAuthorizer (agent/acl/policy.py): Consul 1.7's decisions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyconsul.agent.acl import rules
from pyconsul.agent.acl.authz import DENY_ALL, MANAGE_ALL, Authorizer
from pyconsul.agent.acl.policy import DEFAULT_ALLOW, PolicyAuthorizer, merge_access


def authz(*texts: str, parent: Authorizer = DENY_ALL, key_list: bool = False) -> PolicyAuthorizer:
    return PolicyAuthorizer([rules.parse(t) for t in texts], parent, key_list_policy=key_list)


def test_hcl_and_json_rules_parse_to_the_same_rules() -> None:
    hcl = '''
key_prefix "app/" { policy = "write" }
key "app/secret" { policy = "deny" }
service_prefix "" { policy = "read" }
operator = "read"
'''
    doc = {"key_prefix": {"app/": {"policy": "write"}}, "key": {"app/secret": {"policy": "deny"}},
           "service_prefix": {"": {"policy": "read"}}, "operator": "read"}
    assert rules.parse(hcl) == rules.parse(json.dumps(doc))
    r = rules.parse(hcl)
    assert r.prefix["key"] == {"app/": "write"} and r.exact["key"] == {"app/secret": "deny"}
    assert r.simple == {"operator": "read"}


@pytest.mark.parametrize("text", [
    'nope "x" { policy = "read" }',  # unknown resource
    'key "x" { policy = "admin" }',  # unknown access
    'service "x" { policy = "list" }',  # list is for keys only
    'key "x" { }',  # no policy
    'key "x" { policy = "read" color = "red" }',  # unknown field
    'operator = "list"',
    'key_prefix "x" {',  # syntax
    '{"key": [1, 2]}',
    "[1]",
])
def test_invalid_rules_are_refused_with_consuls_prefix(text: str) -> None:
    with pytest.raises(rules.RulesError, match=r"^Failed to parse ACL rules"):
        rules.parse(text)


def test_list_is_valid_for_keys_and_intentions_alone_are_ignored() -> None:
    r = rules.parse('key_prefix "" { policy = "list" }\nservice "web" { intentions = "read" }')
    assert r.prefix["key"] == {"": "list"} and "service" not in r.exact


def test_empty_rules_and_bounds() -> None:
    assert rules.parse("") == rules.Rules()
    with pytest.raises(rules.RulesError, match="longer than"):
        rules.parse("#" * (rules.MAX_RULES_BYTES + 1))


# (rules, question, expected) with a default-deny parent
CASES = [
    ('key_prefix "app/" { policy = "write" }', lambda a: a.key_write("app/x"), True),
    ('key_prefix "app/" { policy = "write" }', lambda a: a.key_write("other/x"), False),
    ('key_prefix "app/" { policy = "read" }', lambda a: a.key_write("app/x"), False),
    ('key_prefix "app/" { policy = "read" }', lambda a: a.key_read("app/x"), True),
    # the longest prefix wins
    ('key_prefix "" { policy = "write" }\nkey_prefix "app/" { policy = "deny" }', lambda a: a.key_read("app/x"), False),
    ('key_prefix "" { policy = "deny" }\nkey_prefix "app/" { policy = "read" }', lambda a: a.key_read("app/x"), True),
    ('key_prefix "a" { policy = "read" }\nkey_prefix "ab" { policy = "deny" }', lambda a: a.key_read("abc"), False),
    # an exact rule beats any prefix, and only matches its own name
    ('key_prefix "app/" { policy = "deny" }\nkey "app/x" { policy = "write" }', lambda a: a.key_write("app/x"), True),
    ('key "app/x" { policy = "write" }', lambda a: a.key_write("app/xy"), False),
    ('service "web" { policy = "write" }', lambda a: a.service_write("web"), True),
    ('service "web" { policy = "write" }', lambda a: a.service_read("web2"), False),
    ('service_prefix "web" { policy = "read" }', lambda a: a.service_read("web2"), True),
    ('node_prefix "" { policy = "read" }', lambda a: a.node_read("n1"), True),
    ('node_prefix "" { policy = "read" }', lambda a: a.node_write("n1"), False),
    ('agent "n1" { policy = "write" }', lambda a: a.agent_write("n1"), True),
    ('session_prefix "" { policy = "write" }', lambda a: a.session_write("n1"), True),
    ('event_prefix "deploy" { policy = "write" }', lambda a: a.event_write("deploy-web"), True),
    ('query_prefix "" { policy = "read" }', lambda a: a.query_write("q"), False),
    ('operator = "read"', lambda a: a.operator_read(), True),
    ('operator = "read"', lambda a: a.operator_write(), False),
    ('keyring = "write"', lambda a: a.keyring_read(), True),
    ('acl = "read"', lambda a: a.acl_read(), True),
    ('acl = "read"', lambda a: a.acl_write(), False),
    ('acl = "write"', lambda a: a.snapshot(), True),  # Consul: snapshots need acl write
    ('operator = "write"', lambda a: a.snapshot(), False),
    # recursive deletes: write on the prefix and on every rule under it
    ('key_prefix "app/" { policy = "write" }', lambda a: a.key_write_prefix("app/"), True),
    ('key_prefix "app/" { policy = "write" }\nkey "app/keep" { policy = "read" }',
     lambda a: a.key_write_prefix("app/"), False),
    ('key_prefix "app/" { policy = "write" }', lambda a: a.key_write_prefix(""), False),
    # listings need read unless the list policy is on
    ('key_prefix "app/" { policy = "read" }', lambda a: a.key_list("app/"), True),
]


@pytest.mark.parametrize(("text", "question", "expected"), CASES)
def test_policy_authorizer_decisions(text: str, question: object, expected: bool) -> None:
    assert question(authz(text)) is expected  # type: ignore[operator]


def test_key_list_policy() -> None:
    a = authz('key_prefix "app/" { policy = "read" }\nkey_prefix "pub/" { policy = "list" }', key_list=True)
    assert not a.key_list("app/") and a.key_read("app/x")
    assert a.key_list("pub/") and a.key_read("pub/x") and not a.key_write("pub/x")


def test_merged_policies_deny_wins_else_the_highest() -> None:
    a = authz('key_prefix "app/" { policy = "read" }', 'key_prefix "app/" { policy = "write" }')
    assert a.key_write("app/x")
    a = authz('key_prefix "app/" { policy = "write" }', 'key_prefix "app/" { policy = "deny" }')
    assert not a.key_read("app/x")
    a = authz('operator = "write"', 'operator = "deny"')
    assert not a.operator_read()
    assert merge_access(None, "read") == "read" and merge_access("list", "read") == "list"


def test_undecided_questions_go_to_the_default_policy() -> None:
    a = authz('key_prefix "app/" { policy = "deny" }', parent=DEFAULT_ALLOW)
    assert not a.key_read("app/x") and a.key_write("other") and a.service_write("web") and a.operator_write()
    assert not a.acl_read() and not a.snapshot()  # default allow never grants ACL management
    assert authz("", parent=MANAGE_ALL).acl_write()
    d = authz("")
    assert not any((d.key_read("x"), d.node_read("n"), d.keyring_read(), d.acl_read()))


def test_global_management_rules_grant_everything() -> None:
    a = authz(rules.GLOBAL_MANAGEMENT_RULES)
    assert a.acl_write() and a.snapshot() and a.keyring_write() and a.operator_write()
    assert a.key_write_prefix("") and a.service_write("x") and a.node_write("n") and a.agent_write("n")
    assert a.session_write("n") and a.event_write("e") and a.query_write("q")


names = st.text(alphabet="ab/", max_size=5)


@given(st.dictionaries(names, st.sampled_from(["read", "write", "deny"]), max_size=5),
       st.dictionaries(names, st.sampled_from(["read", "write", "deny"]), max_size=3), names)
def test_decision_matches_a_direct_reading_of_the_rules(prefixes: dict[str, str], exact: dict[str, str],
                                                        key: str) -> None:
    doc = {"key_prefix": {k: {"policy": v} for k, v in prefixes.items()},
           "key": {k: {"policy": v} for k, v in exact.items()}}
    a = authz(json.dumps(doc))
    if key in exact:
        rule: str | None = exact[key]
    else:
        matching = [p for p in prefixes if key.startswith(p)]
        rule = prefixes[max(matching, key=len)] if matching else None
    assert a.key_read(key) is (rule in ("read", "write"))
    assert a.key_write(key) is (rule == "write")


def test_readme_limits_rows_match_the_code() -> None:
    from pathlib import Path

    from pyconsul.agent.acl import resolver
    from pyconsul.agent.http import acl as http_acl

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    kib = rules.MAX_RULES_BYTES // 1024
    assert f"| ACL policy `Rules` / a name in a rule | {kib} KiB / {rules.MAX_NAME} B |" in table
    assert (f"policy links per token / `Datacenters` per policy | 128 characters `[A-Za-z0-9_-]` / "
            f"{http_acl.MAX_DESCRIPTION} B / {http_acl.MAX_LINKS} / 64 |") in table
    assert f"compiled authorizers kept by any agent) | {resolver.MAX_CACHED} |" in table
