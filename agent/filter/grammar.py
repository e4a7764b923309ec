"""The grammar of Consul's filter expressions (go-bexpr v0.1.2, the version Consul 1.7 uses) and its AST.

In words (the PEG, ordered choice, whitespace `_` = one or more of space, tab, CR, LF):

    Input      = _? "(" _? Or _? ")" _? EOF  /  _? Or _? EOF
    Or         = And _ "or" _ Or  /  And                        (right-associative; `not` > `and` > `or`)
    And        = Not _ "and" _ And  /  Not
    Not        = "not" _ Not  /  Group                          (`not not x` is `x`)
    Group      = "(" _? Or _? ")"  /  Match  /  "(" _? Or _? !")"  -> "Unmatched parentheses"
    Match      = Selector Op Value  /  Selector ("is empty" | "is not empty")  /  Value ("in" | "not in") Selector
    Op         = _? "==" _?  |  _? "!=" _?  |  _ "contains" _  |  _ "not contains" _  |  _ "matches" _  |  ...
    Selector   = Ident ("." Ident  /  "[" _? String _? "]")*     Ident = [a-zA-Z] [a-zA-Z0-9_]*
    Value      = Selector (its parts joined by ".")  /  Number  /  String
    Number     = "-"? ("0" / [1-9][0-9]*) ("." [0-9]+)?   followed by whitespace, EOF or ")"
    String     = `raw` (no escapes; CR removed)  /  "double" (Go escapes; ends at the first ")

Keywords need no word boundary after them, exactly as in go-bexpr (so `not` must be followed by
whitespace, but `x == a or(b == c)` does not parse). `contains` is `in` with its operands swapped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pyconsul.agent.filter import peg
from pyconsul.agent.filter.peg import (
    Action,
    ActionError,
    Ahead,
    AnyChar,
    Chars,
    Choice,
    Lit,
    Opt,
    Ref,
    Refuse,
    Seq,
    Star,
)


class Op(enum.Enum):
    # The value is go-bexpr's name for the operator (its error messages quote it).
    EQUAL = "Equal"
    NOT_EQUAL = "Not Equal"
    IN = "In"
    NOT_IN = "Not In"
    IS_EMPTY = "Is Empty"
    IS_NOT_EMPTY = "Is Not Empty"
    MATCHES = "Matches"
    NOT_MATCHES = "Not Matches"


# The positive operator behind each negative one: a negative operator is `not` of its positive.
POSITIVE = {Op.NOT_EQUAL: Op.EQUAL, Op.NOT_IN: Op.IN, Op.IS_EMPTY: Op.IS_NOT_EMPTY, Op.NOT_MATCHES: Op.MATCHES}


@dataclass(frozen=True)
class Value:
    raw: str  # the text to coerce: a string literal unquoted, a number's digits, a selector's parts joined by "."
    kind: str  # "selector", "number" or "string"


@dataclass(frozen=True)
class MatchExpr:
    selector: tuple[str, ...]
    op: Op
    value: Value | None  # None for is (not) empty
    offset: int  # character offset of the match expression in the input

    @property
    def selector_text(self) -> str:
        return ".".join(self.selector)


@dataclass(frozen=True)
class NotExpr:
    operand: Expr


@dataclass(frozen=True)
class AndExpr:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class OrExpr:
    left: Expr
    right: Expr


Expr = MatchExpr | NotExpr | AndExpr | OrExpr


# ---------------------------------------------------------------- string literals (Go's strconv.Unquote)

_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_HEX = frozenset("0123456789abcdefABCDEF")


def go_unquote(text: str) -> str:
    """strconv.Unquote for a `raw` or "interpreted" literal (quotes included); ActionError("invalid syntax").

    \\x and octal escapes produce bytes, as in Go; the result is decoded as UTF-8, with bytes that are
    not valid UTF-8 kept as surrogate escapes (they then compare equal to nothing a JSON item holds)."""
    bad = ActionError("invalid syntax")
    body = text[1:-1]
    if text[0] == "`":
        return body.replace("\r", "")
    if "\n" in body:
        raise bad
    if "\\" not in body:
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        esc = body[i + 1] if i + 1 < len(body) else ""
        i += 2
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
        elif esc in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i:i + width]
            if len(digits) != width or not set(digits) <= _HEX:
                raise bad
            i += width
            code = int(digits, 16)
            if esc == "x":
                out.append(code)
            elif code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise bad
            else:
                out += chr(code).encode("utf-8")
        elif esc and esc in "01234567":
            digits = body[i - 1:i + 2]
            if len(digits) != 3 or not set(digits) <= set("01234567") or int(digits, 8) > 255:
                raise bad
            i += 2
            out.append(int(digits, 8))
        else:
            raise bad
    return out.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- the grammar

G: dict[str, peg.Node] = {}


def _ref(name: str, memoise: bool = False) -> Ref:
    return Ref(name, G, memoise)


def _ident_start(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _ident_rest(ch: str) -> bool:
    return _ident_start(ch) or ("0" <= ch <= "9") or ch == "_"


_ws = _ref("_")
_ows = Opt(_ws)

G["_"] = Star(Chars("[ \\t\\r\\n]", lambda ch: ch in " \t\r\n"), minimum=1)
G["EOF"] = Ahead(AnyChar(), negative=True)


def _binary(cls: type[AndExpr] | type[OrExpr]) -> Any:
    return lambda _s, _t, v: cls(v[0], v[4])


G["Input"] = Choice(
    Action(Seq(_ows, Lit("("), _ows, _ref("Or", True), _ows, Lit(")"), _ows, _ref("EOF")), lambda _s, _t, v: v[3]),
    Action(Seq(_ows, _ref("Or", True), _ows, _ref("EOF")), lambda _s, _t, v: v[1]),
)
G["Or"] = Choice(
    Action(Seq(_ref("And", True), _ws, Lit("or"), _ws, _ref("Or", True)), _binary(OrExpr)),
    _ref("And", True),
)
G["And"] = Choice(
    Action(Seq(_ref("Not", True), _ws, Lit("and"), _ws, _ref("And", True)), _binary(AndExpr)),
    _ref("Not", True),
)


def _not(_s: int, _t: str, v: Any) -> Expr:
    operand = v[2]
    return operand.operand if isinstance(operand, NotExpr) else NotExpr(operand)


G["Not"] = Choice(Action(Seq(Lit("not"), _ws, _ref("Not", True)), _not), _ref("Group", True))
G["Group"] = Choice(
    Action(Seq(Lit("("), _ows, _ref("Or", True), _ows, Lit(")")), lambda _s, _t, v: v[2]),
    _ref("Match", True),
    Seq(Lit("("), _ows, _ref("Or", True), _ows, Ahead(Lit(")"), negative=True),
        Refuse('"grouping"', "Unmatched parentheses")),
)


def _op(*words: str, lead_optional: bool = False, op: Op) -> peg.Node:
    parts: list[peg.Node] = []
    for word in words:
        parts += [_ows if lead_optional else _ws, Lit(word)]
    parts.append(_ows if lead_optional else _ws)
    return Action(Seq(*parts), lambda _s, _t, _v: op)


def _sel_op_value(start: int, _t: str, v: Any) -> MatchExpr:
    return MatchExpr(v[0][0], v[1], v[2], start)


def _sel_op(start: int, _t: str, v: Any) -> MatchExpr:
    return MatchExpr(v[0][0], v[1], None, start)


def _value_op_sel(start: int, _t: str, v: Any) -> MatchExpr:
    return MatchExpr(v[2][0], v[1], v[0], start)


_in_ops = Choice(_op("in", op=Op.IN), _op("not", "in", op=Op.NOT_IN))
G["Match"] = Choice(
    Action(Seq(_ref("Selector"), Choice(
        _op("==", lead_optional=True, op=Op.EQUAL), _op("!=", lead_optional=True, op=Op.NOT_EQUAL),
        _op("contains", op=Op.IN), _op("not", "contains", op=Op.NOT_IN),
        _op("matches", op=Op.MATCHES), _op("not", "matches", op=Op.NOT_MATCHES),
    ), _ref("Value")), _sel_op_value),
    Action(Seq(_ref("Selector"), Choice(
        Action(Seq(_ws, Lit("is"), _ws, Lit("empty")), lambda _s, _t, _v: Op.IS_EMPTY),
        Action(Seq(_ws, Lit("is"), _ws, Lit("not"), _ws, Lit("empty")), lambda _s, _t, _v: Op.IS_NOT_EMPTY),
    )), _sel_op),
    Action(Seq(_ref("Value"), _in_ops, _ref("Selector")), _value_op_sel),
    Seq(_ref("Value"), _in_ops, Ahead(_ref("Selector"), negative=True), Refuse('"match"', "Invalid selector")),
)

G["Ident"] = Action(Seq(Chars("[a-zA-Z]", _ident_start), Star(Chars("[a-zA-Z0-9_]", _ident_rest))),
                    lambda _s, text, _v: text)
G["Index"] = Choice(
    Action(Seq(Lit("["), _ows, _ref("String"), _ows, Lit("]")), lambda _s, _t, v: v[2]),
    Seq(Lit("["), _ows, Ahead(_ref("String"), negative=True), Refuse('"index"', "Invalid index")),
    Seq(Lit("["), _ows, _ref("String"), _ows, Ahead(Lit("]"), negative=True),
        Refuse('"index"', "Unclosed index expression")),
)
G["Selector"] = Action(
    Seq(_ref("Ident"), Star(Choice(Action(Seq(Lit("."), _ref("Ident")), lambda _s, _t, v: v[1]), _ref("Index")))),
    lambda start, _t, v: (tuple([v[0], *(part if part is not None else "" for part in v[1])]), start),
)


def _digit(ch: str) -> bool:
    return "0" <= ch <= "9"


_int_or_float = Seq(
    Choice(Lit("0"), Seq(Chars("[1-9]", lambda ch: "1" <= ch <= "9"), Star(Chars("[0-9]", _digit)))),
    Opt(Seq(Lit("."), Star(Chars("[0-9]", _digit), minimum=1))),
)
_after_number = Ahead(Choice(_ws, _ref("EOF"), Lit(")")), negative=False)
G["Number"] = Choice(
    Action(Seq(Opt(Lit("-")), _int_or_float, _after_number), lambda _s, text, _v: text),
    Seq(Opt(Lit("-")), _int_or_float, Ahead(_after_number, negative=True),
        Refuse('"number"', "Invalid number literal")),
)
_raw_char = Seq(Ahead(Lit("`"), negative=True), AnyChar())
_dq_char = Seq(Ahead(Lit('"'), negative=True), AnyChar())
G["String"] = Choice(
    Action(Choice(Seq(Lit("`"), Star(_raw_char), Lit("`")), Seq(Lit('"'), Star(_dq_char), Lit('"'))),
           lambda _s, text, _v: go_unquote(text), rule='"string"'),
    Seq(Choice(Seq(Lit("`"), Star(_raw_char)), Seq(Lit('"'), Star(_dq_char))), _ref("EOF"),
        Refuse('"string"', "Unterminated string literal")),
)
G["Value"] = Choice(
    Action(_ref("Selector"), lambda _s, _t, v: Value(".".join(v[0]), "selector")),
    Action(_ref("Number"), lambda _s, text, _v: Value(text, "number")),
    Action(_ref("String"), lambda _s, _t, v: Value(v if v is not None else "", "string")),
)

START = G["Input"]


def parse(text: str) -> tuple[Expr | None, peg.ParseFailure | None]:
    value, failure = peg.parse(START, text)
    return value, failure
