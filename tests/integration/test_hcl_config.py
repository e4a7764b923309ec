"""An agent started from an HCL config directory, as Consul's documentation and client suites start one: the
HCL keys take effect (the acl block too), keys of features not built yet only warn, and -pid-file is written
and removed."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness import Cluster, new_block, wait_for

pytestmark = pytest.mark.integration


def test_agent_from_hcl_config_dir(cluster: Cluster, tmp_path: Path) -> None:
    ip = new_block()
    conf = tmp_path / "consul.d"
    conf.mkdir()
    (conf / "10-agent.hcl").write_text(
        'datacenter = "hcl-dc"\n'
        'performance { raft_multiplier = 1 }\n'
        'ports {\n  https = 8501\n  dns = -1\n}\n'
        'acl {\n  enabled = true\n  tokens { master = "root" }\n}\n'
        'primary_datacenter = "hcl-dc"\n'
    )
    (conf / "20-more.json").write_text('{"log_level": "DEBUG"}')
    (conf / "30-services.hcl").write_text(
        'service {\n  name = "web"\n  port = 80\n  tags = ["v1"]\n  check { ttl = "30s" }\n}\n'
        'service {\n  id = "db-1"\n  name = "db"\n  port = 5432\n}\n'
        'services = [ { name = "cache", port = 6379 } ]\n'
    )
    pid_file = tmp_path / "agent.pid"
    p = cluster.agent("h1", f"{ip}.1", "-server", "-bootstrap-expect=1", f"-config-dir={conf}",
                      f"-pid-file={pid_file}", '-hcl=node_meta = { rack = "r1" }')
    assert pid_file.read_text() == f"{p.pid}\n"
    self_ = p.api("/v1/agent/self")
    assert self_["Config"]["Datacenter"] == "hcl-dc"
    # repeated `service` blocks and a `services` list: three services, the block's check with its service
    services = p.api("/v1/agent/services")
    assert {(v["Service"], v["Port"]) for v in services.values()} == {("web", 80), ("db", 5432), ("cache", 6379)}
    assert services["web"]["Tags"] == ["v1"] and "db-1" in services
    checks = p.api("/v1/agent/checks")
    assert [c["ServiceID"] for c in checks.values()] == ["web"]
    log = p.log()
    assert "primary_datacenter accepted and ignored" not in log  # built: ACL replication (agent/acl/replication.py)
    assert "ports.https = 8501 without cert_file and key_file: the HTTPS server is not started" in log
    # the acl block is built (agent/acl): ACLs are on, the anonymous token may not list tokens, the master may
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{p.http}/v1/acl/tokens", timeout=5)
    assert info.value.code == 403 and info.value.read() == b"Permission denied\n"
    tokens = wait_for(lambda: p.api("/v1/acl/tokens?token=root"), 20, "the master token (acl.tokens.master)")
    assert "root" in {t["SecretID"] for t in tokens}
    assert p.stop() == 0
    assert not os.path.exists(pid_file)
