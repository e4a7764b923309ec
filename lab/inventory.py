"""Read an Ansible inventory with the real ``ansible-inventory --list`` (so group_vars, YAML/INI and
directories behave exactly as for ansible-playbook) and turn it into host specs via lab.plan."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pyconsul.lab.plan import HostSpec, PlanError, plan_hosts


def ansible_inventory_bin() -> str:
    """`ansible-inventory` next to the running interpreter (the venv), else from PATH."""
    beside = Path(sys.executable).parent / "ansible-inventory"
    if beside.exists():
        return str(beside)
    found = shutil.which("ansible-inventory")
    if found is None:
        raise PlanError("ansible-inventory not found (run scripts/bootstrap.sh)")
    return found


def load_inventory(path: str) -> dict[str, Any]:
    """The inventory as `ansible-inventory --list` JSON. A missing path is an error (ansible only warns)."""
    if not Path(path).exists():
        raise PlanError(f"inventory {path} does not exist")
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="True")
    try:
        proc = subprocess.run([ansible_inventory_bin(), "-i", path, "--list"], capture_output=True, text=True,
                              timeout=120, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PlanError(f"inventory {path}: ansible-inventory did not finish") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise PlanError(f"inventory {path}: {lines[-1] if lines else 'ansible-inventory failed'}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise PlanError(f"inventory {path}: ansible-inventory printed no JSON") from None
    if not isinstance(data, dict):
        raise PlanError(f"inventory {path}: unexpected ansible-inventory output")
    return data


def host_specs(path: str) -> list[HostSpec]:
    return plan_hosts(load_inventory(path), source=f"inventory {path}")
