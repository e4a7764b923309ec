"""The DNS interface (server.py, views.py, codec.py, resolver.py).

`resolver` (the pure core, ~0.2 MiB with its dataclasses) is a lazily executed module (importlib's LazyLoader):
importing it, as server.py, views.py and codec.py do, costs nothing until an attribute is used, i.e. until the
first query, when codec.load() runs it (with dnspython) in a worker thread. DNS is on by default but most
client agents never get a query (tests/unit/test_lean_agent.py keeps it so)."""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

if not TYPE_CHECKING:

    def _lazy(name: str):
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.find_spec(name)
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    resolver = _lazy(__name__ + ".resolver")
