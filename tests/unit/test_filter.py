"""Consul's ?filter= language (agent/filter): parsing with Consul's error texts, evaluation over the JSON
shapes Consul's endpoints return, the schema check, the RE2 subset, the limits, and two properties
(random input only ever raises FilterError; evaluation never raises)."""

from __future__ import annotations

import inspect
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyconsul.agent.filter as F
from pyconsul.agent.filter import FilterError, compile
from pyconsul.agent.filter.regex import RegexError, compile_go_regex

# ---------------------------------------------------------------- items shaped like Consul 1.7's JSON

REDIS = {"ID": "redis1", "Service": "redis", "Tags": ["primary", "v1"], "Address": "10.0.0.5", "Port": 6379,
         "Meta": {"env": "prod", "version": "7.0", "dotted.key": "x"}, "EnableTagOverride": False,
         "Weights": {"Passing": 10, "Warning": 1}, "TaggedAddresses": {}}
WEB = {"ID": "web1", "Service": "web", "Tags": [], "Address": "", "Port": 8080, "Meta": {"env": "qa"},
       "EnableTagOverride": True, "Weights": {"Passing": 1, "Warning": 1}, "TaggedAddresses": {}}
API = {"ID": "api-internal", "Service": "api-internal", "Tags": ["secondary"], "Address": "10.0.0.7",
       "Port": 9090, "Meta": None, "EnableTagOverride": False, "Weights": {"Passing": 1, "Warning": 1},
       "TaggedAddresses": {"lan": {"Address": "10.0.0.7", "Port": 9090}}}
AGENT_SERVICES = {"redis1": REDIS, "web1": WEB, "api-internal": API}

