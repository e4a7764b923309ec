"""Wake-ups of the Raft driver loop in an idle 3-server cluster (one process, no gossip, no HTTP).

    .venv/bin/python bench/kv/raft_wakeups.py [--duration 10] [--multiplier 1]

Three `RaftNode`s share one asyncio loop and an in-memory transport (each message is handed to its
target with `loop.call_soon`); storage is the real `RaftStorage` in a temp dir. Once a leader is elected
and `--warmup` seconds have passed, every call of `RaftCore.tick` is counted for `--duration` seconds:
the driver calls tick() once per loop iteration, so this is the loop's wake-ups per second, per role.
Counting at the core (not a counter in the driver) makes the same script measure any revision:

    git archive f109767 agent | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before .venv/bin/python -c 'import runpy, sys; sys.meta_path[:] = [f for f in \
        sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]; \
        runpy.run_path("bench/kv/raft_wakeups.py", run_name="__main__")'
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import random
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any


class MemTransport:
    """Delivers on the same loop, one call_soon per message (like a socket read callback)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Any] = {}

    def send(self, address: str, msg: Any) -> None:
        node = self.nodes.get(address)
        if node is not None:
            asyncio.get_running_loop().call_soon(node.deliver, msg)


class _FSM:
    def apply(self, index: int, data: bytes) -> Any:
        return None

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


def _raft_config(multiplier: int) -> Any:
    for mod in ("pyconsul.agent.raft.config", "pyconsul.agent.config"):
        try:
            return importlib.import_module(mod).RaftConfig.consul(multiplier)
        except (ImportError, AttributeError):
            continue
    raise SystemExit("no RaftConfig found")


async def main(args: argparse.Namespace) -> None:
    from pyconsul.agent.raft import core as core_mod
    from pyconsul.agent.raft.messages import Configuration, Role, Server
    from pyconsul.agent.raft.node import RaftNode
    from pyconsul.agent.raft.storage import RaftStorage

    counts: Counter[str] = Counter()
    counting = False
    orig_tick = core_mod.RaftCore.tick

    def tick(self: Any, now: float) -> None:
        if counting:
            counts[str(self.role) if self.role != Role.LEADER else "leader"] += 1
            counts["all"] += 1
        orig_tick(self, now)

    core_mod.RaftCore.tick = tick  # type: ignore[method-assign]
    cfg = _raft_config(args.multiplier)
    conf = Configuration(tuple(Server(f"s{i}", f"s{i}") for i in range(3)))
    net = MemTransport()
    with tempfile.TemporaryDirectory() as tmp:
        nodes = []
        for i in range(3):
            st = RaftStorage.open(Path(tmp) / f"s{i}")
            n = RaftNode(f"s{i}", cfg, st, _FSM(), net, rng=random.Random(i))  # type: ignore[arg-type]
            net.nodes[f"s{i}"] = n
            await n.start()
            n.bootstrap(conf)
            nodes.append(n)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not any(n.is_leader for n in nodes):
            if loop.time() > deadline:
                raise SystemExit("no leader within 30 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.warmup)
        counting = True
        await asyncio.sleep(args.duration)
        counting = False
        for n in nodes:
            await n.stop()
    d = args.duration
    print(f"idle 3-server Raft, raft_multiplier {args.multiplier}, {d:.0f} s: loop wake-ups/s "
          f"total {counts['all'] / d:.1f}, leader {counts['leader'] / d:.1f}, "
          f"per follower {counts['follower'] / d / 2:.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds counted (default 10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds after the election (default 2)")
    ap.add_argument("--multiplier", type=int, default=1, help="Consul raft_multiplier (default 1)")
    asyncio.run(main(ap.parse_args()))
