"""tasks/configure.yml skips a template task when the host's file already has the SHA-1 of
`lookup('ansible.builtin.template', <src>, convert_data=false)`: that lookup must render exactly the bytes Ansible's
template module writes, or a rerun would skip a file that needs writing. Both render every templated file of the
role here (ansible-playbook against localhost, connection local, the role's real defaults and vars) with default
and non-default values (TLS, services with non-ASCII text, a low port, extra config); the file's checksum must equal
the lookup's. No lab hosts; needs ansible-playbook (the venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "playbooks" / "roles" / "pyconsul"
BIN = Path(sys.executable).parent
TEMPLATES = ["config.json.j2", "services.json.j2", "pyconsul.service.j2", "supervisord.conf.j2"]

PLAYBOOK = """
- name: Render the role's templated files both ways
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Load the role's defaults and vars
      ansible.builtin.include_vars:
        file: "{{ item }}"
      loop: ["%(role)s/defaults/main.yml", "%(role)s/vars/main.yml"]
    - name: Render with the template module
      ansible.builtin.template:
        src: "%(role)s/templates/{{ item }}"
        dest: "{{ out }}/{{ item }}"
        mode: "0640"
      loop: %(templates)s
    - name: Read what it wrote
      ansible.builtin.stat:
        path: "{{ out }}/{{ item }}"
        checksum_algorithm: sha1
      register: written
      loop: %(templates)s
    - name: The lookup renders the same bytes
      ansible.builtin.assert:
        that: >-
          lookup('ansible.builtin.template', '%(role)s/templates/' ~ item.item, convert_data=false)
          | hash('sha1') == item.stat.checksum
        fail_msg: "{{ item.item }} differs"
      loop: "{{ written.results }}"
"""

BASE: dict[str, Any] = {"pyconsul_encrypt": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
                        "pyconsul_bootstrap_expect": 1, "pyconsul_retry_join": ["10.0.0.2"],
                        "pyconsul_retry_join_wan": [], "pyconsul_bind_addr": "10.0.0.1", "pyconsul_datacenter": "bj"}


@pytest.mark.parametrize("extra", [
    {},
    {"pyconsul_tls_enabled": True, "pyconsul_dns_port": 53, "pyconsul_log_level": "DEBUG",
     "pyconsul_config_extra": {"domain": "example.", "ui_config": {"enabled": True}},
     "pyconsul_services": [{"name": "wéb", "port": 80, "tags": ["ü"], "meta": {"k": "v"},
                            "check": {"http": "http://127.0.0.1/", "interval": "10s"}}],
     "pyconsul_checks": [{"name": "disk", "args": ["/bin/true"], "interval": "30s"}]},
], ids=["defaults", "features"])
def test_lookup_renders_what_the_template_module_writes(tmp_path: Path, extra: dict[str, Any]) -> None:
    play = tmp_path / "render.yml"
    play.write_text(PLAYBOOK % {"role": ROLE, "templates": json.dumps(TEMPLATES)})
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(play), "-e",
                           json.dumps({"out": str(out), **BASE, **extra})], capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(TEMPLATES)
    assert "ok=4" in proc.stdout  # include_vars, template, stat, assert: nothing skipped or failed