# /v1/health/service/<s> entries: Node, Service, Checks
HEALTH: list[dict[str, Any]] = [
    {"Node": {"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1", "Meta": {"rack": "r1", "os": "linux"}},
     "Service": {"ID": "web1", "Service": "web", "Tags": ["primary"], "Port": 80, "Meta": {"version": "2"}},
     "Checks": [{"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
                {"CheckID": "service:web1", "Status": "passing", "ServiceTags": ["primary"]}]},
    {"Node": {"Node": "n2", "Address": "10.0.0.2", "Datacenter": "dc1", "Meta": {"rack": "r2"}},
     "Service": {"ID": "web2", "Service": "web", "Tags": ["canary"], "Port": 80, "Meta": {}},
     "Checks": [{"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
                {"CheckID": "service:web2", "Status": "critical", "ServiceTags": ["canary"]}]},
    {"Node": {"Node": "n3", "Address": "10.0.0.3", "Datacenter": "dc1", "Meta": {}},
     "Service": {"ID": "web3", "Service": "web", "Tags": [], "Port": 81, "Meta": {"version": "3"}},
     "Checks": []},
]


def ids(expression: str) -> list[str]:
    return list(compile(expression).apply_values(AGENT_SERVICES))


def nodes(expression: str) -> list[str]:
    return [entry["Node"]["Node"] for entry in compile(expression).apply(HEALTH)]


# ---------------------------------------------------------------- the docs' kinds of examples, rewritten


@pytest.mark.parametrize(("expression", "expected"), [
    ("Service == redis", ["redis1"]),
    ('Service == "redis"', ["redis1"]),
    ("Service == `redis`", ["redis1"]),
    ("Service != redis", ["web1", "api-internal"]),
    ("Meta.env == prod", ["redis1"]),
    ('Meta["env"] == prod', ["redis1"]),
    ('Meta["dotted.key"] == x', ["redis1"]),
    ("Meta.env != prod", ["web1", "api-internal"]),  # a missing key (and a null map) is "not equal"
    ('"primary" in Tags', ["redis1"]),
    ("Tags contains primary", ["redis1"]),
    ('"primary" not in Tags', ["web1", "api-internal"]),
    ("Tags not contains v1", ["web1", "api-internal"]),
    ("Tags is empty", ["web1"]),
    ("Tags is not empty", ["redis1", "api-internal"]),
    ("Meta is empty", ["api-internal"]),
    ('"env" in Meta', ["redis1", "web1"]),
    ('"red" in Service', ["redis1"]),  # substring of a string
    ('Service contains "internal"', ["api-internal"]),
    ("Port == 6379", ["redis1"]),
    ('Port == "0x18EB"', ["redis1"]),  # Go's base-0 integers
    ("Port != 8080", ["redis1", "api-internal"]),
    ("Weights.Passing == 10", ["redis1"]),
    ("EnableTagOverride == true", ["web1"]),
    ("EnableTagOverride == T", ["web1"]),
    ("EnableTagOverride != 1", ["redis1", "api-internal"]),
    ('Service matches "^api-"', ["api-internal"]),
    ('Service not matches "^api-"', ["redis1", "web1"]),
    ("Meta.version matches `^7\\.`", ["redis1"]),
    ("Meta.version not matches `^7\\.`", ["web1", "api-internal"]),
    ('"lan" in TaggedAddresses', ["api-internal"]),
    ("TaggedAddresses.lan.Port == 9090", ["api-internal"]),
    ("Address is empty", ["web1"]),
    ("Service == redis or Service == web", ["redis1", "web1"]),
    ("Service == redis and Port == 6379", ["redis1"]),
    ("not Service == redis", ["web1", "api-internal"]),
    ("(Service == redis or Service == web) and Tags is empty", ["web1"]),
    ("Service==redis", ["redis1"]),
    ("  Service  ==  redis  ", ["redis1"]),
    ("\tService\n==\r\nredis\n", ["redis1"]),
    ("(Service == redis)", ["redis1"]),
    ("( ( Service == redis ) )", ["redis1"]),
    ("Nope == x", []),
    ("Nope != x", ["redis1", "web1", "api-internal"]),
])
def test_agent_services(expression: str, expected: list[str]) -> None:
    assert ids(expression) == expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("Checks.Status == passing", ["n1", "n2"]),  # any check passing
    ("Checks.Status != passing", ["n2"]),  # any check not passing (n3 has no checks: no element)
    ("Checks.Status == critical", ["n2"]),
    ("not Checks.Status == critical", ["n1", "n3"]),
    ('Service.Tags contains "primary" and Checks.Status == passing', ["n1"]),
    ("Node.Meta.rack == r1", ["n1"]),
    ('Node.Meta["rack"] != r1', ["n2", "n3"]),
    ('"os" in Node.Meta', ["n1"]),
    ("Checks is empty", ["n3"]),
    ('"canary" in Checks.ServiceTags', ["n2"]),
    ('Checks.CheckID matches "^service:web[12]$"', ["n1", "n2"]),
    ("Service.Port == 81 or Node.Node == n1", ["n1", "n3"]),
    ("Service.Meta.version == 2", ["n1"]),  # a number literal compared as the string it is
    ("Service.Meta.version is empty", ["n2"]),  # missing key: empty
    ("Service.Meta.version matches `.`", ["n1", "n3"]),  # missing key: no match (see evaluate.py)
    ("Service.Meta.version not matches `.`", ["n2"]),
])
def test_health_entries(expression: str, expected: list[str]) -> None:
    assert nodes(expression) == expected


# ---------------------------------------------------------------- precedence: not > and > or


@pytest.mark.parametrize(("expression", "structure"), [
    ("a == 1 or b == 1 and c == 1", "(a or (b and c))"),
    ("a == 1 and b == 1 or c == 1", "((a and b) or c)"),
    ("a == 1 and not b == 1 or c == 1", "((a and (not b)) or c)"),
    ("not a == 1 and b == 1", "((not a) and b)"),
    ("not (a == 1 and b == 1)", "(not (a and b))"),
    ("not not a == 1", "a"),
    ("a == 1 or b == 1 or c == 1", "(a or (b or c))"),
    ("(a == 1 or b == 1) and c == 1", "((a or b) and c)"),
])
def test_precedence(expression: str, structure: str) -> None:
    def show(node: Any) -> str:
        name = type(node).__name__
        if name == "MatchExpr":
            return str(node.selector[0])
        if name == "NotExpr":
            return f"(not {show(node.operand)})"
        word = "and" if name == "AndExpr" else "or"
        return f"({show(node.left)} {word} {show(node.right)})"

    assert show(compile(expression)._ast) == structure


@pytest.mark.parametrize(("a", "b", "c"), [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)])
def test_precedence_truth_table(a: int, b: int, c: int) -> None:
    item = {"a": a, "b": b, "c": c}
    assert compile("a == 1 and not b == 1 or c == 1").evaluate(item) == ((a and not b) or bool(c))
    assert compile("a == 1 or b == 1 and c == 1").evaluate(item) == (bool(a) or (b and c))


