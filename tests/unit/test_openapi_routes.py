"""docs/openapi.yaml describes exactly the /v1 routes the agent registers (issue 14 item 5).

An agent (a single server, in process, on its own loopback address) is started and its router read back,
so a route added anywhere (agent/http/*.py, agent.py) without its description fails here, and so does a
description left behind by a removed route. Two agents are read, one with ACLs off and one with ACLs on (the
ACL system registers its routes then), and their routes united. HEAD (served by every GET) is not listed
separately. Paths are compared with their variables unnamed: two router patterns matching the same URLs
(`/v1/acl/token/{rest:.*}`, the ACLs-off answer, and `/v1/acl/token/{accessor}`) are one path of the API.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml

from pyconsul.agent.agent import Agent
from pyconsul.agent.config import from_flat
from pyconsul.agent.httpd.web import Application
from tests.harness import new_block

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch")


def _unnamed(path: str) -> str:
    return re.sub(r"\{\w+(:[^}]*)?\}", "{}", path)


def router_routes(app: Application) -> set[tuple[str, str]]:
    """(METHOD, path) for every /v1 route, variables written `{name}` (their regex dropped)."""
    out: set[tuple[str, str]] = set()
    tables = [*app.router._exact.items(), *((p, t) for p, _, t in app.router._patterns)]
    for path, table in tables:
        if not path.startswith("/v1/"):
            continue
        norm = _unnamed(path)
        out.update((m, norm) for m in table if m != "HEAD")
    return out


def spec_routes() -> set[tuple[str, str]]:
    doc = yaml.safe_load(SPEC.read_text())
    return {(m.upper(), _unnamed(path)) for path, item in doc["paths"].items() for m in item if m in METHODS}


async def _agent_routes(tmp: Path, acl: bool) -> set[tuple[str, str]]:
    ip = f"{new_block()}.1"
    cfg = from_flat({"node_name": "openapi", "server": True, "bootstrap_expect": 1, "bind_addr": ip,
                     "client_addr": ip, "data_dir": str(tmp), "ports.dns": -1, "acl.enabled": acl})
    agent = Agent(cfg)
    try:
        await agent.start()
        assert agent.http_app is not None
        return router_routes(agent.http_app)
    finally:
        await agent.shutdown()


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    off = asyncio.run(_agent_routes(tmp_path_factory.mktemp("openapi"), False))
    on = asyncio.run(_agent_routes(tmp_path_factory.mktemp("openapi-acl"), True))
    assert on - off, "ACLs on registers no route of its own: the ACL-enabled app was not read"
    return off | on


def test_every_registered_route_is_described(routes: set[tuple[str, str]]) -> None:
    missing = sorted(routes - spec_routes(), key=lambda r: (r[1], r[0]))
    assert not missing, "routes missing from docs/openapi.yaml:\n" + "\n".join(f"  {m} {p}" for m, p in missing)


def test_nothing_described_that_the_agent_does_not_serve(routes: set[tuple[str, str]]) -> None:
    extra = sorted(spec_routes() - routes, key=lambda r: (r[1], r[0]))
    assert not extra, "docs/openapi.yaml describes routes that do not exist:\n" + "\n".join(
        f"  {m} {p}" for m, p in extra)


def test_the_description_is_valid_openapi_with_unique_operation_ids() -> None:
    import schemathesis

    schema = schemathesis.openapi.from_path(SPEC)
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) == sum(1 for p in yaml.safe_load(SPEC.read_text())["paths"].values() for m in p if m in METHODS)
    ids = [op.definition.raw.get("operationId") for op in ops]
    assert None not in ids and len(set(ids)) == len(ids)
    for op in ops:  # every operation documents its success and its 400
        codes = set(op.definition.raw["responses"])
        assert {"200", "400"} <= codes, (op.method, op.path, codes)
