"""Nemeses for real, on lab hosts (tests/chaos/inventory: ch-a..ch-e; BJ = a, b, c; SH = d (server), e).

The module fixture brings the lab up, writes each host's agent config (the role's layout) and starts real
agents through chaos.db (the `plain` manager: no supervisord on these hosts), plus a probe server in each
host's namespace. Partitions are checked with real packets: every host sends UDP datagrams to every other
and tries a TCP connection; exactly the grudge's pairs must be cut (UDP one way, TCP if either way is cut).
Teardown heals, stops what the test started (by PID) and takes the lab down, even on failure.

Needs root, iproute2, nft, iptables, ssh and sshd (scripts/bootstrap.sh); fails loudly without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import pytest

from pyconsul.chaos.db import DB
from pyconsul.chaos.inventory import Inventory, load, parallel
from pyconsul.chaos.nemesis import FaultLog, Nemesis, heal_all
from pyconsul.chaos.nemesis import grudge as g
from pyconsul.lab.system import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = str(Path(__file__).parent / "inventory")
LAB = str(Path(sys.executable).parent / "pyconsul-lab")
AGENT = [sys.executable, "-m", "pyconsul.agent", "agent", "-config-dir", "/etc/pyconsul/agent.d"]
PORT = 7790

# A probe server per host (run in the host's namespace). Commands, one line per TCP connection from the
# controller: PROBE tag timeout ip... (UDP x3 to each, then TCP connects; answers {ip: connected}),
# RECEIVED tag ({source ip: datagrams}), RTT ip n ([ms]), BLAST tag ip n (n datagrams, paced).
PROBE_SERVER = r"""
import collections, json, socket, sys, threading, time
ip, port = sys.argv[1], int(sys.argv[2])
got, lock = collections.Counter(), threading.Lock()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((ip, port))
def udp_loop():
    while True:
        data, _ = udp.recvfrom(512)
        with lock: got[data.decode()] += 1
threading.Thread(target=udp_loop, daemon=True).start()
def connects(target, timeout):
    try:
        socket.create_connection((target, port), timeout=timeout).close(); return True
    except OSError:
        return False
def handle(c):
    c.settimeout(30)
    line = b""
    while not line.endswith(b"\n") and (b := c.recv(1)):  # unbuffered: ECHO's bytes follow at once
        line += b
    words = line.decode().split()
    if not words: return c.close()
    if words[0] == "ECHO":
        while (b := c.recv(64)): c.sendall(b)
        return c.close()
    out = None
    if words[0] == "PROBE":
        tag, timeout, targets = words[1], float(words[2]), words[3:]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for t in targets:
            for _ in range(3): s.sendto(f"{tag}|{ip}".encode(), (t, port))
        out = {}
        ths = [threading.Thread(target=lambda t=t: out.__setitem__(t, connects(t, timeout))) for t in targets]
        [t.start() for t in ths]; [t.join() for t in ths]
    elif words[0] == "RECEIVED":
        with lock: out = {k.split("|")[1]: v for k, v in got.items() if k.split("|")[0] == words[1]}
    elif words[0] == "RTT":
        s = socket.create_connection((words[1], port), timeout=10); s.sendall(b"ECHO\n"); out = []
        for _ in range(int(words[2])):
            t0 = time.monotonic(); s.sendall(b"x"); s.recv(1); out.append((time.monotonic() - t0) * 1000)
        s.close()
    elif words[0] == "BLAST":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(int(words[3])):
            s.sendto(f"{words[1]}|{ip}".encode(), (words[2], port)); time.sleep(0.0005)
        out = int(words[3])
    c.sendall(json.dumps(out).encode()); c.close()
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind((ip, port)); srv.listen(64)
while True:
    conn, _ = srv.accept(); threading.Thread(target=handle, args=(conn,), daemon=True).start()
