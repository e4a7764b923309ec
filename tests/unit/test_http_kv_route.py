"""/v1/kv/ with no key, as Consul's kvs_endpoint.go answers it: a plain GET, a PUT and a DELETE (with ?cas
too) without ?recurse are 400 "Missing key name" (nothing is read or proposed);
?keys and ?recurse list the whole store."""

from __future__ import annotations

import asyncio
import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pyconsul.agent.http import kv
from pyconsul.agent.http.server import errors
from pyconsul.agent.httpd import h1, web


class _Meta:
    index, known_leader, last_contact_ms = 7, True, 0


class _Backend:
    def __init__(self) -> None:
        self.reads: list[tuple[str, dict[str, Any]]] = []
        self.writes: list[bytes] = []

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]:
        self.reads.append((name, args))
        return (["a", "b"] if name == "kv.keys" else []), _Meta()

    async def write(self, data: bytes) -> Any:
        self.writes.append(data)
        return True

    async def status(self, what: str, args: dict[str, Any] | None = None) -> Any:
        raise AssertionError


def _call(port: int, method: str, path: str) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=b"v" if method == "PUT" else None)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


@pytest.mark.parametrize(("method", "path", "status", "body", "reads"), [
    ("GET", "/v1/kv/", 400, b"Missing key name", []),
    ("GET", "/v1/kv/?raw", 400, b"Missing key name", []),
    ("PUT", "/v1/kv/", 400, b"Missing key name", []),
    ("DELETE", "/v1/kv/", 400, b"Missing key name", []),
    ("DELETE", "/v1/kv/?cas=3", 400, b"Missing key name", []),
    ("GET", "/v1/kv/?keys", 200, None, ["kv.keys"]),
    ("GET", "/v1/kv/?recurse", 404, None, ["kv.list"]),
])
def test_no_key(method: str, path: str, status: int, body: bytes | None, reads: list[str]) -> None:
    backend = _Backend()

    async def main() -> tuple[int, bytes]:
        app = web.Application(middlewares=[errors])
        kv.register(app, backend)
        server = await h1.serve(app, "127.0.0.1", 0)
        try:
            with ThreadPoolExecutor(1) as pool:
                fut = asyncio.wrap_future(pool.submit(_call, server.port, method, path))
                return await asyncio.wait_for(fut, 10)
        finally:
            await server.close()

    got_status, got_body = asyncio.run(main())
    assert got_status == status, (got_status, got_body)
    if body is not None:
        assert got_body.strip() == body
    elif status == 200:
        assert json.loads(got_body) == ["a", "b"]
    assert [name for name, _ in backend.reads] == reads
    assert backend.writes == []
