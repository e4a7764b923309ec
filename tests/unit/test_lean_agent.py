"""A client agent's memory: what `pyconsul agent` must NOT import until a feature needs it (bench/gossip/rss.py
measures the result; issue 2's goal is <= 2x serf's RSS per agent).

Each probe runs in a fresh interpreter started as the agent verb (so agent/__init__.py keeps OpenSSL out, as in
a real agent) and reports the modules it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What the default client agent imports: the CLI's `agent` verb, the runtime, and the DNS server (on by default).
AGENT_IMPORTS = r"""
import json, sys
sys.argv = ["pyconsul", "agent"]
from pyconsul.agent import cli
cli.COMMANDS["agent"]
import pyconsul.agent.agent, pyconsul.agent.dns.server
from pyconsul.agent.config import agent_flagset, build_config
from pyconsul.agent.cli import common
flags = ["-node=x", "-bind=127.0.0.1", "-client=127.0.0.1", "-data-dir=/nonexistent/pyconsul-probe"]
res = common.parse(agent_flagset(), flags, "agent", "")
build_config(res.explicit)  # the bench's client agent's config, validated as `pyconsul agent` does
# a module importlib's LazyLoader has not run yet (agent/dns/__init__.py) is not loaded
print(json.dumps(sorted(k for k, v in sys.modules.items()
                        if v is not None and type(v).__name__ != "_LazyModule")))
"""

# Loaded only when the feature is used; the reason each is kept out, with its rough cost.
LAZY = {
    "hcl2": "HCL config files and HCL ACL rules (python-hcl2 + lark: ~5 MiB)",
    "lark": "HCL (python-hcl2's parser)",
    "dns": "dnspython: the DNS codec loads it on the first query (~3 MiB)",
    "http.client": "HTTP checks (agent/checks/http_probe.py; with the email package ~0.8 MiB)",
    "email": "HTTP checks (http.client's header parser)",
    "ssl": "TLS (agent/__init__.py, tlsutil.load_ssl)",
    "pyconsul.agent.config_hcl": "HCL config files",
    "pyconsul.agent.checks.http_probe": "HTTP checks",
    "pyconsul.agent.cli.acl": "the other CLI verbs (cli/__init__.py VERBS)",
    "pyconsul.agent.cli.snapshot": "the other CLI verbs",
    "pyconsul.agent.cli.lock": "the other CLI verbs",
    "pyconsul.agent.cli.tls": "the other CLI verbs",
    "pyconsul.agent.state.archive": "snapshot save/restore (http/snapshot.py; with tarfile, bz2, lzma ~0.5 MiB)",
    "tarfile": "snapshot save/restore",
    "tempfile": "spooled request bodies (PUT /v1/snapshot: httpd/h1.py Spool)",
    "pyconsul.agent.server.acl_reads": "servers only (it loads the state store)",
    "pyconsul.agent.state.store": "servers only",
    "pyconsul.agent.raft.node": "servers only",
    "pyconsul.agent.raft.storage": "servers only",
    "pyconsul.agent.server.autopilot": "servers only (config.validate checks non-default autopilot values only)",
    "pyconsul.agent.acl.replication": "servers and clients of a secondary ACL datacenter (agent.py _start_acl)",
    "uuid": "agent/ids.py makes the random IDs (uuid imports platform: ~0.25 MiB)",
    "platform": "imported by uuid",
    "pyconsul.agent.filter": "the first ?filter= (http/api.py, http/agent_services.py), a user event or prepared "
                             "query template with a regexp (events.py, state/query_template.py): ~0.4 MiB",
    "pyconsul.agent.filter.grammar": "the first ?filter=",
    "pyconsul.agent.filter.regex": "the first ?filter= or regexp",
    "pyconsul.agent.filter.request": "the first ?filter=",
    "pyconsul.agent.state.sessions": "the state's readers: servers (http/session.py renders a renewed session with it)",
    "pyconsul.agent.state.prepared_queries": "servers only",
    "pyconsul.agent.state.catalog_reads": "servers only",
    "pyconsul.agent.http.acl": "acl.enabled (http/acl_off.py answers Consul's 401 otherwise; ~0.2 MiB with state.acl)",
    "pyconsul.agent.state.acl": "acl.enabled, servers",
    "pyconsul.agent.dns.resolver": "the first DNS query (run lazily by codec.load with dnspython, in a worker thread)",
}


def loaded_by(code: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_a_client_agent_leaves_unused_features_unimported() -> None:
    loaded = loaded_by(AGENT_IMPORTS)
    assert "pyconsul.agent.agent" in loaded and "pyconsul.agent.dns.server" in loaded  # the probe ran
    bad = {name: why for name, why in LAZY.items() if name in loaded}
    assert not bad, f"imported by every agent although only needed for: {bad}"


def test_every_verb_still_resolves() -> None:
    """The lazy verb table names real modules and functions, and `pyconsul -h` lists every verb with its help."""
    code = r"""
import json, sys
from pyconsul.agent import cli
print(json.dumps({verb: [fn.__module__, fn.__name__, text] for verb, (fn, text) in cli.COMMANDS.items()}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    assert len(table) >= 24 and all(text for _, _, text in table.values())
    assert table["agent"][:2] == ["pyconsul.agent.cli.agent", "cmd_agent"]
    assert table["snapshot"][2] == "Saves, restores and inspects snapshots of the servers' state"


FIRST_QUERY = r"""
import asyncio, json, sys
from pyconsul.agent.dns import codec, resolver as r
from pyconsul.agent.dns.config import DNSConfig
from pyconsul.agent.dns.server import DNSServer

class Views:
    def __init__(self, on_change):
        self.entries, self.stats, self.cfg = {}, {}, DNSConfig()
    def get(self, key):
        return (r.Instance("n1", "10.0.0.1", "dc1", (), "", 80, (), "passing"),) if key[0] == "service" else r.MISSING
    async def close(self):
        pass

class Sent:
    def __init__(self):
        self.out = []
    def sendto(self, data, addr):
        self.out.append(data)

QUERY = bytes.fromhex("123401000001000000000000") + b"\x03web\x07service\x06consul\x00\x00\x01\x00\x01"

async def main():
    before = "dns.message" in sys.modules or type(sys.modules["pyconsul.agent.dns.resolver"]).__name__ != "_LazyModule"
    server = DNSServer(DNSConfig(), "dc1", Views)
    sent = Sent()
    server.udp_received(QUERY, ("127.0.0.1", 5353), sent)
    sync = len(sent.out)
    for _ in range(500):  # polled, 5 s at most: the answer comes once dnspython is loaded in a worker thread
        if sent.out:
            break
        await asyncio.sleep(0.01)
    await server.close()
    import dns.message
    m = dns.message.from_wire(sent.out[0])
    ran = type(sys.modules["pyconsul.agent.dns.resolver"]).__name__ == "module"
    print(json.dumps([before, sync, m.id, [rr.address for rr in m.answer[0]], codec.loaded() and ran]))

asyncio.run(main())
"""


def test_the_first_dns_query_loads_dnspython_then_is_answered() -> None:
    proc = subprocess.run([sys.executable, "-c", FIRST_QUERY], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    before, sync, qid, addresses, loaded = json.loads(proc.stdout.splitlines()[-1])
    assert before is False  # nothing had loaded dnspython before the first query
    assert sync == 0  # not answered on the spot: the import runs off the event loop
    assert qid == 0x1234 and addresses == ["10.0.0.1"] and loaded is True
