"""What lets a no-op rerun of the role skip work (the deploy benchmark's no-op rerun): the probe (files/probe.py)
reports the templated files' checksum, mode and owner and the agent's account; the filter pyconsul_file_current
says whether a template task would write nothing; tasks/configure.yml asks it with the same template, destination,
mode and owner that the task writes, and tasks/install.yml compares the account with the one it creates.
Rendering equality with Ansible's template module is checked by tests/integration/test_role_render.py."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_role_filters import f

ROLE = Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "pyconsul"
SHA = hashlib.sha1(b"x\n").hexdigest()
SEEN = {"/c.json": {"sha1": SHA, "mode": "0640", "owner": "pyconsul", "group": "pyconsul"}}


@pytest.mark.parametrize(
    ("found", "path", "content", "mode", "owner", "group", "want"),
    [
        (SEEN, "/c.json", "x\n", "0640", "pyconsul", "pyconsul", True),
        (SEEN, "/c.json", "x", "0640", "pyconsul", "pyconsul", False),  # the trailing newline counts
        (SEEN, "/c.json", "y\n", "0640", "pyconsul", "pyconsul", False),
        (SEEN, "/c.json", "x\n", "0644", "pyconsul", "pyconsul", False),
        (SEEN, "/c.json", "x\n", "0640", "root", "pyconsul", False),
        (SEEN, "/c.json", "x\n", "0640", "pyconsul", "root", False),
        (SEEN, "/c.json", "x\n", "0640", "__omit_place_holder__ab", "pyconsul", False),  # --check, no user yet
        (SEEN, "/other", "x\n", "0640", "pyconsul", "pyconsul", False),  # not reported: missing
        ({}, "/c.json", "x\n", "0640", "pyconsul", "pyconsul", False),
        (None, "/c.json", "x\n", "0640", "pyconsul", "pyconsul", False),
        ({"/c.json": None}, "/c.json", "x\n", "0640", "pyconsul", "pyconsul", False),
        ({"/c.json": {**SEEN["/c.json"], "sha1": hashlib.sha1("é\n".encode()).hexdigest()}}, "/c.json", "é\n",
         "0640", "pyconsul", "pyconsul", True),  # UTF-8, as the template module writes
    ],
)
def test_file_current(found: Any, path: str, content: str, mode: str, owner: str, group: str, want: bool) -> None:
    assert f.file_current(found, path, content, mode, owner, group) is want
    assert f.FilterModule().filters()["pyconsul_file_current"] is f.file_current


def probe(tmp_path: Path, files: list[str]) -> dict[str, Any]:
    me, mygroup = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    args = {"manager": "supervisord", "unit": "x.service", "run_dir": str(tmp_path / "run"),
            "marker": str(tmp_path / "marker"), "config_dir": str(tmp_path), "user": me, "group": mygroup,
            "dirs": [], "files": files}
    proc = subprocess.run([sys.executable, "-c", (ROLE / "files" / "probe.py").read_text(), json.dumps(args)],
                          capture_output=True, text=True, timeout=30, check=True)
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_probe_reports_files_as_the_filter_reads_them(tmp_path: Path) -> None:
    conf = tmp_path / "config.json"
    conf.write_text("{}\n")
    conf.chmod(0o640)
    (tmp_path / "link").symlink_to(conf)
    (tmp_path / "dir").mkdir()
    paths = [str(conf), str(tmp_path / "missing"), str(tmp_path / "link"), str(tmp_path / "dir")]
    out = probe(tmp_path, paths)
    assert list(out["files"]) == [str(conf)]  # missing, a symlink and a directory are not reported
    me, mygroup = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    assert f.file_current(out["files"], str(conf), "{}\n", "0640", me, mygroup)
    assert not f.file_current(out["files"], str(conf), "{}", "0640", me, mygroup)
    conf.chmod(0o644)
    assert not f.file_current(probe(tmp_path, paths)["files"], str(conf), "{}\n", "0640", me, mygroup)


def test_probe_reports_the_account(tmp_path: Path) -> None:
    out = probe(tmp_path, [])
    pw = pwd.getpwuid(os.getuid())
    assert out["group_exists"] is True
    assert out["account"] == {"group": grp.getgrgid(pw.pw_gid).gr_name, "shell": pw.pw_shell, "home": pw.pw_dir,
                              "comment": pw.pw_gecos}


def _tasks(name: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = yaml.safe_load((ROLE / "tasks" / name).read_text())
    return tasks


def test_each_template_task_asks_about_what_it_writes() -> None:
    vars_text = (ROLE / "vars" / "main.yml").read_text()
    templated = yaml.safe_load(vars_text)["_pyconsul_templated_files"]
    templates = [t for t in _tasks("configure.yml") if "ansible.builtin.template" in t]
    assert len(templates) == 4
    for task in templates:
        args = task["ansible.builtin.template"]
        when = " ".join(str(task["when"]).split())
        dest = args["dest"].strip("{} ")
        assert f"pyconsul_file_current({dest}," in when, task["name"]
        assert f"lookup('ansible.builtin.template', '{args['src']}', convert_data=false)" in when, task["name"]
        owner = args["owner"].strip("{} ") if "{{" in args["owner"] else f"'{args['owner']}'"
        group = args["group"].strip("{} ") if "{{" in args["group"] else f"'{args['group']}'"
        assert f"'{args['mode']}', {owner}, {group})" in when, task["name"]
        assert args["dest"] in templated, task["name"]


def test_account_tasks_create_what_the_probe_is_compared_with() -> None:
    tasks = {t["name"]: t for t in _tasks("install.yml")}
    user = tasks["Create the agent's system user (no login shell)"]
    assert user["when"] == "_pyconsul_state.account != _pyconsul_account"
    for key in ("group", "shell", "home", "comment"):
        assert user["ansible.builtin.user"][key] == "{{ _pyconsul_account." + key + " }}"
    assert tasks["Create the agent's system group"]["when"] == "not _pyconsul_state.group_exists"
