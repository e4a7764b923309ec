"""agent/records.py: the shared `__repr__` prints what dataclass's generated one prints, and the message and
command modules use it (one function instead of ~80 generated ones)."""

from __future__ import annotations

import inspect
from dataclasses import KW_ONLY, dataclass, field, is_dataclass
from types import ModuleType

import pytest

from pyconsul.agent.gossip import membership
from pyconsul.agent.gossip import messages as gossip_messages
from pyconsul.agent.raft import messages as raft_messages
from pyconsul.agent.records import record_repr, shared_repr
from pyconsul.agent.state import commands


@dataclass(frozen=True, slots=True)
class Generated:
    a: int
    b: str = "x"
    hidden: bytes = field(default=b"", repr=False)
    _: KW_ONLY
    nested: object = None


@shared_repr
@dataclass(frozen=True, slots=True, repr=False)
class Generated2:  # same fields as Generated, shared repr (the names differ: compared after renaming)
    a: int
    b: str = "x"
    hidden: bytes = field(default=b"", repr=False)
    _: KW_ONLY
    nested: object = None


@shared_repr
@dataclass(slots=True, repr=False)
class Mutable:
    items: list[object] = field(default_factory=list)


@dataclass(slots=True)
class MutableGenerated:
    items: list[object] = field(default_factory=list)


@shared_repr
@dataclass(repr=False)
class Own:
    a: int

    def __repr__(self) -> str:
        return "own"


def test_the_shared_repr_is_the_generated_text() -> None:
    for args, kw in [((1,), {}), ((2, "y", b"secret"), {"nested": Generated(3)}), ((0, "'q'"), {"nested": [1]})]:
        want = repr(Generated(*args, **kw)).replace("Generated(", "G(", 1)  # type: ignore[arg-type]
        got = repr(Generated2(*args, **kw)).replace("Generated2(", "G(", 1)  # type: ignore[arg-type]
        assert got == want
    assert "secret" not in repr(Generated2(1, "b", b"secret"))


def test_a_self_containing_record_prints_dots_as_the_generated_repr() -> None:
    m, g = Mutable(), MutableGenerated()
    m.items.append(m)
    g.items.append(g)
    assert repr(m) == "Mutable(items=[...])"
    assert repr(m).replace("Mutable", "X") == repr(g).replace("MutableGenerated", "X")


def test_a_class_of_its_own_keeps_its_repr_and_a_plain_class_is_refused() -> None:
    assert repr(Own(1)) == "own"
    with pytest.raises(TypeError):
        shared_repr(int)


@pytest.mark.parametrize("module", [commands, gossip_messages, raft_messages, membership],
                         ids=lambda m: m.__name__.rsplit(".", 2)[-2] + "." + m.__name__.rsplit(".", 1)[-1])
def test_the_message_and_command_types_share_one_repr(module: ModuleType) -> None:
    records = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if is_dataclass(c) and c.__module__ == module.__name__]
    assert records
    generated = [c.__qualname__ for c in records if c.__repr__ is not record_repr]
    assert not generated, f"dataclasses with a generated __repr__: {generated}"
