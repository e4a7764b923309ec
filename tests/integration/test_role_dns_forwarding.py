"""The role's DNS forwarding (pyconsul_dns_forwarding: dnsmasq) on loopback, without lab hosts.

The role's templates (dnsmasq.conf.j2, resolved.conf.j2, pyconsul-dnsmasq.service.j2) are rendered by Ansible's
own template module (ansible-playbook against localhost, connection local) with the role's real defaults and
vars; `dnsmasq --test` accepts the configuration. Then the rendered dnsmasq configuration, with only its listen
lines moved from 127.0.0.1:53 to this test's loopback block, is run by the role's files/dnsmasq.py next to a real
agent: names under consul. asked of dnsmasq come back with the agent's answers; a second run of the script
changes nothing; a changed configuration restarts dnsmasq. The lab test (tests/lab/test_role_dns.py) does the
same on lab hosts through their own /etc/resolv.conf and `getent`.

Needs dnsmasq (Debian's dnsmasq-base, scripts/bootstrap.sh) and ansible-playbook (the venv).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.harness import Cluster, cluster_fixture, new_block, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "playbooks" / "roles" / "pyconsul"
BIN = Path(sys.executable).parent
DNSMASQ = Path("/usr/sbin/dnsmasq")

PLAYBOOK = """
- name: Render the role's DNS forwarding files with its defaults
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Load the role's defaults and vars
      ansible.builtin.include_vars:
        file: "{{ item }}"
      loop: ["%(role)s/defaults/main.yml", "%(role)s/vars/main.yml"]
    - name: Render as tasks/dns.yml does
      ansible.builtin.template:
        src: "%(role)s/templates/{{ item }}"
        dest: "{{ out }}/{{ item | regex_replace('\\\\.j2$', '') }}"
        mode: "0644"
      loop: [dnsmasq.conf.j2, resolved.conf.j2, pyconsul-dnsmasq.service.j2]
"""


def render(tmp: Path, **extra: Any) -> dict[str, str]:
    play = tmp / "render.yml"
    play.write_text(PLAYBOOK % {"role": ROLE})
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(play), "-e",
                           json.dumps({"out": str(out), **extra})], capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return {p.name: p.read_text() for p in out.iterdir()}


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path)


def need_dnsmasq() -> None:
    if not DNSMASQ.exists():
        pytest.fail("dnsmasq is not installed (Debian package dnsmasq-base; scripts/bootstrap.sh installs it)")


def test_templates_render_what_the_guide_configures(tmp_path: Path) -> None:
    need_dnsmasq()
    files = render(tmp_path)
    conf = lines(files["dnsmasq.conf"])
    assert [ln for ln in conf if ln.startswith("server=")] == ["server=/consul/127.0.0.1#8600"]
    assert {"listen-address=127.0.0.1", "port=53", "no-resolv", "bind-interfaces"} <= set(conf)
    check = subprocess.run([str(DNSMASQ), "--test", f"--conf-file={tmp_path / 'out' / 'dnsmasq.conf'}"],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert lines(files["resolved.conf"]) == ["[Resolve]", "DNS=127.0.0.1:8600", "DNSSEC=false", "Domains=~consul"]
    assert "--conf-file=/etc/pyconsul/dnsmasq.conf" in files["pyconsul-dnsmasq.service"]

    # Another domain and alt_domain (Consul config keys, through pyconsul_config_extra), a DNS port, recursors,
    # and an agent that does not listen on loopback.
    files = render(tmp_path, pyconsul_config_extra={"domain": "Example.", "alt_domain": "alt.test."},
                   pyconsul_dns_port=8653, pyconsul_dns_recursors=["127.99.54.9", "127.99.54.10#5353"],
                   pyconsul_client_addr="127.99.54.1")
    assert [ln for ln in lines(files["dnsmasq.conf"]) if ln.startswith("server=")] == [
        "server=/example/127.99.54.1#8653", "server=/alt.test/127.99.54.1#8653", "server=127.99.54.9",
        "server=127.99.54.10#5353"]
    assert "Domains=~example ~alt.test" in lines(files["resolved.conf"])
    assert "DNS=127.99.54.1:8653" in lines(files["resolved.conf"])


def ensure(conf: Path) -> dict[str, Any]:
    """The role's files/dnsmasq.py, run as tasks/dns.yml runs it."""
    script = (ROLE / "files" / "dnsmasq.py").read_text()
    proc = subprocess.run([sys.executable, "-c", script, json.dumps({"bin": str(DNSMASQ), "conf": str(conf)})],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ask(ip: str, port: int, name: str) -> set[str]:
    m = dns.query.udp(dns.message.make_query(name, "A"), ip, port=port, timeout=2)
    return {rr.address for s in m.answer if s.rdtype == dns.rdatatype.A for rr in s}


def test_dnsmasq_forwards_consul_names_to_the_agent(tmp_path: Path, cluster: Cluster) -> None:
    need_dnsmasq()
    block = new_block()
    agent_ip, dnsmasq_ip, port = f"{block}.1", f"{block}.2", 8653
    a = cluster.agent("a1", agent_ip, "-server", "-bootstrap-expect=1", "-dns-port=8600")
    wait_for(lambda: a.api("/v1/status/leader"), 30, "a leader")
    for i in (1, 2):
        a.api("/v1/catalog/register", "PUT", {"Node": f"web-{i}", "Address": f"{block}.{10 + i}",
                                              "Service": {"Service": "web", "Port": 80}})
    files = render(tmp_path, pyconsul_client_addr=agent_ip)
    conf = tmp_path / "dnsmasq.conf"
    text = files["dnsmasq.conf"].replace("listen-address=127.0.0.1", f"listen-address={dnsmasq_ip}")
    conf.write_text(text.replace("port=53\n", f"port={port}\n"))
    pids: list[int] = []
    try:
        first = ensure(conf)
        pids.append(first["pid"])
        assert first["changed"] and first["action"] == "started" and alive(first["pid"]), first
        want = {f"{block}.11", f"{block}.12"}
        wait_for(lambda: ask(dnsmasq_ip, port, "web.service.consul") == want, 20,
                 "web's instances through dnsmasq")
        assert ask(dnsmasq_ip, port, "a1.node.consul") == {agent_ip}

        again = ensure(conf)
        assert again == {"changed": False, "pid": first["pid"], "action": "running"}

        conf.write_text(conf.read_text() + f"address=/probe.test/{block}.99\n")
        changed = ensure(conf)
        pids.append(changed["pid"])
        assert changed["changed"] and changed["action"] == "restarted" and changed["pid"] != first["pid"], changed
        wait_for(lambda: not alive(first["pid"]), 10, "the old dnsmasq gone")
        assert ask(dnsmasq_ip, port, "probe.test") == {f"{block}.99"}
        assert ask(dnsmasq_ip, port, "web.service.consul") == want
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            wait_for(lambda pid=pid: not alive(pid), 10, f"dnsmasq {pid} gone")
