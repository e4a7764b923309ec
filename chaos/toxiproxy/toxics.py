"""Toxiproxy's data model, pure: toxic types, request bodies, API errors. No I/O, no clock.

Semantics follow Toxiproxy 2.x (Shopify/toxiproxy `toxics/*.go`, `api.go`):

* A toxic has a name (default `<type>_<stream>`), a type, a stream (`downstream`: upstream server ->
  client, the default; `upstream`: client -> server), a toxicity (the chance, 0-1, that it applies
  to a given connection; default 1) and integer attributes (absent ones are 0).
* Toxic names are unique per proxy across both streams.
* Updating a toxic changes only the attributes (and toxicity) named in the body.
* Errors are JSON `{"error": ..., "status": ...}` with Toxiproxy's messages and status codes.

Stricter than Toxiproxy, on purpose (bad input gets a clear 400 instead of odd behaviour): a
negative attribute, a non-integer attribute and a toxicity outside 0-1 are rejected.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ATTRIBUTES", "STREAMS", "ApiError", "ProxySpec", "Toxic", "parse_populate", "parse_proxy",
    "parse_proxy_update", "parse_toxic", "slice_offsets", "update_toxic",
]

STREAMS = ("upstream", "downstream")

# type -> its attributes (all integers; milliseconds unless said otherwise)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "noop": (),
    "latency": ("latency", "jitter"),  # delay = latency +/- jitter ms
    "bandwidth": ("rate",),  # KB/s (1 KB = 1000 bytes); 0 = unlimited
    "slow_close": ("delay",),  # hold the close this long
    "timeout": ("timeout",),  # drop all data, close after timeout (0: never)
    "reset_peer": ("timeout",),  # on data, reset the connection (TCP RST) after timeout
    "slicer": ("average_size", "size_variation", "delay"),  # bytes, bytes, microseconds between slices
    "limit_data": ("bytes",),  # close once this many bytes have passed
}


class ApiError(Exception):
    """An API error: Toxiproxy's message and HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}

    def detail(self, what: str) -> ApiError:
        return ApiError(f"{self.message}: {what}", self.status)


BAD_BODY = ApiError("bad request body", 400)
MISSING_FIELD = ApiError("missing required field", 400)
PROXY_NOT_FOUND = ApiError("proxy not found", 404)
PROXY_EXISTS = ApiError("proxy already exists", 409)
INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TYPE = ApiError("invalid toxic type", 400)
TOXIC_EXISTS = ApiError("toxic already exists", 409)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)


