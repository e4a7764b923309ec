"""Jepsen's nemesis over an inventory: ``setup()``, ``invoke(op) -> result``, ``teardown()``.

Operations (op = {"f": ..., "value": ...}); every result is ``{"type": "info", "f", "value"[, "error"]}``
(a nemesis operation's effect is never certain — principle 8 — and an exception is reported, not raised):

===================  ===========================================================================================
start-partition      value: a shape (grudge.SHAPES) or {"shape", "dc"?, "hosts"?, "host"?}. Hosts default to the
                     whole inventory ("dc" narrows to one datacenter); isolate-leader takes the leader of
                     "dc" (default: the nemesis' dc); isolate takes "host"; split-dc makes one component per
                     datacenter. Replaces any current partition. Result value: the grudge, host -> [hosts].
stop-partition       removes the partition.
start-latency        value: {"delay_ms", "jitter_ms"?, "loss"? (0..1), "hosts"? (default all)}: every listed
                     host delays (NFQUEUE delayer) and drops (nft numgen) packets from the other inventory hosts
                     on INPUT. A round trip between two listed hosts pays the delay twice. Replaces any current.
stop-latency         removes it.
kill / pause         value: a target — a host, a list, "all", "random", "leader" or "leader:<dc>". kill = kill -9,
                     staying down until start; pause = SIGSTOP.
start / resume       value: a target, or none for every host killed / paused by this nemesis.
heal                 heal_all: every recorded fault and everything the per-host scan finds.
bump-clock, ...      not supported: the result carries an error saying why (CLOCK_UNSUPPORTED).
===================  ===========================================================================================

Crash safety: each fault is recorded in the FaultLog (fsynced) before it is applied; `heal_all` (also at
`setup`, `teardown`, ``__exit__`` — so Ctrl-C, ``kill -INT`` and ``kill -TERM`` heal, even when SIGINT was
inherited ignored, and a second signal does not cut the heal short: chaos/nemesis/interrupt.py — and from
``python -m pyconsul.chaos.nemesis heal -i INV``)
undoes recorded faults and scans every host for ``pcl_chaos`` nft tables, the ``PCL_CHAOS`` iptables chain,
tagged delayers and stopped agent processes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pyconsul.chaos import history
from pyconsul.chaos.db import DB
from pyconsul.chaos.inventory import Host, Inventory, load, parallel
from pyconsul.chaos.nemesis import grudge as g
from pyconsul.chaos.nemesis.faults import FaultLog
from pyconsul.chaos.nemesis.interrupt import Guard

DELAYER_SOURCE = Path(__file__).parent / "nfqueue.py"
CLOCK_UNSUPPORTED = (
    "clock faults are not supported: lab hosts are network namespaces sharing one kernel clock, and a time "
    "namespace (unshare --time) offsets only CLOCK_MONOTONIC/CLOCK_BOOTTIME, not CLOCK_REALTIME; skewing the "
    "real clock of one host would need a libfaketime-like shim in the agent, which would test the shim")
Result = dict[str, Any]


class NemesisError(Exception):
    """An operation could not be (fully) applied; reported in the result's "error"."""


def _errors(results: Mapping[str, Any]) -> None:
    bad = {n: r for n, r in results.items() if isinstance(r, Exception)}
    if bad:
        raise NemesisError("; ".join(f"{n}: {e}" for n, e in sorted(bad.items())))


