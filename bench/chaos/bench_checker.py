"""Linearizability checker benchmark: how long chaos.checker.linearizable takes on Jepsen-sized histories.

    .venv/bin/python bench/chaos/bench_checker.py [--ops 10000] [--seed 1] [--repeat 3] [--json out.json]
                                                  [--porcupine DIR]

Histories come from `chaos.generator.simulate_register`: a seeded, linearizable-by-construction execution
of the register workload (read 50 % / write 25 % / cas 25 %, values 0-4) by concurrent simulated clients
whose operations overlap (latency up to 10 ms against a mean think time of 1 ms), with indeterminate
(info) operations that took effect or not, possibly after their timeout, and refused (fail) ones.
Scenarios, each `--ops` operations (every operation is two events: invocation and completion):

- `jepsen`: 5 processes, 10 keys, 1 % info, 2 % fail — the shape of a Jepsen register test (the goal:
  < 10 s for 10,000 operations);
- `stale`: the same history with one read in the middle changed to an older value (invalid; the time to
  find and explain the violation);
- `contended`: 20 processes on ONE key, 1 % info — about 20 operations in flight on one register, the
  hard case for WGL search.

The peer gives up after 60 s (verdict "unknown"; the ratio is then an upper bound, printed with "<").

`--porcupine DIR` (a checkout, or a bare git directory, of github.com/anishathalye/porcupine) builds the
Go peer in bench/chaos/porcupine_peer with the local Go toolchain (no network: GOPROXY=off) and checks
the same operations with it, once with GOMAXPROCS=1 (like ours: one core) and once with all cores
(Porcupine checks partitions in parallel). Its time excludes process start-up and JSON decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pyconsul.chaos.checker import linearizable  # noqa: E402
from pyconsul.chaos.generator import RegisterGenerator, RegisterWorkload, simulate_register  # noqa: E402
from pyconsul.chaos.history import FAIL, INFO, OK, Op, pairs  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from provenance import header as provenance_header  # noqa: E402  (bench/provenance.py)
from provenance import provenance  # noqa: E402

PEER_SRC = Path(__file__).resolve().parent / "porcupine_peer" / "main.go"


def make_history(ops: int, processes: int, keys: int, info: float, fail: float, seed: int) -> list[Op]:
    workload = RegisterWorkload(keys=tuple(f"k{i}" for i in range(keys)), stagger_ns=1_000_000)
    invocations = RegisterGenerator(workload, seed=seed).take(ops)
    return simulate_register(invocations, processes=processes, seed=seed, latency_ns=10_000_000,
                             info_rate=info, fail_rate=fail)


def make_stale(history: list[Op]) -> tuple[list[Op], int]:
    """Change one ok read near the middle to return an older value of its key (a stale read)."""
    older: dict[int, Any] = {}  # read position -> the last different value an earlier read of its key saw
    seen: dict[Any, list[Any]] = {}
    for i, op in enumerate(history):
        if op.type == OK and op.f == "read":
            values = seen.setdefault(op.key, [])
            previous = [v for v in values[-20:] if v != op.value]
            if previous:
                older[i] = previous[-1]
            values.append(op.value)
    for i in sorted(older, key=lambda i: abs(i - len(history) // 2))[:50]:
        mutated = list(history)
        mutated[i] = replace(history[i], value=older[i])
        if linearizable.check(mutated).valid is False:
            return mutated, i
    raise RuntimeError("no read could be made stale")


def time_ours(history: list[Op], repeat: int) -> tuple[list[float], linearizable.LinearizableResult]:
    times: list[float] = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = linearizable.check(history, time_limit=120, clock=time.monotonic)
        times.append(time.perf_counter() - t0)
    assert result is not None
    return times, result


def export_for_peer(history: list[Op], path: Path) -> int:
    out = []
    for pr in pairs(history):
        if pr.type == FAIL or (pr.f == "read" and pr.type != OK):
            continue
        arg = pr.invoke.value
        out.append({"key": pr.key, "f": pr.f, "arg": arg if pr.f == "write" else None,
                    "expected": arg[0] if isinstance(arg, tuple) else None,
                    "new": arg[1] if isinstance(arg, tuple) else None,
                    "out": pr.completion.value if pr.f == "read" and pr.completion is not None else None,
                    "known": pr.type == OK, "call": pr.invoke_index,
                    "ret": pr.complete_index if pr.type == OK else -1})
    path.write_text(json.dumps(out))
    return len(out)


def go_version(go: str) -> str:
    return subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip()


def build_peer(porcupine: Path, workdir: Path) -> Path | None:
    go = shutil.which("go")
    if go is None:
        print("porcupine peer: no Go toolchain", file=sys.stderr)
        return None
    src = workdir / "porcupine"
    git_dir = [] if (porcupine / "go.mod").is_file() else [f"--git-dir={porcupine}"]
    rev = subprocess.run(["git", *git_dir, "rev-parse", "HEAD"], cwd=porcupine, capture_output=True, text=True)
    print(f"# porcupine: {porcupine} at {rev.stdout.strip() or 'unknown revision'}"
          f"{'' if git_dir else ' (working tree as is)'}; {go_version(go)}")
    if (porcupine / "go.mod").is_file():
        shutil.copytree(porcupine, src)
    else:  # a bare git directory: export HEAD
        src.mkdir()
        archive = subprocess.run(["git", f"--git-dir={porcupine}", "archive", "HEAD"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    mod = workdir / "peer"
    mod.mkdir()
    shutil.copy(PEER_SRC, mod / "main.go")
    (mod / "go.mod").write_text("module pyconsulbench/peer\n\ngo 1.16\n\n"
                                "require github.com/anishathalye/porcupine v0.0.0\n\n"
                                f"replace github.com/anishathalye/porcupine => {src}\n")
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOPATH": str(workdir / "gopath"),
           "GOCACHE": str(workdir / "gocache")}
    build = subprocess.run([go, "build", "-o", str(mod / "peer"), "."], cwd=mod, env=env, capture_output=True,
                           text=True)
    if build.returncode != 0:
        print(f"porcupine peer: build failed:\n{build.stderr}", file=sys.stderr)
        return None
    return mod / "peer"


def time_peer(peer: Path, ops_file: Path, repeat: int, cores: int | None) -> tuple[list[float], str]:
    env = dict(os.environ)
    if cores is not None:
        env["GOMAXPROCS"] = str(cores)
    times, verdict = [], ""
    for _ in range(repeat):
        run = subprocess.run([str(peer), str(ops_file)], env=env, capture_output=True, text=True, check=True,
                             timeout=300)
        answer = json.loads(run.stdout)
        times.append(float(answer["seconds"]))
        verdict = str(answer["result"])
        if verdict == "unknown":
            break  # it ran into its 60 s timeout: once is enough
    return times, verdict


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--porcupine", type=Path, help="Porcupine checkout or bare git dir: also run the Go peer")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    base = make_history(args.ops, 5, 10, 0.01, 0.02, args.seed)
    stale, stale_at = make_stale(base)
    scenarios = {
        "jepsen": base,
        "stale": stale,
        "contended": make_history(args.ops, 20, 1, 0.01, 0.02, args.seed),
    }
    prov = provenance()
    print(provenance_header(prov))  # revision, machine, exact command
    print(f"machine: {machine()}")
    print(f"operations per scenario: {args.ops} ({2 * args.ops} events); repeat {args.repeat}, times are min / median")
    print(f"stale: the read at event {stale_at} changed to an older value\n")
    workdir = Path(tempfile.mkdtemp(prefix="bench-checker-"))
    peer = build_peer(args.porcupine, workdir) if args.porcupine else None
    report: dict[str, Any] = {"machine": machine(), "provenance": prov, "ops": args.ops, "seed": args.seed,
                              "scenarios": {}}
    header = f"{'scenario':<10} {'verdict':>8} {'ours s':>14} {'ops/s':>9} {'steps':>9}"
    if peer is not None:
        header += f"  {'porcupine 1 core s':>19} {'all cores s':>12} {'verdict':>8} {'ours/porc.':>10}"
    print(header)
    try:
        for name, history in scenarios.items():
            times, result = time_ours(history, args.repeat)
            types = {t: sum(1 for op in history if op.type == t) for t in (OK, FAIL, INFO)}
            entry: dict[str, Any] = {"valid": result.valid, "seconds": times, "ops_per_s": args.ops / min(times),
                                     "steps": result.to_dict()["steps"], "completions": types,
                                     "invalid_keys": result.invalid_keys}
            line = (f"{name:<10} {result.valid!s:>8} {min(times):>6.3f} / {statistics.median(times):<6.3f}"
                    f"{args.ops / min(times):>9.0f} {entry['steps']:>9}")
            if peer is not None:
                ops_file = workdir / f"{name}.json"
                export_for_peer(history, ops_file)
                one, verdict = time_peer(peer, ops_file, args.repeat, 1)
                many, _ = time_peer(peer, ops_file, args.repeat, None)
                entry["porcupine"] = {"verdict": verdict, "seconds_1_core": one, "seconds_all_cores": many}
                ratio = f"<{min(times) / min(one):.3g}x" if verdict == "unknown" else f"{min(times) / min(one):.3g}x"
                line += f"  {min(one):>19.3f} {min(many):>12.3f} {verdict:>8} {ratio:>10}"
            report["scenarios"][name] = entry
            print(line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if peer is None:
        print("\nno peer checker: Porcupine (Go) not given (--porcupine DIR); Knossos needs Clojure deps "
              "that cannot be fetched here")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
