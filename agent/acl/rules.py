"""ACL policy rules (Consul 1.4+ language, as in 1.7): parse HCL or JSON rule text into a `Rules` value. Pure.

Resources with a name: `key`/`key_prefix`, `service`/`service_prefix`, `node`/`node_prefix`,
`agent`/`agent_prefix`, `session`/`session_prefix`, `event`/`event_prefix`, `query`/`query_prefix`; each
`<resource> "<name>" { policy = "read" | "write" | "deny" }` (`list` too, for keys only). The exact form
matches one name, the `_prefix` form every name starting with it (`""`: all). Resources without a name:
`acl`, `keyring`, `operator` = "read" | "write" | "deny". In JSON: `{"key_prefix": {"app/": {"policy":
"write"}}, "operator": "read"}`. Consul's other block fields (`intentions`) are accepted and ignored.

Bounds: rule text up to MAX_RULES_BYTES; names up to MAX_NAME bytes. Every error is a RulesError whose
message starts with "Failed to parse ACL rules" (the HTTP layer answers 400 with it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_RULES_BYTES = 128 * 1024
MAX_NAME = 4096

# Access levels, ordered as Consul orders them (acl/policy.go): deny < read < list < write.
DENY, READ, LIST, WRITE = "deny", "read", "list", "write"
LEVEL = {DENY: 0, READ: 1, LIST: 2, WRITE: 3}

NAMED = ("key", "service", "node", "agent", "session", "event", "query")
UNNAMED = ("acl", "keyring", "operator")
_BLOCK_FIELDS = frozenset({"policy", "intentions"})


class RulesError(ValueError):
    """Rule text that Consul would refuse."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    access: str  # DENY | READ | LIST | WRITE


@dataclass(frozen=True, slots=True)
class Rules:
    """One policy's rules. `exact[res]` / `prefix[res]`: name -> access (res in NAMED); `simple[res]` for UNNAMED."""

    exact: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    prefix: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    simple: Mapping[str, str] = field(default_factory=dict)


def _fail(msg: str) -> RulesError:
    return RulesError(f"Failed to parse ACL rules: {msg}")


def _access(res: str, value: Any) -> str:
    if not isinstance(value, str) or value not in LEVEL or (value == LIST and res not in ("key", "key_prefix")):
        raise _fail(f"Invalid {res} policy: {value!r}")
    return value


def _decode(text: str) -> dict[str, Any]:
    stripped = text.strip()
    if not stripped:
        return {}
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError as exc:
            raise _fail(f"invalid JSON: {exc}") from None
    else:
        import hcl2  # lazy: python-hcl2 and lark weigh ~5 MiB, and only HCL rule text needs them

        options = hcl2.SerializationOptions(with_comments=False, explicit_blocks=True, preserve_heredocs=False,
                                            strip_string_quotes=True)
        try:
            doc = hcl2.loads(text, serialization_options=options)
        except Exception as exc:  # lark's UnexpectedInput family and python-hcl2's own errors
            line = getattr(exc, "line", None)
            where = f" at line {line}" if isinstance(line, int) and line > 0 else ""
            raise _fail(f"invalid HCL{where}") from None
    if not isinstance(doc, dict):
        raise _fail("the rules are not an object")
    return doc


def _named_entries(res: str, value: Any) -> list[tuple[str, Any]]:
    """`value` as (name, body) pairs: HCL gives a list of one-key objects per block, JSON one object."""
    items = value if isinstance(value, list) else [value]
    out: list[tuple[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise _fail(f"{res}: expected blocks with a name")
        for name, body in item.items():
            if not isinstance(name, str):
                raise _fail(f"{res}: a name must be a string")
            out.append((name, body))
    return out


def parse(text: str) -> Rules:
    """Parse rule text (HCL or JSON); raise RulesError. Two rules for the same exact name or prefix: the
    last one wins (as Consul's HCL decoding does)."""
    if len(text.encode()) > MAX_RULES_BYTES:
        raise _fail(f"rules longer than {MAX_RULES_BYTES} bytes")
    doc = _decode(text)
    exact: dict[str, dict[str, str]] = {}
    prefix: dict[str, dict[str, str]] = {}
    simple: dict[str, str] = {}
    for key, value in doc.items():
        if key in UNNAMED:
            simple[key] = _access(key, value)
            continue
        res, is_prefix = (key[: -len("_prefix")], True) if key.endswith("_prefix") else (key, False)
        if res not in NAMED:
            raise _fail(f"unknown rule {key!r}")
        for name, body in _named_entries(key, value):
            if len(name.encode()) > MAX_NAME:
                raise _fail(f"{key}: name longer than {MAX_NAME} bytes")
            if isinstance(body, list) and len(body) == 1:  # HCL1-style lists of one object
                body = body[0]
            if not isinstance(body, dict):
                raise _fail(f"{key} {name!r}: expected a block with a policy")
            fields = {k: v for k, v in body.items() if k != "__is_block__"}
            unknown = set(fields) - _BLOCK_FIELDS
            if unknown:
                raise _fail(f"{key} {name!r}: unknown field {sorted(unknown)[0]!r}")
            if "policy" not in fields:
                if "intentions" in fields:  # Connect intentions only: nothing for pyconsul
                    continue
                raise _fail(f"{key} {name!r}: missing policy")
            (prefix if is_prefix else exact).setdefault(res, {})[name] = _access(key, fields["policy"])
    return Rules(exact=exact, prefix=prefix, simple=simple)


def validate(text: str) -> None:
    """Raise RulesError if `text` is not valid rule text."""
    parse(text)


# Consul's builtin policy "global-management": every resource writable.
GLOBAL_MANAGEMENT_RULES = """acl = "write"
keyring = "write"
operator = "write"
agent_prefix "" { policy = "write" }
event_prefix "" { policy = "write" }
key_prefix "" { policy = "write" }
node_prefix "" { policy = "write" }
query_prefix "" { policy = "write" }
service_prefix "" { policy = "write" }
session_prefix "" { policy = "write" }
"""
