"""The host side of the chaos framework: one request per run, JSON in (argv[1]), one JSON line out.

Run on an inventory host as ``ssh HOST python3 - '<request>' < remote.py`` (chaos.inventory.Host.remote),
so it must stay stdlib-only and import nothing from this repository. Every answer is ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``.

Contracts:
- Processes are signalled only by PID, and only PIDs identified here as ours: the agent (supervisord's
  child ``pyconsul``, systemd's MainPID, or a process in this network namespace whose command line is
  ``… pyconsul agent …`` / ``python -m pyconsul.agent agent …``) or a delayer whose command line carries our tag.
  On lab hosts /proc is shared by all hosts, so the namespace check is what keeps a host to its own agent.
- Network faults live only in the nft table ``inet pcl_chaos`` (chains ``partition``, priority -10, and
  ``loss``, priority -5; both hook input, policy accept) and the iptables chain ``PCL_CHAOS`` (NFQUEUE rules
  for latency), jumped to from INPUT. `heal` deletes exactly those and never touches other rules.
- Per-host files live in ``/run/pyconsul/chaos/`` (the agent's run directory; private to each lab host, so
  `pyconsul-lab down` removes it): the delayer, its pid file and log, the agent's pid file when this script
  started it. The one exception: `test-switch` creates or removes a test switch file (TEST_STALE_READS) in
  the agent's data directory, which the agent reads when it starts.

Agent managers, detected on the host: ``systemd`` (PID 1 is systemd and the unit exists), ``supervisord``
(the role's supervisord.conf exists), else ``plain`` (the fallback: the agent runs detached, started by this
script with the configured command; its pid file is kept here). `kill` is kill -9 that stays down until
`start`: under supervisord (autorestart=true) the agent is first frozen (SIGSTOP), then ``supervisorctl stop``
is issued (its SIGTERM stays pending on the frozen process), then SIGKILL — so no shutdown code runs and
supervisord records STOPPED instead of restarting it. Under systemd: ``systemctl kill -s SIGKILL`` then
``systemctl stop`` (which cancels the pending auto-restart).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

STATE_DIR = "/run/pyconsul/chaos"
TABLE = "pcl_chaos"
IPT_CHAIN = "PCL_CHAOS"
QUEUE = 7707
DELAYER_TAG = "pcl-chaos-delayer"
PROGRAM = "pyconsul"  # supervisord's [program:pyconsul]
TEST_SWITCHES = ("TEST_STALE_READS",)  # files in the agent's data dir that `pyconsul agent` reads at start-up

Request = dict[str, Any]


def sh(argv: list[str], stdin: str = "", timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def state_dir(req: Request) -> str:
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    return STATE_DIR


# --- processes ---------------------------------------------------------------------------------------

def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def proc_state(pid: int) -> str:
    """The one-letter state (R, S, T, Z, ...) or "" if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def alive(pid: int) -> bool:
    return proc_state(pid) not in ("", "Z", "X")