"""


@dataclass
class Lab:
    inventory: Inventory
    db: DB
    nemesis: Nemesis
    faults: FaultLog
    probes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return self.inventory.names

    def ip(self, name: str) -> str:
        return self.inventory.host(name).ip

    def ask(self, name: str, line: str, timeout: float = 15.0) -> Any:
        try:
            with socket.create_connection((self.ip(name), PORT), timeout=timeout) as s:
                s.sendall(line.encode() + b"\n")
                data = b"".join(iter(lambda: s.recv(65536), b""))
        except OSError as e:
            raise AssertionError(f"probe server on {name}: {line!r}: {e!r}") from e
        return json.loads(data)

    def observe(self, expected_udp: set[tuple[str, str]]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """One probe round: (UDP pairs delivered, TCP pairs connected), as (src, dst) host names."""
        tag = uuid.uuid4().hex[:8]
        by_ip = {self.ip(n): n for n in self.names}

        def probe(src: str) -> dict[str, bool]:
            others = " ".join(self.ip(n) for n in self.names if n != src)
            return dict(self.ask(src, f"PROBE {tag} 0.5 {others}"))

        with ThreadPoolExecutor(len(self.names)) as pool:
            tcp_results = dict(zip(self.names, pool.map(probe, self.names), strict=True))
        tcp = {(src, by_ip[ip]) for src, r in tcp_results.items() for ip, ok in r.items() if ok}
        udp: set[tuple[str, str]] = set()

        def collect() -> bool:
            udp.clear()
            for dst in self.names:
                udp.update((by_ip[ip], dst) for ip in self.ask(dst, f"RECEIVED {tag}"))
            return expected_udp <= udp

        wait_until(collect, 5.0, interval=0.1)
        return udp, tcp

    def assert_grudge(self, grudge: g.Grudge) -> None:
        pairs = [(s, d) for s in self.names for d in self.names if s != d]
        want_udp = {(s, d) for s, d in pairs if g.delivers(grudge, s, d)}
        want_tcp = {(s, d) for s, d in pairs if g.connects(grudge, s, d)}
        udp, tcp = self.observe(want_udp)
        assert udp == want_udp, f"UDP: cut but expected open {sorted(want_udp - udp)}, open but expected cut " \
                                f"{sorted(udp - want_udp)}"
        assert tcp == want_tcp, f"TCP: cut but expected open {sorted(want_tcp - tcp)}, open but expected cut " \
                                f"{sorted(tcp - want_tcp)}"

    def rtt_ms(self, src: str, dst: str, n: int = 7) -> float:
        return float(statistics.median(self.ask(src, f"RTT {self.ip(dst)} {n}")))

    def netns(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", f"pcl-{name}", *argv], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)

    def leftovers(self) -> dict[str, list[str]]:
        """Fault machinery still present on each host: nft table, iptables chain, delayer processes."""
        def one(n: str) -> list[str]:
            found = []
            if self.netns(n, "nft", "list", "table", "inet", "pcl_chaos").returncode == 0:
                found.append("nft table")
            if self.netns(n, "iptables", "-w", "-S", "PCL_CHAOS").returncode == 0:
                found.append("iptables chain")
            if self.inventory.host(n).remote({"op": "status"})["delayers"]:
                found.append("delayer")
            return found

        with ThreadPoolExecutor(len(self.names)) as pool:
            return {n: f for n, f in zip(self.names, pool.map(one, self.names), strict=True) if f}


def _config(inv: Inventory, name: str) -> dict[str, Any]:
    """What playbooks/roles/pyconsul renders, for the lab (short retry intervals, raft_multiplier 1)."""
    h = inv.host(name)
    servers = [inv.host(s) for s in inv.servers()]
    cfg: dict[str, Any] = {
        "node_name": name, "datacenter": h.datacenter, "data_dir": "/var/lib/pyconsul", "server": h.server,
        "bind_addr": h.ip, "client_addr": h.ip, "retry_interval": "1s", "performance": {"raft_multiplier": 1},
        "retry_join": [s.ip for s in servers if s.datacenter == h.datacenter and s.name != name]}
    if h.server:
        cfg["bootstrap_expect"] = sum(1 for s in servers if s.datacenter == h.datacenter)
        cfg["retry_join_wan"] = [s.ip for s in servers if s.datacenter != h.datacenter]
        cfg["retry_interval_wan"] = "1s"
    return cfg


def _require_machine() -> None:
    assert os.geteuid() == 0, "the chaos lab tests need root (network namespaces, nft, iptables)"
    for tool in ("ip", "nft", "iptables", "ssh", "/usr/sbin/sshd"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/bootstrap.sh"
    assert Path(LAB).exists(), "pyconsul-lab is not installed: .venv/bin/pip install -e ."


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAB, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    _require_machine()
    faults = FaultLog(tmp_path_factory.mktemp("chaos") / "faults.json")
    inv: Inventory | None = None
    the_lab: Lab | None = None
    try:
        up = _lab("up", "-i", INVENTORY)
        assert up.returncode == 0, up.stdout + up.stderr
        inv = load(INVENTORY)
        written = parallel(list(inv.hosts), lambda h: h.ssh(
            "mkdir -p /etc/pyconsul/agent.d && cat > /etc/pyconsul/agent.d/config.json",
            stdin=json.dumps(_config(inv, h.name))))
        for name, cp in written.items():
            assert not isinstance(cp, Exception) and cp.returncode == 0, f"{name}: {cp}"
        db = DB(inv, agent_command=AGENT)
        the_lab = Lab(inv, db, Nemesis(inv, db, seed=11, dc="bj", faults=faults, agent_command=AGENT), faults)
        for h in inv.hosts:
            the_lab.probes[h.name] = subprocess.Popen(
                ["ip", "netns", "exec", f"pcl-{h.name}", sys.executable, "-c", PROBE_SERVER, h.ip, str(PORT)],
                stdin=subprocess.DEVNULL)
        the_lab.nemesis.setup()
        db.setup(timeout=60)
        silent = [h.name for h in inv.hosts if not wait_until(partial(_listening, h.ip), 10.0)]
        assert not silent, f"probe servers did not start on {silent}"
        yield the_lab
    finally:
        try:
            if inv is not None:
                heal_all(inv, faults, AGENT)
        finally:
            for p in (the_lab.probes.values() if the_lab else []):
                p.kill()
                p.wait(10)
            down = _lab("down", "-i", INVENTORY)
            assert down.returncode == 0, down.stdout + down.stderr


def _listening(ip: str) -> bool:
    try:
        socket.create_connection((ip, PORT), timeout=0.5).close()
        return True
    except OSError:
        return False


def _ok(result: dict[str, Any]) -> Any:
    assert "error" not in result, result
    assert result["type"] == "info"
    return result["value"]


def test_no_partition_means_full_connectivity(lab: Lab) -> None:
    lab.assert_grudge({})


@pytest.mark.parametrize("shape", ["halves", "random-halves", "majorities-ring", "bridge", "isolate-leader",
                                   "split-dc"])
def test_partition_cuts_exactly_the_grudge_and_heals(lab: Lab, shape: str) -> None:
    leader = lab.db.wait_leader("bj", 30) if shape == "isolate-leader" else None
    try:
        value = _ok(lab.nemesis.invoke({"f": "start-partition", "value": shape}))
        grudge = g.normalize(value)
        assert set(lab.faults.entries()) == {"partition"}
        if shape == "halves":
            assert grudge == g.halves(lab.names)
        elif shape == "bridge":
            assert grudge == g.bridge(lab.names)
        elif shape == "split-dc":
            assert grudge == g.split_groups({"bj": ["ch-a", "ch-b", "ch-c"], "sh": ["ch-d", "ch-e"]})
        elif shape == "isolate-leader":
            assert leader is not None and grudge == g.isolate(leader, lab.names)
        assert grudge
        lab.assert_grudge(grudge)
    finally:
        _ok(lab.nemesis.invoke({"f": "stop-partition"}))
    assert lab.faults.entries() == {}
    lab.assert_grudge({})
    assert lab.leftovers() == {}


def test_a_dc_scoped_partition_leaves_other_hosts_alone(lab: Lab) -> None:
    try:
        grudge = g.normalize(_ok(lab.nemesis.invoke({"f": "start-partition",
                                                     "value": {"shape": "halves", "dc": "bj"}})))
        assert grudge == g.halves(["ch-a", "ch-b", "ch-c"])
        lab.assert_grudge(grudge)
    finally:
        _ok(lab.nemesis.invoke({"f": "stop-partition"}))


def test_latency_delays_a_tcp_round_trip_and_stops(lab: Lab) -> None:
    # "not delayed" = a median RTT under 80 ms: below the 100 +- 10 ms delay, and far above a veth RTT (< 1 ms)
    assert lab.rtt_ms("ch-a", "ch-b") < 80
    try:
        _ok(lab.nemesis.invoke({"f": "start-latency", "value": {"delay_ms": 100, "jitter_ms": 10,
                                                                "hosts": ["ch-b"]}}))
        # Only packets INTO ch-b wait: a round trip from ch-a pays the delay once.
        assert 80 <= lab.rtt_ms("ch-a", "ch-b") <= 400
        assert lab.rtt_ms("ch-a", "ch-c") < 80, "a host without latency is not slowed"
    finally:
        _ok(lab.nemesis.invoke({"f": "stop-latency"}))
    assert lab.rtt_ms("ch-a", "ch-b") < 80
    assert lab.leftovers() == {}


def test_loss_drops_about_that_fraction(lab: Lab) -> None:
    n, tag = 600, uuid.uuid4().hex[:8]
    try:
        _ok(lab.nemesis.invoke({"f": "start-latency", "value": {"delay_ms": 0, "loss": 0.3, "hosts": ["ch-b"]}}))
        assert lab.ask("ch-a", f"BLAST {tag} {lab.ip('ch-b')} {n}") == n
        counts: dict[str, int] = {}

        def settled() -> bool:  # the count stops growing once the last datagram was taken or dropped
            before = counts.get("n", -1)
            counts["n"] = sum(lab.ask("ch-b", f"RECEIVED {tag}").values())
            return counts["n"] == before

        assert wait_until(settled, 5.0, interval=0.2)
        lost = 1 - counts["n"] / n
        assert 0.2 <= lost <= 0.4, f"lost {lost:.2f} of {n}, asked for 0.30"
    finally:
        _ok(lab.nemesis.invoke({"f": "stop-latency"}))
    assert lab.leftovers() == {}


def test_kill_the_leader_then_start_it(lab: Lab) -> None:
    leader = lab.db.wait_leader("bj", 30)
    killed = _ok(lab.nemesis.invoke({"f": "kill", "value": "leader:bj"}))
    assert list(killed) == [leader] and killed[leader]
    assert set(lab.faults.entries()) == {f"kill:{leader}"}
    assert lab.db.agent_pid(leader) is None
    assert not lab.db.reachable(leader)
    new = lab.db.wait_leader("bj", 30, exclude=[leader])
    assert new != leader
    started = _ok(lab.nemesis.invoke({"f": "start"}))
    assert list(started) == [leader] and lab.db.agent_pid(leader) == started[leader]
    assert lab.faults.entries() == {}
    assert wait_until(lambda: lab.db.reachable(leader) and lab.db.members(new).get(leader) == "alive", 30.0, 0.2)


def test_pause_then_resume(lab: Lab) -> None:
    pid = _ok(lab.nemesis.invoke({"f": "pause", "value": "ch-c"}))["ch-c"]
    try:
        assert lab.db.agent_info("ch-c")["states"][str(pid)] == "T"
        assert not lab.db.reachable("ch-c")
    finally:
        resumed = _ok(lab.nemesis.invoke({"f": "resume"}))
    assert resumed == {"ch-c": [pid]}
    assert wait_until(lambda: lab.db.reachable("ch-c"), 10.0)
    assert lab.db.agent_pid("ch-c") == pid


RUNNER = """
import json, sys, time
from pathlib import Path
from pyconsul.chaos.inventory import load
from pyconsul.chaos.nemesis import FaultLog, Nemesis
inv, log, agent, ops, hold = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
nemesis = Nemesis(load(inv), seed=5, dc="bj", faults=FaultLog(Path(log)), agent_command=agent)
def apply():
    for op in ops:
        r = nemesis.invoke(op)
        assert "error" not in r, r
    print("applied", flush=True)
    while True:
        time.sleep(60)  # until the test kills or interrupts us
