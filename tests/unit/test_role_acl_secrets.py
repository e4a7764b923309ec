"""The role's controller-side ACL secrets (playbooks/roles/pyconsul/files/acl_secrets.py): created once as
UUIDs, mode 0600, never changed; --dns (pyconsul_acl_dns_token) adds the DNS token's accessor and secret and
keeps the others; a wrong command line is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "playbooks/roles/pyconsul/files/acl_secrets.py"
BASE = {"master", "agent_accessor", "agent_secret", "agent_master"}


def run(*args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=30,
                          check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_created_once_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "s" / "acl.json"
    code, out = run(str(path))
    assert code == 0 and out["changed"] and set(out["created"]) == BASE
    first = json.loads(path.read_text())
    assert set(first) == BASE and all(uuid.UUID(v) for v in first.values())
    assert path.stat().st_mode & 0o777 == 0o600
    assert run(str(path)) == (0, {"changed": False, "created": []})
    assert json.loads(path.read_text()) == first


def test_dns_adds_its_token_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "acl.json"
    run(str(path))
    before = json.loads(path.read_text())
    assert run(str(path), "--dns") == (0, {"changed": True, "created": ["dns_accessor", "dns_secret"]})
    after = json.loads(path.read_text())
    assert {k: after[k] for k in before} == before and set(after) == BASE | {"dns_accessor", "dns_secret"}
    assert run(str(path), "--dns") == (0, {"changed": False, "created": []})
    assert run(str(path)) == (0, {"changed": False, "created": []}), "without --dns the DNS entries stay"
    assert json.loads(path.read_text()) == after


def test_bad_command_line(tmp_path: Path) -> None:
    code, out = run(str(tmp_path / "acl.json"), "--dsn")
    assert code == 2 and out["failed"] and "usage" in out["msg"]
    assert not (tmp_path / "acl.json").exists()
