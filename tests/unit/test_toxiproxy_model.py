"""The pure half of chaos/toxiproxy: request bodies, validation, defaults and the slicer's cuts."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyconsul.chaos.toxiproxy.toxics import (
    ATTRIBUTES,
    ApiError,
    ProxySpec,
    parse_populate,
    parse_proxy,
    parse_proxy_update,
    parse_toxic,
    slice_offsets,
    update_toxic,
)


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_toxic_defaults_follow_toxiproxy() -> None:
    t = parse_toxic(body({"type": "latency", "attributes": {"latency": 100}}))
    assert (t.name, t.stream, t.toxicity) == ("latency_downstream", "downstream", 1.0)
    assert t.attributes == {"latency": 100, "jitter": 0}
    assert t.to_json() == {"attributes": {"latency": 100, "jitter": 0}, "name": "latency_downstream",
                           "type": "latency", "stream": "downstream", "toxicity": 1.0}
    up = parse_toxic(body({"type": "timeout", "stream": "UPSTREAM", "name": "", "toxicity": 0.25}))
    assert (up.name, up.stream, up.toxicity, up.attributes) == ("timeout_upstream", "upstream", 0.25, {"timeout": 0})


def test_every_documented_toxic_type_is_known() -> None:
    assert set(ATTRIBUTES) >= {"latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data"}
    assert ATTRIBUTES["slicer"] == ("average_size", "size_variation", "delay")


def test_update_changes_only_what_the_body_names() -> None:
    t = parse_toxic(body({"type": "latency", "toxicity": 0.5, "attributes": {"latency": 100, "jitter": 10}}), 1)
    u = update_toxic(t, body({"attributes": {"jitter": 30}}), 2)
    assert (u.attributes, u.toxicity, u.serial, u.name) == ({"latency": 100, "jitter": 30}, 0.5, 2, t.name)
    assert update_toxic(t, body({"toxicity": 1}), 3).toxicity == 1.0


@pytest.mark.parametrize(("obj", "status", "message"), [
    ({"type": "gremlin"}, 400, "invalid toxic type"),
    ({}, 400, "invalid toxic type"),
    ({"type": "latency", "stream": "both"}, 400, "stream was invalid, can be either upstream or downstream"),
    ({"type": "latency", "toxicity": 1.5}, 400, "bad request body: toxicity must be a number from 0 to 1, got 1.5"),
    ({"type": "latency", "toxicity": True}, 400, "bad request body: toxicity must be a number from 0 to 1, got true"),
    ({"type": "latency", "attributes": {"latency": -1}}, 400,
     "bad request body: attribute latency of a latency toxic must not be negative, got -1"),
    ({"type": "bandwidth", "attributes": {"rate": 1.5}}, 400,
     "bad request body: attribute rate of a bandwidth toxic must be an integer, got 1.5"),
    ({"type": "slicer", "attributes": []}, 400, "bad request body: attributes must be an object, got []"),
    ([1], 400, "bad request body: expected a JSON object"),
])
def test_bad_toxics_are_rejected_with_the_reason(obj: object, status: int, message: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_toxic(body(obj))
    assert (err.value.status, err.value.message) == (status, message)


def test_unknown_attributes_are_ignored_and_whole_floats_accepted() -> None:
    t = parse_toxic(body({"type": "limit_data", "attributes": {"bytes": 10.0, "colour": "red"}}))
    assert t.attributes == {"bytes": 10}


def test_proxy_bodies() -> None:
    assert parse_proxy(body({"name": "a", "upstream": "127.0.0.1:1"})) == ProxySpec("a", "", "127.0.0.1:1", True)
    with pytest.raises(ApiError, match="missing required field: name"):
        parse_proxy(body({"upstream": "x:1"}))
    with pytest.raises(ApiError, match="enabled must be true or false"):
        parse_proxy(body({"name": "a", "upstream": "x:1", "enabled": "yes"}))
    with pytest.raises(ApiError, match=r"^bad request body: "):
        parse_proxy(b"\xff")
    cur = ProxySpec("a", "127.0.0.1:5", "127.0.0.1:1", True)
    assert parse_proxy_update(cur, body({"enabled": False})) == ProxySpec("a", "127.0.0.1:5", "127.0.0.1:1", False)


def test_populate_checks_every_proxy_before_any_is_made() -> None:
    specs = parse_populate(body([{"name": "a", "upstream": "x:1"}, {"name": "b", "upstream": "y:2", "enabled": None}]))
    assert [s.enabled for s in specs] == [True, True]
    with pytest.raises(ApiError, match="missing required field: upstream at proxy 2"):
        parse_populate(body([{"name": "a", "upstream": "x:1"}, {"name": "b"}]))
    with pytest.raises(ApiError, match="expected a JSON array"):
        parse_populate(body({"name": "a"}))


@given(st.integers(0, 5000), st.integers(1, 300), st.integers(0, 100), st.integers(0, 2**32))
def test_slices_cover_the_data_in_order(size: int, average: int, variation: int, seed: int) -> None:
    cuts = slice_offsets(size, average, variation, random.Random(seed))
    assert cuts[0][0] == 0 and cuts[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cuts))
    assert all(end - start <= max(average + variation, 1) or size <= 1 for start, end in cuts)
    assert all(end > start for start, end in cuts) or size == 0


def test_slicer_with_no_variation_halves_evenly() -> None:
    assert slice_offsets(400, 100, 0, random.Random(1)) == [(0, 100), (100, 200), (200, 300), (300, 400)]
