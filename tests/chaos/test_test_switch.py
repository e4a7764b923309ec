"""Test switches: files in an agent's data directory, put there by the chaos runner (remote.py's `test-switch`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyconsul.chaos.inventory import plan
from pyconsul.chaos.nemesis import remote


def _req(data_dir: Path, on: bool, name: str = "TEST_STALE_READS") -> remote.Request:
    return {"op": "test-switch", "name": name, "on": on, "agent": {"data_dir": str(data_dir)}}


def test_switch_file_is_created_and_removed_once(tmp_path: Path) -> None:
    switch = tmp_path / "TEST_STALE_READS"
    assert remote.OPS["test-switch"](_req(tmp_path, True)) == {"path": str(switch), "changed": True}
    assert switch.is_file()
    assert remote.OPS["test-switch"](_req(tmp_path, True))["changed"] is False
    assert remote.OPS["test-switch"](_req(tmp_path, False))["changed"] is True
    assert not switch.exists()
    assert remote.OPS["test-switch"](_req(tmp_path, False))["changed"] is False


def test_only_known_switches(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown test switch"):
        remote.set_test_switch(_req(tmp_path, True, name="../../etc/passwd"))
    assert list(tmp_path.iterdir()) == []


def test_inventory_knows_each_agents_data_dir() -> None:
    inv = plan({"_meta": {"hostvars": {"a": {"ansible_host": "10.0.0.1"},
                                       "b": {"ansible_host": "10.0.0.2", "pyconsul_data_dir": "/srv/pc"}}},
                "all": {"children": ["g"]}, "g": {"hosts": ["a", "b"]}})
    assert inv.host("a").agent["data_dir"] == "/var/lib/pyconsul"  # the role's default
    assert inv.host("b").agent["data_dir"] == "/srv/pc"