if hold == "with":
    with nemesis:
        apply()
else:
    apply()
"""
CRASH_OPS: list[dict[str, Any]] = [{"f": "start-partition", "value": "halves"},
             {"f": "start-latency", "value": {"delay_ms": 50, "hosts": ["ch-e"]}},
             {"f": "pause", "value": "ch-c"}, {"f": "kill", "value": "ch-d"}]


@dataclass
class Runner:
    proc: subprocess.Popen[str]
    lines: queue.Queue[str]  # what the runner prints (stdout and stderr), line by line; "" at the end

    def expect(self, text: str, timeout: float = 60.0) -> str:
        """The next printed line containing `text`; AssertionError (with what it printed) after `timeout`."""
        deadline, seen = time.monotonic() + timeout, []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if not line:
                break
            seen.append(line.rstrip())
            if text in line:
                return line
        raise AssertionError(f"the runner did not print {text!r} within {timeout:.0f} s (exit {self.proc.poll()}); "
                             f"it printed: {seen}")


@contextlib.contextmanager
def _runner(lab: Lab, ops: list[dict[str, Any]], hold: str, *, sigint_ignored: bool = False) -> Iterator[Runner]:
    """A runner process that has applied `ops`; killed (by PID) on the way out if it still runs.

    It starts with SIGINT at SIG_DFL, whatever pytest inherited, or with sigint_ignored as a background job of
    a non-interactive shell is started (CI runners do that): SIGINT inherited as SIG_IGN, so that Python
    installs no KeyboardInterrupt handler."""
    disposition = "SIG_IGN" if sigint_ignored else "SIG_DFL"
    argv = [sys.executable, "-c", f"import os, signal, sys; signal.signal(signal.SIGINT, signal.{disposition}); "
            "os.execv(sys.argv[1], sys.argv[1:])",
            sys.executable, "-c", RUNNER, INVENTORY, str(lab.faults.path), json.dumps(AGENT), json.dumps(ops), hold]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
    reader.start()
    try:
        Runner(proc, lines).expect("applied")  # the runner applied its faults (or the assertion says what it said)
        yield Runner(proc, lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        reader.join(10)
        proc.stdout.close()


def test_heal_all_after_the_runner_was_killed(lab: Lab) -> None:
    with _runner(lab, CRASH_OPS, "bare") as runner:
        runner.proc.send_signal(signal.SIGKILL)
        runner.proc.wait(10)
    assert set(lab.faults.entries()) == {"partition", "latency", "pause:ch-c", "kill:ch-d"}
    assert set(lab.leftovers()) == set(lab.names)  # every host got the partition; ch-e also a delayer
    assert lab.db.agent_pid("ch-d") is None
    assert "T" in lab.db.agent_info("ch-c")["states"].values()
    # As if the partition's record were lost: only the per-host scan can find those rules.
    lab.faults.forget("partition")

    report = heal_all(lab.inventory, lab.faults, AGENT)
    assert all(isinstance(v, list) for v in report.values()), report
    assert lab.faults.entries() == {}
    assert lab.leftovers() == {}
    assert "T" not in lab.db.agent_info("ch-c")["states"].values()
    assert lab.db.agent_pid("ch-d") is not None
    lab.assert_grudge({})
    assert wait_until(lambda: lab.db.reachable("ch-d") and lab.db.reachable("ch-c"), 15.0, 0.2)


@pytest.mark.parametrize("how", ["sigint", "sigint-inherited-ignored", "sigterm"])
def test_a_signal_heals_on_the_way_out_and_a_second_one_does_not_cut_the_heal_short(lab: Lab, how: str) -> None:
    """Ctrl-C (or kill -INT / -TERM) to a runner holding a partition and a pause: it heals, then exits.

    "sigint-inherited-ignored" is how the test hung in two clean-clone CI runs: the suite ran as a background
    job, so the runner inherited SIGINT ignored and never saw the signal (chaos/nemesis/interrupt.py).
    The test holds the fault log's lock while it signals, so the heal is provably under way (blocked on the
    log) when the second signal lands; that one must be ignored, not abort the heal."""
    sig = signal.SIGTERM if how == "sigterm" else signal.SIGINT
    ops = [{"f": "start-partition", "value": "bridge"}, {"f": "pause", "value": "ch-e"}]
    with _runner(lab, ops, "with", sigint_ignored=how == "sigint-inherited-ignored") as runner:
        with lab.faults.locked():
            runner.proc.send_signal(sig)
            runner.expect(f"chaos: {sig.name}: healing every fault before exiting", 30)
            runner.proc.send_signal(sig)
            runner.expect(f"chaos: {sig.name} ignored: still healing", 30)
        # Uncaught KeyboardInterrupt: Python exits by SIGINT; SIGTERM becomes SystemExit(128 + 15).
        assert runner.proc.wait(60) == (-signal.SIGINT if sig == signal.SIGINT else 128 + signal.SIGTERM)
    assert lab.faults.entries() == {}
    assert lab.leftovers() == {}
    assert "T" not in lab.db.agent_info("ch-e")["states"].values()
    lab.assert_grudge({})


TEMPLATE = ROOT / "playbooks" / "roles" / "pyconsul" / "templates" / "supervisord.conf.j2"


def test_kill_under_supervisord_stays_down_and_is_a_real_kill_9(lab: Lab) -> None:
    """ch-e as the role leaves a lab host: supervisord (autorestart=true) runs the agent. Kill must not run the
    agent's shutdown code (no "Caught signal") and supervisord must not restart it; start brings it back."""
    supervisord = Path(sys.executable).parent / "supervisord"
    assert supervisord.exists(), "supervisor is not installed in the test venv (the test extra has it)"
    import jinja2

    h, venv = lab.inventory.host("ch-e"), "/opt/pyconsul/venv"
    conf = jinja2.Template(TEMPLATE.read_text()).render(
        ansible_managed="test", pyconsul_run_dir="/run/pyconsul", pyconsul_log_dir="/var/log/pyconsul",
        pyconsul_venv_dir=venv, pyconsul_supervisord_conf=h.agent["supervisord_conf"],
        pyconsul_config_dir="/etc/pyconsul/agent.d", _pyconsul_cli=f"{venv}/bin/pyconsul",
        pyconsul_user="root")  # the plain agent the fixture started ran as root and owns the data dir
    wrappers = {"supervisord": str(supervisord), "supervisorctl": str(supervisord.with_name("supervisorctl")),
                "pyconsul": f"{sys.executable} -m pyconsul.agent"}
    script = "; ".join(f"printf '#!/bin/sh\\nexec {cmd} \"$@\"\\n' > {venv}/bin/{name}; chmod +x {venv}/bin/{name}"
                       for name, cmd in wrappers.items())
    lab.db.kill("ch-e")  # the plain agent the fixture started
    ctl = f"{venv}/bin/supervisorctl -c {h.agent['supervisord_conf']}"
    try:
        cp = h.ssh(f"mkdir -p {venv}/bin && {script} && cat > {h.agent['supervisord_conf']}", stdin=conf)
        assert cp.returncode == 0, cp.stderr
        first = lab.db.start("ch-e")
        assert lab.db.agent_info("ch-e")["manager"] == "supervisord"
        assert wait_until(lambda: lab.db.reachable("ch-e"), 20.0, 0.2)
        log_size = int(h.ssh("stat -c %s /var/log/pyconsul/agent.log").stdout)

        assert _ok(lab.nemesis.invoke({"f": "kill", "value": "ch-e"})) == {"ch-e": [first]}
        assert "STOPPED" in h.ssh(f"{ctl} status pyconsul").stdout
        assert not wait_until(lambda: lab.db.agent_pid("ch-e") is not None, 3.0, 0.3), "supervisord restarted it"
        after = h.ssh(f"tail -c +{log_size + 1} /var/log/pyconsul/agent.log").stdout
        assert "Caught signal" not in after, f"the agent ran its shutdown code:\n{after}"
        assert "terminated by SIGKILL" in h.ssh("cat /var/log/pyconsul/supervisord.log").stdout

        second = _ok(lab.nemesis.invoke({"f": "start"}))["ch-e"]
        assert second != first and "RUNNING" in h.ssh(f"{ctl} status pyconsul").stdout
        assert wait_until(lambda: lab.db.reachable("ch-e"), 20.0, 0.2)
        paused = _ok(lab.nemesis.invoke({"f": "pause", "value": "ch-e"}))["ch-e"]
        assert paused == second and lab.db.agent_info("ch-e")["states"][str(second)] == "T"
        assert _ok(lab.nemesis.invoke({"f": "resume"})) == {"ch-e": [second]}
    finally:
        h.ssh(f"{ctl} shutdown; rm -f {h.agent['supervisord_conf']}; rm -rf {venv}")
        assert wait_until(lambda: lab.db.agent_pid("ch-e") is None, 20.0, 0.2)
        lab.db.start("ch-e")
