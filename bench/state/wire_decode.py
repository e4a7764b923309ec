"""Raft command decode time: agent/state/wire.py's per-type cached converters vs the per-value version it replaced.

    .venv/bin/python bench/state/wire_decode.py [--old-rev 57f380e] [--rounds 7] [--seconds 0.3]

Both versions run in this one process on the same dataclasses (agent/state/commands.py) and the same msgpack body:
the old wire.py is loaded from git (`--old-rev`, default the last revision before the converters) as a separate
module. For each command, `from_wire(cls, body)` on the unpacked body (unpack itself is the same msgpack call in both
and is left out), alternating old and new in each round; the figure is the median over rounds of the mean time per
decode. Commands: a KV set, a catalog register (node, service with tags, meta and a tagged address, one HTTP check
with a definition: the shape J profiled), a 16-op txn and a 128-entry coordinate batch.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from provenance import REPO, header

from pyconsul.agent.state import commands, wire
from pyconsul.agent.state.commands import (
    CheckDef,
    CheckDefinition,
    Coord,
    CoordinateBatchUpdate,
    CoordinateUpdate,
    KVSet,
    Register,
    ServiceAddress,
    ServiceDef,
    Txn,
    TxnOp,
)

OLD_REV = "57f380e"  # agent/state/wire.py before the per-type converters


def load_old(rev: str) -> ModuleType:
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:agent/state/wire.py"], capture_output=True,
                         text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("old_wire", loader=None)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_wire"] = mod  # dataclasses and typing look modules up by name
    exec(compile(src, f"{rev}:agent/state/wire.py", "exec"), mod.__dict__)
    return mod


def samples() -> dict[str, Any]:
    reg = Register("node-17", "10.1.2.17", "7c6a9f43-4a35-4a0e-9b1a-3a8f3f1c2d17", "dc1", {"lan": "10.1.2.17"},
                   {"rack": "r3"},
                   ServiceDef("web-17", "web", ("v1", "primary"), "10.1.2.17", {"version": "1.4.2"}, 8080,
                              {"wan": ServiceAddress("198.51.100.17", 8080)}),
                   (CheckDef("service:web-17", "web health", "passing", "node-17", "web-17", "", "HTTP GET: 200 OK",
                             "http", CheckDefinition(http="http://10.1.2.17:8080/health", interval=10.0,
                                                     timeout=5.0)),),
                   now=1_765_000_000.5)
    txn = Txn(tuple(TxnOp("set", f"app/config/key-{i}", b"x" * 64, i) for i in range(16)), now=1.0)
    coord = Coord(tuple(0.001 * j for j in range(8)), 0.5, 0.0001, 0.002)
    coords = CoordinateBatchUpdate(tuple(CoordinateUpdate(f"node-{i}", coord) for i in range(128)))
    return {"kv set": KVSet("app/config/key-1", b"x" * 64, 3), "catalog register": reg, "txn 16 ops": txn,
            "coordinates x128": coords}


def per_call(fn: Any, cls: type, body: Any, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(50):
            fn(cls, body)
        n += 50
        t = time.perf_counter()
        if t >= deadline:
            return (t - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-rev", default=OLD_REV)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    args = ap.parse_args()
    old = load_old(args.old_rev)
    print(header())
    print(f"# old: {args.old_rev}:agent/state/wire.py; new: {Path(wire.__file__).relative_to(REPO)}")
    print(f"{'command':<18} {'old us':>8} {'new us':>8} {'old/new':>8}")
    for name, cmd in samples().items():
        body = wire.unpack(commands.encode(cmd))[1]
        cls = type(cmd)
        assert old.from_wire(cls, body) == wire.from_wire(cls, body) == cmd
        olds, news = [], []
        for _ in range(args.rounds):
            olds.append(per_call(old.from_wire, cls, body, args.seconds))
            news.append(per_call(wire.from_wire, cls, body, args.seconds))
        o, n = statistics.median(olds) * 1e6, statistics.median(news) * 1e6
        print(f"{name:<18} {o:8.2f} {n:8.2f} {o / n:7.2f}x")


if __name__ == "__main__":
    main()
