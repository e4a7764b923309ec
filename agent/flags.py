"""Command-line flags with the semantics of Go's `flag` package (which Consul's CLI uses).

Contract (mirrors Go):
- `-name=value`, `-name value`, `--name=value` and `--name value` are equivalent.
- a boolean flag never consumes the next argument: `-server`, `-server=true`, `-server=false`.
- a string-list flag appends on every occurrence (`-join a -join b`).
- `--` ends the flags and is consumed; the first non-flag argument (including a lone `-`) ends the
  flags and is kept, together with everything after it, as a positional argument.
- `-h`/`-help` (when not defined) raise `HelpRequested`; every other problem raises `FlagError`
  whose message matches Go's wording ("flag provided but not defined: -x").
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

FlagKind = Literal["string", "int", "bool", "duration", "list"]

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]+)")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class FlagError(Exception):
    """A command line that Go's flag package would reject; str() is the Go error text."""


class HelpRequested(Exception):
    """`-h` or `-help` was given and no flag of that name is defined."""


def parse_duration(s: str) -> float:
    """Parse a Go duration string ("300ms", "1m30s", "-1.5h", "0") into seconds.

    Raises ValueError with Go's message (`time: invalid duration "x"`) on bad input.
    """
    orig = s
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            if s[pos:].replace(".", "").isdigit():
                raise ValueError(f'time: missing unit in duration "{orig}"')
            raise ValueError(f'time: invalid duration "{orig}"')
        number, unit = m.group(1), m.group(2)
        if number in ("", "."):
            raise ValueError(f'time: invalid duration "{orig}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        total += float(number) * _UNITS[unit]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Render seconds the way Go's time.Duration.String does ("72h0m0s", "1m30s", "500ms", "0s")."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rem = divmod(ns, 3_600_000_000_000)
    minutes, rem = divmod(rem, 60_000_000_000)
    secs = _trim(rem / 1e9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


@dataclass
class Flag:
    """One defined flag. `dest` lets several names share a value (Consul's -config-file/-config-dir)."""

    name: str
    kind: FlagKind
    default: object
    usage: str
    dest: str


@dataclass
class ParseResult:
    """`values` holds every flag (defaults included) by dest; `explicit` only those given."""

    values: dict[str, object]
    explicit: dict[str, object]
    positional: list[str]
    seen: list[str] = field(default_factory=list)  # flag names in order of appearance

    def str(self, dest: builtins.str) -> builtins.str:
        v = self.values[dest]
        assert isinstance(v, builtins.str)
        return v

    def int(self, dest: builtins.str) -> builtins.int:
        v = self.values[dest]
        assert isinstance(v, builtins.int)
        return v

    def bool(self, dest: builtins.str) -> builtins.bool:
        v = self.values[dest]
        assert isinstance(v, builtins.bool)
        return v

    def float(self, dest: builtins.str) -> builtins.float:
        v = self.values[dest]
        assert isinstance(v, builtins.float | builtins.int)
        return builtins.float(v)

    def list(self, dest: builtins.str) -> builtins.list[builtins.str]:
        v = self.values[dest]
        assert isinstance(v, builtins.list)
        return [builtins.str(x) for x in v]


class FlagSet:
    """An ordered set of flag definitions; `parse()` is pure and may be called repeatedly."""

    def __init__(self, name: builtins.str) -> None:
        self.name = name
        self._flags: dict[builtins.str, Flag] = {}

    def _define(
        self,
        name: builtins.str,
        kind: FlagKind,
        default: object,
        usage: builtins.str,
        dest: builtins.str | None,
    ) -> None:
        if name in self._flags:
            raise ValueError(f"{self.name} flag redefined: {name}")
        self._flags[name] = Flag(name, kind, default, usage, dest or name)

    def string(self, name: builtins.str, default: builtins.str, usage: builtins.str,
               dest: builtins.str | None = None) -> None:
        self._define(name, "string", default, usage, dest)

    def int(self, name: builtins.str, default: builtins.int, usage: builtins.str,
            dest: builtins.str | None = None) -> None:
        self._define(name, "int", default, usage, dest)

    def bool(self, name: builtins.str, default: builtins.bool, usage: builtins.str,
             dest: builtins.str | None = None) -> None:
        self._define(name, "bool", default, usage, dest)

    def duration(self, name: builtins.str, default: builtins.float, usage: builtins.str,
                 dest: builtins.str | None = None) -> None:
        """Value is float seconds; accepts Go duration strings only (like Go's DurationVar)."""
        self._define(name, "duration", default, usage, dest)

    def string_list(self, name: builtins.str, usage: builtins.str, dest: builtins.str | None = None) -> None:
        """Repeatable; every occurrence appends. Default is the empty list."""
        self._define(name, "list", None, usage, dest)

    @property
    def flags(self) -> builtins.list[Flag]:
        return builtins.list(self._flags.values())

    def parse(self, args: Sequence[builtins.str]) -> ParseResult:
        values: dict[builtins.str, object] = {}
        for defined in self._flags.values():
            values[defined.dest] = [] if defined.kind == "list" else defined.default
        explicit: dict[builtins.str, object] = {}
        seen: builtins.list[builtins.str] = []
        i = 0
        while i < len(args):
            s = args[i]
            if len(s) < 2 or s[0] != "-":
                break
            minuses = 2 if s[1] == "-" else 1
            if minuses == 2 and len(s) == 2:
                i += 1
                break
            name = s[minuses:]
            if not name or name[0] in "-=":
                raise FlagError(f"bad flag syntax: {s}")
            i += 1
            value: builtins.str | None = None
            if "=" in name:
                name, value = name.split("=", 1)
            f = self._flags.get(name)
            if f is None:
                if name in ("h", "help"):
                    raise HelpRequested(name)
                raise FlagError(f"flag provided but not defined: -{name}")
            if f.kind == "bool":
                if value is None:
                    parsed: object = True
                elif value in _TRUE:
                    parsed = True
                elif value in _FALSE:
                    parsed = False
                else:
                    raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
            else:
                if value is None:
                    if i >= len(args):
                        raise FlagError(f"flag needs an argument: -{name}")
                    value = args[i]
                    i += 1
                parsed = self._convert(f, value)
            if f.kind == "list":
                lst = values[f.dest]
                assert isinstance(lst, builtins.list)
                lst.append(parsed)
                explicit[f.dest] = builtins.list(lst)
            else:
                values[f.dest] = parsed
                explicit[f.dest] = parsed
            seen.append(name)
        return ParseResult(values, explicit, builtins.list(args[i:]), seen)

    @staticmethod
    def _convert(f: Flag, value: builtins.str) -> object:
        try:
            if f.kind == "int":
                return _parse_go_int(value)
            if f.kind == "duration":
                return parse_duration(value)
        except ValueError:
            raise FlagError(f'invalid value "{value}" for flag -{f.name}: parse error') from None
        return value

    def usage(self) -> builtins.str:
        """Flag defaults in Go's PrintDefaults layout, sorted by name."""
        out: builtins.list[builtins.str] = []
        for f in sorted(self._flags.values(), key=lambda f: f.name):
            arg, text = _unquote_usage(f)
            line = f"  -{f.name}"
            if arg:
                line += " " + arg
            line += "\t" if len(line) <= 4 else "\n    \t"
            line += text.replace("\n", "\n    \t")
            default = _default_text(f)
            if default is not None:
                line += f" (default {default})"
            out.append(line)
        return "\n".join(out) + ("\n" if out else "")


def _parse_go_int(value: builtins.str) -> builtins.int:
    # Go's flag.Int uses strconv.ParseInt(s, 0, 64): base prefixes allowed, underscores only with them.
    text = value.strip()
    if text != value or not text:
        raise ValueError(value)
    body = text.lstrip("+-")
    if body[:2].lower() in ("0x", "0o", "0b"):
        n = builtins.int(text, 0)
    elif len(body) > 1 and body[0] == "0":
        n = builtins.int(text, 8)
    elif body.isdigit():
        n = builtins.int(text, 10)
    else:
        raise ValueError(value)
    if not -(2**63) <= n < 2**63:
        raise ValueError(value)
    return n


def _unquote_usage(f: Flag) -> tuple[builtins.str, builtins.str]:
    m = re.search(r"`([^`]*)`", f.usage)
    if m:
        return m.group(1), f.usage[: m.start()] + m.group(1) + f.usage[m.end():]
    arg = {"string": "string", "int": "int", "bool": "", "duration": "duration", "list": "value"}[f.kind]
    return arg, f.usage


def _default_text(f: Flag) -> builtins.str | None:
    d = f.default
    if f.kind == "list" or d in (None, "", 0, False, 0.0):
        return None
    if f.kind == "string":
        return f'"{d}"'
    if f.kind == "duration":
        assert isinstance(d, builtins.int | builtins.float)
        return format_duration(builtins.float(d))
    if f.kind == "bool":
        return "true"
    return builtins.str(d)
