"""A small PEG interpreter whose failure reports match those of the pigeon-generated parser in go-bexpr.

Consul reports a filter that does not parse with the text of that parser's error, e.g.
``1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \\t\\r\\n] or [a-zA-Z0-9_]``. The text comes
from the way a PEG parser records failures, so to give a client the same message (and the same
position) we run the grammar the same way:

- every terminal that fails to match records what it wanted at the offset where it was tried; only
  the wants at the farthest offset are kept ("farthest failure");
- inside a not-predicate the sense is inverted: a terminal that *matches* records ``!want`` (so
  ``EOF <- !.`` records ``!.``, printed as ``EOF``);
- semantic predicates and actions may add explicit errors (``rule "number": Invalid number literal``),
  which win over the farthest-failure message; duplicates are dropped, several are joined by newlines;
- positions are ``line:column (byte offset)``, columns counted in characters from 1, and a newline
  belonging to the next line at column 0; a failure list never moved past offset 0 prints as ``0:0 (0)``.

Rules may be memoised (packrat) per (rule, offset, inversion): replaying a rule at the same offset
with the same inversion records exactly the failures it recorded the first time, so memoising never
changes a message, and it turns the grammar's exponential re-parsing of nested groups into linear work.

Pure: no I/O; callers bound the input (length, nesting) before parsing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ActionError(Exception):
    """Raised by an action to record an error at the action's start (the match itself still succeeds)."""


@dataclass(frozen=True)
class ParseFailure:
    message: str  # the whole text, possibly several lines
    offset: int  # character offset of the first error


