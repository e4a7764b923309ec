"""Prepared-query templates (Consul 1.7's prepared_query/template.go semantics, Template.Type
"name_prefix_match"): a template query answers every name it is the longest prefix of, and its Service strings
are rendered for that name before it runs.

Interpolation: the `${...}` parts of every string of the Service block (Service, Near, Tags, Failover.Datacenters,
IgnoreCheckIDs, NodeMeta and ServiceMeta values) are HIL expressions. Supported, as Consul documents them:
`${name.full}` (the name looked up), `${name.prefix}` (the template's Name), `${name.suffix}` (full minus
prefix), `${agent.segment}` ("" here: no segments) and `${match(N)}` (capture group N of Template.Regexp on
the full name, "" when there is no such group or no match). `$${` is a literal `${`. Other HIL (arithmetic,
string literals, other functions) is refused with "Bad format"/"Bad evaluation" as Consul refuses what HIL
cannot evaluate.

Regexp: Go's RE2 syntax, read by agent/filter/regex.py (the `?filter=` `matches` operator's translator onto
Python's `re`: RE2-only constructs refused with Go's messages, nested unbounded repetitions such as `(a+)+`
refused so matching a name cannot backtrack for long). Bounds: its MAX_PATTERN_LENGTH (512 characters).

Pure: no I/O; `compile_template` is deterministic (every replica accepts or refuses a query alike).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from pyconsul.agent.state.query_defs import TEMPLATE_NAME_PREFIX_MATCH, PreparedQueryDef, ServiceQuery

__all__ = ["Compiled", "TemplateError", "compile_template", "is_template", "render"]

_VARS = ("name.full", "name.prefix", "name.suffix", "agent.segment")
_MATCH = re.compile(r"match\(\s*(-?[0-9]+)\s*\)")


class TemplateError(ValueError):
    """A template that does not compile or render; the message is Consul's style."""


def is_template(q: PreparedQueryDef) -> bool:
    return q.template.type != ""


# A string field compiles to parts: str (literal) or ("var", name) or ("match", n).
Part = str | tuple[str, Any]


def _parse(text: str) -> list[Part]:
    """The parts of one HIL string; ValueError with the reason on a syntax it does not support."""
    parts: list[Part] = []
    i, lit = 0, []
    while i < len(text):
        if text.startswith("$${", i):
            lit.append("${")
            i += 3
        elif text.startswith("${", i):
            end = text.find("}", i + 2)
            if end < 0:
                raise ValueError("expected \"}\" to close the interpolation")
            expr = text[i + 2:end].strip()
            if lit:
                parts.append("".join(lit))
                lit = []
            m = _MATCH.fullmatch(expr)
            if expr in _VARS:
                parts.append(("var", expr))
            elif m is not None:
                parts.append(("match", int(m.group(1))))
            elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", expr):
                parts.append(("unknown", expr))  # a variable HIL parses but cannot evaluate
            else:
                raise ValueError(f"unsupported expression {expr!r}")
            i = end + 1
        else:
            lit.append(text[i])
            i += 1
    if lit:
        parts.append("".join(lit))
    return parts


def _walk(svc: ServiceQuery, fn: Callable[[str, str], str]) -> ServiceQuery:
    """A copy of `svc` with every string replaced by fn(path, value); path as Consul names it (".Tags[0]")."""
    fo = svc.failover
    return dataclasses.replace(
        svc,
        service=fn(".Service", svc.service),
        failover=dataclasses.replace(fo, datacenters=tuple(
            fn(f".Failover.Datacenters[{i}]", d) for i, d in enumerate(fo.datacenters))),
        ignore_check_ids=tuple(fn(f".IgnoreCheckIDs[{i}]", c) for i, c in enumerate(svc.ignore_check_ids)),
        near=fn(".Near", svc.near),
        tags=tuple(fn(f".Tags[{i}]", t) for i, t in enumerate(svc.tags)),
        node_meta={k: fn(f".NodeMeta[{k}]", v) for k, v in svc.node_meta.items()},
        service_meta={k: fn(f".ServiceMeta[{k}]", v) for k, v in svc.service_meta.items()},
    )


@dataclasses.dataclass(frozen=True)
class Compiled:
    query: PreparedQueryDef
    trees: dict[str, list[Part]]
    pattern: re.Pattern[str] | None


def compile_template(q: PreparedQueryDef) -> Compiled:
    """Check a template as Consul's Compile does (type, every string's syntax, the regexp, a test render with
    the template's own name); TemplateError with Consul's message otherwise."""
    if q.template.type != TEMPLATE_NAME_PREFIX_MATCH:
        raise TemplateError(f"Bad Template.Type '{q.template.type}'")
    trees: dict[str, list[Part]] = {}

    def parse(path: str, value: str) -> str:
        try:
            trees[path] = _parse(value)
        except ValueError as exc:
            raise TemplateError(f"Bad format '{value}' in Service{path}: {exc}") from None
        return value

    _walk(q.service, parse)
    pattern = None
    if q.template.regexp:
        from pyconsul.agent.filter.regex import RegexError, compile_go_regex  # loaded by the first regexp template

        try:
            pattern = compile_go_regex(q.template.regexp)
        except (RegexError, ValueError, re.error, OverflowError, RecursionError) as exc:
            raise TemplateError(f"Bad Regexp: {exc}") from None
    ct = Compiled(q, trees, pattern)
    render(ct, q.name)
    return ct


def render(ct: Compiled, name: str, segment: str = "") -> PreparedQueryDef:
    """The template rendered for `name` (the name looked up, as given). TemplateError if a string uses a
    variable that does not exist."""
    q = ct.query
    groups: list[str] = []
    if ct.pattern is not None:
        m = ct.pattern.search(name)
        if m is not None:
            groups = [g if g is not None else "" for g in (m.group(0), *m.groups())]
    values = {
        "name.full": name,
        "name.prefix": q.name,
        "name.suffix": name[len(q.name):] if name.startswith(q.name) else name,
        "agent.segment": segment,
    }

    def ev(path: str, value: str) -> str:
        tree = ct.trees.get(path)
        if tree is None:
            return value
        out = []
        for part in tree:
            if isinstance(part, str):
                out.append(part)
            elif part[0] == "var":
                out.append(values[part[1]])
            elif part[0] == "match":
                n = part[1]
                out.append(groups[n] if 0 <= n < len(groups) else "")
            else:
                raise TemplateError(
                    f"Bad evaluation for '{value}' in Service{path}: unknown variable accessed: {part[1]}")
        return "".join(out)

    svc = _walk(q.service, ev)
    if q.template.remove_empty_tags:
        svc = dataclasses.replace(svc, tags=tuple(t for t in svc.tags if t))
    return dataclasses.replace(q, service=svc)