class Nemesis:
    def __init__(self, inventory: Inventory, db: DB | None = None, *, seed: int = 0, dc: str | None = None,
                 faults: FaultLog | None = None, agent_command: Sequence[str] | None = None) -> None:
        self.inventory = inventory
        self.agent_command = list(agent_command) if agent_command else None
        self.db = db or DB(inventory, agent_command=self.agent_command)
        self.rng = random.Random(seed)
        servers = inventory.servers()
        self.dc = dc or (inventory.host(servers[0]).datacenter if servers else inventory.hosts[0].datacenter)
        self.faults = faults or FaultLog.for_inventory(inventory.path)
        self._guard = Guard()
        self._ops: dict[str, Callable[[Any], Any]] = {
            "start-partition": self._start_partition, "stop-partition": self._stop_partition,
            "start-latency": self._start_latency, "stop-latency": self._stop_latency,
            "kill": self._kill, "start": self._start, "pause": self._pause, "resume": self._resume,
            "heal": self._heal,
        }
        for clock_op in ("bump-clock", "strobe-clock", "reset-clock", "start-clock-skew", "stop-clock-skew"):
            self._ops[clock_op] = self._clock

    # --- lifecycle ---------------------------------------------------------------------------------

    def setup(self) -> None:
        """Heal whatever an earlier run left (Jepsen's nemesis setup! heals the network first)."""
        self._heal(None)

    def teardown(self) -> None:
        """Heal everything: recorded faults and anything the scan finds."""
        self.setup()

    def __enter__(self) -> Nemesis:
        """Heal, then hold SIGINT/SIGTERM to "unwind and heal" until `__exit__` (chaos.nemesis.interrupt:
        an inherited ignored SIGINT would otherwise leave every fault in place, SIGTERM skip the heal)."""
        self._guard.install()
        try:
            self.setup()
        except BaseException:
            self._guard.restore()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.teardown()  # a second signal here is reported and ignored: the heal runs to its end
        finally:
            self._guard.restore()

    def invoke(self, op: Mapping[str, Any]) -> Result:
        f = str(op.get("f"))
        value = op.get("value")
        try:
            if f not in self._ops:
                raise NemesisError(f"unknown nemesis operation {f!r}; known: {', '.join(self._ops)}")
            return {"type": history.INFO, "f": f, "value": self._ops[f](value)}
        except Exception as e:  # an exception is `info` with its text, never a crash of the runner (principle 8)
            return {"type": history.INFO, "f": f, "value": value, "error": f"{type(e).__name__}: {e}"}

    # --- partitions --------------------------------------------------------------------------------

    def grudge_for(self, value: Any) -> g.Grudge:
        """The grudge an op value names (pure except for the leader lookup of isolate-leader)."""
        spec: dict[str, Any] = {"shape": value} if isinstance(value, str) else dict(value or {})
        shape = str(spec.get("shape", ""))
        dc = spec.get("dc")
        if spec.get("hosts"):
            hosts = [self.inventory.host(str(h)).name for h in spec["hosts"]]
        elif dc:
            hosts = self.inventory.datacenters().get(str(dc), [])
        else:
            hosts = self.inventory.names
        leader = None
        if shape == "isolate-leader":
            leader = self.db.leader(str(dc or self.dc))
            if leader is None:
                raise NemesisError(f"isolate-leader: datacenter {dc or self.dc} has no agreed leader")
        groups = {d: [h for h in hs if h in hosts] for d, hs in self.inventory.datacenters().items()}
        return g.build(shape, hosts, self.rng, leader=leader, target=spec.get("host"), groups=groups)

    def _apply_partition(self, grudge: g.Grudge, previous: Sequence[str]) -> None:
        touched = sorted(set(previous) | set(grudge))
        targets = [self.inventory.host(n) for n in touched]

        def one(h: Host) -> Any:
            drop = sorted(self.inventory.host(src).ip for src in grudge.get(h.name, frozenset()))
            return h.remote({"op": "partition", "drop": drop})

        _errors(parallel(targets, one))

    def _start_partition(self, value: Any) -> Any:
        grudge = self.grudge_for(value)
        previous = self.faults.entries().get("partition", {}).get("hosts", [])
        hosts = sorted(set(previous) | set(grudge))
        self.faults.record("partition", {"hosts": hosts, "grudge": {h: sorted(d) for h, d in grudge.items()}})
        self._apply_partition(grudge, previous)
        if not grudge:
            self.faults.forget("partition")
        else:
            self.faults.record("partition", {"hosts": sorted(grudge),
                                             "grudge": {h: sorted(d) for h, d in grudge.items()}})
        return {h: sorted(d) for h, d in grudge.items()}

    def _stop_partition(self, _value: Any) -> Any:
        previous = self.faults.entries().get("partition", {}).get("hosts", [])
        self._apply_partition({}, previous)
        self.faults.forget("partition")
        return {"healed": previous}

    # --- latency and loss --------------------------------------------------------------------------

    def _start_latency(self, value: Any) -> Any:
        spec = dict(value or {})
        delay, jitter = float(spec.get("delay_ms", 0)), float(spec.get("jitter_ms", 0))
        loss = float(spec.get("loss", 0))
        if delay < 0 or jitter < 0 or not 0 <= loss <= 1:
            raise NemesisError(f"start-latency: need delay_ms >= 0, jitter_ms >= 0, 0 <= loss <= 1 (got {spec})")
        names = [self.inventory.host(str(h)).name for h in spec.get("hosts") or self.inventory.names]
        previous = self.faults.entries().get("latency", {}).get("hosts", [])
        fault = {"hosts": sorted(set(names) | set(previous)), "delay_ms": delay, "jitter_ms": jitter, "loss": loss}
        self.faults.record("latency", fault)
        self._remove_latency([n for n in previous if n not in names])
        source = DELAYER_SOURCE.read_text()
        seeds = {n: self.rng.randrange(1 << 31) for n in names}

        def one(h: Host) -> Any:
            peers = sorted(o.ip for o in self.inventory.hosts if o.name != h.name)
            return h.remote({"op": "latency", "peers": peers, "delay_ms": delay, "jitter_ms": jitter,
                             "loss": loss, "seed": seeds[h.name], "delayer": source})

        _errors(parallel([self.inventory.host(n) for n in names], one))
        self.faults.record("latency", {**fault, "hosts": sorted(names)})
        return {"hosts": sorted(names), "delay_ms": delay, "jitter_ms": jitter, "loss": loss}

    def _remove_latency(self, names: Sequence[str]) -> None:
        _errors(parallel([self.inventory.host(n) for n in names], lambda h: h.remote({"op": "unlatency"})))

    def _stop_latency(self, _value: Any) -> Any:
        previous = self.faults.entries().get("latency", {}).get("hosts", [])
        self._remove_latency(previous)
        self.faults.forget("latency")
        return {"healed": previous}

    def _heal(self, _value: Any) -> Any:
        report = heal_all(self.inventory, self.faults, self.agent_command)
        _errors({n: NemesisError(r) for n, r in report.items() if isinstance(r, str)})
        return report

    def _clock(self, _value: Any) -> Any:
        raise NemesisError(CLOCK_UNSUPPORTED)

    # --- processes ---------------------------------------------------------------------------------

    def targets(self, value: Any) -> list[str]:
        """Host names a process op targets: a host, a list, "all", "random", "leader", "leader:<dc>", or
        "server:<dc>:<i>" (the i-th server of the datacenter, by name: inventory-independent experiments)."""
        if isinstance(value, list | tuple):
            return [self.inventory.host(str(v)).name for v in value]
        word = str(value)
        if word.startswith("server:") and word.count(":") == 2:
            _, dc, i = word.split(":")
            servers = sorted(self.inventory.servers(dc))
            if not i.isdigit() or int(i) >= len(servers):
                raise NemesisError(f"{word}: datacenter {dc} has {len(servers)} servers")
            return [servers[int(i)]]
        if word == "all":
            return self.inventory.names
        if word == "random":
            return [self.rng.choice(self.inventory.names)]
        if word == "leader" or word.startswith("leader:"):
            dc = word.split(":", 1)[1] if ":" in word else self.dc
            leader = self.db.leader(dc)
            if leader is None:
                raise NemesisError(f"datacenter {dc} has no agreed leader")
            return [leader]
        return [self.inventory.host(word).name]

    def _recorded(self, kind: str) -> list[str]:
        return sorted(str(e["host"]) for k, e in self.faults.entries().items() if k.startswith(f"{kind}:"))

    def _each(self, names: Sequence[str], fn: Callable[[str], Any]) -> dict[str, Any]:
        results = parallel([self.inventory.host(n) for n in names], lambda h: fn(h.name))
        _errors(results)
        return results

    def _kill(self, value: Any) -> Any:
        names = self.targets(value)
        for n in names:
            self.faults.record(f"kill:{n}", {"host": n, "command": self.agent_command})
        return self._each(names, self.db.kill)

    def _start(self, value: Any) -> Any:
        names = self.targets(value) if value is not None else self._recorded("kill")

        def one(n: str) -> int:
            pid = self.db.start(n)
            self.faults.forget(f"kill:{n}")
            return pid

        return self._each(names, one)

    def _pause(self, value: Any) -> Any:
        names = self.targets(value)
        for n in names:
            self.faults.record(f"pause:{n}", {"host": n})
        return self._each(names, self.db.pause)

    def _resume(self, value: Any) -> Any:
        names = self.targets(value) if value is not None else self._recorded("pause")

        def one(n: str) -> list[int]:
            pids = self.db.resume(n)
            self.faults.forget(f"pause:{n}")
            return pids

        return self._each(names, one)


