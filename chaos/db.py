"""Jepsen's DB: the cluster under test, on the hosts of an inventory (lab hosts or real ones).

Process operations run on the host over ssh, with the inventory's own ssh settings (chaos.inventory), by
chaos/nemesis/remote.py — see its docstring for how the agent is found and how each manager is handled:

- ``supervisord`` (what playbooks/roles/pyconsul installs where systemd is not PID 1, e.g. the lab):
  start = ``supervisorctl start pyconsul`` (starting supervisord first if it is not running); kill = kill -9
  that stays down (freeze, ``supervisorctl stop``, SIGKILL — no shutdown code runs, no auto-restart);
- ``systemd`` (real hosts; not exercised by the tests here): ``systemctl start`` / ``kill -s SIGKILL`` + ``stop``;
- ``plain`` — the documented fallback when neither exists: remote.py starts the agent detached (own session,
  stdin /dev/null, output appended to ``<pyconsul_log_dir>/agent.log``) with `agent_command` (argument here), else
  the host's ``chaos_agent_command`` variable, else ``<pyconsul_venv_dir>/bin/pyconsul agent -config-dir
  <pyconsul_config_dir>``, and remembers its PID and command line in ``/run/pyconsul/chaos/agent.json``.

pause/resume are SIGSTOP/SIGCONT of the agent's PID whatever the manager.

Cluster queries go straight to each agent's HTTP API (``pyconsul_client_addr:pyconsul_http_port``, reachable from
the controller; for lab hosts from the root namespace over the bridge), never through a partitioned peer.

Jepsen's setup/teardown: `setup()` starts every agent that is not running and waits for a leader in every
datacenter; `teardown()` resumes paused agents and starts killed ones. Installing and wiping are Ansible's
job (`install()` runs ``ansible-playbook site.yml``); the DB never deletes data.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyconsul.chaos.inventory import Host, Inventory, RemoteError, parallel

REPO = Path(__file__).resolve().parents[1]


class DBError(Exception):
    """A cluster operation could not be done (the message names the host or datacenter)."""


class DB:
    def __init__(self, inventory: Inventory, agent_command: Sequence[str] | None = None,
                 http_timeout: float = 2.0) -> None:
        self.inventory = inventory
        self.agent_command = list(agent_command) if agent_command else None
        self.http_timeout = http_timeout

    # --- processes ---------------------------------------------------------------------------------

    def _request(self, host: str, op: str, **extra: Any) -> dict[str, Any]:
        h = self.inventory.host(host)
        req: dict[str, Any] = {"op": op, "agent": dict(h.agent), **extra}
        if self.agent_command:
            req["command"] = self.agent_command
        return h.remote(req, timeout=90.0)

    def agent_info(self, host: str) -> dict[str, Any]:
        """{"manager", "pid" (None if not running), "pids", "states" (pid -> R/S/T...)}."""
        return self._request(host, "agent")

    def agent_pid(self, host: str) -> int | None:
        pid = self.agent_info(host)["pid"]
        return int(pid) if pid is not None else None

    def kill(self, host: str) -> list[int]:
        """kill -9 the agent; it stays down until `start`. The PIDs killed (empty if it was not running)."""
        return [int(p) for p in self._request(host, "kill")["killed"]]

    def start(self, host: str) -> int:
        """Start the agent if it is not running; its PID."""
        return int(self._request(host, "start")["pid"])

    def set_test_switch(self, host: str, name: str, on: bool) -> bool:
        """Create (on) or remove the test switch file `name` in the agent's data directory; whether that
        changed anything. The agent reads it only when it starts."""
        return bool(self._request(host, "test-switch", name=name, on=on)["changed"])

    def pause(self, host: str) -> int:
        """SIGSTOP the agent; the PID paused."""
        return int(self._request(host, "pause")["paused"][0])

    def resume(self, host: str) -> list[int]:
        """SIGCONT every stopped agent process of the host; the PIDs resumed."""
        return [int(p) for p in self._request(host, "resume")["resumed"]]

    def setup(self, timeout: float = 60.0) -> None:
        """Every agent running, every datacenter with a leader."""
        errors = {n: r for n, r in parallel(list(self.inventory.hosts), lambda h: self.start(h.name)).items()
                  if isinstance(r, Exception)}
        if errors:
            raise DBError("; ".join(f"{n}: {e}" for n, e in sorted(errors.items())))
        for dc in self.inventory.datacenters():
            self.wait_leader(dc, timeout)

    def teardown(self) -> None:
        """Resume paused agents and start stopped ones (the data stays)."""
        def one(h: Host) -> None:
            self.resume(h.name)
            self.start(h.name)

        errors = {n: r for n, r in parallel(list(self.inventory.hosts), one).items() if isinstance(r, Exception)}
        if errors:
            raise DBError("; ".join(f"{n}: {e}" for n, e in sorted(errors.items())))

    def install(self, playbook: str = "site.yml", timeout: float = 1800.0) -> None:
        """``ansible-playbook <playbook> -i <inventory>`` from the repository root."""
        proc = subprocess.run(["ansible-playbook", playbook, "-i", self.inventory.path], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise DBError(f"ansible-playbook {playbook} failed: {proc.stdout[-2000:]}{proc.stderr[-1000:]}")

    # --- cluster queries over HTTP -----------------------------------------------------------------

    def api(self, host: str, path: str, timeout: float | None = None) -> Any:
        """GET http://<agent's HTTP address><path>; the decoded JSON (None for an empty body)."""
        url = f"http://{self.inventory.host(host).http}{path}"
        with urllib.request.urlopen(url, timeout=timeout or self.http_timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def leader_views(self, dc: str) -> dict[str, str | None]:
        """What each server of `dc` reports as leader (/v1/status/leader): host name, None for none or for a
        server that does not answer, or the raw address if it is not an inventory host."""
        def one(h: Host) -> str | None:
            addr = self.api(h.name, "/v1/status/leader")
            if not addr:
                return None
            ip = str(addr).rsplit(":", 1)[0].strip("[]")
            found = self.inventory.by_ip(ip)
            return found.name if found else str(addr)

        servers = [self.inventory.host(n) for n in self.inventory.servers(dc)]
        if not servers:
            raise DBError(f"datacenter {dc} has no servers in {self.inventory.path}")
        return {n: (None if isinstance(r, Exception) else r) for n, r in parallel(servers, one).items()}

    def leader(self, dc: str) -> str | None:
        """The leader most servers of `dc` agree on, if that is a majority of its servers; else None."""
        views = self.leader_views(dc)
        counts = Counter(v for v in views.values() if v is not None)
        if not counts:
            return None
        best, n = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return best if n > len(views) // 2 else None

    def leaders(self) -> dict[str, str | None]:
        return {dc: self.leader(dc) for dc in self.inventory.datacenters()}

    def wait_leader(self, dc: str, timeout: float = 60.0, exclude: Sequence[str] = ()) -> str:
        """Poll until a majority of `dc`'s servers agree on a leader not in `exclude`; its host name."""
        deadline = time.monotonic() + timeout
        last: str | None = None
        while True:
            last = self.leader(dc)
            if last is not None and last not in exclude:
                return last
            if time.monotonic() > deadline:
                raise DBError(f"datacenter {dc}: no agreed leader within {timeout:.0f} s (last: {last})")
            time.sleep(0.2)

    def members(self, host: str, wan: bool = False) -> dict[str, str]:
        """/v1/agent/members as seen by `host`: node name -> status (alive, leaving, left, failed)."""
        status = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}
        out = self.api(host, "/v1/agent/members" + ("?wan=1" if wan else ""))
        return {str(m["Name"]): status.get(int(m.get("Status", 0)), str(m.get("Status"))) for m in out or []}

    def reachable(self, host: str) -> bool:
        """Does the agent's HTTP API answer (/v1/agent/self) right now?"""
        try:
            self.api(host, "/v1/agent/self")
            return True
        except (OSError, urllib.error.URLError, ValueError):
            return False


__all__ = ["DB", "DBError", "RemoteError"]