# ---------------------------------------------------------------- quoting and escapes


@pytest.mark.parametrize(("literal", "value"), [
    ('"a b"', "a b"),
    ('"tab\\there"', "tab\there"),
    ('"nl\\n"', "nl\n"),
    ('"\\u00e9t\\u00e9"', "été"),
    ('"\\xc3\\xa9"', "é"),  # \x is a byte, as in Go: these two bytes are UTF-8 for é
    ('"\\101"', "A"),  # octal
    ('"back\\\\slash"', "back\\slash"),
    ("`raw\\n`", "raw\\n"),  # raw: no escapes
    ("`with \"quotes\"`", 'with "quotes"'),
    ("\"single ' quote\"", "single ' quote"),
    ("`a\r\nb`", "a\nb"),  # a raw string drops carriage returns
    ("-1.5", "-1.5"),
    ("foo.bar", "foo.bar"),  # a bare selector's parts joined by "."
    ('foo["b-c"]', "foo.b-c"),
])
def test_values(literal: str, value: str) -> None:
    assert compile(f"x == {literal}").evaluate({"x": value})
    assert not compile(f"x == {literal}").evaluate({"x": value + "?"})


# ---------------------------------------------------------------- errors: Consul's texts and positions


@pytest.mark.parametrize(("expression", "message", "position"), [
    # the two texts below are what Consul 1.7 answered (hashicorp/consul issues 7338 and 9441)
    ("foo", '1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \\t\\r\\n] or [a-zA-Z0-9_]', 3),
    ("Address == 10.10.10.10 ", '1:17 (16): rule "number": Invalid number literal', 16),
    ("a == 1 and (b == 2", '1:19 (18): rule "grouping": Unmatched parentheses', 18),
    ('Name == "abc', '1:13 (12): rule "string": Unterminated string literal', 12),
    ("Name == `abc", '1:13 (12): rule "string": Unterminated string literal', 12),
    ('x["a" == 1', '1:7 (6): rule "index": Unclosed index expression', 6),
    ("x[1] == 1", '1:3 (2): rule "index": Invalid index', 2),
    ('a == "\\q"', '1:6 (5): rule "string": invalid syntax', 5),
    ('a == "x\\"', '1:6 (5): rule "string": invalid syntax', 5),  # no \" inside "...": the string ends there
    ('"x" in 12', '1:8 (7): rule "match": Invalid selector', 7),
    ("a == 01", '1:7 (6): rule "number": Invalid number literal', 6),
    ("a == 1\nb", '2:1 (7): no match found, expected: "and", "or", [ \\t\\r\\n] or EOF', 7),
    ("é == 1", '0:0 (0): no match found, expected: "(", "-", "0", "\\"", "`", "not", [ \\t\\r\\n], [1-9] '
     "or [a-zA-Z]", 0),
    ("Name == é", '1:9 (8): no match found, expected: "-", "0", "\\"", "`", [ \\t\\r\\n], [1-9] or [a-zA-Z]', 8),
    ("Name == \"é\" or", '1:15 (15): no match found, expected: [ \\t\\r\\n]', 14),  # Go's offset counts bytes
    ("a == 1 b", '1:8 (7): no match found, expected: "and", "or", [ \\t\\r\\n] or EOF', 7),
    ("a == 1 and", '1:11 (10): no match found, expected: [ \\t\\r\\n]', 10),
    ("a ==", '1:5 (4): no match found, expected: "-", "0", "\\"", "`", [ \\t\\r\\n], [1-9] or [a-zA-Z]', 4),
    ("a is", '1:5 (4): no match found, expected: [ \\t\\r\\n]', 4),
    ("(a == 1))", '1:9 (8): no match found, expected: [ \\t\\r\\n] or EOF', 8),
])
def test_parse_errors(expression: str, message: str, position: int) -> None:
    with pytest.raises(FilterError) as info:
        compile(expression)
    assert info.value.message == message
    assert info.value.position == position
    assert info.value.consul_message == "Failed to create boolean expression evaluator: " + message


def test_empty_expression_keeps_everything() -> None:
    assert compile("").apply([1, {"a": 1}, None]) == [1, {"a": 1}, None]
    with pytest.raises(FilterError):
        compile(" ")  # whitespace is not empty: go-bexpr parses it and fails


