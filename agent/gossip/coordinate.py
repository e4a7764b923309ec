"""Vivaldi network coordinates, with serf's coordinate semantics (hashicorp/serf/coordinate). Pure core.

A coordinate places a node in an 8-dimensional Euclidean space plus a non-Euclidean `height` (the
access-link latency every path to the node pays) and an `adjustment` (a per-node offset learned from
the recent residuals); the estimated round trip between two nodes is

    |a.vec - b.vec| + a.height + b.height (+ a.adjustment + b.adjustment when that sum stays positive)

in seconds. A `Client` refines its own coordinate from observed RTTs to other nodes (Dabek et al.,
"Vivaldi: A Decentralized Network Coordinate System", SIGCOMM 2004, §3-§4, with the height vectors of
§5.3) plus the two serf additions: "Network Coordinates in the Wild" (Ledlie et al., NSDI 2007) --
a per-node median latency filter and an adjustment term -- and a weak gravity towards the origin so the
whole system does not drift away.

Inputs from the wire are checked before they touch any state: a coordinate whose components are not
finite numbers, whose magnitude passes MAX_COMPONENT, or whose dimensionality differs from ours is
refused with InvalidCoordinate (serf refuses the first and the last; the magnitude bound is ours:
real coordinates stay within seconds of the origin, so a huge value is an attack or a bug, and it would
otherwise lose all precision in the sums). The caller counts refusals (`Client.stats`).

No clock, no I/O: RTTs are given in seconds, randomness comes from an injected random.Random.
Ack payload (serf ping_delegate.go): one version byte (PING_VERSION = 1) then the msgpack map
{"Adjustment", "Error", "Height", "Vec": [float64...]} as go-msgpack encodes the struct (fields sorted by
name, floats as float64, strings as raw): checked byte for byte against packets captured from real serf.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgpack

__all__ = [
    "MAX_COMPONENT", "MAX_RTT", "PING_VERSION", "Client", "ClientStats", "Coordinate", "CoordinateConfig",
    "InvalidCoordinate", "decode_ack_payload", "distance", "encode_ack_payload", "from_json", "new_coordinate",
]

PING_VERSION = 1  # serf's ping payload header
MAX_RTT = 10.0  # seconds: serf refuses an RTT outside [0, 10 s]
MAX_COMPONENT = 1.0e6  # seconds: any component (vec, error, adjustment, height) beyond this is refused
MAX_PAYLOAD = 1024  # bytes of an ack payload we decode (an 8-dim coordinate is ~125)
ZERO_THRESHOLD = 1.0e-6  # serf: distances below this count as zero (avoid dividing by ~0)


class InvalidCoordinate(ValueError):
    """A coordinate (or an RTT) we refuse; the message says why."""


@dataclass(frozen=True, slots=True)
class CoordinateConfig:
    """serf's DefaultConfig(), field by field, with its reasons."""

    dimensionality: int = 8  # 8 dimensions fit real Internet latencies well (Vivaldi §5.2)
    vivaldi_error_max: float = 1.5  # a new node starts, and is capped, at this relative error
    vivaldi_ce: float = 0.25  # error-estimate smoothing (Vivaldi's c_e)
    vivaldi_cc: float = 0.25  # step size of the spring relaxation (Vivaldi's c_c)
    adjustment_window_size: int = 20  # residuals averaged into the adjustment term (0 disables it)
    height_min: float = 10.0e-6  # seconds: heights never drop below this
    latency_filter_size: int = 3  # median of the last 3 RTT samples per peer (Ledlie et al.)
    gravity_rho: float = 150.0  # seconds: gravity towards the origin grows as (distance / rho)^2


@dataclass(frozen=True, slots=True)
class Coordinate:
    vec: tuple[float, ...]
    error: float
    adjustment: float
    height: float

    def is_valid(self) -> bool:
        """Every component finite and within MAX_COMPONENT."""
        return all(math.isfinite(x) and abs(x) <= MAX_COMPONENT
                   for x in (*self.vec, self.error, self.adjustment, self.height))

    def compatible(self, other: Coordinate) -> bool:
        return len(self.vec) == len(other.vec)

    def raw_distance(self, other: Coordinate) -> float:
        """Seconds, without the adjustment terms."""
        return _magnitude(_diff(self.vec, other.vec)) + self.height + other.height

    def distance(self, other: Coordinate) -> float:
        """The estimated RTT in seconds: the raw distance plus both adjustments unless that sum would be
        zero or negative (then the raw distance). Symmetric."""
        raw = self.raw_distance(other)
        adjusted = raw + self.adjustment + other.adjustment
        return adjusted if adjusted > 0.0 else raw

    def to_json(self) -> dict[str, Any]:
        """Consul's JSON (and go-msgpack's map) of a coordinate; keys in go-msgpack's order (sorted by
        name), so our ack payload is byte-identical to serf's for the same coordinate."""
        return {"Adjustment": self.adjustment, "Error": self.error, "Height": self.height, "Vec": list(self.vec)}


