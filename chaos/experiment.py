"""Experiments as data: one YAML file per experiment in chaos/experiments/. Pure (parsing and checking).

    name: leader-kill
    description: kill -9 the BJ leader, restart it
    workload: register            # register (read/write/cas per key, ?consistent reads) | set | lock
    datacenter: bj                # the clients talk to this datacenter's agents (servers and clients)
    duration: 40                  # seconds of client load
    concurrency: 5                # client processes (a crashed one is replaced by a new process id)
    rate: 20                      # mean operations per second per process (stagger = 1/rate)
    keys: 5                       # register keys (register workload); lock keys (lock workload)
    agent_config: {}              # Consul JSON keys for the agents; non-empty -> redeployed first
    test_switches: []             # test-only switch files (TEST_STALE_READS) put in the data dir of the
                                  # datacenter's agents, which are restarted; removed (and restarted) after
    nemesis:                      # faults on a timeline, seconds from the start of the load
      - {at: 10, f: kill, value: "leader:bj"}
      - {at: 25, f: start}
    checks: [linearizable, stats] # register: linearizable, stats; set: set, stats; lock: lock, stats

Every fault is also healed when the load ends (and on Ctrl-C or a crash of the runner). `load()` raises
ExperimentError naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NEMESIS_FS = ("start-partition", "stop-partition", "start-latency", "stop-latency", "kill", "start", "pause",
              "resume", "heal")
WORKLOADS = {"register": ("linearizable", "stats"), "set": ("set", "stats"), "lock": ("lock", "stats")}
EXPERIMENTS_DIR = Path(__file__).parent / "experiments"
# Files in an agent's data directory that `pyconsul agent` reads at start-up (agent/cli/agent.py).
TEST_SWITCHES = ("TEST_STALE_READS",)


class ExperimentError(ValueError):
    """A malformed experiment file; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    f: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    description: str = ""
    workload: str = "register"
    datacenter: str = "bj"
    duration: float = 40.0
    concurrency: int = 5
    rate: float = 20.0
    keys: int = 5
    agent_config: dict[str, Any] = field(default_factory=dict)
    test_switches: tuple[str, ...] = ()
    nemesis: tuple[Step, ...] = ()
    checks: tuple[str, ...] = ()

    def windows(self) -> list[tuple[float, float, str]]:
        """Fault windows (start s, end s, label) for plots: each fault until the step that ends it, or
        until the end of the load (when the final heal ends it)."""
        enders = {"start-partition": ("stop-partition", "heal"), "start-latency": ("stop-latency", "heal"),
                  "kill": ("start", "heal"), "pause": ("resume", "heal")}
        out: list[tuple[float, float, str]] = []
        for i, s in enumerate(self.nemesis):
            if s.f not in enders:
                continue
            end = next((t.at for t in self.nemesis[i + 1:] if t.f in enders[s.f]), self.duration)
            label = s.f.removeprefix("start-") + (f" {s.value}" if isinstance(s.value, str) else "")
            out.append((s.at, end, label))
        return out


def _num(d: dict[str, Any], key: str, default: float, where: str, lo: float, hi: float) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise ExperimentError(f"{where}: {key} must be a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def parse(data: Any, where: str = "experiment") -> Experiment:
    if not isinstance(data, dict):
        raise ExperimentError(f"{where}: expected a mapping at the top level")
    known = {"name", "description", "workload", "datacenter", "duration", "concurrency", "rate", "keys",
             "agent_config", "test_switches", "nemesis", "checks"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ExperimentError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ExperimentError(f"{where}: name must be a non-empty string")
    workload = data.get("workload", "register")
    if workload not in WORKLOADS:
        raise ExperimentError(f"{where}: workload must be one of {', '.join(WORKLOADS)}, got {workload!r}")
    duration = _num(data, "duration", 40, where, 1, 3600)
    steps: list[Step] = []
    raw_steps = data.get("nemesis") or []
    if not isinstance(raw_steps, list):
        raise ExperimentError(f"{where}: nemesis must be a list of steps")
    for i, st in enumerate(raw_steps):
        w = f"{where}: nemesis[{i}]"
        if not isinstance(st, dict) or set(st) - {"at", "f", "value"}:
            raise ExperimentError(f"{w}: a step is {{at, f, value}}, got {st!r}")
        if st.get("f") not in NEMESIS_FS:
            raise ExperimentError(f"{w}: f must be one of {', '.join(NEMESIS_FS)}, got {st.get('f')!r}")
        at = _num(st, "at", -1, w, 0, duration)
        if steps and at < steps[-1].at:
            raise ExperimentError(f"{w}: steps must be in time order ({at:g} after {steps[-1].at:g})")
        steps.append(Step(at, str(st["f"]), st.get("value")))
    checks = data.get("checks", list(WORKLOADS[workload]))
    if not isinstance(checks, list) or not all(c in WORKLOADS[workload] for c in checks):
        raise ExperimentError(f"{where}: checks for workload {workload} are a list of {WORKLOADS[workload]}")
    agent_config = data.get("agent_config") or {}
    if not isinstance(agent_config, dict):
        raise ExperimentError(f"{where}: agent_config must be a mapping of Consul JSON keys")
    switches = data.get("test_switches") or []
    if not isinstance(switches, list) or not all(s in TEST_SWITCHES for s in switches):
        raise ExperimentError(f"{where}: test_switches must be a list of {', '.join(TEST_SWITCHES)}")
    dc = data.get("datacenter", "bj")
    if not isinstance(dc, str) or not dc:
        raise ExperimentError(f"{where}: datacenter must be a string")
    return Experiment(
        name=name, description=str(data.get("description", "")), workload=workload, datacenter=dc.lower(),
        duration=duration, concurrency=int(_num(data, "concurrency", 5, where, 1, 64)),
        rate=_num(data, "rate", 20, where, 0.1, 1000), keys=int(_num(data, "keys", 5, where, 1, 100)),
        agent_config=dict(agent_config), test_switches=tuple(dict.fromkeys(switches)), nemesis=tuple(steps),
        checks=tuple(checks))


def load(path_or_name: str | Path) -> Experiment:
    """An experiment from a YAML file, or by name from chaos/experiments/ ("leader-kill")."""
    import yaml

    path = Path(path_or_name)
    if not path.exists() and not path.suffix:
        path = EXPERIMENTS_DIR / f"{path_or_name}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ExperimentError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse(data, str(path))


def available() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
