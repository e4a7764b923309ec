"""testinfra checks of a cluster deployed with TLS and ACLs (default deny), run by molecule's verify step of
scenario `secure` (molecule/secure), or by hand:

    PYCONSUL_SECRETS_DIR=.secrets/secure_inventory pytest --hosts=ansible://pyconsul \
        --ansible-inventory=tests/lab/secure_inventory tests/lab/testinfra_secure

The cluster comes from the inventory as in tests/lab/testinfra (its fixtures `agents`, `everyone`, `agent`);
the tokens, the CA and the gossip key from the controller's secrets directory (PYCONSUL_SECRETS_DIR, default
.secrets/secure_inventory). HTTP requests go from the controller to the agents' addresses (plain HTTP port, with
the token in X-Consul-Token); the rogue-server check starts agents on lab hosts from files in the controller's
/tmp, which lab hosts share (only /opt, /etc/pyconsul, /var/lib/pyconsul, ... are private to each host).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

# The cluster as the inventory describes it: the fixtures of the plain suite.
from tests.lab.testinfra.conftest import Agent, _cluster, agent, agents, everyone  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def secrets() -> Path:
    """The controller's secrets of this cluster: acl.json, gossip.key, tls/."""
    path = Path(os.environ.get("PYCONSUL_SECRETS_DIR") or ROOT / ".secrets" / "secure_inventory")
    assert (path / "acl.json").is_file(), f"{path}/acl.json: no ACL secrets (deploy with pyconsul_acl_enabled)"
    return path


@pytest.fixture(scope="session")
def master(secrets: Path) -> str:
    """The management token (acl.tokens.master of every server)."""
    return str(json.loads((secrets / "acl.json").read_text())["master"])


def call(a: Agent, path: str, *, method: str = "GET", token: str = "", body: Any = None,
         port: int = 0) -> tuple[int, Any]:
    """(status, decoded JSON body or None) of one plain-HTTP request from the controller to agent `a`."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"http://{a.addr}:{port or a.http_port}{path}", data=data, method=method,
                                 headers={"X-Consul-Token": token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, raw.decode(errors="replace")


def first_server(cluster: list[Agent], dc: str) -> Agent:
    found = [a for a in cluster if a.server and a.dc == dc]
    assert found, f"no server of datacenter {dc} in the inventory"
    return found[0]
