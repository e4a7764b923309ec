"""HCL config files (`*.hcl`, `-config-file x.hcl`) and `-hcl` fragments, parsed by python-hcl2 (PyPI).

The result has the shapes of the equivalent Consul JSON document, so one key table validates both:

- a block `ports { dns = 8600 }` is the object `"ports": {"dns": 8600}`; a block may appear once, except
- repeated `service { ... }` / `check { ... }` blocks (at any depth) become the lists `services` / `checks`
  (one block stays the single object `service` / `check`, as in JSON); blocks named by a list key
  (`services`, `checks`, `watches`, ...) are always lists; `services = [ {...}, {...} ]` is a list as written.

Where python-hcl2 (an HCL2 parser) differs from the HCL1 Consul 1.7 reads (README "HCL config files"):
- block labels (`service "web" { }`) are refused here (Consul's keys have none);
- a quoted name inside a block body (`node_meta { "a-b" = "x" }`, `service_ttl { "*" = "5s" }`, common in
  Consul's docs) is a syntax error in HCL2; parse_hcl rewrites such a block into the object it means
  (`node_meta = { "a-b" = "x" }`) and parses again (at most MAX_REWRITES times);
- expressions, functions and `${...}` interpolation are not evaluated: a string keeps them as literal text
  (a non-string key given an expression is a type error naming the key); a number in exponent form is read;
- an attribute given twice, or a block and an attribute of the same name, keep the LAST one (HCL1 merged).
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

import hcl2

# Keys whose blocks always form a list (Consul JSON arrays of objects).
LIST_KEYS = frozenset({"services", "checks", "watches", "segments", "upstreams", "expose.paths", "paths"})
# A repeated singular block becomes its plural list.
PLURAL = {"service": "services", "check": "checks"}
_EXPR = re.compile(r"\$\{(.*)\}", re.DOTALL)
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=True, preserve_heredocs=False,
                                     strip_string_quotes=True)


MAX_REWRITES = 64  # blocks with quoted names rewritten into objects, per text
_BLOCK_HEAD = re.compile(r"(?:^|[\s{}])([A-Za-z_][A-Za-z0-9_-]*)\s*$")


class HCLError(ValueError):
    """Why an HCL text is invalid; one line, with the line and column when the parser gives them."""


def parse_hcl(text: str) -> dict[str, Any]:
    """Parse HCL text into a JSON-shaped document; raise HCLError."""
    for _ in range(MAX_REWRITES):
        try:
            raw = hcl2.loads(text, serialization_options=_OPTIONS)
            break
        except Exception as exc:  # lark's UnexpectedInput family, or python-hcl2's own errors
            rewritten = _quoted_name_block_as_object(text, exc)
            if rewritten is None:
                _raise(exc)
            text = rewritten
    else:
        raise HCLError(f"invalid HCL: more than {MAX_REWRITES} blocks with quoted names")
    if not isinstance(raw, dict):
        raise HCLError("invalid HCL: the top level is not a body")
    return _body(raw, "")


def _quoted_name_block_as_object(text: str, exc: Exception) -> str | None:
    """When the parser stopped at a quoted name (`"*" = ...`) inside a block `NAME { ... }`, the text with
    that block written as an object, `NAME = { ... }`; None when the error is anything else."""
    token = getattr(exc, "token", None)
    line, col = getattr(exc, "line", None), getattr(exc, "column", None)
    if getattr(token, "type", None) != "DBLQUOTE" or not isinstance(line, int) or not isinstance(col, int):
        return None
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    pos = sum(len(x) + 1 for x in lines[: line - 1]) + col - 1
    if text[pos : pos + 1] != '"' or not re.match(r'"(?:[^"\\\n]|\\.)*"\s*=', text[pos:]):
        return None
    depth = 0  # find the `{` that opens the enclosing block (strings with braces before it are rare in configs)
    for i in range(pos - 1, -1, -1):
        if text[i] == "}":
            depth += 1
        elif text[i] == "{":
            if depth:
                depth -= 1
                continue
            head = _BLOCK_HEAD.search(text[:i])  # `NAME {`: a block (an object is `NAME = {`)
            if head is None:
                return None
            return text[: head.end(1)] + " =" + text[head.end(1) :]
    return None


def _raise(exc: Exception) -> NoReturn:
    """The parser's error as one HCLError line."""
    line, col = getattr(exc, "line", None), getattr(exc, "column", None)
    where = f" at line {line} column {col}" if isinstance(line, int) and line > 0 else ""
    token = getattr(exc, "token", None)
    what = f": unexpected {str(token)!r}" if token is not None else ""
    if not where and not what:
        what = ": " + (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    raise HCLError(f"invalid HCL{where}{what}") from None


def _is_block(v: object) -> bool:
    return isinstance(v, dict) and v.get("__is_block__") is True


def _body(doc: dict[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key.startswith("__") and key.endswith("__"):  # python-hcl2's markers
            continue
        where = f"{path}{key}"
        if isinstance(value, list) and value and all(_is_block(b) for b in value):
            blocks = [_body(b, where + ".") for b in value]
            if key in LIST_KEYS:
                out.setdefault(key, []).extend(blocks)
            elif key in PLURAL and len(blocks) > 1:
                out.setdefault(PLURAL[key], []).extend(blocks)
            elif len(blocks) == 1:
                out[key] = blocks[0]
            else:
                raise HCLError(f"{where}: {len(blocks)} blocks, expected one")
        elif isinstance(value, list) and value and all(_is_labelled_block(b) for b in value):
            raise HCLError(f"{where}: block labels are not supported (write `{key} {{ ... }}` without a label)")
        else:
            converted = _value(value, where)
            if isinstance(converted, list) and isinstance(out.get(key), list):
                out[key] = [*out[key], *converted]  # `services = [...]` beside repeated `service` blocks
            else:
                out[key] = converted
    return out


def _is_labelled_block(v: object) -> bool:
    return isinstance(v, dict) and len(v) == 1 and any(_is_block(x) for x in v.values())


def _value(v: object, where: str) -> Any:
    if isinstance(v, dict):
        return _body(v, where + ".")
    if isinstance(v, list):
        return [_value(x, where) for x in v]
    if isinstance(v, str):
        m = _EXPR.fullmatch(v)
        if m and _NUMBER.fullmatch(m.group(1).strip()):
            n = float(m.group(1))
            return int(n) if n.is_integer() and "." not in m.group(1) and "e" not in m.group(1).lower() else n
    return v
