"""Go (RE2) regular expressions for `matches`, run on Python's `re`.

The pattern is read with RE2's syntax and rewritten into an equivalent Python pattern, or refused with
a message in the style of Go's regexp package ("error parsing regexp: <what>: `<where>`"):

- refused because RE2 has no such thing: backreferences (\\1, (?P=name)), lookahead and lookbehind,
  atomic groups, conditionals, comments, possessive quantifiers, verbose/ASCII/locale flags;
- translated because Python reads them differently: `$` without (?m) is the end of the text (\\z),
  \\z, octal escapes (\\12 is a backreference to Python), \\x{10FFFF}, \\Q...\\E, POSIX classes
  ([[:alpha:]]), a `{` that does not start a valid repeat is a literal, mid-pattern flag groups
  (?i) (scoped to the rest of their group), the U (ungreedy) flag, named groups (names dropped);
- \\d \\w \\s \\b are ASCII-only as in RE2 (the pattern is compiled with re.ASCII; a difference:
  (?i) then folds ASCII letters only, where RE2 folds all of Unicode);
- not supported (refused with a clear message although RE2 has them): Unicode classes \\pL \\p{Greek},
  negated POSIX classes [[:^alpha:]], \\C.

RE2 matches in linear time; Python's backtracking engine does not. To keep a filter from pinning a
server's CPU, a repetition (other than ?) of a group that itself contains an unbounded repetition
(`(a+)+`, `(a*)*`, `(x+y)*`) is refused, and a pattern is at most MAX_PATTERN_LENGTH characters.
An alternation of overlapping branches under a repetition (`(a|a)*`) can still backtrack heavily on a
long input; the values filters look at are short fields (names, tags, meta values).

Pure: no I/O. compile_go_regex() compiles once; the caller keeps the compiled pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_PATTERN_LENGTH = 512
MAX_REPEAT = 1000  # RE2's limit on {n,m}

_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
    "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_PERL_CLASSES = frozenset("dDsSwW")
_SIMPLE = {"a": "\a", "f": "\f", "t": "\t", "n": "\n", "r": "\r", "v": "\v"}
_OCTAL = frozenset("01234567")
_HEX = frozenset("0123456789abcdefABCDEF")


class RegexError(ValueError):
    def __init__(self, code: str, expr: str) -> None:
        super().__init__(f"error parsing regexp: {code}: `{expr}`")


@dataclass
class _Group:
    flags: frozenset[str]  # RE2 flags in force when the group opened
    extra_closes: int = 0  # scoped flag groups opened for a mid-group (?flags)
    unbounded: bool = False  # contains an unbounded repetition
    src_start: int = 0  # index of its "(" in the RE2 pattern


@dataclass
class _Atom:
    """What a following repetition operator would apply to."""

    kind: str  # "none" (nothing to repeat), "atom", "group", "repeat"
    unbounded_inside: bool = False
    text: str = ""  # for a group, its RE2 text; for a repeat, the operator


@dataclass
class _Translator:
    src: str
    out: list[str] = field(default_factory=list)
    # groups[0] is the whole pattern (never closed by a ")"), so groups[-1] always exists.
    groups: list[_Group] = field(default_factory=lambda: [_Group(frozenset())])
    flags: frozenset[str] = frozenset()
    last: _Atom = field(default_factory=lambda: _Atom("none"))

    def run(self) -> str:
        i = 0
        src = self.src
        while i < len(src):
            ch = src[i]
            if ch == "\\":
                i = self.escape(i)
            elif ch == "[":
                i = self.char_class(i)
            elif ch == "(":
                i = self.open_group(i)
            elif ch == ")":
                self.close_group(i)
                i += 1
            elif ch in "*+?":
                i = self.repeat(i, ch, 0 if ch != "+" else 1, None if ch != "?" else 1, i + 1)
            elif ch == "{":
                parsed = _parse_braces(src, i)
                if parsed is None:
                    self.literal("{")
                    i += 1
                else:
                    low, high, end = parsed
                    i = self.repeat(i, src[i:end], low, high, end)
            elif ch == "|":
                # A mid-group (?flags) scope ends at "|" in our output, and the flags carry on after it.
                group = self.groups[-1]
                if group.extra_closes:
                    self.out.append(")" * group.extra_closes + f"|(?{_py_flags(self.flags)}:")
                    group.extra_closes = 1
                else:
                    self.out.append("|")
                self.last = _Atom("none")
                i += 1
            elif ch == "^":
                self.emit_atom("(?:^)")
                i += 1
            elif ch == "$":
                self.emit_atom("(?:$)" if "m" in self.flags else "(?:\\Z)")
                i += 1
            elif ch == ".":
                self.emit_atom(".")
                i += 1
            else:
                self.literal(ch)
                i += 1
        if len(self.groups) > 1:
            raise RegexError("missing closing )", src)
        return "".join(self.out) + ")" * self.groups[0].extra_closes

    # -- atoms

    def emit_atom(self, text: str) -> None:
        self.out.append(text)
        self.last = _Atom("atom")

    def literal(self, ch: str) -> None:
        self.emit_atom(re.escape(ch))

    def escape(self, i: int) -> int:
        src = self.src
        if i + 1 >= len(src):
            raise RegexError("trailing backslash at end of expression", "")
        c = src[i + 1]
        if c == "Q":
            end = src.find("\\E", i + 2)
            text = src[i + 2:] if end < 0 else src[i + 2:end]
            for ch in text:
                self.literal(ch)
            return len(src) if end < 0 else end + 2
        if c in "AbB":
            self.emit_atom(f"(?:\\{c})")
            return i + 2
        if c == "z":
            self.emit_atom("(?:\\Z)")
            return i + 2
        if c in _PERL_CLASSES:
            self.emit_atom("\\" + c)
            return i + 2
        ch, end = _escaped_char(src, i)
        self.literal(ch)
        return end

    def char_class(self, i: int) -> int:
        src = self.src
        start = i
        i += 1
        parts = ["["]
        if i < len(src) and src[i] == "^":
            parts.append("^")
            i += 1
        first = True
        while True:
            if i >= len(src):
                raise RegexError("missing closing ]", src[start:])
            c = src[i]
            if c == "]" and not first:
                i += 1
                break
            first = False
            if src.startswith("[:", i):
                end = src.find(":]", i + 2)
                name = src[i + 2:end] if end >= 0 else ""
                if end >= 0 and name.startswith("^") and name[1:] in _POSIX:
                    raise RegexError("negated POSIX class is not supported by pyconsul", src[i:end + 2])
                if end >= 0 and name in _POSIX:
                    parts.append(_POSIX[name])
                    i = end + 2
                    continue
                if end >= 0 and name.isalpha():
                    raise RegexError("invalid character class range", src[i:end + 2])
            if c == "\\" and i + 1 < len(src) and src[i + 1] in _PERL_CLASSES:
                parts.append(src[i:i + 2])
                i += 2
                continue
            lo, i = _class_char(src, i)
            hi = lo
            if i + 1 < len(src) and src[i] == "-" and src[i + 1] != "]":
                hi, i = _class_char(src, i + 1)
                if ord(hi) < ord(lo):
                    raise RegexError("invalid character class range", f"{lo}-{hi}")
            parts.append(_class_escape(lo) if lo == hi else f"{_class_escape(lo)}-{_class_escape(hi)}")
        parts.append("]")
        self.emit_atom("".join(parts))
        return i

    # -- groups

    def open_group(self, i: int) -> int:
        src = self.src
        if not src.startswith("(?", i):
            self.groups.append(_Group(self.flags, src_start=i))
            self.out.append("(")
            self.last = _Atom("none")
            return i + 1
        if src.startswith("(?P<", i):
            end = src.find(">", i + 4)
            name = src[i + 4:end] if end >= 0 else ""
            if end < 0 or not name or not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name):
                raise RegexError("invalid named capture", src[i:end + 1 if end >= 0 else len(src)])
            self.groups.append(_Group(self.flags, src_start=i))
            self.out.append("(")
            self.last = _Atom("none")
            return end + 1
        j = i + 2
        flags = set(self.flags)
        negate = False
        seen = False
        while j < len(src) and src[j] not in ":)":
            c = src[j]
            if c == "-" and not negate:
                negate = True
                seen = False
            elif c in "imsU":
                (flags.discard if negate else flags.add)(c)
                seen = True
            else:
                raise RegexError("invalid or unsupported Perl syntax", src[i:j + 1])
            j += 1
        if j >= len(src) or (negate and not seen):
            raise RegexError("invalid or unsupported Perl syntax", src[i:j + 1])
        py_flags = _py_flags(frozenset(flags))
        if src[j] == ":":
            self.groups.append(_Group(self.flags, src_start=i))
            self.flags = frozenset(flags)
            self.out.append(f"(?{py_flags}:")
            self.last = _Atom("none")
        else:
            # (?flags) applies to the rest of the enclosing group: open a scoped group closed with it.
            self.groups[-1].extra_closes += 1
            self.flags = frozenset(flags)
            self.out.append(f"(?{py_flags}:")
            self.last = _Atom("none")
        return j + 1

    def close_group(self, i: int) -> None:
        if len(self.groups) == 1:
            raise RegexError("unexpected )", self.src)
        group = self.groups.pop()
        self.out.append(")" * (group.extra_closes + 1))
        self.flags = group.flags
        self.groups[-1].unbounded |= group.unbounded
        self.last = _Atom("group", unbounded_inside=group.unbounded, text=self.src[group.src_start:i + 1])

    # -- repetition

    def repeat(self, i: int, op: str, low: int, high: int | None, end: int) -> int:
        src = self.src
        if self.last.kind == "none":
            raise RegexError("missing argument to repetition operator", op)
        if self.last.kind == "repeat":
            raise RegexError("invalid nested repetition operator", self.last.text + op)
        if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
            raise RegexError("invalid repeat count", op)
        lazy = end < len(src) and src[end] == "?"
        if lazy:
            end += 1
        if self.last.kind == "group" and self.last.unbounded_inside and (high is None or high > 1):
            raise RegexError("nested unbounded repetition is not supported by pyconsul", self.last.text + src[i:end])
        greedy = not lazy
        if "U" in self.flags:
            greedy = not greedy
        self.out.append(op + ("" if greedy else "?"))
        if high is None:
            self.groups[-1].unbounded = True
        self.last = _Atom("repeat", text=src[i:end])
        return end


def _py_flags(flags: frozenset[str]) -> str:
    on = "".join(c for c in "ims" if c in flags)
    off = "".join(c for c in "ims" if c not in flags)
    return on + ("-" + off if off else "")


def _parse_braces(src: str, i: int) -> tuple[int, int | None, int] | None:
    """{n}, {n,} or {n,m} at i -> (n, m or None, end); None if `{` is a literal there (as in RE2)."""
    m = re.compile(r"\{([0-9]+)(,([0-9]*))?\}").match(src, i)
    if m is None:
        return None
    low = int(m.group(1))
    if m.group(2) is None:
        high: int | None = low
    elif m.group(3):
        high = int(m.group(3))
    else:
        high = None
    if high is not None and high < low:
        raise RegexError("invalid repeat count", m.group(0))
    return low, high, m.end()


def _escaped_char(src: str, i: int) -> tuple[str, int]:
    """The character an escape at src[i] ("\\...") stands for, and the index after it."""
    if i + 1 >= len(src):
        raise RegexError("trailing backslash at end of expression", "")
    c = src[i + 1]
    if c in "1234567" and not (i + 2 < len(src) and src[i + 2] in _OCTAL):
        raise RegexError("invalid escape sequence", src[i:i + 2])
    if c in _OCTAL:
        j = i + 2
        while j < len(src) and j < i + 4 and src[j] in _OCTAL:
            j += 1
        return chr(int(src[i + 1:j], 8)), j
    if c == "x":
        if src.startswith("{", i + 2):
            end = src.find("}", i + 3)
            digits = src[i + 3:end] if end >= 0 else ""
            if end < 0 or not digits or not set(digits) <= _HEX or int(digits, 16) > 0x10FFFF:
                raise RegexError("invalid escape sequence", src[i:end + 1 if end >= 0 else len(src)])
            return chr(int(digits, 16)), end + 1
        digits = src[i + 2:i + 4]
        if len(digits) != 2 or not set(digits) <= _HEX:
            raise RegexError("invalid escape sequence", src[i:i + 4])
        return chr(int(digits, 16)), i + 4
    if c in _SIMPLE:
        return _SIMPLE[c], i + 2
    if c.isascii() and not c.isalnum():
        return c, i + 2
    if c in "pP":
        raise RegexError("Unicode classes (\\p) are not supported by pyconsul", src[i:i + 2])
    raise RegexError("invalid escape sequence", src[i:i + 2])


def _class_char(src: str, i: int) -> tuple[str, int]:
    if src[i] == "\\":
        return _escaped_char(src, i)
    return src[i], i + 1


def _class_escape(ch: str) -> str:
    return "\\" + ch if ch in "\\]^-[&~|" else ch


def compile_go_regex(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 pattern (see the module docstring); RegexError if refused."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexError(f"expression longer than {MAX_PATTERN_LENGTH} characters", pattern[:32] + "...")
    translator = _Translator(pattern)
    text = translator.run()
    try:
        return re.compile(text, re.ASCII)
    except (re.error, RecursionError, OverflowError) as err:  # a translation gap: refuse, never crash
        raise RegexError(f"unsupported pattern ({err})", pattern) from None
