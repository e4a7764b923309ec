"""Msgpack <-> frozen dataclass conversion shared by commands (commands.py) and snapshots (snapshot.py).

Contract:
- `to_wire(obj)` turns a dataclass into a msgpack-ready map keyed by field name; tuples become arrays,
  dicts are emitted with sorted keys so that equal values always give equal bytes (determinism is a
  replication requirement: snapshots of two replicas in the same state must be byte-identical).
- `from_wire(cls, obj)` is strict about types and lenient about unknown keys (a newer writer may add
  fields; a field added later must have a default so older entries still decode). A missing field
  without a default, or a value of the wrong type, raises DecodeError. Unsigned ints must lie in
  [0, 2**64); a float field accepts an int and stores a float.
- `pack`/`unpack` fix the msgpack options: bin type on (bytes and str stay distinct), no ext types.
  Strings are byte strings in disguise: a KV key is whatever bytes the client sent, so a str holds
  undecodable bytes as lone surrogates (UTF-8 with surrogateescape, as the HTTP layer decodes paths)
  and travels as those same bytes; `unpack` restores them. Valid UTF-8 is unaffected.
Supported field types: str, bytes, int, float, bool, tuple[T, ...], dict[str, str], T | None and nested
dataclasses built from the same.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, get_args, get_origin

import msgpack

T = TypeVar("T")
U64 = 1 << 64


class DecodeError(ValueError):
    """Bytes that are not a valid command or snapshot. The message says why; it is safe to log."""


def pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True, unicode_errors="surrogateescape")
    return out


def pack_map_header(n: int) -> bytes:
    """The header of a map of n pairs, as pack() would write it: pack(d) == header + each key and value packed."""
    return bytes(msgpack.Packer(use_bin_type=True).pack_map_header(n))


def pack_array_header(n: int) -> bytes:
    return bytes(msgpack.Packer(use_bin_type=True).pack_array_header(n))


def unpack(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    try:
        return msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, use_list=True,
                               unicode_errors="surrogateescape")
    except Exception as exc:  # msgpack raises ValueError, ExtraData, FormatError, StackError, TypeError...
        raise DecodeError(f"bad msgpack: {type(exc).__name__}: {exc}") from None


def to_wire(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(value[k]) for k in sorted(value)}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def from_wire(cls: type[T], obj: Any, where: str = "") -> T:
    """Build `cls` from a wire map; raise DecodeError naming the offending path on any mismatch."""
    where = where or cls.__name__
    if not isinstance(obj, dict):
        raise DecodeError(f"{where}: expected a map, got {type(obj).__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in obj:
            kwargs[f.name] = _convert(hints[f.name], obj[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise DecodeError(f"{where}: missing field {f.name!r}")
    return cls(**kwargs)


def _convert(tp: Any, v: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(tp) if a is not type(None)]
        if v is None:
            return None
        return _convert(args[0], v, where)
    if origin is tuple:
        if not isinstance(v, list):
            raise DecodeError(f"{where}: expected an array, got {type(v).__name__}")
        (item,) = (a for a in get_args(tp) if a is not Ellipsis)
        return tuple(_convert(item, x, f"{where}[{i}]") for i, x in enumerate(v))
    if origin is dict:
        if not isinstance(v, dict):
            raise DecodeError(f"{where}: expected a map, got {type(v).__name__}")
        _kt, vt = get_args(tp)
        if not all(isinstance(k, str) for k in v):
            raise DecodeError(f"{where}: map keys must be strings")
        return {k: _convert(vt, x, f"{where}[{k!r}]") for k, x in v.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_wire(tp, v, where)
    return _scalar(tp, v, where)


def _scalar(tp: Any, v: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(v, bool):
            return v
    elif tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            if not 0 <= v < U64:
                raise DecodeError(f"{where}: {v} is outside the unsigned 64-bit range")
            return v
    elif tp is float:
        if isinstance(v, int | float) and not isinstance(v, bool):
            if v != v or v in (float("inf"), float("-inf")):
                raise DecodeError(f"{where}: not a finite number")
            return float(v)
    elif tp is str:
        if isinstance(v, str):
            return v
    elif tp is bytes:
        if isinstance(v, bytes):
            return v
    else:
        raise DecodeError(f"{where}: unsupported field type {tp!r}")
    raise DecodeError(f"{where}: expected {tp.__name__}, got {type(v).__name__}")
