"""The import rule: protocol cores do no I/O and read no clock (ARCHITECTURE.md, principle 1).

A core takes messages plus `now` and returns values; only the asyncio shells may import the
modules below. The check is syntactic (AST): direct imports only, at any nesting depth.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = frozenset({"asyncio", "socket", "time", "select", "selectors", "threading", "subprocess", "os"})

GOSSIP_CORES = [
    "agent/gossip/membership.py",
    "agent/gossip/suspicion.py",
    "agent/gossip/awareness.py",
    "agent/gossip/broadcast.py",
    "agent/gossip/serf.py",
    "agent/gossip/messages.py",
    "agent/gossip/codec.py",
]
OTHER_CORES = [
    "agent/raft/**/core.py",
    "agent/raft/**/log.py",
    "agent/raft/**/quorum.py",
    "agent/raft/progress.py",
    "agent/raft/replication.py",
    "agent/raft/messages.py",
    "agent/server/bootstrap.py",
    "agent/state/**/*.py",
    "agent/checks/rules.py",
    "agent/dns/resolver.py",
    "chaos/checker/**/*.py",
    "chaos/history.py", "chaos/generator.py", "chaos/nemesis/grudge.py", "chaos/experiment.py",
    "chaos/toxiproxy/toxics.py",
]


def forbidden_imports(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """(line, module) for every import of a forbidden top-level module; relative imports are ignored."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in FORBIDDEN]
    return found


def core_files() -> list[Path]:
    files: set[Path] = set()
    for pattern in GOSSIP_CORES + OTHER_CORES:
        files.update(p for p in ROOT.glob(pattern) if p.is_file())
    return sorted(files)


def test_gossip_cores_exist() -> None:
    present = [p for p in GOSSIP_CORES if (ROOT / p).is_file()]
    assert present, "none of the gossip protocol cores exist; the import rule would check nothing"


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_does_no_io(path: Path) -> None:
    bad = forbidden_imports(path.read_text(encoding="utf-8"), str(path))
    assert not bad, "protocol core imports I/O or clock modules: " + ", ".join(
        f"{path.relative_to(ROOT)}:{line}: {mod}" for line, mod in bad)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import asyncio\n", [(1, "asyncio")]),
        ("import os.path\n", [(1, "os.path")]),
        ("import json, socket as s\n", [(1, "socket")]),
        ("from time import monotonic\n", [(1, "time")]),
        ("from os.path import join\n", [(1, "os.path")]),
        ("def f():\n    import threading\n", [(2, "threading")]),
        ("if True:\n    from subprocess import run\n", [(2, "subprocess")]),
        ("import selectors\nimport select\n", [(1, "selectors"), (2, "select")]),
        ("import random\nimport timeit\nimport osmium\nfrom dataclasses import dataclass\n", []),
        ("from . import time\nfrom .os import x\n", []),
        ("from agent.gossip import codec\n", []),
    ],
)
def test_checker_flags_bad_sources(source: str, expected: list[tuple[int, str]]) -> None:
    assert forbidden_imports(source) == expected
