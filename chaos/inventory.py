"""The chaos framework's view of an Ansible inventory, and how it reaches the hosts (ssh, as Ansible does).

The inventory is read with the real ``ansible-inventory --list`` (lab.inventory.load_inventory), so
group_vars, YAML/INI and directories mean what they mean to ansible-playbook. Unlike the lab's plan, any
user and key are accepted: the chaos framework works on real hosts as well as on lab hosts.

Per host it takes the role's variables where the inventory sets them and the role's defaults otherwise
(playbooks/roles/pyconsul/defaults/main.yml): pyconsul_datacenter, pyconsul_server, pyconsul_bind_addr,
pyconsul_client_addr, pyconsul_http_port, pyconsul_venv_dir, pyconsul_config_dir, pyconsul_log_dir,
pyconsul_supervisord_conf, pyconsul_systemd_unit.
One chaos-only variable: ``chaos_agent_command`` — the command that starts the agent on a host that has
neither supervisord nor systemd (the DB's fallback; default ``<venv>/bin/pyconsul agent -config-dir <dir>``).

Remote calls: `Host.remote(request)` runs chaos/nemesis/remote.py on the host with the host's Python
(``ssh … <python> - <request-json>``, the script on stdin) and returns its JSON answer.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pyconsul.lab.inventory import load_inventory as _ansible_inventory
from pyconsul.lab.plan import PlanError, inventory_hosts

T = TypeVar("T")
REMOTE_SCRIPT = Path(__file__).parent / "nemesis" / "remote.py"
# Put before the inventory's own options (ssh takes the first value): never prompt, fail fast.
BATCH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=5")


class InventoryError(Exception):
    """The inventory cannot be used (unreadable, no hosts, an unresolvable address). One line."""


class RemoteError(Exception):
    """A command on a host failed or the host did not answer. The message names the host."""


@dataclass(frozen=True)
class Host:
    """One inventory host as the chaos framework needs it."""

    name: str
    address: str  # what ssh connects to (ansible_host)
    ip: str  # the agent's bind address as an IP: what partitions drop and HTTP reaches
    ssh_options: tuple[str, ...]
    python: str = "python3"
    datacenter: str = "dc1"
    server: bool = True
    http: str = ""  # "address:port" of the agent's HTTP API
    groups: tuple[str, ...] = ()
    agent: Mapping[str, str] = field(default_factory=dict)  # venv, config_dir, log_dir, supervisord_conf, unit

    def ssh_argv(self, command: str) -> list[str]:
        return ["ssh", *BATCH_OPTIONS, *self.ssh_options, self.address, command]

    def ssh(self, command: str, stdin: str = "", timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the host; never raises for a non-zero exit (check `returncode`).

        stderr goes to a temporary file, not a pipe: a ControlPersist master that this ssh may fork keeps
        its stderr, and reading a pipe until EOF would then wait for the master to exit.
        """
        with tempfile.TemporaryFile("w+") as err:
            try:
                proc = subprocess.run(self.ssh_argv(command), input=stdin, stdout=subprocess.PIPE, stderr=err,
                                      text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise RemoteError(f"{self.name}: ssh did not finish within {timeout:.0f} s") from None
            err.seek(0)
            return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, err.read())

    def remote(self, request: Mapping[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Run one remote.py request on the host; its answer (a dict). RemoteError if it failed."""
        payload = json.dumps({"host": self.name, **request})
        command = f"{shlex.quote(self.python)} - {shlex.quote(payload)}"
        proc = self.ssh(command, stdin=REMOTE_SCRIPT.read_text(), timeout=timeout)
        lines = proc.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            detail = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
            raise RemoteError(f"{self.name}: {request.get('op')}: exit {proc.returncode}: {detail}")
        if not answer.get("ok"):
            raise RemoteError(f"{self.name}: {request.get('op')}: {answer.get('error', 'failed')}")
        return answer


@dataclass(frozen=True)
class Inventory:
    path: str
    hosts: tuple[Host, ...]
    groups: Mapping[str, tuple[str, ...]]  # group -> hosts, children included

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise InventoryError(f"host {name} is not in inventory {self.path} ({', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def datacenters(self) -> dict[str, list[str]]:
        """Datacenter -> its hosts (servers and clients), sorted."""
        out: dict[str, list[str]] = {}
        for h in self.hosts:
            out.setdefault(h.datacenter, []).append(h.name)
        return out

    def servers(self, dc: str | None = None) -> list[str]:
        return [h.name for h in self.hosts if h.server and (dc is None or h.datacenter == dc)]

    def by_ip(self, ip: str) -> Host | None:
        for h in self.hosts:
            if h.ip == ip:
                return h
        return None


def _first(hostvars: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if hostvars.get(key) not in (None, ""):
            return hostvars[key]
    return None


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def ssh_options(hostvars: Mapping[str, Any]) -> tuple[str, ...]:
    """The arguments Ansible's ssh connection plugin derives from these host variables (no destination)."""
    out: list[str] = []
    port = _first(hostvars, "ansible_port", "ansible_ssh_port")
    if port is not None:
        out += ["-o", f"Port={int(port)}"]
    user = _first(hostvars, "ansible_user", "ansible_ssh_user")
    if user is not None:
        out += ["-o", f"User={user}"]
    key = _first(hostvars, "ansible_ssh_private_key_file", "ansible_private_key_file")
    if key is not None:
        out += ["-o", f"IdentityFile={key}", "-o", "IdentitiesOnly=yes"]
    for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if hostvars.get(var):
            out += shlex.split(str(hostvars[var]))
    return tuple(out)


def _resolve(name: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(value, None, type=socket.SOCK_STREAM)[0][4][0])
    except OSError:
        raise InventoryError(f"host {name}: cannot resolve {value!r} to an IP address") from None


def _groups(data: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Every group's hosts, children's hosts included (ansible-inventory lists direct members only)."""
    def members(group: str, seen: frozenset[str]) -> set[str]:
        body = data.get(group)
        if not isinstance(body, Mapping) or group in seen:
            return set()
        out = {str(h) for h in body.get("hosts", [])}
        for child in body.get("children", []):
            out |= members(str(child), seen | {group})
        return out

    return {g: tuple(sorted(members(g, frozenset()))) for g in data if g != "_meta"}


def plan(data: Mapping[str, Any], path: str = "inventory") -> Inventory:
    """`ansible-inventory --list` JSON -> Inventory. Hosts with ansible_connection=local are left out."""
    meta = data.get("_meta", {})
    all_vars: Mapping[str, Any] = meta.get("hostvars", {}) if isinstance(meta, Mapping) else {}
    groups = _groups(data)
    hosts: list[Host] = []
    for name in inventory_hosts(data):
        hv: Mapping[str, Any] = all_vars.get(name) or {}
        if hv.get("ansible_connection") == "local":
            continue
        address = str(_first(hv, "ansible_host", "ansible_ssh_host") or name)
        ip = _resolve(name, str(_first(hv, "pyconsul_bind_addr") or address))
        client = _resolve(name, str(_first(hv, "pyconsul_client_addr") or ip))
        port = int(_first(hv, "pyconsul_http_port") or 8500)
        venv = str(_first(hv, "pyconsul_venv_dir") or f"{_first(hv, 'pyconsul_install_dir') or '/opt/pyconsul'}/venv")
        agent = {
            "venv": venv,
            "config_dir": str(_first(hv, "pyconsul_config_dir") or "/etc/pyconsul/agent.d"),
            "data_dir": str(_first(hv, "pyconsul_data_dir") or "/var/lib/pyconsul"),
            "log_dir": str(_first(hv, "pyconsul_log_dir") or "/var/log/pyconsul"),
            "supervisord_conf": str(_first(hv, "pyconsul_supervisord_conf") or "/etc/pyconsul/supervisord.conf"),
            "unit": Path(str(_first(hv, "pyconsul_systemd_unit") or "pyconsul.service")).name,
        }
        if _first(hv, "chaos_agent_command"):
            agent["command"] = str(hv["chaos_agent_command"])
        http = f"[{client}]:{port}" if ":" in client else f"{client}:{port}"
        hosts.append(Host(
            name=name, address=address, ip=ip, ssh_options=ssh_options(hv),
            python=str(_first(hv, "ansible_python_interpreter") or "python3"),
            datacenter=str(_first(hv, "pyconsul_datacenter") or "dc1").lower(),
            server=_bool(hv.get("pyconsul_server"), True), http=http,
            groups=tuple(sorted(g for g, members in groups.items() if name in members and g != "all")),
            agent=agent))
    if not hosts:
        raise InventoryError(f"{path}: no hosts")
    return Inventory(path, tuple(hosts), groups)


def load(path: str | Path) -> Inventory:
    """Read an inventory file or directory with ansible-inventory."""
    try:
        return plan(_ansible_inventory(str(path)), str(path))
    except PlanError as e:
        raise InventoryError(str(e)) from None


def parallel(hosts: Sequence[Host], fn: Callable[[Host], T], max_workers: int = 16) -> dict[str, T | Exception]:
    """Call fn(host) for every host at once; host name -> result or the exception it raised."""
    def one(h: Host) -> T | Exception:
        try:
            return fn(h)
        except Exception as e:  # collected, the caller decides
            return e

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(hosts)))) as pool:
        return dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))
