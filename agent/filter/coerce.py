"""Go's strconv parsers, as go-bexpr uses them to turn a filter's raw value into a field's type.

Each returns the value or raises ValueError with Go's message (`strconv.ParseInt: parsing "x": invalid
syntax`), which go-bexpr quotes in "Failed to coerce value ...". Pure.
"""

from __future__ import annotations

import math
import re

from pyconsul.agent.filter.peg import go_quote

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Go 1.13 integer syntax with base 0: 0x/0o/0b prefixes, a leading 0 for octal, "_" between digits.
_INT = re.compile(r"[+-]?(0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO](_?[0-7])+|0(_?[0-7])*|[1-9](_?[0-9])*)")
_FLOAT = re.compile(r"[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)


def _syntax(fn: str, raw: str) -> ValueError:
    return ValueError(f"strconv.{fn}: parsing {go_quote(raw)}: invalid syntax")


def parse_bool(raw: str) -> bool:
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise _syntax("ParseBool", raw)


def parse_int(raw: str) -> int:
    if _INT.fullmatch(raw) is None:
        raise _syntax("ParseInt", raw)
    text = raw.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if len(digits) > 1 and digits[0] == "0" and digits[1] in "0123456789":
        value = int(digits, 8)
    else:
        value = int(digits, 0)
    value *= sign
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(raw)}: value out of range")
    return value


def parse_float(raw: str) -> float:
    if _FLOAT.fullmatch(raw) is None:
        raise _syntax("ParseFloat", raw)
    value = float(raw)
    if math.isinf(value) and "inf" not in raw.lower():
        raise ValueError(f"strconv.ParseFloat: parsing {go_quote(raw)}: value out of range")
    return value