def same_netns(pid: int) -> bool:
    try:
        a, b = os.stat(f"/proc/{pid}/ns/net"), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def is_agent(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "pyconsul" and argv[i + 1:i + 2] == ["agent"]:
            return True
        if arg == "-m" and argv[i + 1:i + 2] in (["pyconsul.agent"], ["agent"]) and argv[i + 2:i + 3] == ["agent"]:
            return True
    return False


def same_command(running: list[str], argv: list[str]) -> bool:
    """Is `running` (a /proc cmdline) the process exec'd from `argv`? A script with a shebang runs as
    ``interpreter script args...``, so the arguments must match and argv[0] must appear in the command line."""
    if running == argv:
        return True
    tail = argv[1:]
    return bool(argv) and running[len(running) - len(tail):] == tail and any(
        os.path.basename(a) == os.path.basename(argv[0]) for a in running[:len(running) - len(tail)])


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def scan(match: Callable[[list[str]], bool]) -> list[int]:
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            pid = int(entry)
            if match(cmdline(pid)) and alive(pid) and same_netns(pid):
                out.append(pid)
    return sorted(out)


def pending_signals(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            masks = [ln.split()[1] for ln in f if ln.startswith(("SigPnd:", "ShdPnd:"))]
    except OSError:
        return False
    return any(int(m, 16) for m in masks)


def signal_pids(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# --- the agent ---------------------------------------------------------------------------------------

class Agent:
    def __init__(self, req: Request) -> None:
        self.req = req
        self.cfg: dict[str, str] = dict(req.get("agent") or {})
        venv = self.cfg.get("venv", "/opt/pyconsul/venv")
        self.ctl = [os.path.join(venv, "bin", "supervisorctl"), "-c", self.cfg.get("supervisord_conf", "")]
        self.supervisord = [os.path.join(venv, "bin", "supervisord"), "-c", self.cfg.get("supervisord_conf", "")]
        self.unit = self.cfg.get("unit", "pyconsul.service")
        self.pid_file = os.path.join(state_dir(req), "agent.json")  # {"pid", "argv"} of an agent started here
        self.manager = self._manager()

    def _manager(self) -> str:
        if os.path.isdir("/run/systemd/system") and sh(["systemctl", "cat", self.unit]).returncode == 0:
            return "systemd"
        conf = self.cfg.get("supervisord_conf", "")
        if conf and os.path.exists(conf) and os.path.exists(self.ctl[0]):
            return "supervisord"
        return "plain"

    def _supervisord_up(self) -> bool:
        return sh([*self.ctl, "pid"]).stdout.strip().isdigit()

    def _started(self) -> int | None:
        """The PID of the agent this script started, if that very process (same command line) still runs."""
        try:
            with open(self.pid_file) as f:
                rec = json.load(f)
            pid, argv = int(rec["pid"]), [str(a) for a in rec["argv"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if alive(pid) and same_netns(pid) and same_command(cmdline(pid), argv) else None

    def pids(self) -> list[int]:
        """The agent's PIDs: the manager's main PID first, then any other agent process in this namespace."""
        main: int | None = None
        if self.manager == "supervisord":
            out = sh([*self.ctl, "pid", PROGRAM]).stdout.strip()
            main = int(out) if out.isdigit() and int(out) > 0 else None
        elif self.manager == "systemd":
            out = sh(["systemctl", "show", "-p", "MainPID", "--value", self.unit]).stdout.strip()
            main = int(out) if out.isdigit() and int(out) > 0 else None
        else:
            main = self._started()
        rest = [p for p in scan(is_agent) if p != main]
        return ([main] if main is not None and alive(main) else []) + rest

    def info(self) -> dict[str, Any]:
        pids = self.pids()
        return {"manager": self.manager, "pid": pids[0] if pids else None, "pids": pids,
                "states": {str(p): proc_state(p) for p in pids}}

    def kill(self) -> dict[str, Any]:
        pids = self.pids()
        if self.manager == "supervisord" and pids and self._supervisord_up():
            main = pids[0]
            os.kill(main, signal.SIGSTOP)
            stopper = subprocess.Popen([*self.ctl, "stop", PROGRAM], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: pending_signals(main) or stopper.poll() is not None, 10.0)
            signal_pids(pids, signal.SIGKILL)
            stopper.wait(30)
        elif self.manager == "systemd" and pids:
            sh(["systemctl", "kill", "--signal=SIGKILL", self.unit])
            sh(["systemctl", "stop", self.unit])
            signal_pids(pids, signal.SIGKILL)
        else:
            signal_pids(pids, signal.SIGKILL)
        if not wait_until(lambda: not any(alive(p) for p in pids), 10.0):
            raise RuntimeError(f"agent processes {pids} survived SIGKILL")
        return {"manager": self.manager, "killed": pids}

    def _command(self) -> list[str]:
        if self.req.get("command"):
            return [str(a) for a in self.req["command"]]
        if self.cfg.get("command"):
            return shlex.split(self.cfg["command"])
        venv = self.cfg.get("venv", "/opt/pyconsul/venv")
        return [os.path.join(venv, "bin", "pyconsul"), "agent", "-config-dir",
                self.cfg.get("config_dir", "/etc/pyconsul/agent.d")]

    def start(self) -> dict[str, Any]:
        if self.manager == "supervisord":
            if not self._supervisord_up():
                proc = sh(self.supervisord)
                if proc.returncode != 0:
                    raise RuntimeError(f"supervisord did not start: {proc.stderr.strip()[-300:]}")
                wait_until(self._supervisord_up, 10.0)
            sh([*self.ctl, "start", PROGRAM], timeout=60)
        elif self.manager == "systemd":
            proc = sh(["systemctl", "start", self.unit], timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"systemctl start {self.unit}: {proc.stderr.strip()[-300:]}")
        elif not self.pids():
            log_dir = self.cfg.get("log_dir", "/var/log/pyconsul")
            os.makedirs(log_dir, exist_ok=True)
            argv = self._command()
            with open(os.path.join(log_dir, "agent.log"), "ab") as log:
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd="/", start_new_session=True)
            with open(self.pid_file, "w") as f:
                json.dump({"pid": child.pid, "argv": argv}, f)
            if wait_until(lambda: child.poll() is not None, 0.5):
                raise RuntimeError(f"the agent exited at once ({child.returncode}); see {log_dir}/agent.log")
        if not wait_until(lambda: bool(self.pids()), 20.0):
            raise RuntimeError(f"no agent process after start ({self.manager})")
        return self.info()

    def pause(self) -> dict[str, Any]:
        pids = self.pids()
        if not pids:
            raise RuntimeError("no agent process to pause")
        os.kill(pids[0], signal.SIGSTOP)
        wait_until(lambda: proc_state(pids[0]) in ("T", "t", ""), 5.0)
        return {"manager": self.manager, "paused": [pids[0]]}

    def resume(self) -> dict[str, Any]:
        """SIGCONT every stopped agent process of this host (the paused one and any a crash left stopped)."""
        stopped = [p for p in self.pids() if proc_state(p) in ("T", "t")]
        signal_pids(stopped, signal.SIGCONT)
        return {"manager": self.manager, "resumed": stopped}


def set_test_switch(req: Request) -> dict[str, Any]:
    """Create (`on`) or remove the test switch file `name` in the agent's data directory."""
    name = str(req.get("name"))
    if name not in TEST_SWITCHES:
        raise ValueError(f"unknown test switch {name!r}")
    path = os.path.join(dict(req.get("agent") or {}).get("data_dir", "/var/lib/pyconsul"), name)
    present = os.path.exists(path)
    if req.get("on") and not present:
        with open(path, "w") as f:
            f.write("created by pyconsul-chaos for a test; the agent reads it at start-up\n")
    elif not req.get("on") and present:
        os.unlink(path)
    return {"path": path, "changed": present != bool(req.get("on"))}


# --- network faults ----------------------------------------------------------------------------------

def _nft(script: str) -> None:
    proc = sh(["nft", "-f", "-"], stdin=script)
    if proc.returncode != 0:
        raise RuntimeError(f"nft: {proc.stderr.strip()[-400:]}")


def _set_rule(chain: str, ips: list[str], tail: str) -> list[str]:
    v4 = [ip for ip in ips if ":" not in ip]
    v6 = [ip for ip in ips if ":" in ip]
    rules = []
    for family, group in (("ip", v4), ("ip6", v6)):
        if group:
            rules.append(f"add rule inet {TABLE} {chain} {family} saddr {{ {', '.join(group)} }} {tail}")
    return rules


def set_chain(chain: str, priority: int, ips: list[str], tail: str) -> None:
    """Replace `chain` atomically with one rule dropping (per `tail`) packets from `ips`; [] removes it."""
    lines = [f"add table inet {TABLE}",
             f"add chain inet {TABLE} {chain} {{ type filter hook input priority {priority}; policy accept; }}"]
    if ips:
        lines += [f"flush chain inet {TABLE} {chain}", *_set_rule(chain, ips, tail)]
    else:
        lines.append(f"delete chain inet {TABLE} {chain}")
    _nft("\n".join(lines) + "\n")
    _drop_empty_table()


def _drop_empty_table() -> None:
    proc = sh(["nft", "-j", "list", "table", "inet", TABLE])
    if proc.returncode == 0 and not any("chain" in item for item in json.loads(proc.stdout).get("nftables", [])):
        sh(["nft", "delete", "table", "inet", TABLE])


def partition(req: Request) -> dict[str, Any]:
    drop = [str(ip) for ip in req.get("drop", [])]
    set_chain("partition", -10, drop, "drop")
    return {"drop": drop}


def _ipt(*args: str) -> subprocess.CompletedProcess[str]:
    return sh(["iptables", "-w", *args])


def _ipt_remove() -> bool:
    """Remove the PCL_CHAOS chain and every jump to it; whether there was one."""
    found = False
    while _ipt("-D", "INPUT", "-j", IPT_CHAIN).returncode == 0:
        found = True
    if _ipt("-n", "-L", IPT_CHAIN).returncode == 0:
        _ipt("-F", IPT_CHAIN)
        _ipt("-X", IPT_CHAIN)
        found = True
    return found


def _delayers(req: Request) -> list[int]:
    tag = f"{DELAYER_TAG}:{req['host']}"
    return scan(lambda argv: tag in argv)


def _stop_delayers(req: Request) -> list[int]:
    pids = _delayers(req)
    signal_pids(pids, signal.SIGTERM)  # it accepts every held packet, then exits
    if not wait_until(lambda: not any(alive(p) for p in pids), 3.0):
        signal_pids([p for p in pids if alive(p)], signal.SIGKILL)
        wait_until(lambda: not any(alive(p) for p in pids), 3.0)
    return pids


def latency(req: Request) -> dict[str, Any]:
    """Queue packets from `peers` to a fresh delayer (delay_ms ± jitter_ms); drop `loss` of them in nft."""
    peers = [str(ip) for ip in req["peers"] if ":" not in str(ip)]
    delay, jitter, loss = float(req.get("delay_ms", 0)), float(req.get("jitter_ms", 0)), float(req.get("loss", 0))
    unlatency(req)
    out: dict[str, Any] = {"peers": peers, "delayer": None}
    if loss > 0 and peers:
        set_chain("loss", -5, peers, f"numgen random mod 1000000 < {round(loss * 1_000_000)} drop")
    if (delay > 0 or jitter > 0) and peers:
        if sh(["iptables", "-V"]).returncode != 0:
            raise RuntimeError("iptables is not installed")
        d = state_dir(req)
        script, pid_file = os.path.join(d, "nfqueue.py"), os.path.join(d, "delayer.pid")
        with open(script, "w") as f:
            f.write(str(req["delayer"]))
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        argv = [sys.executable, script, "--queue", str(QUEUE), "--delay-ms", str(delay), "--jitter-ms", str(jitter),
                "--seed", str(int(req.get("seed", 0))), "--pidfile", pid_file, "--tag", f"{DELAYER_TAG}:{req['host']}"]
        with open(os.path.join(d, "delayer.log"), "ab") as log:
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd="/", start_new_session=True)
        if not wait_until(lambda: read_pid(pid_file) == child.pid or child.poll() is not None, 10.0) \
                or child.poll() is not None:
            raise RuntimeError(f"the delayer did not bind queue {QUEUE}; see {d}/delayer.log")
        _ipt("-N", IPT_CHAIN)
        if _ipt("-C", "INPUT", "-j", IPT_CHAIN).returncode != 0:
            _ipt("-I", "INPUT", "1", "-j", IPT_CHAIN)
        for ip in peers:
            proc = _ipt("-A", IPT_CHAIN, "-s", ip, "-j", "NFQUEUE", "--queue-num", str(QUEUE), "--queue-bypass")
            if proc.returncode != 0:
                raise RuntimeError(f"iptables NFQUEUE: {proc.stderr.strip()[-300:]}")
        out["delayer"] = child.pid
    return out


def unlatency(req: Request) -> dict[str, Any]:
    rules = _ipt_remove()  # first: from now on packets bypass the queue
    stopped = _stop_delayers(req)
    set_chain("loss", -5, [], "")
    return {"iptables": rules, "delayers": stopped}


# --- requests ----------------------------------------------------------------------------------------

def status(req: Request) -> dict[str, Any]:
    nft = sh(["nft", "list", "table", "inet", TABLE])
    ipt = _ipt("-S", IPT_CHAIN)
    return {"nft": nft.stdout if nft.returncode == 0 else "", "iptables": ipt.stdout if ipt.returncode == 0 else "",
            "delayers": _delayers(req), "agent": Agent(req).info()}


def heal(req: Request) -> dict[str, Any]:
    """Remove every network fault of this host, resume stopped agents, start the agent if `start` is set."""
    actions: list[str] = []
    if _ipt_remove():
        actions.append("removed iptables chain PCL_CHAOS")
    stopped = _stop_delayers(req)
    if stopped:
        actions.append(f"stopped delayer {stopped}")
    if sh(["nft", "list", "table", "inet", TABLE]).returncode == 0:
        sh(["nft", "delete", "table", "inet", TABLE])
        actions.append(f"deleted nft table inet {TABLE}")
    agent = Agent(req)
    resumed = agent.resume()["resumed"]
    if resumed:
        actions.append(f"resumed agent {resumed}")
    if req.get("start") and not agent.pids():
        actions.append(f"started agent {agent.start()['pid']}")
    return {"actions": actions}


OPS: dict[str, Callable[[Request], dict[str, Any]]] = {
    "agent": lambda r: Agent(r).info(),
    "kill": lambda r: Agent(r).kill(),
    "start": lambda r: Agent(r).start(),
    "pause": lambda r: Agent(r).pause(),
    "resume": lambda r: Agent(r).resume(),
    "partition": partition,
    "latency": latency,
    "unlatency": unlatency,
    "status": status,
    "heal": heal,
    "test-switch": set_test_switch,
}


def main(argv: list[str]) -> int:
    try:
        req = json.loads(argv[1])
        answer = {"ok": True, **OPS[str(req["op"])](req)}
    except Exception as e:  # reported to the controller, which raises RemoteError
        answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
