"""Run one experiment against a deployed cluster (Jepsen's `run!`): DB, clients, nemesis, checker, report.

Order, and what is guaranteed:
1. The cluster is made ready: redeployed with `agent_config` when the experiment sets one
   (`ansible-playbook site.yml -e pyconsul_config_extra=...`); its `test_switches` files put in the data
   directory of the datacenter's agents, which are restarted (kill -9, start) to read them; every agent
   started, a leader in every DC. After the run both are undone the same way.
2. `concurrency` client processes issue the generator's operations against the agents of the
   experiment's datacenter (process p talks to host p mod n), recording invoke/completion events in
   real-time order (history.py's contract). A process whose operation ended `info` is retired and a
   new process id takes its place. The history is appended to `history.jsonl` as it grows, so a crashed
   run still leaves what happened.
3. Meanwhile the nemesis timeline runs; each nemesis operation is recorded in the history too.
4. When the load ends: heal everything (the nemesis is a context manager, so exceptions, Ctrl-C and
   SIGTERM heal too, even with SIGINT inherited ignored; a second signal does not cut the heal short;
   `pyconsul-chaos heal` heals after a crash of the runner), start killed agents, resume
   paused ones, wait for a leader in every datacenter, then final reads from a fresh process.
5. Checkers (pure) decide; the report is written; the testinfra suite checks that the cluster healed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pyconsul.chaos import checker, history
from pyconsul.chaos.checker import linearizable, lock, stats
from pyconsul.chaos.checker import set as set_checker
from pyconsul.chaos.client import KVClient
from pyconsul.chaos.db import DB
from pyconsul.chaos.experiment import Experiment
from pyconsul.chaos.generator import (
    READ,
    Invocation,
    LockGenerator,
    LockWorkload,
    RegisterGenerator,
    RegisterWorkload,
    SetGenerator,
    SetWorkload,
)
from pyconsul.chaos.history import INFO, INVOKE, NEMESIS, OK, Op
from pyconsul.chaos.inventory import Host, Inventory, parallel
from pyconsul.chaos.inventory import load as load_inventory

REPO = Path(__file__).resolve().parents[1]
Generator = RegisterGenerator | SetGenerator | LockGenerator
CHECKERS: dict[str, checker.Checker] = {"linearizable": linearizable.check, "set": set_checker.check,
                                        "lock": lock.check,
                                        "stats": stats.check}


class Recorder:
    """The history: thread-safe, indexed, mirrored line by line into a JSONL file."""

    def __init__(self, stream: TextIO, t0_ns: int) -> None:
        self.ops: list[Op] = []
        self.stream = stream
        self.t0 = t0_ns
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def now(self) -> int:
        return time.monotonic_ns() - self.t0

    def record(self, op: Op) -> Op:
        with self.lock:
            op = Op(op.process, op.type, op.f, op.key, op.value, self.now(), len(self.ops), op.error)
            self.ops.append(op)
            self.stream.write(history.dumps(op) + "\n")
            self.stream.flush()
            if op.type != INVOKE and op.process != NEMESIS:
                self.counts[op.type] += 1
            return op


@dataclass
class Outcome:
    out_dir: Path
    valid: checker.Validity
    healed: bool
    verdict: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0: valid and healed; 1: a checker found a violation; 2: undecided; 3: the cluster did not heal."""
        if self.valid is False:
            return 1
        if not self.healed:
            return 3
        return 0 if self.valid is True else 2


