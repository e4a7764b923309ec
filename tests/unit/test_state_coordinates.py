"""The coordinates table (agent/state/coordinates.py): batch updates, node cascade, bounds, snapshot."""

from __future__ import annotations

from pyconsul.agent.state.commands import Coord, CoordinateBatchUpdate, CoordinateUpdate, Deregister, decode, encode
from pyconsul.agent.state.coordinates import MAX_COORDINATE_BATCH
from pyconsul.agent.state.results import StateError
from pyconsul.agent.state.store import StateStore
from tests.unit.test_state_support import Harness

C1 = Coord((0.001,) * 8, 0.2, 0.0001, 0.00002)
C2 = Coord((0.002,) * 8, 0.3, 0.0, 0.00001)


def _batch(*pairs: tuple[str, Coord]) -> CoordinateBatchUpdate:
    return CoordinateBatchUpdate(tuple(CoordinateUpdate(n, c) for n, c in pairs))


def test_command_round_trip() -> None:
    cmd = _batch(("n1", C1), ("n2", C2))
    assert decode(encode(cmd)) == cmd
    assert encode(decode(encode(cmd))) == encode(cmd)


def test_batch_sets_known_nodes_and_skips_unknown_and_invalid() -> None:
    h = Harness()
    h.node("n1")
    h.node("N2")
    assert h.do(_batch(("n1", C1), ("ghost", C2), ("n2", Coord((0.0,) * 3, 0.1, 0.0, 0.0)))) is True
    idx = h.index
    assert h.store.coordinates() == [{"Node": "n1", "Segment": "", "Coord": {
        "Vec": [0.001] * 8, "Error": 0.2, "Adjustment": 0.0001, "Height": 0.00002}}]
    assert h.store.table_index("coordinates") == idx
    assert h.store.node_coordinate("N1") == C1 and h.store.node_coordinate("ghost") is None
    # the same value again changes nothing (no index bump: watchers stay asleep)
    h.do(_batch(("n1", C1)))
    assert h.store.table_index("coordinates") == idx and h.store.last_changed == frozenset()
    h.do(_batch(("n2", C2)))
    assert [c["Node"] for c in h.store.coordinates()] == ["n1", "N2"]
    assert h.store.coordinates(node="n2")[0]["Coord"]["Error"] == 0.3
    assert "coordinates" in h.store.last_changed


def test_node_deregistration_drops_its_coordinates() -> None:
    h = Harness()
    h.node("n1")
    h.node("n2")
    h.do(_batch(("n1", C1), ("n2", C2)))
    h.do(Deregister("n1", now=0.0))
    assert [c["Node"] for c in h.store.coordinates()] == ["n2"]
    assert h.store.table_index("coordinates") == h.index


def test_oversized_batch_is_rejected() -> None:
    h = Harness()
    h.node("n1")
    r = h.do(_batch(*[("n1", C1)] * (MAX_COORDINATE_BATCH + 1)))
    assert isinstance(r, StateError) and "limit" in r.message
    assert h.store.coordinates() == []


def test_non_finite_coordinates_do_not_decode() -> None:
    h = Harness()
    h.node("n1")
    r = h.do(_batch(("n1", Coord((float("nan"),) * 8, 0.1, 0.0, 0.0))))
    assert isinstance(r, StateError)


def test_snapshot_carries_coordinates() -> None:
    h = Harness()
    h.node("n1")
    h.do(_batch(("n1", C1)))
    data = h.store.snapshot()
    restored = StateStore.restore(data)
    assert restored.coordinates() == h.store.coordinates()
    assert restored.snapshot() == data


def test_sort_by_distance_for_near() -> None:
    from pyconsul.agent.state.coordinates import distance, sort_by_distance

    h = Harness()
    for n in ("src", "close", "far", "none"):
        h.node(n)
    near = Coord((0.001,) + (0.0,) * 7, 0.1, 0.0, 1e-5)
    h.do(_batch(("src", Coord((0.0,) * 8, 0.1, 0.0, 1e-5)), ("close", near),
                ("far", Coord((0.5,) + (0.0,) * 7, 0.1, 0.0, 1e-5))))
    t = h.store._t
    items = [{"Node": "none"}, {"Node": "far"}, {"Node": "close"}, {"Node": "SRC"}]
    out = sort_by_distance(t, items, lambda x: x["Node"], "src")
    assert [x["Node"] for x in out] == ["SRC", "close", "far", "none"]
    assert sort_by_distance(t, items, lambda x: x["Node"], "none") == items  # no source coordinate: unchanged
    assert sort_by_distance(t, items, lambda x: x["Node"], "") == items
    assert distance(near, near) == distance(near, near) > 0
