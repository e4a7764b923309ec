"""Vivaldi coordinates (agent/gossip/coordinate.py): convergence, symmetry, defaults, wire format, bad input."""

from __future__ import annotations

import math
import random

import msgpack
import pytest

from pyconsul.agent.gossip.coordinate import (
    MAX_COMPONENT,
    Client,
    Coordinate,
    CoordinateConfig,
    InvalidCoordinate,
    decode_ack_payload,
    distance,
    encode_ack_payload,
    from_json,
    new_coordinate,
)


def _simulate(rtts: list[list[float]], rounds: int, seed: int) -> list[Client]:
    """Every node pings a random other node each round and learns its coordinate and RTT (as acks do)."""
    rng = random.Random(seed)
    n = len(rtts)
    clients = [Client(rng=random.Random(seed * 100 + i)) for i in range(n)]
    for _ in range(rounds):
        for i in range(n):
            j = rng.randrange(n - 1)
            j = j + 1 if j >= i else j
            clients[i].update(f"n{j}", clients[j].coord, rtts[i][j])
    return clients


def _relative_errors(clients: list[Client], rtts: list[list[float]]) -> list[float]:
    n = len(clients)
    return sorted(abs(clients[i].coord.distance(clients[j].coord) - rtts[i][j]) / rtts[i][j]
                  for i in range(n) for j in range(n) if i != j)


