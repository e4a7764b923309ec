"""Evaluating a parsed filter against JSON-shaped items, and checking it against an optional schema.

Semantics (go-bexpr v0.1.2 over Consul's Go types, transposed to the JSON those types encode to):

- A selector walks the item: a mapping is indexed by the next part (struct fields and map keys alike);
  a list is walked element by element with the *same* remaining selector, and the match holds if it
  holds for ANY element (`Checks.Status == passing`: some check is passing; `Checks.Status != passing`:
  some check is not passing; an empty list matches nothing). Nested lists are flattened.
- At the end of the selector the operator applies to the value found:
  string: ==, != (exact), in / contains (substring), matches (RE2 search, unanchored);
  bool, integer, float: ==, != after coercing the raw value with Go's strconv rules
  (`Port == 8080`, `Port == "0x1F90"`, `EnableTagOverride == true`);
  list: in / contains (some element equals the value, coerced to that element's type), is (not) empty;
  mapping: in / contains (has the key), is (not) empty.
- A missing map key (`ServiceMeta.env` on a service without `env`) makes ==, in, matches and
  is not empty false, and their negations (!=, not in, not matches, is empty) true. (Consul 1.7's
  go-bexpr also made `matches` true there, a bug fixed in go-bexpr 0.1.12; we follow the fix.)
- An operator met with a value it does not apply to (null, a number under `contains`, a nested field
  under a string, a list under `==`) is false and its negation true. With a schema such filters are
  refused up front instead, with go-bexpr's messages; without one they simply do not match.
  Evaluation never raises, whatever the item holds.

A schema is a nested mapping: field name -> `str` | `int` | `float` | `bool` | [element type] |
{"*": value type} (a map with string keys) | {field: type, ...} (an object). It makes unknown
selectors (`Selector "Service.Foo" is not valid`), operators a field does not support and values that
do not coerce compile errors, exactly as go-bexpr does with the reflected Go type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyconsul.agent.filter.coerce import parse_bool, parse_float, parse_int
from pyconsul.agent.filter.grammar import POSITIVE, AndExpr, Expr, MatchExpr, NotExpr, Op, OrExpr

MAX_LIST_NESTING = 32  # lists inside lists walked before giving up (False)

_STRING_OPS = (Op.EQUAL, Op.NOT_EQUAL, Op.IN, Op.NOT_IN, Op.MATCHES, Op.NOT_MATCHES)
_SCALAR_OPS = (Op.EQUAL, Op.NOT_EQUAL)
_PRIMITIVE_LIST_OPS = (Op.IN, Op.NOT_IN, Op.IS_EMPTY, Op.IS_NOT_EMPTY)
_MAP_OPS = (Op.IS_EMPTY, Op.IS_NOT_EMPTY, Op.IN, Op.NOT_IN)
_EMPTY_OPS = (Op.IS_EMPTY, Op.IS_NOT_EMPTY)
_COERCERS: dict[type, tuple[str, Callable[[str], Any]]] = {
    bool: ("ParseBool", parse_bool), int: ("ParseInt", parse_int), float: ("ParseFloat", parse_float),
    str: ("", str),
}


class SchemaError(ValueError):
    """A compile-time refusal against the schema: go-bexpr's message, and the match's offset."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass
class _FieldConfig:
    ops: tuple[Op, ...]
    coerce: type | None
    sub: dict[str, Any]  # name (or "*") -> schema type, expanded lazily


def _config(kind: Any) -> _FieldConfig:
    if kind in (str, int, float, bool):
        return _FieldConfig(_STRING_OPS if kind is str else _SCALAR_OPS, kind, {})
    if isinstance(kind, list) and len(kind) == 1:
        elem = kind[0]
        if elem in (str, int, float, bool):
            return _FieldConfig(_PRIMITIVE_LIST_OPS, elem, {})
        return _FieldConfig(_EMPTY_OPS, None, _config(elem).sub)
    if isinstance(kind, Mapping):
        if set(kind) == {"*"}:
            return _FieldConfig(_MAP_OPS, str, {"*": kind["*"]})
        return _FieldConfig((), None, dict(kind))
    raise TypeError(f"not a filter schema type: {kind!r}")


