"""The import rule: protocol cores do no I/O and read no clock (ARCHITECTURE.md, principle 1).

Checked transitively: each core is imported in a fresh interpreter, which then must not have loaded
any of FORBIDDEN. `time` is already loaded when an interpreter starts (zipimport imports it), so the
probe first drops the FORBIDDEN modules from `sys.modules`; a recording import hook then notes, for each
forbidden module that comes back, the chain of modules that imported it, so a failure names the
culprit ("time <- datetime <- msgpack.ext <- msgpack <- pyconsul.agent.gossip.codec <- ...").

A second, syntactic check (AST) forbids direct imports of a wider set (os, subprocess, select, ...) in
the core files themselves.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Loaded by a core (directly or through any chain of imports) = a failure.
FORBIDDEN = ("asyncio", "fcntl", "selectors", "socket", "threading", "time")

# Chains allowed although they load a FORBIDDEN module: (module, its importer, the importer's importer).
# msgpack (the gossip and Raft wire formats) imports datetime for its Timestamp extension type, and
# CPython's datetime imports time for date.today(); no core calls either. Any other way of loading time
# (a core importing time, or datetime, or gzip, ...) still fails.
ALLOWED_CHAINS = frozenset({("time", "datetime", "msgpack.ext")})

# Every explicit path must exist (a typo or a rename must not silently shrink the rule).
EXPLICIT_CORES = [
    "agent/gossip/membership.py",
    "agent/gossip/suspicion.py",
    "agent/gossip/awareness.py",
    "agent/gossip/broadcast.py",
    "agent/gossip/serf.py",
    "agent/gossip/query.py",
    "agent/gossip/messages.py",
    "agent/gossip/codec.py",
    "agent/gossip/lzw.py",
    "agent/gossip/config.py",
    "agent/gossip/coordinate.py",
    "agent/raft/core.py",
    "agent/raft/log.py",
    "agent/raft/quorum.py",
    "agent/raft/progress.py",
    "agent/raft/replication.py",
    "agent/raft/messages.py",
    "agent/raft/wire.py",
    "agent/raft/config.py",
    "agent/server/bootstrap.py",
    "agent/filter/__init__.py",
    "agent/filter/peg.py",
    "agent/filter/grammar.py",
    "agent/filter/coerce.py",
    "agent/filter/regex.py",
    "agent/filter/evaluate.py",
    "agent/filter/schemas.py",
    "agent/checks/spec.py",
    "agent/checks/schedule.py",
    "agent/local/definitions.py",
    "agent/local/state.py",
    "agent/local/ae.py",
    "agent/dns/resolver.py",
    "agent/dns/config.py",
    "chaos/history.py",
    "chaos/generator.py",
    "chaos/nemesis/grudge.py",
    "chaos/experiment.py",
    "chaos/toxiproxy/toxics.py",
]
# Globs cover whole packages of cores, including files added later (and future ones such as
# agent/checks/rules.py or agent/dns/resolver.py once they exist: add them to EXPLICIT_CORES then).
CORE_GLOBS = [
    "agent/state/*.py",
    "chaos/checker/*.py",
]
# Files matched by a glob that are not protocol cores, with the reason.
NOT_CORES = {
    # A file format for the HTTP/CLI shells (tar + gzip): the stdlib tarfile and gzip modules import
    # time for their default mtimes (archive.py passes explicit ones); the state machine never imports it.
    "agent/state/archive.py",
}

SYNTACTIC_FORBIDDEN = frozenset({*FORBIDDEN, "select", "subprocess", "os", "datetime"})

PROBE = r"""
import importlib, importlib.abc, json, sys
forbidden = set(sys.argv[1].split(","))
for name in forbidden:
    sys.modules.pop(name, None)
chains = {}

class Recorder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in forbidden and name not in chains:
            chain, frame = [name], sys._getframe(1)
            while frame is not None:
                mod = frame.f_globals.get("__name__", "")
                if mod and not mod.startswith(("importlib", "_frozen_importlib")) and mod != chain[-1]:
                    chain.append(mod)
                frame = frame.f_back
            chains[name] = chain
        return None

