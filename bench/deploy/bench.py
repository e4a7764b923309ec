"""Deployment benchmark (issue 4): fresh deploy, no-op rerun and a rolling restart under client load.

    .venv/bin/python bench/deploy/bench.py [--inventory inventories/bj_sh] [--cold] [--json out.json] [--keep]

1. `pyconsul-lab down` + `up` (timed apart), then `ansible-playbook site.yml` on the fresh hosts (the
   wheelhouse is reused from build/wheelhouse unless --cold removes it first).
2. The same playbook again: a no-op rerun; its PLAY RECAP must say changed=0 on every host.
3. `playbooks/rolling_restart.yml` while a writer in this process PUTs /v1/kv/bench/rr/<n> round-robin
   over the hosts of the first datacenter, retrying each write for up to 10 s on errors and on other
   hosts; afterwards every acknowledged key is read back with ?consistent. Elections are counted with
   the Raft term (`/v1/agent/self` Stats.consul.raft_term, max over each datacenter's servers, before and
   after): the goal is at most one election per restarted leader (one per datacenter here).

There is no real peer to run side by side: the community ansible-consul role needs the Consul binary
from the internet, which this machine cannot reach. The figures are checked against the issue's goals.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "bench"))

from provenance import header, provenance  # noqa: E402  (bench/provenance.py)


def sh(*args: str, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "HOME": "/root", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    return time.monotonic() - t0, proc


def recap(out: str) -> dict[str, dict[str, int]]:
    rows = re.findall(r"^(\S+)\s+:\s+(.*)$", out, re.M)
    return {h: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)} for h, rest in rows if "ok=" in rest}


def inventory(path: str) -> dict[str, Any]:
    _, proc = sh(str(BIN / "ansible-inventory"), "-i", path, "--list")
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def http(addr: str, path: str, method: str = "GET", body: bytes | None = None, timeout: float = 3.0) -> Any:
    req = urllib.request.Request(f"http://{addr}{path}", data=body, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def terms(addrs: list[str]) -> int:
    best = 0
    for a in addrs:
        try:
            best = max(best, int(http(a, "/v1/agent/self")["Stats"]["consul"].get("raft_term", 0)))
        except (OSError, ValueError, KeyError):
            pass
    return best


class Writer(threading.Thread):
    def __init__(self, addrs: list[str]) -> None:
        super().__init__(daemon=True)
        self.addrs = addrs
        self.stop = threading.Event()
        self.acked: list[int] = []
        self.failed: list[int] = []
        self.retries = 0

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            deadline = time.monotonic() + 10
            i = n
            while True:
                addr = self.addrs[i % len(self.addrs)]
                try:
                    if http(addr, f"/v1/kv/bench/rr/{n}", "PUT", str(n).encode()) is True:
                        self.acked.append(n)
                        break
                except (OSError, ValueError):
                    pass
                self.retries += 1
                i += 1
                if time.monotonic() > deadline:
                    self.failed.append(n)
                    break
                time.sleep(0.05)
            time.sleep(0.02)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inventory", default="inventories/bj_sh")
    ap.add_argument("--cold", action="store_true", help="remove the cached wheelhouses first")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    args = ap.parse_args()
    prov = provenance()
    print(header(prov), flush=True)  # revision, machine, exact command: before any figure
    inv = inventory(args.inventory)
    hv = inv["_meta"]["hostvars"]
    dcs: dict[str, list[str]] = {}
    for h, v in sorted(hv.items()):
        dcs.setdefault(str(v.get("pyconsul_datacenter", "dc1")).lower(), []).append(h)
    servers = {dc: [f"{hv[h]['ansible_host']}:8500" for h in hs if hv[h].get("pyconsul_server", True) is not False]
               for dc, hs in dcs.items()}
    first_dc = sorted(dcs)[0]
    res: dict[str, Any] = {"inventory": args.inventory, "hosts": len(hv), "provenance": prov}
    lab = str(BIN / "pyconsul-lab")
    try:
        sh(lab, "down", "-i", args.inventory)
        if args.cold:
            shutil.rmtree(REPO / "build" / "wheelhouse", ignore_errors=True)
        res["lab_up_s"], p = sh(lab, "up", "-i", args.inventory)
        assert p.returncode == 0, p.stdout + p.stderr
        res["fresh_deploy_s"], p = sh(str(BIN / "ansible-playbook"), "site.yml", "-i", args.inventory)
        assert p.returncode == 0, p.stdout[-4000:]
        res["noop_rerun_s"], p = sh(str(BIN / "ansible-playbook"), "site.yml", "-i", args.inventory)
        assert p.returncode == 0, p.stdout[-4000:]
        res["noop_changed"] = {h: r.get("changed", -1) for h, r in recap(p.stdout).items()}
        before = {dc: terms(a) for dc, a in servers.items()}
        writer = Writer([f"{hv[h]['ansible_host']}:8500" for h in dcs[first_dc]])
        writer.start()
        time.sleep(2)
        res["rolling_restart_s"], p = sh(str(BIN / "ansible-playbook"), "playbooks/rolling_restart.yml", "-i",
                                         args.inventory)
        time.sleep(2)
        writer.stop.set()
        writer.join(30)
        assert p.returncode == 0, p.stdout[-4000:]
        after = {dc: terms(a) for dc, a in servers.items()}
        res["elections"] = {dc: after[dc] - before[dc] for dc in servers}
        keys = http(servers[first_dc][0], "/v1/kv/bench/rr/?keys&consistent", timeout=10) or []
        have = {int(k.rsplit("/", 1)[1]) for k in keys}
        res["writes"] = {"acked": len(writer.acked), "failed_after_retries": len(writer.failed),
                         "retries": writer.retries, "lost": len(set(writer.acked) - have)}
    finally:
        if not args.keep:
            sh(lab, "down", "-i", args.inventory)
    goals = [
        ("fresh deploy (s)", res["fresh_deploy_s"], "<= 60", res["fresh_deploy_s"] <= 60),
        ("no-op rerun (s)", res["noop_rerun_s"], "<= 20", res["noop_rerun_s"] <= 20),
        ("no-op rerun changed", sum(res["noop_changed"].values()), "== 0", not any(res["noop_changed"].values())),
        ("rolling restart (s)", res["rolling_restart_s"], "", True),
        ("elections per restarted leader", max(res["elections"].values()), "<= 1",
         max(res["elections"].values()) <= 1),
        ("writes failed after retries", res["writes"]["failed_after_retries"], "== 0",
         res["writes"]["failed_after_retries"] == 0),
        ("acknowledged writes lost", res["writes"]["lost"], "== 0", res["writes"]["lost"] == 0),
    ]
    print(f"deploy benchmark, {res['hosts']} hosts of {args.inventory}; lab up {res['lab_up_s']:.1f} s")
    for name, value, goal, ok in goals:
        v = f"{value:.1f}" if isinstance(value, float) else str(value)
        print(f"  {name:34s} {v:>8s}  {goal:6s} {'PASS' if ok else 'MISS' if goal else ''}")
    print(f"  elections per datacenter: {res['elections']}; writes: {res['writes']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0 if all(ok for *_, ok in goals) else 1


if __name__ == "__main__":
    raise SystemExit(main())