def test_defaults_match_serf() -> None:
    cfg = CoordinateConfig()
    assert (cfg.dimensionality, cfg.vivaldi_error_max, cfg.vivaldi_ce, cfg.vivaldi_cc) == (8, 1.5, 0.25, 0.25)
    assert (cfg.adjustment_window_size, cfg.height_min, cfg.latency_filter_size, cfg.gravity_rho) == (
        20, 10.0e-6, 3, 150.0)
    c = new_coordinate()
    assert c.vec == (0.0,) * 8 and c.error == 1.5 and c.adjustment == 0.0 and c.height == 10.0e-6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_converges_on_a_grid_with_access_links(seed: int) -> None:
    """25 nodes on a 5x5 grid, 10 ms apart, each behind a 2 ms access link (a height): after enough
    rounds the estimates are close to the truth (serf's own grid test expects the same order)."""
    pts = [(x * 0.010, y * 0.010) for x in range(5) for y in range(5)]
    rtts = [[math.dist(a, b) + 0.004 for b in pts] for a in pts]
    clients = _simulate(rtts, 400, seed)
    errs = _relative_errors(clients, rtts)
    median = errs[len(errs) // 2]
    p90 = errs[int(len(errs) * 0.9)]
    assert median < 0.15, median
    assert p90 < 0.35, p90
    assert all(c.coord.is_valid() and c.stats.resets == 0 for c in clients)
    assert max(c.coord.error for c in clients) < 0.5  # the error estimates came down from 1.5


def test_two_nodes_learn_their_rtt() -> None:
    clients = _simulate([[0.0, 0.050], [0.050, 0.0]], 300, 7)
    assert clients[0].coord.distance(clients[1].coord) == pytest.approx(0.050, rel=0.05)


def test_distance_is_symmetric_and_adjusted() -> None:
    rng = random.Random(4)
    for _ in range(50):
        a = Coordinate(tuple(rng.uniform(-1, 1) for _ in range(8)), 0.5, rng.uniform(-0.01, 0.01), 0.001)
        b = Coordinate(tuple(rng.uniform(-1, 1) for _ in range(8)), 0.5, rng.uniform(-0.01, 0.01), 0.002)
        assert a.distance(b) == pytest.approx(b.distance(a))
        assert a.distance(b) == pytest.approx(a.raw_distance(b) + a.adjustment + b.adjustment)
    # an adjustment that would make the estimate non-positive is ignored
    z = Coordinate((0.0,) * 8, 0.5, -1.0, 0.001)
    assert z.distance(z) == pytest.approx(0.002)


def test_coincident_nodes_separate() -> None:
    """Two nodes at the origin pick a random direction instead of dividing by zero."""
    c = Client(rng=random.Random(1))
    out = c.update("b", new_coordinate(), 0.010)
    assert out.is_valid() and any(x != 0.0 for x in out.vec)


BAD = [
    ({"Vec": [float("nan")] + [0.0] * 7, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}, "not a finite"),
    ({"Vec": [0.0] * 8, "Error": float("inf"), "Adjustment": 0.0, "Height": 1e-5}, "not a finite"),
    ({"Vec": [1e300] + [0.0] * 7, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}, "not a finite"),
    ({"Vec": [0.0] * 9, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}, "dimensionality"),
    ({"Vec": [0.0] * 2000, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}, "dimensionality"),
    ({"Vec": "x", "Error": 1.5}, "Vec must be"),
    ({"Vec": [True] * 8, "Error": 1.5}, "not a number"),
    ([1, 2], "is an object"),
]


@pytest.mark.parametrize(("obj", "why"), BAD)
def test_bad_coordinates_are_refused(obj: object, why: str) -> None:
    with pytest.raises(InvalidCoordinate, match=why):
        from_json(obj)


def test_client_refuses_and_counts_bad_input() -> None:
    c = Client()
    before = c.coord
    bad = [
        (Coordinate((0.0,) * 4, 1.5, 0.0, 1e-5), 0.01),  # another dimensionality
        (Coordinate((float("nan"),) * 8, 1.5, 0.0, 1e-5), 0.01),
        (Coordinate((MAX_COMPONENT * 2,) + (0.0,) * 7, 1.5, 0.0, 1e-5), 0.01),
        (new_coordinate(), -0.001),  # negative RTT
        (new_coordinate(), 11.0),  # above serf's 10 s
        (new_coordinate(), float("inf")),
    ]
    for other, rtt in bad:
        with pytest.raises(InvalidCoordinate):
            c.update("x", other, rtt)
    assert c.stats.rejected == len(bad) and c.stats.updates == 0
    assert c.coord == before


def test_ack_payload_round_trip_and_bounds() -> None:
    c = Coordinate(tuple(float(i) / 100 for i in range(8)), 0.3, -0.0001, 0.0002)
    raw = encode_ack_payload(c)
    assert raw[0] == 1
    assert decode_ack_payload(raw) == c
    with pytest.raises(InvalidCoordinate, match="version"):
        decode_ack_payload(b"\x02" + raw[1:])
    with pytest.raises(InvalidCoordinate, match="undecodable"):
        decode_ack_payload(b"\x01\xc1garbage")
    with pytest.raises(InvalidCoordinate, match="limit"):
        decode_ack_payload(b"\x01" + b"\x00" * 5000)
    huge = b"\x01" + msgpack.packb({"Vec": [0.0] * 100000, "Error": 1.0, "Adjustment": 0.0, "Height": 0.0})
    with pytest.raises(InvalidCoordinate):
        decode_ack_payload(huge)


def test_distance_function_for_sorting() -> None:
    a, b = new_coordinate(), Coordinate((0.003,) + (0.0,) * 7, 0.2, 0.0, 1e-5)
    assert distance(a, b) == pytest.approx(0.003 + 2e-5)
    assert distance(a, Coordinate((0.0,) * 3, 0.2, 0.0, 1e-5)) == math.inf


def test_real_serf_ack_payloads_decode_byte_identically() -> None:
    """Acks captured from real serf agents (tests/vectors) carry coordinates we decode, and our encoding of
    the same coordinate is the same bytes (go-msgpack's field order and float64s)."""
    from pyconsul.agent.gossip.messages import Ack
    from tests.unit.test_serf_fixtures import MODES, _decode

    payloads = [m.payload for mode in MODES for m in _decode(mode).messages if isinstance(m, Ack) and m.payload]
    assert payloads
    for p in payloads:
        c = decode_ack_payload(p)
        assert c.is_valid() and len(c.vec) == 8
        assert encode_ack_payload(c) == p