@dataclass(frozen=True)
class Toxic:
    """One toxic. `serial` changes on every update, so a link can tell a new version from the old."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, int]
    serial: int = field(default=0, compare=False)

    def attr(self, key: str) -> int:
        return self.attributes.get(key, 0)

    def to_json(self) -> dict[str, Any]:
        return {"attributes": dict(self.attributes), "name": self.name, "type": self.type,
                "stream": self.stream, "toxicity": self.toxicity}


@dataclass(frozen=True)
class ProxySpec:
    name: str
    listen: str
    upstream: str
    enabled: bool


def _object(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BAD_BODY.detail(str(exc)) from None


def _string(obj: Mapping[str, Any], key: str, default: str) -> str:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BAD_BODY.detail(f"{key} must be a string, got {json.dumps(value)}")
    return value


def _bool(obj: Mapping[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BAD_BODY.detail(f"{key} must be true or false, got {json.dumps(value)}")
    return value


def _toxicity(obj: Mapping[str, Any], default: float) -> float:
    value = obj.get("toxicity")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise BAD_BODY.detail(f"toxicity must be a number from 0 to 1, got {json.dumps(value)}")
    return float(value)


def _attributes(ttype: str, raw: Any, base: Mapping[str, int]) -> dict[str, int]:
    """`base` with the known attributes of `raw` applied; unknown keys are ignored, as in Toxiproxy."""
    out = {k: base.get(k, 0) for k in ATTRIBUTES[ttype]}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        raise BAD_BODY.detail(f"attributes must be an object, got {json.dumps(raw)}")
    for key in ATTRIBUTES[ttype]:
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BAD_BODY.detail(f"attribute {key} of a {ttype} toxic must be an integer, got {json.dumps(value)}")
        if value < 0:
            raise BAD_BODY.detail(f"attribute {key} of a {ttype} toxic must not be negative, got {value}")
        out[key] = value
    return out


def parse_toxic(body: bytes | str, serial: int = 0) -> Toxic:
    """A new toxic from a `POST /proxies/{proxy}/toxics` body."""
    obj = _object(body)
    if not isinstance(obj, dict):
        raise BAD_BODY.detail("expected a JSON object")
    stream = _string(obj, "stream", "downstream").lower()
    if stream not in STREAMS:
        raise INVALID_STREAM
    ttype = _string(obj, "type", "")
    name = _string(obj, "name", "") or f"{ttype}_{stream}"
    if ttype not in ATTRIBUTES:
        raise INVALID_TYPE
    return Toxic(name, ttype, stream, _toxicity(obj, 1.0), _attributes(ttype, obj.get("attributes"), {}), serial)


def update_toxic(old: Toxic, body: bytes | str, serial: int) -> Toxic:
    """`old` with the attributes and toxicity of a `POST/PATCH .../toxics/{toxic}` body."""
    obj = _object(body)
    if not isinstance(obj, dict):
        raise BAD_BODY.detail("expected a JSON object")
    return Toxic(old.name, old.type, old.stream, _toxicity(obj, old.toxicity),
                 _attributes(old.type, obj.get("attributes"), old.attributes), serial)


def _proxy_fields(obj: Any, where: str = "") -> ProxySpec:
    if not isinstance(obj, dict):
        raise BAD_BODY.detail(f"expected a JSON object{where}")
    name = _string(obj, "name", "")
    upstream = _string(obj, "upstream", "")
    if not name:
        raise MISSING_FIELD.detail(f"name{where}")
    if not upstream:
        raise MISSING_FIELD.detail(f"upstream{where}")
    return ProxySpec(name, _string(obj, "listen", ""), upstream, _bool(obj, "enabled", True))


def parse_proxy(body: bytes | str) -> ProxySpec:
    """A `POST /proxies` body: name and upstream required, enabled defaults to true."""
    return _proxy_fields(_object(body))


def parse_proxy_update(current: ProxySpec, body: bytes | str) -> ProxySpec:
    """A `POST/PATCH /proxies/{proxy}` body: absent fields keep their current values."""
    obj = _object(body)
    if not isinstance(obj, dict):
        raise BAD_BODY.detail("expected a JSON object")
    return ProxySpec(current.name, _string(obj, "listen", current.listen), _string(obj, "upstream", current.upstream),
                     _bool(obj, "enabled", current.enabled))


def parse_populate(body: bytes | str) -> list[ProxySpec]:
    """A `POST /populate` body (or a `-config` file): a list of proxies, all checked before any is made."""
    obj = _object(body)
    if not isinstance(obj, list):
        raise BAD_BODY.detail("expected a JSON array of proxies")
    return [_proxy_fields(p, f" at proxy {i + 1}") for i, p in enumerate(obj)]


def slice_offsets(size: int, average: int, variation: int, rng: random.Random) -> list[tuple[int, int]]:
    """The slicer's cuts of `size` bytes: (start, end) pieces of about `average` bytes, +/- `variation`.

    A piece no longer than average + variation is kept whole; a longer one is halved (the cut moved
    by up to +/- variation) and each half cut again, so sizes vary evenly along the data."""
    out: list[tuple[int, int]] = []
    stack = [(0, size)]
    while stack:
        start, end = stack.pop()
        if end - start - average <= variation or end - start <= 1:
            out.append((start, end))
            continue
        mid = start + (end - start) // 2
        if variation > 0:
            mid += rng.randrange(-variation, variation)
        mid = min(max(mid, start + 1), end - 1)
        stack.append((mid, end))
        stack.append((start, mid))
    return out