def heal_all(inventory: Inventory, faults: FaultLog | None = None,
             agent_command: Sequence[str] | None = None) -> dict[str, list[str] | str]:
    """Undo every fault on every host of the inventory; host -> actions taken, or "error: ..." (a string).

    Each host: the nft table inet pcl_chaos and the iptables chain PCL_CHAOS are removed, tagged delayers
    stopped, stopped agent processes resumed (SIGCONT), and an agent recorded as killed started again (with
    the command recorded at kill time, else `agent_command`, else the host's default). Entries of the fault
    log are forgotten only once every host they concern has been healed.
    """
    log = faults or FaultLog.for_inventory(inventory.path)
    entries = log.entries()
    kills = {str(e.get("host")): e for k, e in entries.items() if k.startswith("kill:")}

    def one(h: Host) -> list[str]:
        req: dict[str, Any] = {"op": "heal", "agent": dict(h.agent), "start": h.name in kills}
        command = kills.get(h.name, {}).get("command") or agent_command
        if command:
            req["command"] = list(command)
        return [str(a) for a in h.remote(req, timeout=90.0)["actions"]]

    results = parallel(list(inventory.hosts), one)
    failed = {n for n, r in results.items() if isinstance(r, Exception)}
    done = [k for k, e in entries.items()
            if not ({str(e["host"])} if "host" in e and ":" in k else set(inventory.names)) & failed]
    log.forget(*done)
    return {n: (f"error: {r}" if isinstance(r, Exception) else r) for n, r in results.items()}


def heal_command(inventory_path: str) -> int:
    """CLI: heal every fault on the inventory's hosts, print what was done; 0 if every host was healed."""
    inventory = load(inventory_path)
    log = FaultLog.for_inventory(inventory.path)
    report = heal_all(inventory, log)
    for name, actions in sorted(report.items()):
        text = actions if isinstance(actions, str) else ("; ".join(actions) or "nothing to heal")
        print(f"{name}: {text}")
    left = log.entries()
    if left:
        print(f"still recorded in {log.path} (delete it once those hosts are gone for good): {', '.join(sorted(left))}")
    return 1 if left or any(isinstance(a, str) for a in report.values()) else 0


def to_history_op(result: Result, time_ns: int = 0) -> history.Op:
    """A nemesis result as a history event (process NEMESIS, type info, value as compact JSON text)."""
    value = result.get("value")
    text = value if isinstance(value, str) or value is None else json.dumps(value, sort_keys=True, default=str)
    return history.Op(history.NEMESIS, history.INFO, str(result["f"]), None, text, time_ns,
                      error=result.get("error"))
