"""Nemeses: faults injected into a cluster on an inventory's hosts (Jepsen's Nemesis; ARCHITECTURE.md 8, 9).

- chaos.nemesis.grudge  — pure: partition shapes as grudges (host -> hosts whose packets it drops)
- chaos.nemesis.core    — Nemesis (setup / invoke(op) / teardown), heal_all, heal_command
- chaos.nemesis.faults  — the fault log, written before a fault is applied (crash-safe healing)
- chaos.nemesis.remote  — host side (stdlib only, run over ssh): nft/iptables rules, agent processes
- chaos.nemesis.nfqueue — host side (stdlib only): the NFQUEUE packet delayer behind the latency nemesis

``python -m pyconsul.chaos.nemesis heal|status|invoke -i INVENTORY`` is the command-line face (see __main__).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyconsul.chaos.nemesis.core import Nemesis, NemesisError, heal_all, heal_command, to_history_op
    from pyconsul.chaos.nemesis.faults import FaultLog

__all__ = ["FaultLog", "Nemesis", "NemesisError", "heal_all", "heal_command", "to_history_op"]

# Loaded on first use (PEP 562), so that importing the pure `chaos.nemesis.grudge` does not load
# core.py's ssh/subprocess machinery (tests/unit/test_import_rule.py imports each core alone).
_LAZY = {"FaultLog": "pyconsul.chaos.nemesis.faults", **dict.fromkeys(
    ("Nemesis", "NemesisError", "heal_all", "heal_command", "to_history_op"), "pyconsul.chaos.nemesis.core")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