class Runner:
    def __init__(self, exp: Experiment, inventory_path: str, out_dir: Path, *, seed: int = 0,
                 progress: bool = True, verify: bool = True, log: TextIO = sys.stderr) -> None:
        self.exp = exp
        self.inventory_path = inventory_path
        self.out_dir = out_dir
        self.seed = seed
        self.progress = progress
        self.verify = verify
        self.log = log
        self.inventory: Inventory = load_inventory(inventory_path)
        self.db = DB(self.inventory)
        self.client = KVClient(prefix=f"chaos/{exp.name}/{int(time.time())}/")
        hosts = [h for h in self.inventory.hosts if h.datacenter == exp.datacenter]
        if not hosts:
            raise ValueError(f"datacenter {exp.datacenter} has no hosts in {inventory_path}")
        self.addrs = [h.http for h in hosts]
        self._stop = threading.Event()
        self._gen_lock = threading.Lock()
        self._next_process = exp.concurrency
        self._generator_keys: tuple[str, ...] = ()

    def say(self, msg: str) -> None:
        print(f"==> {msg}", file=self.log, flush=True)

    # --- phases ----------------------------------------------------------------------------------

    def _deploy(self, agent_config: dict[str, Any]) -> None:
        extra = json.dumps({"pyconsul_config_extra": agent_config})
        proc = subprocess.run(["ansible-playbook", "site.yml", "-i", self.inventory_path, "-e", extra],
                              cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"ansible-playbook failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")

    def _test_switches(self, on: bool) -> None:
        """Create (or remove) the experiment's test switch files on the agents of its datacenter and
        restart those agents, which read the files only when they start."""
        def one(h: Host) -> None:
            for name in self.exp.test_switches:
                self.db.set_test_switch(h.name, name, on)
            self.db.kill(h.name)
            self.db.start(h.name)

        hosts = [h for h in self.inventory.hosts if h.datacenter == self.exp.datacenter]
        errors = {n: r for n, r in parallel(hosts, one).items() if isinstance(r, Exception)}
        if errors:
            raise RuntimeError("test switches: " + "; ".join(f"{n}: {e}" for n, e in sorted(errors.items())))

    def prepare(self) -> None:
        if self.exp.agent_config:
            self.say(f"redeploying with agent_config {self.exp.agent_config}")
            self._deploy(self.exp.agent_config)
        if self.exp.test_switches:
            self.say(f"restarting the {self.exp.datacenter} agents with {', '.join(self.exp.test_switches)}")
            self._test_switches(True)
        self.db.setup(timeout=90)

    def restore(self) -> None:
        """Put back the inventory's own agent configuration after an experiment that changed it."""
        if self.exp.agent_config:
            self.say("redeploying with the inventory's agent configuration")
            self._deploy({})
        if self.exp.test_switches:
            self.say(f"restarting the {self.exp.datacenter} agents without {', '.join(self.exp.test_switches)}")
            self._test_switches(False)
            self.db.setup(timeout=90)

    def _generator(self) -> Generator:
        stagger = int(1e9 / self.exp.rate)
        if self.exp.workload == "set":
            return SetGenerator(SetWorkload(adds=None, stagger_ns=stagger), seed=self.seed)
        if self.exp.workload == "lock":
            keys = tuple(f"lock{i}" for i in range(self.exp.keys))
            return LockGenerator(LockWorkload(keys=keys, stagger_ns=stagger), seed=self.seed)
        keys = tuple(f"r{i}" for i in range(self.exp.keys))
        return RegisterGenerator(RegisterWorkload(keys=keys, stagger_ns=stagger), seed=self.seed)

    def _new_process(self) -> int:
        with self._gen_lock:
            process, self._next_process = self._next_process, self._next_process + 1
        return process

    def _lock_worker(self, slot: int, gen: LockGenerator, rec: Recorder) -> None:
        """The lock workload: each process has its own session; a turn is `acquire` unless the process
        holds that lock, then `release`. A process whose operation ended info is retired and its session
        destroyed by a fresh process (recorded: it frees whatever the session held)."""
        process, session, held = slot, "", set()
        while not self._stop.is_set():
            with self._gen_lock:
                inv = next(gen)
            if self._stop.wait(inv.stagger_ns / 1e9):
                break
            addr = self.addrs[process % len(self.addrs)]
            if not session:
                try:
                    session = self.client.session(addr, f"chaos-{process}")
                except (OSError, ValueError):  # no leader right now, say: nothing happened
                    continue
            f = READ if inv.f == READ else ("release" if inv.key in held else "acquire")
            owner = None if f == READ else process
            op = rec.record(Op(process, INVOKE, f, inv.key, owner))
            out = self.client.invoke_lock(addr, f, inv.key, owner, session)
            rec.record(op.complete(out.type, out.value if out.type == OK else None, error=out.error))
            if out.type == OK and f == "acquire":
                held.add(inv.key)
            elif f == "release" and (out.type == OK or (out.error or "").startswith("release refused")):
                held.discard(inv.key)
            elif out.type == INFO:
                self._destroy_session(process, session, rec)
                process, session, held = self._new_process(), "", set()

    def _destroy_session(self, owner: int, session: str, rec: Recorder) -> None:
        """Destroy a retired process's session, retrying (each try by a fresh process) for up to 30 s."""
        deadline = time.monotonic() + 30
        keys = self._generator_keys
        while time.monotonic() < deadline:
            janitor = self._new_process()
            addr = self.addrs[janitor % len(self.addrs)]
            ops = [rec.record(Op(janitor, INVOKE, "destroy", k, owner)) for k in keys]
            out = self.client.invoke_lock(addr, "destroy", keys[0], owner, session)
            for op in ops:
                rec.record(op.complete(out.type, None, error=out.error))
            if out.type == OK:
                return
            time.sleep(0.5)

    def _worker(self, slot: int, gen: Generator, rec: Recorder) -> None:
        if isinstance(gen, LockGenerator):
            self._lock_worker(slot, gen, rec)
            return
        process = slot
        while not self._stop.is_set():
            with self._gen_lock:
                try:
                    inv = next(gen)
                except StopIteration:
                    return
            if self._stop.wait(inv.stagger_ns / 1e9):
                return
            addr = self.addrs[process % len(self.addrs)]
            op = rec.record(Op(process, INVOKE, inv.f, inv.key, inv.value))
            out = self.client.invoke(addr, inv)
            rec.record(op.complete(out.type, out.value if out.type == OK else None, error=out.error))
            if out.type == INFO:  # the operation may still be in flight: never reuse this process
                with self._gen_lock:
                    process, self._next_process = self._next_process, self._next_process + 1

    def _nemesis_timeline(self, nemesis: Any, rec: Recorder, t0: float) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for step in self.exp.nemesis:
            if self._stop.wait(max(0.0, t0 + step.at - time.monotonic())):
                break
            rec.record(Op(NEMESIS, INVOKE, step.f, None, json.dumps(step.value)))
            res = nemesis.invoke({"f": step.f, "value": step.value})
            results.append({"at": round(time.monotonic() - t0, 3), **res})
            rec.record(Op(NEMESIS, INFO, step.f, None, json.dumps(res.get("value"), default=str)[:500],
                          error=res.get("error")))
            self.say(f"nemesis {step.f} {step.value if step.value is not None else ''}"
                     f"{' ERROR ' + str(res['error']) if res.get('error') else ''}")
        return results

    def _progress(self, rec: Recorder, t0: float) -> None:
        tty = self.log.isatty()
        last = 0.0
        while not self._stop.wait(0.5):
            el = time.monotonic() - t0
            if not tty and el - last < 5:
                continue
            last = el
            frac = min(1.0, el / self.exp.duration)
            bar = "#" * int(frac * 30)
            c = rec.counts
            line = (f"[{bar:<30}] {el:5.1f}/{self.exp.duration:.0f} s  ok {c['ok']}  fail {c['fail']}  "
                    f"info {c['info']}")
            print(("\r" + line) if tty else line, end="" if tty else "\n", file=self.log, flush=True)
        if tty:
            print(file=self.log)

    def _final_reads(self, gen: Generator, rec: Recorder) -> None:
        process = self._next_process + 1
        for inv in gen.final_reads():
            deadline = time.monotonic() + 30
            while True:
                addr = self.addrs[process % len(self.addrs)]
                op = rec.record(Op(process, INVOKE, inv.f, inv.key, inv.value))
                if isinstance(gen, LockGenerator):
                    out = self.client.invoke_lock(addr, READ, inv.key, None, "")
                else:
                    out = self.client.invoke(addr, Invocation(READ, inv.key, None))
                rec.record(op.complete(out.type, out.value if out.type == OK else None, error=out.error))
                if out.type == OK or time.monotonic() > deadline:
                    break
                process += 1
                time.sleep(0.5)

    def _wait_membership(self, timeout: float = 120.0) -> None:
        """After healing, gossip needs a while to bring back members that were declared failed during the
        fault (serf's reconnect loop, push-pull): wait until every agent sees every agent of its datacenter
        alive and every agent names the same leader, so that the verdict on healing is about the cluster,
        not about how soon we looked (a deadline, then testinfra decides)."""
        deadline = time.monotonic() + timeout
        want = self.inventory.datacenters()
        wan = {f"{h.name}.{h.datacenter}" for h in self.inventory.hosts if h.server}

        def alive(host: str, wan_pool: bool) -> set[str]:
            return {n for n, st in self.db.members(host, wan_pool).items() if st == "alive"}

        def agreed_leaders() -> bool:  # every agent of each datacenter names the same, non-empty leader
            for names in want.values():
                views = {str(self.db.api(n, "/v1/status/leader")) for n in names}
                if len(views) != 1 or views == {""} or views == {"None"}:
                    return False
            return True

        while time.monotonic() < deadline:
            try:
                if all(set(want[h.datacenter]) <= alive(h.name, False) and (not h.server or wan <= alive(h.name, True))
                       for h in self.inventory.hosts) and agreed_leaders():
                    return
            except (OSError, ValueError):
                pass
            time.sleep(1.0)

    def _healed(self) -> tuple[bool, str]:
        """The testinfra suite's cluster checks: one leader per DC, peers, members -wan complete."""
        if not self.verify:
            return True, "not verified (--no-verify)"
        self._wait_membership()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hosts=ansible://all",
             f"--ansible-inventory={self.inventory_path}", "tests/lab/testinfra",
             "-k", "leader or peers or members or listen"],
            cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        return proc.returncode == 0, "\n".join(tail)

    def run(self) -> Outcome:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"experiment {self.exp.name} on {self.inventory_path} -> {self.out_dir}")
        self.prepare()
        try:
            return self._run()
        finally:
            self.restore()

    def _run(self) -> Outcome:
        from pyconsul.chaos.nemesis import Nemesis  # heavy-ish; only for real runs
        from pyconsul.chaos.report import write_report

        gen = self._generator()
        self._generator_keys = tuple(str(k) for k in gen.workload.keys) if isinstance(gen, LockGenerator) else ()
        t0_ns = time.monotonic_ns()
        nemesis_results: list[dict[str, Any]] = []
        with open(self.out_dir / "history.jsonl", "w") as stream:
            rec = Recorder(stream, t0_ns)
            t0 = t0_ns / 1e9
            with Nemesis(self.inventory, self.db, seed=self.seed, dc=self.exp.datacenter) as nemesis:
                threads = [threading.Thread(target=self._worker, args=(i, gen, rec), daemon=True)
                           for i in range(self.exp.concurrency)]
                if self.progress:
                    threads.append(threading.Thread(target=self._progress, args=(rec, t0), daemon=True))
                for t in threads:
                    t.start()
                box: list[list[dict[str, Any]]] = []
                nt = threading.Thread(target=lambda: box.append(self._nemesis_timeline(nemesis, rec, t0)),
                                      daemon=True)
                nt.start()
                try:
                    self._stop.wait(self.exp.duration)
                finally:
                    self._stop.set()
                    nt.join(120)
                    for t in threads:
                        t.join(self.client.timeout * 3)
                    nemesis_results = box[0] if box else []
                    self.say("healing")
                    rec.record(Op(NEMESIS, INVOKE, "heal", None, None))
                    heal = nemesis.invoke({"f": "heal"})
                    rec.record(Op(NEMESIS, INFO, "heal", None, None, error=heal.get("error")))
            self.db.teardown()
            leaders = {dc: self.db.wait_leader(dc, 90) for dc in self.inventory.datacenters()}
            self.say(f"leaders after healing: {leaders}")
            self._final_reads(gen, rec)
        ops = rec.ops
        self.say(f"checking {len(ops)} events")
        composed = checker.compose({name: CHECKERS[name] for name in self.exp.checks})(ops)
        healed, healed_detail = self._healed()
        verdict = {"experiment": self.exp.name, "valid": composed.valid, "healed": healed,
                   "healed_detail": healed_detail, "seed": self.seed, "duration": self.exp.duration,
                   "counts": dict(rec.counts), "nemesis": nemesis_results, "leaders_after": leaders,
                   "checks": composed.to_dict()}
        (self.out_dir / "verdict.json").write_text(json.dumps(verdict, indent=1, default=str) + "\n")
        write_report(self.out_dir, self.exp, ops, verdict)
        self.say(f"verdict: valid={composed.valid} healed={healed}; report {self.out_dir / 'index.html'}")
        return Outcome(self.out_dir, composed.valid, healed, verdict)