def validate(match: MatchExpr, schema: Mapping[str, Any]) -> None:
    """Check one match expression against the schema (SchemaError with go-bexpr's text)."""
    sub: Mapping[str, Any] = schema
    config: _FieldConfig | None = None
    for idx, part in enumerate(match.selector):
        if part in sub:
            config = _config(sub[part])
        elif "*" in sub:
            config = _config(sub["*"])
        else:
            shown = ".".join(match.selector[:idx + 1])
            raise SchemaError(f'Selector "{shown}" is not valid', match.offset)
        sub = config.sub
    assert config is not None  # a selector has at least one part
    if match.op not in config.ops:
        raise SchemaError(f'Invalid match operator "{match.op.value}" for selector "{match.selector_text}"',
                          match.offset)
    if match.value is not None and config.coerce is not None:
        try:
            _COERCERS[config.coerce][1](match.value.raw)
        except ValueError as err:
            raise SchemaError(f'Failed to coerce value "{match.value.raw}" for selector '
                              f'"{match.selector_text}": {err}', match.offset) from None


# ---------------------------------------------------------------- evaluation

_FAILED = object()


@dataclass
class CompiledMatch:
    expr: MatchExpr
    regex: re.Pattern[str] | None
    positive: Op = field(init=False)
    negate: bool = field(init=False)
    coerced: dict[type, Any] = field(default_factory=dict)  # runtime type -> coerced raw value (or _FAILED)

    def __post_init__(self) -> None:
        self.positive = POSITIVE.get(self.expr.op, self.expr.op)
        self.negate = self.expr.op in POSITIVE

    def raw_as(self, kind: type) -> Any:
        """The raw value coerced to `kind` (bool, int, float or str), or _FAILED; cached."""
        hit = self.coerced.get(kind, None)
        if hit is None:
            assert self.expr.value is not None
            try:
                hit = _COERCERS[kind][1](self.expr.value.raw)
            except ValueError:
                hit = _FAILED
            self.coerced[kind] = hit
        return hit


def _scalar_type(value: Any) -> type | None:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    return None


def _equal(m: CompiledMatch, value: Any) -> bool:
    kind = _scalar_type(value)
    if kind is None:
        return False
    raw = m.raw_as(kind)
    return raw is not _FAILED and bool(raw == value)


def _positive(m: CompiledMatch, value: Any) -> bool:
    op = m.positive
    if op is Op.IS_NOT_EMPTY:
        return isinstance(value, (str, list, tuple, Mapping)) and len(value) > 0
    if op is Op.EQUAL:
        return _equal(m, value)
    if op is Op.IN:
        assert m.expr.value is not None
        if isinstance(value, str):
            return m.expr.value.raw in value
        if isinstance(value, Mapping):
            return m.expr.value.raw in value
        if isinstance(value, (list, tuple)):
            return any(_equal(m, element) for element in value)
        return False
    if op is Op.MATCHES:
        return isinstance(value, str) and m.regex is not None and m.regex.search(value) is not None
    return False


def _walk(m: CompiledMatch, value: Any, depth: int, nesting: int) -> bool:
    selector = m.expr.selector
    if depth == len(selector):
        return _positive(m, value) != m.negate
    if isinstance(value, Mapping):
        key = selector[depth]
        if key not in value:
            return m.negate
        return _walk(m, value[key], depth + 1, nesting)
    if isinstance(value, (list, tuple)):
        if nesting >= MAX_LIST_NESTING:
            return False
        return any(_walk(m, element, depth, nesting + 1) for element in value)
    return m.negate  # null, or a scalar where the selector goes on: nothing there


def evaluate(node: Expr, item: Any, compiled: Mapping[int, CompiledMatch]) -> bool:
    if isinstance(node, MatchExpr):
        return _walk(compiled[node.offset], item, 0, 0)
    if isinstance(node, NotExpr):
        return not evaluate(node.operand, item, compiled)
    if isinstance(node, AndExpr):
        return evaluate(node.left, item, compiled) and evaluate(node.right, item, compiled)
    if isinstance(node, OrExpr):
        return evaluate(node.left, item, compiled) or evaluate(node.right, item, compiled)
    raise TypeError(f"not a filter expression node: {node!r}")


def match_nodes(node: Expr) -> Sequence[MatchExpr]:
    """The match expressions of a tree, left to right (iterative: no recursion limit to meet)."""
    out: list[MatchExpr] = []
    stack: list[Expr] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, MatchExpr):
            out.append(current)
        elif isinstance(current, NotExpr):
            stack.append(current.operand)
        else:
            stack += [current.right, current.left]
    return out