# ---------------------------------------------------------------- the schema (go-bexpr's reflected types)

AGENT_SERVICE_FIELDS: dict[str, Any] = {
    "ID": str, "Service": str, "Tags": [str], "Address": str, "Port": int, "Meta": {"*": str},
    "EnableTagOverride": bool, "Weights": {"Passing": int, "Warning": int},
    "TaggedAddresses": {"*": {"Address": str, "Port": int}},
}
HEALTH_FIELDS: dict[str, Any] = {
    "Node": {"Node": str, "Address": str, "Datacenter": str, "Meta": {"*": str}},
    "Service": {"ID": str, "Service": str, "Tags": [str], "Port": int, "Meta": {"*": str}},
    "Checks": [{"CheckID": str, "Status": str, "ServiceTags": [str]}],
}


@pytest.mark.parametrize("expression", [
    "Service == redis", "Meta.anything == x", 'Meta["a-b"] != x', "Tags contains x", "Tags is empty",
    '"k" in Meta', "Port == 80", "EnableTagOverride == false", "Weights.Passing != 1",
    "TaggedAddresses.lan.Port == 1", 'Service matches "x"', "Meta is not empty",
])
def test_schema_accepts(expression: str) -> None:
    compile(expression, fields=AGENT_SERVICE_FIELDS)