def go_quote(text: str) -> str:
    """Go's strconv.Quote (%q) for the characters that matter in error messages."""
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
             '"': '\\"', "\\": "\\\\"}
    out = []
    for ch in text:
        if ch in named:
            out.append(named[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


class State:
    __slots__ = ("errors", "fail_pos", "fail_wants", "invert", "memo", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.invert = False
        self.fail_pos = 0
        self.fail_wants: set[str] = set()
        self.errors: list[tuple[int, str]] = []  # (offset, message), in order, deduplicated by message
        self.memo: dict[tuple[str, int, bool], tuple[bool, Any, int]] = {}

    def fail_at(self, matched: bool, pos: int, want: str) -> None:
        if matched != self.invert or pos < self.fail_pos:
            return
        if pos > self.fail_pos:
            self.fail_pos = pos
            self.fail_wants = set()
        self.fail_wants.add("!" + want if self.invert else want)

    def add_error(self, pos: int, rule: str, message: str) -> None:
        text = f"{self.position(pos)}: rule {rule}: {message}" if rule else f"{self.position(pos)}: {message}"
        if all(text != seen for _, seen in self.errors):
            self.errors.append((pos, text))

    def position(self, pos: int) -> str:
        last_nl = self.text.rfind("\n", 0, pos + 1)
        line = 1 + self.text.count("\n", 0, pos + 1)
        offset = len(self.text[:pos].encode("utf-8", "surrogatepass"))
        return f"{line}:{pos - last_nl} ({offset})"


class Node:
    __slots__ = ()

    def match(self, st: State) -> tuple[bool, Any]:
        raise NotImplementedError


class Lit(Node):
    __slots__ = ("s", "want")

    def __init__(self, s: str) -> None:
        self.s = s
        self.want = go_quote(s)

    def match(self, st: State) -> tuple[bool, Any]:
        start = st.pos
        if st.text.startswith(self.s, start):
            st.pos += len(self.s)
            st.fail_at(True, start, self.want)
            return True, self.s
        st.fail_at(False, start, self.want)
        return False, None


class Chars(Node):
    """A character class; `want` is its text in the grammar (what the error message shows)."""

    __slots__ = ("test", "want")

    def __init__(self, want: str, test: Callable[[str], bool]) -> None:
        self.want = want
        self.test = test

    def match(self, st: State) -> tuple[bool, Any]:
        start = st.pos
        if start < len(st.text) and self.test(st.text[start]):
            st.pos += 1
            st.fail_at(True, start, self.want)
            return True, st.text[start]
        st.fail_at(False, start, self.want)
        return False, None


class AnyChar(Node):
    __slots__ = ()

    def match(self, st: State) -> tuple[bool, Any]:
        start = st.pos
        if start >= len(st.text):
            st.fail_at(False, start, ".")
            return False, None
        st.pos += 1
        st.fail_at(True, start, ".")
        return True, st.text[start]


class Seq(Node):
    __slots__ = ("items",)

    def __init__(self, *items: Node) -> None:
        self.items = items

    def match(self, st: State) -> tuple[bool, Any]:
        start = st.pos
        values = []
        for item in self.items:
            ok, value = item.match(st)
            if not ok:
                st.pos = start
                return False, None
            values.append(value)
        return True, values


class Choice(Node):
    __slots__ = ("alts",)

    def __init__(self, *alts: Node) -> None:
        self.alts = alts

    def match(self, st: State) -> tuple[bool, Any]:
        for alt in self.alts:
            ok, value = alt.match(st)
            if ok:
                return True, value
        return False, None


class Star(Node):
    __slots__ = ("item", "minimum")

    def __init__(self, item: Node, minimum: int = 0) -> None:
        self.item = item
        self.minimum = minimum

    def match(self, st: State) -> tuple[bool, Any]:
        values = []
        while True:
            ok, value = self.item.match(st)
            if not ok:
                break
            values.append(value)
        return len(values) >= self.minimum, values


class Opt(Node):
    __slots__ = ("item",)

    def __init__(self, item: Node) -> None:
        self.item = item

    def match(self, st: State) -> tuple[bool, Any]:
        ok, value = self.item.match(st)
        return True, value if ok else None


class Ahead(Node):
    """&e (positive) or !e (negative, failures recorded inverted); consumes nothing."""

    __slots__ = ("item", "negative")

    def __init__(self, item: Node, negative: bool) -> None:
        self.item = item
        self.negative = negative

    def match(self, st: State) -> tuple[bool, Any]:
        start = st.pos
        if self.negative:
            st.invert = not st.invert
        ok, _ = self.item.match(st)
        if self.negative:
            st.invert = not st.invert
        st.pos = start
        return ok != self.negative, None


class Refuse(Node):
    """A semantic predicate that always fails with an error at the current position."""

    __slots__ = ("message", "rule")

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message

    def match(self, st: State) -> tuple[bool, Any]:
        st.add_error(st.pos, self.rule, self.message)
        return False, None


class Action(Node):
    """Runs fn(start, matched text, value) on success; an ActionError becomes a recorded error."""

    __slots__ = ("fn", "item", "rule")

    def __init__(self, item: Node, fn: Callable[[int, str, Any], Any], rule: str = "") -> None:
        self.item = item
        self.fn = fn
        self.rule = rule

    def match(self, st: State) -> tuple[bool, Any]:
        start = st.pos
        ok, value = self.item.match(st)
        if not ok:
            return False, None
        try:
            return True, self.fn(start, st.text[start:st.pos], value)
        except ActionError as err:
            st.add_error(start, self.rule, str(err))
            return True, None


class Ref(Node):
    """A reference to a named rule, resolved through `grammar` when first used."""

    __slots__ = ("grammar", "memoise", "name")

    def __init__(self, name: str, grammar: dict[str, Node], memoise: bool = False) -> None:
        self.name = name
        self.grammar = grammar
        self.memoise = memoise

    def match(self, st: State) -> tuple[bool, Any]:
        if not self.memoise:
            return self.grammar[self.name].match(st)
        key = (self.name, st.pos, st.invert)
        hit = st.memo.get(key)
        if hit is None:
            ok, value = self.grammar[self.name].match(st)
            st.memo[key] = (ok, value, st.pos)
            return ok, value
        st.pos = hit[2]
        return hit[0], hit[1]


def parse(start: Node, text: str) -> tuple[Any, ParseFailure | None]:
    """Run `start` over the whole of `text` (the grammar itself must demand EOF)."""
    st = State(text)
    ok, value = start.match(st)
    if st.errors:
        return None, ParseFailure("\n".join(message for _, message in st.errors), st.errors[0][0])
    if ok:
        return value, None
    wants = st.fail_wants
    eof = "!." in wants
    listed = sorted(want for want in wants if want != "!.") + (["EOF"] if eof else [])
    if len(listed) > 1:
        expected = ", ".join(listed[:-1]) + " or " + listed[-1]
    else:
        expected = "".join(listed)
    where = st.position(st.fail_pos) if st.fail_pos > 0 else "0:0 (0)"
    return None, ParseFailure(f"{where}: no match found, expected: {expected}", st.fail_pos)