def new_coordinate(cfg: CoordinateConfig | None = None) -> Coordinate:
    """The origin, with the maximum error and the minimum height (serf NewCoordinate)."""
    cfg = cfg or CoordinateConfig()
    return Coordinate((0.0,) * cfg.dimensionality, cfg.vivaldi_error_max, 0.0, cfg.height_min)


def distance(a: Coordinate, b: Coordinate) -> float:
    """Estimated RTT between two coordinates in seconds; math.inf when they cannot be compared
    (different dimensionality or an invalid one), so sorting by it puts such nodes last."""
    if not a.compatible(b) or not a.is_valid() or not b.is_valid():
        return math.inf
    return a.distance(b)


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InvalidCoordinate(f"{what} is not a number")
    try:
        f = float(v)
    except OverflowError:
        raise InvalidCoordinate(f"{what} is out of range") from None
    if not math.isfinite(f) or abs(f) > MAX_COMPONENT:
        raise InvalidCoordinate(f"{what} is not a finite number within {MAX_COMPONENT:g}")
    return f


def from_json(obj: Any, dimensionality: int = 8) -> Coordinate:
    """A coordinate from its JSON / msgpack map ({"Vec", "Error", "Adjustment", "Height"}, keys matched
    case-insensitively as Go does). InvalidCoordinate on anything else, including a vector that is not
    `dimensionality` long."""
    if not isinstance(obj, dict):
        raise InvalidCoordinate("a coordinate is an object with Vec, Error, Adjustment and Height")
    m = {str(k).lower(): v for k, v in obj.items() if isinstance(k, str | bytes)}
    vec = m.get("vec")
    if not isinstance(vec, list | tuple):
        raise InvalidCoordinate("Vec must be an array of numbers")
    if len(vec) != dimensionality:
        raise InvalidCoordinate(f"dimensionality mismatch: Vec has {len(vec)} components, expected {dimensionality}")
    return Coordinate(
        tuple(_number(x, f"Vec[{i}]") for i, x in enumerate(vec)),
        _number(m.get("error", 0.0), "Error"),
        _number(m.get("adjustment", 0.0), "Adjustment"),
        _number(m.get("height", 0.0), "Height"),
    )


def encode_ack_payload(c: Coordinate) -> bytes:
    """serf's AckPayload: the version byte, then the msgpack coordinate (floats as float64)."""
    body: bytes = msgpack.packb(c.to_json(), use_bin_type=False, use_single_float=False)
    return bytes([PING_VERSION]) + body


def decode_ack_payload(buf: bytes, dimensionality: int = 8) -> Coordinate:
    """Inverse of encode_ack_payload; InvalidCoordinate for another version, garbage or a bad coordinate."""
    if not buf:
        raise InvalidCoordinate("empty ping payload")
    if buf[0] != PING_VERSION:
        raise InvalidCoordinate(f"unsupported ping version {buf[0]}")
    if len(buf) > MAX_PAYLOAD:
        raise InvalidCoordinate(f"ping payload of {len(buf)} bytes (limit {MAX_PAYLOAD})")
    try:
        obj = msgpack.unpackb(buf[1:], raw=False, unicode_errors="replace", strict_map_key=False,
                              max_array_len=64, max_map_len=16, max_str_len=64, max_bin_len=64, max_ext_len=0)
    except Exception as exc:  # msgpack raises several types on garbage
        raise InvalidCoordinate(f"undecodable coordinate: {type(exc).__name__}") from None
    return from_json(obj, dimensionality)


# ---------------------------------------------------------------- vector helpers


