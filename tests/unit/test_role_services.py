"""The role's declared services and checks (pyconsul_services / pyconsul_checks): every inventory's values
are definitions the agent accepts, as the role's `pyconsul validate` of services.json will check on the
hosts; and the role's variables are declared in its argument spec and defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyconsul.agent import cli

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "playbooks" / "roles" / "pyconsul"
VAR_FILES = sorted(p for p in (ROOT / "inventories").glob("*/*_vars/*.yml"))


def _declared(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    return {"services": data.get("pyconsul_services", []), "checks": data.get("pyconsul_checks", [])}


@pytest.mark.parametrize("path", VAR_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_inventory_definitions_validate(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data")}))
    services = tmp_path / "services"  # no suffix, like the temporary file Ansible's validate gets
    services.write_text(json.dumps(_declared(path)))
    assert cli.main(["validate", "-quiet", str(config), str(services)]) == 0, capsys.readouterr().err


def test_the_guide_inventory_declares_a_service_with_a_check() -> None:
    declared = [s for p in VAR_FILES for s in _declared(p)["services"]]
    assert any(s.get("check") or s.get("checks") for s in declared)


def test_a_bad_definition_is_refused_by_the_same_validation(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data")}))
    services = tmp_path / "services"
    services.write_text(json.dumps({"services": [{"port": 80}], "checks": []}))  # no name
    assert cli.main(["validate", "-quiet", str(config), str(services)]) == 1


def test_role_declares_the_variables() -> None:
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    for name in ("pyconsul_services", "pyconsul_checks"):
        assert spec[name]["type"] == "list" and spec[name]["elements"] == "dict"
        assert defaults[name] == []
    handlers = yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())
    reload = [h for h in handlers if h.get("listen") == "pyconsul reload"]
    assert reload and "reload" in reload[0]["ansible.builtin.command"]["argv"]