@pytest.mark.parametrize(("expression", "fields", "message"), [
    ("Foo == x", AGENT_SERVICE_FIELDS, 'Selector "Foo" is not valid'),
    ("Weights.Critical == 1", AGENT_SERVICE_FIELDS, 'Selector "Weights.Critical" is not valid'),
    ("Service.Foo == x", AGENT_SERVICE_FIELDS, 'Selector "Service.Foo" is not valid'),
    ("Tags == x", AGENT_SERVICE_FIELDS, 'Invalid match operator "Equal" for selector "Tags"'),
    ("Port is empty", AGENT_SERVICE_FIELDS, 'Invalid match operator "Is Empty" for selector "Port"'),
    ("Weights == x", AGENT_SERVICE_FIELDS, 'Invalid match operator "Equal" for selector "Weights"'),
    ('Port matches "1"', AGENT_SERVICE_FIELDS, 'Invalid match operator "Matches" for selector "Port"'),
    ("Port == abc", AGENT_SERVICE_FIELDS,
     'Failed to coerce value "abc" for selector "Port": strconv.ParseInt: parsing "abc": invalid syntax'),
    ("Port == 99999999999999999999", AGENT_SERVICE_FIELDS, 'Failed to coerce value "99999999999999999999" '
     'for selector "Port": strconv.ParseInt: parsing "99999999999999999999": value out of range'),
    ("EnableTagOverride == yes", AGENT_SERVICE_FIELDS, 'Failed to coerce value "yes" for selector '
     '"EnableTagOverride": strconv.ParseBool: parsing "yes": invalid syntax'),
    ("Checks == x", HEALTH_FIELDS, 'Invalid match operator "Equal" for selector "Checks"'),
    ("Checks.Output == x", HEALTH_FIELDS, 'Selector "Checks.Output" is not valid'),
])
def test_schema_refuses(expression: str, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile(expression, fields=fields)
    assert info.value.message == message
    assert info.value.position == 0
    compile(expression)  # without a schema the same filter is accepted (and simply does not match)


def test_schema_position_is_the_match() -> None:
    with pytest.raises(FilterError) as info:
        compile("Service == a and Nope == b", fields=AGENT_SERVICE_FIELDS)
    assert info.value.position == 17


def test_schema_health() -> None:
    f = compile("Checks.Status == passing and Node.Meta.rack != r2", fields=HEALTH_FIELDS)
    assert [entry["Node"]["Node"] for entry in f.apply(HEALTH)] == ["n1"]


# ---------------------------------------------------------------- regular expressions: RE2's subset


@pytest.mark.parametrize(("pattern", "text", "found"), [
    ("^web-[0-9]+$", "web-12", True),
    ("^web-[0-9]+$", "web-12\n", False),  # RE2's $ is the end of the text; Python's allows a final \n
    ("(?m)^b$", "a\nb\nc", True),
    ("(?i)WEB", "web", True),
    ("a(?i)b|c", "C", True),  # the flag holds for the rest of the group, across the |
    ("a(?i)b|c", "aB", True),
    ("a(?i)b|c", "AB", False),
    ("\\d+\\z", "abc123", True),
    ("\\d", "\u0663", False),  # \d is ASCII-only in RE2
    ("[[:alpha:]]+$", "abc", True),
    ("x{,3}", "x{,3}", True),  # not a valid repeat in RE2: literal text
    ("\\Qa.b\\E", "a.b", True),
    ("\\Qa.b\\E", "axb", False),
    ("\\x{263a}", "\u263a", True),
    ("\\101", "A", True),
    ("(?P<n>a)b", "ab", True),
    ("(?U)a+", "aaa", True),
    ("[]a]", "]", True),
    ("(a*)?b", "b", True),
])
def test_regex_translation(pattern: str, text: str, found: bool) -> None:
    assert (compile_go_regex(pattern).search(text) is not None) == found


@pytest.mark.parametrize(("pattern", "message"), [
    ("(?=a)", "invalid or unsupported Perl syntax: `(?=`"),
    ("(?!a)", "invalid or unsupported Perl syntax: `(?!`"),
    ("(?<=a)b", "invalid or unsupported Perl syntax: `(?<`"),
    ("(a)\\1", "invalid escape sequence: `\\1`"),
    ("(?P<n>a)(?P=n)", "invalid or unsupported Perl syntax: `(?P`"),
    ("(?>a)", "invalid or unsupported Perl syntax: `(?>`"),
    ("(?(1)a|b)", "invalid or unsupported Perl syntax: `(?(`"),
    ("(?#note)", "invalid or unsupported Perl syntax: `(?#`"),
    ("(?x)a", "invalid or unsupported Perl syntax: `(?x`"),
    ("a++", "invalid nested repetition operator: `++`"),
    ("a**", "invalid nested repetition operator: `**`"),
    ("*a", "missing argument to repetition operator: `*`"),
    ("a{1001}", "invalid repeat count: `{1001}`"),
    ("a{3,2}", "invalid repeat count: `{3,2}`"),
    ("[z-a]", "invalid character class range: `z-a`"),
    ("[a", "missing closing ]: `[a`"),
    ("(a", "missing closing ): `(a`"),
    ("a)", "unexpected ): `a)`"),
    ("\\Z", "invalid escape sequence: `\\Z`"),
    ("\\", "trailing backslash at end of expression: ``"),
    ("(a+)+$", "nested unbounded repetition is not supported by pyconsul: `(a+)+`"),
    ("(x+y)*", "nested unbounded repetition is not supported by pyconsul: `(x+y)*`"),
    ("((?:a*)b){2,}?", "nested unbounded repetition is not supported by pyconsul: `((?:a*)b){2,}?`"),
    ("\\pL", "Unicode classes (\\p) are not supported by pyconsul: `\\p`"),
])
def test_regex_refused(pattern: str, message: str) -> None:
    with pytest.raises(RegexError) as info:
        compile_go_regex(pattern)
    assert str(info.value) == "error parsing regexp: " + message


def test_regex_error_through_compile() -> None:
    with pytest.raises(FilterError) as info:
        compile('Service matches "(?=x)"')
    assert info.value.message == ('Failed to compile regular expression "(?=x)": error parsing regexp: '
                                  "invalid or unsupported Perl syntax: `(?=`")
    assert info.value.position == 0


def test_regex_compiled_once() -> None:
    f = compile('Service matches "^r"')
    (match,) = f._compiled.values()
    pattern = match.regex
    assert f.apply(list(AGENT_SERVICES.values())) == [REDIS]
    assert match.regex is pattern


# ---------------------------------------------------------------- limits


def test_length_limit() -> None:
    long = "a == " + '"' + "x" * F.MAX_EXPRESSION_LENGTH + '"'
    with pytest.raises(FilterError, match="exceeds the limit"):
        compile(long)


def test_pattern_length_limit() -> None:
    with pytest.raises(FilterError, match="longer than 512"):
        compile("a matches `" + "x" * 513 + "`")
    compile("a matches `" + "x" * 512 + "`")


def test_nesting_limit() -> None:
    depth = F.MAX_NESTING
    compile("(" * depth + "a == 1" + ")" * depth)
    with pytest.raises(FilterError, match="Nesting") as info:
        compile("(" * (depth + 1) + "a == 1" + ")" * (depth + 1))
    assert info.value.position == depth
    compile('a == "((((((((((((((((((((((((("')  # parentheses inside strings do not count


def test_match_limit() -> None:
    compile(" and ".join(["a == 1"] * F.MAX_MATCHES))
    with pytest.raises(FilterError, match=r"Number of match expressions \(33\) exceeds the limit \(32\)"):
        compile(" and ".join(["a == 1"] * (F.MAX_MATCHES + 1)))
    with pytest.raises(FilterError, match="and/or/not"):
        compile("not " * (2 * F.MAX_MATCHES + 1) + "a == 1")


WORST_CASES = [
    "(" * F.MAX_NESTING + "not " * (2 * F.MAX_MATCHES) + "a == 1" + ")" * F.MAX_NESTING,
    "(" * F.MAX_NESTING + " and ".join(["a == 1"] * (2 * F.MAX_MATCHES + 1)) + ")" * F.MAX_NESTING,
    "(" * F.MAX_NESTING + " or ".join(["not a == 1"] * F.MAX_MATCHES) + ")" * F.MAX_NESTING,
]


@pytest.mark.parametrize("expression", WORST_CASES)
def test_parser_recursion_is_bounded(expression: str) -> None:
    """Within the limits, the parser needs fewer than 600 frames (the module docstring says ~550)."""
    here = len(inspect.stack(0))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(here + 600)
    try:
        try:
            compile(expression)
        except FilterError as err:
            assert "Number of match expressions" in err.message
    finally:
        sys.setrecursionlimit(old)


def test_parse_time_is_linear_in_nesting() -> None:
    """go-bexpr re-parses each group several times (exponential in depth); the memo makes it linear:
    the number of rule attempts grows in proportion to the depth."""
    from pyconsul.agent.filter import grammar, peg

    def attempts(depth: int) -> int:
        st = peg.State("(" * depth + "a == 1" + ")" * depth)
        grammar.START.match(st)
        return len(st.memo)

    assert attempts(16) < 3 * attempts(8)


# ---------------------------------------------------------------- properties

TOKENS = ["a", "b.c", "Tags", "Meta.env", '["k"]', "==", "!=", " in ", " not ", " contains ", " matches ",
          " is ", "empty", " and ", " or ", "not ", "(", ")", '"x"', '"\\', "`r`", "`", "1", "-2.5", "0", " ",
          "\n", "é", "[", "]", "\\", '"(?=a)"', '"a**"', '"[a-"']

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["a", "b", "c", "Tags", "Meta", "env", "k", "x"]), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=14).map("".join) | st.text(max_size=40), json_values)
def test_random_text_only_raises_filter_error(expression: str, item: Any) -> None:
    try:
        f = compile(expression)
    except FilterError as err:
        assert isinstance(err.message, str) and err.message
        assert err.position is None or 0 <= err.position <= len(expression)
        return
    assert isinstance(f.evaluate(item), bool)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([
    "a == 1", "a != x", "Tags contains x", '"k" in Meta', "a.b.c is empty", "a.b is not empty",
    "Meta.env matches `^p`", "not a == true", "x not in a", "b.c == -2.5 or c != 0", "a matches `.`",
    'Meta["env"] not matches "x"', "a == false and not (b is empty or c contains y)",
]), json_values)
def test_evaluation_never_raises(expression: str, item: Any) -> None:
    f = compile(expression)
    result = f.evaluate(item)
    assert isinstance(result, bool)
    assert f.apply([item]) == ([item] if result else [])


