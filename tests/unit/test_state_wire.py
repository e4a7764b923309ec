"""agent/state/wire.py from_wire: strict types, lenient unknown keys, DecodeError paths naming the offending value.

Written against the per-value implementation and kept unchanged when decoding moved to cached per-type converters,
so the two are pinned to the same answers (values and messages)."""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field

import pytest

from pyconsul.agent.state import commands
from pyconsul.agent.state.commands import CheckDef, CheckDefinition, KVSet, Register, ServiceAddress, ServiceDef, Txn
from pyconsul.agent.state.wire import DecodeError, from_wire, to_wire


@dataclass(frozen=True, slots=True)
class Inner:
    n: int
    s: str = ""


@dataclass(frozen=True, slots=True)
class Outer:
    name: str
    raw: bytes = b""
    flag: bool = False
    f: float = 0.0
    items: tuple[int, ...] = ()
    inners: tuple[Inner, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    by_name: dict[str, Inner] = field(default_factory=dict)
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)
    opt: Inner | None = None
    opt_int: int | None = None
    vec: tuple[float, ...] = ()
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class Odd:
    c: complex = 0j


GOOD = {"name": "a", "raw": b"\x00\xff", "flag": True, "f": 3, "items": [1, 2, (1 << 64) - 1],
        "inners": [{"n": 1}, {"n": 2, "s": "x", "later": 1}], "meta": {"k": "v"}, "by_name": {"a": {"n": 5}},
        "lists": {"h": ["1", "2"]}, "opt": {"n": 0}, "opt_int": None, "now": 1.5, "unknown": [1, 2]}


def test_good_values_decode() -> None:
    o = from_wire(Outer, GOOD)
    assert o == Outer("a", b"\x00\xff", True, 3.0, (1, 2, (1 << 64) - 1), (Inner(1), Inner(2, "x")), {"k": "v"},
                      {"a": Inner(5)}, {"h": ("1", "2")}, Inner(0), None, now=1.5)
    assert isinstance(o.f, float) and isinstance(o.items, tuple) and isinstance(o.lists["h"], tuple)
    assert from_wire(Outer, {"name": "", "now": 0}) == Outer("", now=0.0)
    assert from_wire(Outer, {"name": "b", "opt": None, "opt_int": 7, "now": 2}).opt_int == 7
    vec = from_wire(Outer, {"name": "c", "vec": [1, 2.5, -0.0], "now": 0}).vec
    assert vec == (1.0, 2.5, -0.0) and all(type(x) is float for x in vec)


@pytest.mark.parametrize(("patch", "message"), [
    ({"name": 1}, "Outer.name: expected str, got int"),
    ({"name": b"a"}, "Outer.name: expected str, got bytes"),
    ({"raw": "a"}, "Outer.raw: expected bytes, got str"),
    ({"flag": 1}, "Outer.flag: expected bool, got int"),
    ({"f": True}, "Outer.f: expected float, got bool"),
    ({"f": math.inf}, "Outer.f: not a finite number"),
    ({"f": math.nan}, "Outer.f: not a finite number"),
    ({"f": "1"}, "Outer.f: expected float, got str"),
    ({"items": [1, True]}, "Outer.items[1]: expected int, got bool"),
    ({"items": [1, -1]}, "Outer.items[1]: -1 is outside the unsigned 64-bit range"),
    ({"items": [1 << 64]}, f"Outer.items[0]: {1 << 64} is outside the unsigned 64-bit range"),
    ({"items": (1,)}, "Outer.items: expected an array, got tuple"),
    ({"items": {"a": 1}}, "Outer.items: expected an array, got dict"),
    ({"inners": [{"n": 1}, {"s": "x"}]}, "Outer.inners[1]: missing field 'n'"),
    ({"inners": [{"n": 1}, 3]}, "Outer.inners[1]: expected a map, got int"),
    ({"inners": [{"n": "1"}]}, "Outer.inners[0].n: expected int, got str"),
    ({"meta": [1]}, "Outer.meta: expected a map, got list"),
    ({"meta": {"k": 1}}, "Outer.meta['k']: expected str, got int"),
    ({"by_name": {"a": {"n": 1, "s": 2}}}, "Outer.by_name['a'].s: expected str, got int"),
    ({"lists": {"h": "x"}}, "Outer.lists['h']: expected an array, got str"),
    ({"lists": {"h": ["x", 1]}}, "Outer.lists['h'][1]: expected str, got int"),
    ({"opt": {"n": -2}}, "Outer.opt.n: -2 is outside the unsigned 64-bit range"),
    ({"opt": []}, "Outer.opt: expected a map, got list"),
    ({"opt_int": "3"}, "Outer.opt_int: expected int, got str"),
    ({"now": None}, "Outer.now: expected float, got NoneType"),
    ({"vec": [1.0, -math.inf]}, "Outer.vec[1]: not a finite number"),
    ({"vec": [math.nan]}, "Outer.vec[0]: not a finite number"),
    ({"vec": [1.0, False]}, "Outer.vec[1]: expected float, got bool"),
    ({"items": [1, 2.0]}, "Outer.items[1]: expected int, got float"),
    ({"inners": [{"n": 1}, {"n": 2, "s": None}]}, "Outer.inners[1].s: expected str, got NoneType"),
])
def test_bad_values_name_their_path(patch: dict[str, object], message: str) -> None:
    with pytest.raises(DecodeError) as e:
        from_wire(Outer, {**GOOD, **patch})
    assert str(e.value) == message


def test_map_keys_must_be_strings_and_fields_present() -> None:
    from pyconsul.agent.state import wire

    with pytest.raises(DecodeError, match=r"^Outer\.meta: map keys must be strings$"):
        from_wire(Outer, {**GOOD, "meta": {1: "v"}})
    with pytest.raises(DecodeError, match=r"^Outer: missing field 'now'$"):
        from_wire(Outer, {"name": "a"})
    with pytest.raises(DecodeError, match=r"^Outer: missing field 'name'$"):
        from_wire(Outer, {"now": 1})
    with pytest.raises(DecodeError, match=r"^Outer: expected a map, got list$"):
        from_wire(Outer, [])
    with pytest.raises(DecodeError, match=r"^X\.y: expected a map, got str$"):
        from_wire(Inner, "s", "X.y")
    # an unsupported field type is an error only when the field is present, and says so
    assert from_wire(Odd, {}) == Odd()
    with pytest.raises(DecodeError, match=r"^Odd\.c: unsupported field type <class 'complex'>$"):
        from_wire(Odd, {"c": 1})
    assert wire.U64 == 1 << 64


def test_commands_round_trip() -> None:
    reg = Register("n1", "10.0.0.1", tagged_addresses={"lan": "10.0.0.1"}, node_meta={"r": "1"},
                   service=ServiceDef("web1", "web", ("a", "b"), "10.0.0.2", {"m": "v"}, 80,
                                      {"wan": ServiceAddress("1.2.3.4", 8080)}),
                   checks=(CheckDef("c1", "check", "passing", type="http",
                                    definition=CheckDefinition(http="http://x", header={"A": ("1", "2")},
                                                               interval=10.0)),),
                   now=12.5)
    for cmd in (reg, KVSet("k", b"v", 3), Txn(ops=(), now=2.0)):
        assert commands.decode(commands.encode(cmd)) == cmd
        assert from_wire(type(cmd), to_wire(cmd)) == cmd
