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
from collections.abc import Callable
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


# Decoding builds one converter per type, once (closures over the resolved field types), so a value costs type
# checks and calls, not dataclasses.fields / get_type_hints / get_origin per value (a catalog register entry was
# 14 % of a busy leader's time in the per-value version). A converter takes (value, path, suffix): the path of the
# value is path + suffix, concatenated only on an error or when descending into a nested dataclass.
_Conv = Callable[[Any, str, str], Any]
_DECODERS: dict[type, _Conv] = {}


def from_wire(cls: type[T], obj: Any, where: str = "") -> T:
    """Build `cls` from a wire map; raise DecodeError naming the offending path on any mismatch."""
    dec = _DECODERS.get(cls)
    if dec is None:
        dec = _dataclass_decoder(cls, {})
    out: T = dec(obj, where or cls.__name__, "")
    return out


def _dataclass_decoder(cls: type, building: dict[type, _Conv]) -> _Conv:
    """Published in _DECODERS only once complete (a decoder may be built by two threads at once: both are
    right, one wins); `building` holds those under construction, for a type that contains itself."""
    dec = _DECODERS.get(cls) or building.get(cls)
    if dec is not None:
        return dec
    fields: list[tuple[str, str, bool, _Conv]] = []  # name, ".name", required, converter

    def decode(obj: Any, path: str, suffix: str) -> Any:
        where = path + suffix if suffix else path
        if not isinstance(obj, dict):
            raise DecodeError(f"{where}: expected a map, got {type(obj).__name__}")
        kwargs: dict[str, Any] = {}
        for name, dotted, required, conv in fields:
            if name in obj:
                kwargs[name] = conv(obj[name], where, dotted)
            elif required:
                raise DecodeError(f"{where}: missing field {name!r}")
        return cls(**kwargs)

    building[cls] = decode
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.append((f.name, f".{f.name}", required, _converter(hints[f.name], building)))
    _DECODERS[cls] = decode
    return decode


def _converter(tp: Any, building: dict[type, _Conv]) -> _Conv:
    """The converter for a field type (the checks and messages of the per-value version, decided once)."""
    origin = get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(tp) if a is not type(None)]
        inner = _converter(args[0], building)

        def optional(v: Any, path: str, suffix: str) -> Any:
            return None if v is None else inner(v, path, suffix)
        return optional
    if origin is tuple:
        (item_tp,) = (a for a in get_args(tp) if a is not Ellipsis)
        item = _converter(item_tp, building)
        scalar = _SCALAR_TYPES.get(item_tp)

        def array(v: Any, path: str, suffix: str) -> Any:
            if not isinstance(v, list):
                raise DecodeError(f"{path}{suffix}: expected an array, got {type(v).__name__}")
            if scalar is not None and all(x.__class__ is scalar for x in v):
                if scalar is int:  # (bool is not int by class) the range check
                    for x in v:
                        if not 0 <= x < U64:
                            break
                    else:
                        return tuple(v)
                elif scalar is not float or all(x - x == 0.0 for x in v):  # inf - inf and nan - nan are nan
                    return tuple(v)
            where = path + suffix
            return tuple([item(x, where, f"[{i}]") for i, x in enumerate(v)])
        return array
    if origin is dict:
        _kt, vt = get_args(tp)
        value = _converter(vt, building)
        str_values = vt is str

        def mapping(v: Any, path: str, suffix: str) -> Any:
            if not isinstance(v, dict):
                raise DecodeError(f"{path}{suffix}: expected a map, got {type(v).__name__}")
            if not all(isinstance(k, str) for k in v):
                raise DecodeError(f"{path}{suffix}: map keys must be strings")
            if str_values and all(isinstance(x, str) for x in v.values()):
                return dict(v)
            where = path + suffix
            return {k: value(x, where, f"[{k!r}]") for k, x in v.items()}
        return mapping
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp, building)
    return _scalar_converter(tp)


def _scalar_converter(tp: Any) -> _Conv:
    def wrong(v: Any, path: str, suffix: str) -> DecodeError:
        return DecodeError(f"{path}{suffix}: expected {tp.__name__}, got {type(v).__name__}")

    if tp is bool:
        def conv_bool(v: Any, path: str, suffix: str) -> Any:
            if isinstance(v, bool):
                return v
            raise wrong(v, path, suffix)
        return conv_bool
    if tp is int:
        def conv_int(v: Any, path: str, suffix: str) -> Any:
            if isinstance(v, int) and not isinstance(v, bool):
                if not 0 <= v < U64:
                    raise DecodeError(f"{path}{suffix}: {v} is outside the unsigned 64-bit range")
                return v
            raise wrong(v, path, suffix)
        return conv_int
    if tp is float:
        def conv_float(v: Any, path: str, suffix: str) -> Any:
            if isinstance(v, int | float) and not isinstance(v, bool):
                if v != v or v in (_INF, _NINF):
                    raise DecodeError(f"{path}{suffix}: not a finite number")
                return float(v)
            raise wrong(v, path, suffix)
        return conv_float
    if tp is str or tp is bytes:
        def conv_exact(v: Any, path: str, suffix: str) -> Any:
            if isinstance(v, tp):
                return v
            raise wrong(v, path, suffix)
        return conv_exact

    def unsupported(v: Any, path: str, suffix: str) -> Any:
        raise DecodeError(f"{path}{suffix}: unsupported field type {tp!r}")
    return unsupported


_INF, _NINF = float("inf"), float("-inf")
# Array items of these types are checked by class in one pass (bool's class is not int, a str subclass is not str:
# such values take the per-item path, which accepts or rejects them as before).
_SCALAR_TYPES: dict[Any, type] = {int: int, str: str, bytes: bytes, bool: bool, float: float}