# ---------------------------------------------------------------- Consul 1.7's per-endpoint schemas


@pytest.mark.parametrize(("path", "expression"), [
    ("/v1/agent/services", 'Service == web and "primary" in Tags and Meta.env != qa and Port == 80'),
    ("/v1/agent/services", "TaggedAddresses.lan.Address == `10.0.0.1` and Weights.Passing == 1"),
    ("/v1/agent/services", "Proxy.Upstreams.DestinationName == db and Connect.Native == false"),
    ("/v1/agent/checks", "Status == critical and ServiceName matches `^web` and ServiceTags is empty"),
    ("/v1/catalog/nodes", 'Meta.rack == r1 and "wan" in TaggedAddresses and Datacenter == dc1'),
    ("/v1/catalog/service/", "ServiceTags contains primary and NodeMeta.os == linux and ServicePort != 1"),
    ("/v1/catalog/service/", "ServiceWeights.Warning == 1 and ServiceTaggedAddresses.wan.Port == 80"),
    ("/v1/catalog/node/", "Service == web and EnableTagOverride == true"),
    ("/v1/health/state/", "Node == n1 and CheckID == serfHealth and Type == ttl"),
    ("/v1/health/service/", "Checks.Status == passing and Node.Meta.rack == r1 and Service.Tags is not empty"),
])
def test_endpoint_schemas_accept(path: str, expression: str) -> None:
    from pyconsul.agent.filter.schemas import ENDPOINT_FIELDS

    compile(expression, fields=ENDPOINT_FIELDS[path])