sys.meta_path.insert(0, Recorder())
importlib.import_module(sys.argv[2])
print(json.dumps({name: chains.get(name, [name, "?"]) for name in sorted(forbidden & set(sys.modules))}))
"""


def module_name(path: str) -> str:
    return "pyconsul." + path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def core_paths() -> list[str]:
    files = set(EXPLICIT_CORES)
    for pattern in CORE_GLOBS:
        files.update(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern) if p.is_file())
    return sorted(files - NOT_CORES)


def loaded_forbidden(module: str) -> dict[str, list[str]]:
    """Forbidden modules loaded by importing `module` in a fresh interpreter -> importer chain
    (the module itself first, `__main__` last)."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(FORBIDDEN), module],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, f"importing {module} failed:\n{proc.stderr}"
    result: dict[str, list[str]] = json.loads(proc.stdout.splitlines()[-1])
    return result


def violations(loaded: dict[str, list[str]]) -> list[str]:
    return [" <- ".join(chain) for chain in loaded.values() if tuple(chain[:3]) not in ALLOWED_CHAINS]


def test_explicit_cores_exist() -> None:
    missing = [p for p in EXPLICIT_CORES if not (ROOT / p).is_file()]
    assert not missing, f"listed protocol cores do not exist (renamed? update the list): {missing}"


def test_globs_match_something() -> None:
    for pattern in CORE_GLOBS:
        assert any(ROOT.glob(pattern)), f"{pattern} matches no file"
    for path in NOT_CORES:
        assert (ROOT / path).is_file(), f"NOT_CORES lists a missing file: {path}"


@pytest.mark.parametrize("path", core_paths())
def test_core_loads_no_io_or_clock_module(path: str) -> None:
    bad = violations(loaded_forbidden(module_name(path)))
    assert not bad, f"importing {module_name(path)} loads I/O or clock modules: " + "; ".join(bad)


def test_probe_catches_a_transitive_import() -> None:
    """The probe itself: a stdlib module that imports socket only indirectly is caught, with its chain."""
    loaded = loaded_forbidden("smtplib")
    assert "socket" in loaded and loaded["socket"][:2] == ["socket", "smtplib"]
    assert violations(loaded)
    # and time is seen even though the interpreter had loaded it before the probe ran
    assert violations(loaded_forbidden("gzip")) == ["time <- gzip <- __main__"]


def test_allowed_chain_is_narrow() -> None:
    assert violations({"time": ["time", "datetime", "msgpack.ext", "msgpack", "x"]}) == []
    assert violations({"time": ["time", "datetime", "pyconsul.agent.gossip.codec"]}) == [
        "time <- datetime <- pyconsul.agent.gossip.codec"]
    assert violations({"socket": ["socket", "datetime", "msgpack.ext"]}) == ["socket <- datetime <- msgpack.ext"]


# ---------------------------------------------------------------- syntactic check of the core files


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
        found += [(node.lineno, name) for name in names if name.split(".")[0] in SYNTACTIC_FORBIDDEN]
    return found


@pytest.mark.parametrize("path", core_paths())
def test_core_imports_no_io_module_directly(path: str) -> None:
    bad = forbidden_imports((ROOT / path).read_text(encoding="utf-8"), path)
    assert not bad, "protocol core imports I/O or clock modules: " + ", ".join(
        f"{path}:{line}: {mod}" for line, mod in bad)


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
        ("from datetime import datetime\n", [(1, "datetime")]),
        ("import random\nimport timeit\nimport osmium\nfrom dataclasses import dataclass\n", []),
        ("from . import time\nfrom .os import x\n", []),
        ("from agent.gossip import codec\n", []),
    ],
)
def test_checker_flags_bad_sources(source: str, expected: list[tuple[int, str]]) -> None:
    assert forbidden_imports(source) == expected
