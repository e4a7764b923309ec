"""One `__repr__` for many dataclasses, instead of one generated per class.

`dataclass(repr=True)` compiles a `__repr__` for every class (exec'd source, its code object and a recursion
guard wrapper: about 2.4 KiB per class). The message and command types (state/commands.py, gossip/messages.py,
raft/messages.py, gossip/membership.py: ~80 classes, imported by every agent) are declared with `repr=False`
and `@shared_repr`, which installs `record_repr`: the same text as the generated one (the class's
`__qualname__`, then `name=value!r` of each field declared with repr=True, in order; `...` for an object
already being printed by the same thread), computed from `dataclasses.fields`. Only diagnostics read it.
"""

from __future__ import annotations

import reprlib
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

__all__ = ["record_repr", "shared_repr"]

T = TypeVar("T")


@reprlib.recursive_repr()
def record_repr(self: Any) -> str:
    """The text dataclass's generated `__repr__` returns for `self`."""
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
    return f"{self.__class__.__qualname__}({inner})"


def shared_repr(cls: type[T]) -> type[T]:
    """Class decorator (above `@dataclass(..., repr=False)`): give a dataclass `record_repr` as its `__repr__`,
    unless the class defines its own."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__} is not a dataclass")
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = record_repr  # type: ignore[method-assign]
    return cls
