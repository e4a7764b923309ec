"""Services declared in the inventory (`pyconsul_services`, rendered by the role into services.json and
applied with a reload) are registered and passing in the catalog of their datacenter, and visible from
the other datacenters through `?dc=` (see conftest.py for how to run these)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.lab.testinfra.conftest import Agent
from tests.lab.testinfra.test_cluster import poll


def _declared(everyone: list[Agent]) -> list[tuple[Agent, str]]:
    return [(a, str(s.get("name") or s.get("Name"))) for a in everyone for s in a.services]


def test_declared_services_are_rendered(agents: list[Agent]) -> None:
    import json

    for a in agents:
        doc = json.loads(a.host.file("/etc/pyconsul/agent.d/services.json").content_string)
        assert [s.get("name") or s.get("Name") for s in doc["services"]] == [
            s.get("name") or s.get("Name") for s in a.services], a.name


def test_declared_services_pass_in_their_datacenter(agents: list[Agent], everyone: list[Agent]) -> None:
    declared = _declared(everyone)
    if not declared:
        pytest.skip("the inventory declares no pyconsul_services")
    for owner, name in declared:
        # Ask an agent of another datacenter when one is selected (the query crosses the WAN), else any.
        asker = next((a for a in agents if a.dc != owner.dc and a.server), None) or agents[0]

        def passing(owner: Agent = owner, name: str = name, asker: Agent = asker) -> None:
            entries: list[dict[str, Any]] = asker.get(f"/v1/health/service/{name}?dc={owner.dc}&passing")
            nodes = {e["Node"]["Node"] for e in entries}
            assert owner.name in nodes, f"{name} on {owner.name} not passing in {owner.dc} (seen from {asker.name}): " \
                                        f"{sorted(nodes)}"

        poll(passing, timeout=90)