def _diff(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(x - y for x, y in zip(a, b, strict=True))


def _magnitude(v: tuple[float, ...]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _unit_vector_at(a: tuple[float, ...], b: tuple[float, ...], rng: random.Random) -> tuple[tuple[float, ...], float]:
    """The unit vector pointing from b to a and the distance between them. Two coincident points get a
    random direction (and distance 0), so nodes that start together at the origin can separate."""
    d = _diff(a, b)
    mag = _magnitude(d)
    if mag > ZERO_THRESHOLD:
        return tuple(x / mag for x in d), mag
    r = tuple(rng.random() - 0.5 for _ in a)
    rmag = _magnitude(r)
    if rmag > ZERO_THRESHOLD:
        return tuple(x / rmag for x in r), 0.0
    return (1.0,) + (0.0,) * (len(a) - 1), 0.0


def _apply_force(cfg: CoordinateConfig, c: Coordinate, force: float, other: Coordinate,
                 rng: random.Random) -> Coordinate:
    """Move c by `force` seconds along the line from other to c (a positive force pushes apart). The height
    takes its share of the force in proportion to its part of the distance (Vivaldi §5.3), never below
    height_min."""
    unit, mag = _unit_vector_at(c.vec, other.vec, rng)
    vec = tuple(x + u * force for x, u in zip(c.vec, unit, strict=True))
    height = c.height
    if mag > ZERO_THRESHOLD:
        height = max((c.height + other.height) * force / mag + c.height, cfg.height_min)
    return Coordinate(vec, c.error, c.adjustment, height)


# ---------------------------------------------------------------- client


@dataclass(slots=True)
class ClientStats:
    updates: int = 0
    rejected: int = 0  # invalid coordinates or RTTs refused (from the wire)
    resets: int = 0  # our coordinate became invalid (numerical trouble) and was reset to the origin


@dataclass(slots=True)
class Client:
    """One node's view: its own coordinate, refined by `update` (serf coordinate.Client)."""

    cfg: CoordinateConfig = field(default_factory=CoordinateConfig)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    coord: Coordinate = field(init=False)
    origin: Coordinate = field(init=False)
    samples: list[float] = field(init=False)  # adjustment residuals (a ring)
    sample_index: int = 0
    latency: dict[str, deque[float]] = field(default_factory=dict)  # peer -> recent RTTs
    stats: ClientStats = field(default_factory=ClientStats)

    def __post_init__(self) -> None:
        self.coord = new_coordinate(self.cfg)
        self.origin = Coordinate((0.0,) * self.cfg.dimensionality, 0.0, 0.0, 0.0)
        self.samples = [0.0] * self.cfg.adjustment_window_size

    def forget(self, node: str) -> None:
        """Drop a peer's latency samples (it left or was reaped)."""
        self.latency.pop(node, None)

    def update(self, node: str, other: Coordinate, rtt: float) -> Coordinate:
        """One observation: `node`, at coordinate `other`, answered in `rtt` seconds. Returns our new
        coordinate; raises InvalidCoordinate (counted in stats.rejected) for an unusable input."""
        if not self.coord.compatible(other):
            self.stats.rejected += 1
            raise InvalidCoordinate(f"dimensions aren't compatible: {len(other.vec)} != {len(self.coord.vec)}")
        if not other.is_valid():
            self.stats.rejected += 1
            raise InvalidCoordinate("coordinate is invalid")
        if not (math.isfinite(rtt) and 0.0 <= rtt <= MAX_RTT):
            self.stats.rejected += 1
            raise InvalidCoordinate(f"round trip time {rtt!r} s is not within [0, {MAX_RTT:g}] s")
        rtt = self._filter(node, rtt)
        self._vivaldi(other, rtt)
        self._adjust(other, rtt)
        self._gravity()
        if not self.coord.is_valid():
            self.stats.resets += 1
            self.coord = new_coordinate(self.cfg)
        self.stats.updates += 1
        return self.coord

    def _filter(self, node: str, rtt: float) -> float:
        """The median of the last latency_filter_size samples from this peer (spikes are ignored)."""
        q = self.latency.get(node)
        if q is None:
            q = self.latency[node] = deque(maxlen=max(1, self.cfg.latency_filter_size))
        q.append(rtt)
        ordered = sorted(q)
        return ordered[len(ordered) // 2]

    def _vivaldi(self, other: Coordinate, rtt: float) -> None:
        """Vivaldi §4: weight the sample by our error relative to the peer's, update the error estimate
        (a moving average of the relative residual, capped), then move along the spring."""
        cfg = self.cfg
        c = self.coord
        dist = c.distance(other)
        rtt = max(rtt, ZERO_THRESHOLD)
        wrongness = abs(dist - rtt) / rtt
        total = max(c.error + other.error, ZERO_THRESHOLD)
        weight = c.error / total
        error = min(cfg.vivaldi_ce * weight * wrongness + c.error * (1.0 - cfg.vivaldi_ce * weight),
                    cfg.vivaldi_error_max)
        force = cfg.vivaldi_cc * weight * (rtt - dist)
        moved = _apply_force(cfg, Coordinate(c.vec, error, c.adjustment, c.height), force, other, self.rng)
        self.coord = moved

    def _adjust(self, other: Coordinate, rtt: float) -> None:
        """The adjustment is half the mean residual (rtt - raw distance) over the window."""
        n = self.cfg.adjustment_window_size
        if n <= 0:
            return
        self.samples[self.sample_index] = rtt - self.coord.raw_distance(other)
        self.sample_index = (self.sample_index + 1) % n
        c = self.coord
        self.coord = Coordinate(c.vec, c.error, sum(self.samples) / (2.0 * n), c.height)

    def _gravity(self) -> None:
        """A pull towards the origin growing with the square of the distance over gravity_rho."""
        d = self.origin.distance(self.coord)
        force = -((d / self.cfg.gravity_rho) ** 2)
        self.coord = _apply_force(self.cfg, self.coord, force, self.origin, self.rng)