@pytest.mark.parametrize(("path", "expression", "message"), [
    ("/v1/agent/services", "Name == web", 'Selector "Name" is not valid'),
    ("/v1/agent/services", "Tags == web", 'Invalid match operator "Equal" for selector "Tags"'),
    ("/v1/health/service/", "Checks.Foo == x", 'Selector "Checks.Foo" is not valid'),
    ("/v1/health/service/", "Node.Meta == x", 'Invalid match operator "Equal" for selector "Node.Meta"'),
    ("/v1/catalog/service/", "ServicePort == http",
     'Failed to coerce value "http" for selector "ServicePort": strconv.ParseInt: parsing "http": invalid syntax'),
])
def test_endpoint_schemas_refuse(path: str, expression: str, message: str) -> None:
    from pyconsul.agent.filter.schemas import ENDPOINT_FIELDS

    with pytest.raises(FilterError) as info:
        compile(expression, fields=ENDPOINT_FIELDS[path])
    assert info.value.message == message


REGEX_TOKENS = ["a", "b", ".", "*", "+", "?", "{2}", "{1,3}", "{,2}", "{2,}", "(", ")", "(?:", "(?i)", "(?-s:",
                "(?P<n>", "(?=", "|", "^", "$", "[", "]", "[^", "-", "[:alpha:]", "\\", "\\d", "\\b", "\\z", "\\Q",
                "\\E", "\\x{41}", "\\101", "\\1", "\\p", "é", "\n"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(REGEX_TOKENS), max_size=12).map("".join) | st.text(max_size=20), st.text(max_size=12))
def test_random_patterns_compile_or_refuse(pattern: str, subject: str) -> None:
    try:
        compiled = compile_go_regex(pattern)
    except RegexError as err:
        assert str(err).startswith("error parsing regexp: ")
        return
    compiled.search(subject)  # a pattern that compiled can be run


LEAVES = ["a == 1", "a != x", "Tags contains x", '"k" in Meta', "Meta.env is empty", "b.c is not empty",
          "Meta.env matches `^p`", "a == true", "x not in Tags", "b.c == -2.5", "Meta.k not matches `.`"]
Tree = Any
trees: st.SearchStrategy[Tree] = st.recursive(
    st.sampled_from(LEAVES).map(lambda leaf: ("leaf", leaf)),
    lambda children: (st.tuples(st.just("not"), children)
                      | st.tuples(st.sampled_from(["and", "or"]), children, children)),
    max_leaves=8,
)
_PREC = {"or": 1, "and": 2, "not": 3, "leaf": 4}


def render(tree: Tree, need: int = 1) -> str:
    """Print with as few parentheses as the grammar allows (or < and < not; both binary ones right-recursive)."""
    kind = tree[0]
    if kind == "leaf":
        text = tree[1]
    elif kind == "not":
        text = "not " + render(tree[1], 3)
    elif kind == "and":
        text = render(tree[1], 3) + " and " + render(tree[2], 2)
    else:
        text = render(tree[1], 2) + " or " + render(tree[2], 1)
    return f"({text})" if _PREC[kind] < need else text


def oracle(tree: Tree, item: Any) -> bool:
    kind = tree[0]
    if kind == "leaf":
        return compile(tree[1]).evaluate(item)
    if kind == "not":
        return not oracle(tree[1], item)
    if kind == "and":
        return oracle(tree[1], item) and oracle(tree[2], item)
    return oracle(tree[1], item) or oracle(tree[2], item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees, json_values)
def test_composition_and_precedence(tree: Tree, item: Any) -> None:
    """Any tree printed with minimal parentheses parses back to the same boolean function."""
    assert compile(render(tree)).evaluate(item) == oracle(tree, item)
