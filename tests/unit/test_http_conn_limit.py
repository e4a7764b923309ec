"""limits.http_max_conns_per_client (agent/httpd/h1.py ConnLimit): config key, README row, and the cap over real
loopback sockets (in process: one connection beyond the cap from one IP is closed at once, other IPs unaffected)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pyconsul.agent.config import AgentConfig, ConfigError, from_flat, parse_config_object
from pyconsul.agent.config_schema import LATER_KEYS
from pyconsul.agent.httpd import h1, web


def _rows() -> dict[str, str]:
    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    return {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| What")}


def test_readme_rows_match_the_code() -> None:
    rows = _rows()
    assert rows["HTTP(S) connections per client IP (HTTP and HTTPS counted together)"] == (
        f"{AgentConfig().http_max_conns_per_client} (`limits.http_max_conns_per_client`, 0 = none)")
    assert rows["HTTP connection that sends nothing after accept"] == f"{h1.HEAD_TIMEOUT:g} s"


def test_config_key() -> None:
    assert AgentConfig().http_max_conns_per_client == 200  # Consul 1.7.1's default
    assert "limits.http_max_conns_per_client" not in LATER_KEYS
    cfg = from_flat(parse_config_object({"limits": {"http_max_conns_per_client": 0}}))
    assert cfg.http_max_conns_per_client == 0
    with pytest.raises(ConfigError, match=r"limits\.http_max_conns_per_client"):
        from_flat(parse_config_object({"limits": {"http_max_conns_per_client": -1}, "data_dir": "/x"})).validate()
    with pytest.raises(ConfigError):
        parse_config_object({"limits": {"http_max_conns_per_client": "many"}})


def test_conn_limit_counts() -> None:
    lim = h1.ConnLimit(2)
    assert lim.acquire("a") and lim.acquire("a") and not lim.acquire("a") and lim.acquire("b")
    assert lim.refused == 1 and lim.open == 3
    lim.release("a")
    assert lim.acquire("a") and lim.per_ip == {"a": 2, "b": 1}
    for ip in ("a", "a", "b"):
        lim.release(ip)
    assert lim.per_ip == {} and lim.stats() == {"conns_open": "0", "conns_refused": "1", "max_conns_per_client": "2"}
    unlimited = h1.ConnLimit(0)
    assert all(unlimited.acquire("a") for _ in range(1000)) and unlimited.refused == 0
    with pytest.raises(ValueError):
        h1.ConnLimit(-1)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    return await asyncio.wait_for(reader.readuntil(b"ok"), 5)


def test_one_connection_beyond_the_cap_is_closed_at_accept() -> None:
    async def main() -> None:
        app = web.Application()

        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app.router.add_get("/x", ok)
        limit = h1.ConnLimit(3)
        server = await h1.serve(app, "127.0.0.1", 0, limit=limit)
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(3):
                conns.append(await asyncio.open_connection("127.0.0.1", server.port))
            for r, w in conns:
                assert (await _answer(r, w)).endswith(b"ok")
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            assert await asyncio.wait_for(r.read(), 5) == b"", "closed at once, nothing written"
            w.close()
            assert limit.refused == 1 and limit.per_ip == {"127.0.0.1": 3}
            # another client address is not affected
            r2, w2 = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.2", 0))
            assert (await _answer(r2, w2)).endswith(b"ok")
            conns.append((r2, w2))
            # a freed place is taken again
            conns[0][1].close()
            deadline = asyncio.get_running_loop().time() + 5
            while limit.per_ip.get("127.0.0.1") != 2:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            r3, w3 = await asyncio.open_connection("127.0.0.1", server.port)
            assert (await _answer(r3, w3)).endswith(b"ok")
            conns.append((r3, w3))
            assert limit.stats()["conns_open"] == "4"
        finally:
            for _, w in conns:
                w.close()
            await server.close()

    asyncio.run(main())


def test_https_handshake_timeout_key() -> None:
    assert AgentConfig().https_handshake_timeout == h1.TLS_HANDSHAKE_TIMEOUT == 5.0  # Consul 1.7.1's default
    assert "limits.https_handshake_timeout" not in LATER_KEYS
    cfg = from_flat(parse_config_object({"limits": {"https_handshake_timeout": "250ms"}}))
    assert cfg.https_handshake_timeout == 0.25
    with pytest.raises(ConfigError, match=r"limits\.https_handshake_timeout"):
        from_flat(parse_config_object({"limits": {"https_handshake_timeout": "0s"}, "data_dir": "/x"})).validate()
    assert _rows()["HTTPS (`ports.https`): TLS handshake, from accept"] == f"{h1.TLS_HANDSHAKE_TIMEOUT:g} s"
