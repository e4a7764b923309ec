"""Consul's `?filter=` expression language (go-bexpr v0.1.2, as Consul 1.7 uses it), as a pure core.

    f = compile('Service.Tags contains "web" and Checks.Status == passing')
    f.apply(items)            # the items (JSON-shaped mappings) the expression holds for, in order
    f.apply_values(services)  # a dict result (/v1/agent/services): keep the entries whose value matches
    f.evaluate(item)          # one item -> bool; never raises

Language: `==`, `!=`, `in`, `not in`, `contains`, `not contains`, `is empty`, `is not empty`,
`matches`, `not matches` (RE2 syntax, see regex.py), `and`, `or`, `not` and parentheses, with
`not` binding tighter than `and`, and `and` tighter than `or`. Selectors are dotted paths over the
item's JSON field names (`Service.Tags`, `Node.Meta.rack`, `ServiceMeta["dotted.key"]`); values are
bare words, numbers, "double-quoted" (Go escapes) or `backtick` (raw) strings. The grammar is in
grammar.py, the semantics (lists match if any element does; a missing map key) in evaluate.py.

Errors: compile() raises FilterError(message, position). A parse error's message is the text
Consul 1.7 gives, position included ("1:4 (3): no match found, expected: ..."), and `position` is its
character offset; FilterError.consul_message adds Consul's prefix "Failed to create boolean
expression evaluator: ". (Consul 1.7 answers such a request with 500; issue 12 asks for 400.)
Given a `fields` schema (see evaluate.py), selectors, operators and values are checked up front with
go-bexpr's messages ('Selector "Service.Foo" is not valid'); `position` is then the match's offset.

Limits (each refused with a FilterError, so a request cannot make the server parse or evaluate
without bound):
- MAX_EXPRESSION_LENGTH: 4096 characters in the expression;
- MAX_NESTING: 16 levels of parentheses;
- MAX_MATCHES: 32 match expressions (go-bexpr's own intended default), and at most 2 * MAX_MATCHES
  `and`/`or`/`not` keywords. The parser recurses; these two bound its depth to about 550 frames
  (measured in tests/unit/test_filter.py), well inside Python's default limit of 1000 even when
  called from deep in a request handler;
- regex.MAX_PATTERN_LENGTH: 512 characters in a `matches` pattern, compiled once per filter, with the
  constructs RE2 lacks refused and nested unbounded repetition refused (regex.py says why).
Parsing is linear in the expression (memoised), evaluation linear in the item's size.

Pure: no I/O, no clock; the HTTP layer reads the query parameter and turns errors into responses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pyconsul.agent.filter import evaluate as _evaluation  # (the name `evaluate` stays the submodule)
from pyconsul.agent.filter import grammar
from pyconsul.agent.filter.evaluate import CompiledMatch, SchemaError, match_nodes, validate
from pyconsul.agent.filter.grammar import Expr, Op
from pyconsul.agent.filter.peg import go_quote
from pyconsul.agent.filter.regex import MAX_PATTERN_LENGTH, RegexError, compile_go_regex

__all__ = [
    "CONSUL_ERROR_PREFIX", "MAX_EXPRESSION_LENGTH", "MAX_MATCHES", "MAX_NESTING", "MAX_PATTERN_LENGTH",
    "Filter", "FilterError", "compile",
]

MAX_EXPRESSION_LENGTH = 4096
MAX_NESTING = 16
MAX_MATCHES = 32
CONSUL_ERROR_PREFIX = "Failed to create boolean expression evaluator: "

T = TypeVar("T")
K = TypeVar("K")


class FilterError(ValueError):
    """A filter that cannot be used: `message` (Consul's text) and `position` (character offset or None)."""

    def __init__(self, message: str, position: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    @property
    def consul_message(self) -> str:
        return CONSUL_ERROR_PREFIX + self.message


class Filter:
    """A compiled filter. The empty expression gives a filter that keeps everything (as go-bexpr's nil filter)."""

    __slots__ = ("_ast", "_compiled", "expression")

    def __init__(self, expression: str, ast: Expr | None, compiled: dict[int, CompiledMatch]) -> None:
        self.expression = expression
        self._ast = ast
        self._compiled = compiled

    def evaluate(self, item: Any) -> bool:
        if self._ast is None:
            return True
        return _evaluation.evaluate(self._ast, item, self._compiled)

    def apply(self, items: Iterable[T]) -> list[T]:
        return [item for item in items if self.evaluate(item)]

    def apply_values(self, items: Mapping[K, T]) -> dict[K, T]:
        return {key: value for key, value in items.items() if self.evaluate(value)}

    def __repr__(self) -> str:
        return f"Filter({self.expression!r})"


def _prescan(expression: str) -> None:
    """Bound nesting and keyword count before the (recursive) parser sees the text."""
    depth = 0
    keywords = 0
    i = 0
    n = len(expression)
    while i < n:
        ch = expression[i]
        if ch in "\"`":
            end = expression.find(ch, i + 1)
            i = n if end < 0 else end + 1
            continue
        if ch == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise FilterError(f"Nesting of parentheses exceeds the limit ({MAX_NESTING})", i)
        elif ch == ")":
            depth -= 1
        elif ch.isascii() and (ch.isalnum() or ch == "_"):
            start = i
            while i < n and expression[i].isascii() and (expression[i].isalnum() or expression[i] == "_"):
                i += 1
            if expression[start:i] in ("and", "or", "not"):
                keywords += 1
                if keywords > 2 * MAX_MATCHES:
                    raise FilterError(f"Number of and/or/not operators exceeds the limit ({2 * MAX_MATCHES})",
                                      start)
            continue
        i += 1


def compile(expression: str, fields: Mapping[str, Any] | None = None) -> Filter:
    """Parse (and, with `fields`, validate) a filter expression; FilterError if it cannot be used."""
    if expression == "":
        return Filter(expression, None, {})
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise FilterError(f"Filter expression of length {len(expression)} exceeds the limit "
                          f"({MAX_EXPRESSION_LENGTH})", MAX_EXPRESSION_LENGTH)
    bad = next((i for i, ch in enumerate(expression) if 0xD800 <= ord(ch) <= 0xDFFF), None)
    if bad is not None:
        raise FilterError("invalid encoding", bad)
    _prescan(expression)
    try:
        ast, failure = grammar.parse(expression)
    except RecursionError:  # not reachable within the limits above; never let it escape
        raise FilterError("Filter expression is nested too deeply", None) from None
    if failure is not None:
        raise FilterError(failure.message, failure.offset)
    assert ast is not None
    matches = match_nodes(ast)
    if len(matches) > MAX_MATCHES:
        raise FilterError(f"Number of match expressions ({len(matches)}) exceeds the limit ({MAX_MATCHES})", None)
    compiled: dict[int, CompiledMatch] = {}
    for match in matches:
        if fields is not None:
            try:
                validate(match, fields)
            except SchemaError as err:
                raise FilterError(str(err), err.offset) from None
        regex = None
        if match.op in (Op.MATCHES, Op.NOT_MATCHES):
            assert match.value is not None
            try:
                regex = compile_go_regex(match.value.raw)
            except RegexError as err:
                raise FilterError(f"Failed to compile regular expression {go_quote(match.value.raw)}: {err}",
                                  match.offset) from None
        compiled[match.offset] = CompiledMatch(match, regex)
    return Filter(expression, ast, compiled)
