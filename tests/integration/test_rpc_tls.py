"""TLS on server RPC (port 8300, agent/raft/rpctls.py), in process: the RPC_TLS first byte, verify_incoming
(plaintext and certificate-less peers refused), verify_outgoing, verify_server_hostname (a client certificate
does not receive Raft traffic), and the connection limits and timeouts applying before the handshake."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent import errors
from pyconsul.agent.cli.tls import CertSpec, create_ca, create_cert
from pyconsul.agent.raft import wire
from pyconsul.agent.raft.messages import Message, TimeoutNow
from pyconsul.agent.raft.rpctls import RPC_TLS, RpcTLS
from pyconsul.agent.raft.transport import RpcLimits, Transport
from pyconsul.agent.tlsutil import TLSConfig
from tests.harness import AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("rpcpki")
    ca, ca_key = create_ca("consul", 30)
    rogue_ca, rogue_key = create_ca("consul", 30)
    files: dict[str, bytes] = {"ca": ca}
    for name, kind, (c, k) in (("server", "server", (ca, ca_key)), ("client", "client", (ca, ca_key)),
                               ("rogue", "server", (rogue_ca, rogue_key))):
        files[name], files[f"{name}_key"] = create_cert(CertSpec(kind, "dc1", "consul", 30), c, k)
    out = {}
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
        out[name] = str(d / f"{name}.pem")
    return out


def tls(pki: dict[str, str], cert: str | None = "server", **flags: bool) -> RpcTLS:
    cfg = TLSConfig(ca_file=pki["ca"], cert_file=pki[cert] if cert else "", key_file=pki[f"{cert}_key"] if cert else "",
                    **flags)  # type: ignore[arg-type]
    rt = RpcTLS.from_config(cfg, "dc1", "consul")
    assert rt is not None
    return rt


STRICT = {"verify_incoming": True, "verify_outgoing": True, "verify_server_hostname": True}


async def _echo(method: str, args: Any) -> Any:
    return args


@contextlib.asynccontextmanager
async def transport(ip: str, n: int, rt: RpcTLS | None, got: list[Message] | None = None,
                    limits: RpcLimits | None = None, port: int = 8300) -> AsyncIterator[Transport]:
    t = Transport(f"srv{n}", "dc1", (f"{ip}.{n}", port), (got if got is not None else []).append, _echo,
                  limits=limits, tls=rt)
    await t.start()
    try:
        yield t
    finally:
        await t.stop()


async def until(cond: Callable[[], bool], seconds: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def closed_within(r: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await r.read(65536):
                pass
            return True
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def run(coro: Callable[[str], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(new_block()), 60))


def test_servers_talk_raft_and_requests_over_tls(pki: dict[str, str]) -> None:
    async def scenario(ip: str) -> None:
        got: list[Message] = []
        async with transport(ip, 1, tls(pki, **STRICT), got) as a, \
                transport(ip, 2, tls(pki, **STRICT), port=0) as b:
            assert await b.request(f"{ip}.1:8300", "echo", {"x": 1}) == {"x": 1}
            b.send(f"{ip}.1:8300", TimeoutNow(3, "srv2", "srv1"))
            await until(lambda: len(got) == 1, 5, "the Raft message over TLS")
            assert got[0] == TimeoutNow(3, "srv2", "srv1")
            # the Raft connection is TLS: the writer thread's raw-socket shortcut is off for it
            assert b.send_threadsafe(f"{ip}.1:8300", wire.frame(wire.encode_message(TimeoutNow(4, "srv2", "srv1")))) \
                is False
            assert a.stats.tls_refused == 0
    run(scenario)


def test_verify_incoming_refuses_plaintext_and_certless_peers(pki: dict[str, str]) -> None:
    async def scenario(ip: str) -> None:
        got: list[Message] = []
        async with transport(ip, 1, tls(pki, **STRICT), got) as a:
            # plaintext HELLO and a Raft message: closed, nothing delivered
            r, w = await asyncio.open_connection(f"{ip}.1", 8300, local_addr=(f"{ip}.2", 0))
            w.write(wire.frame([wire.Kind.HELLO, "plain", "dc1"]))
            w.write(wire.frame(wire.encode_message(TimeoutNow(1, "plain", "srv1"))))
            assert await closed_within(r, 5)
            w.close()
            # a plaintext transport (no TLS settings) cannot forward a request either
            async with transport(ip, 3, None, port=0) as plain:
                with pytest.raises((errors.Unavailable, errors.DialFailed)):
                    await plain.request(f"{ip}.1:8300", "echo", 1, timeout=3)
            # TLS without a client certificate, and with a certificate of another CA: the handshake fails
            for name, rt in (("no cert", tls(pki, cert=None, verify_outgoing=True)),
                             ("rogue CA", tls(pki, cert="rogue", verify_outgoing=True))):
                async with transport(ip, 4, rt, port=0) as c:
                    with pytest.raises((errors.Unavailable, errors.DialFailed)):
                        await c.request(f"{ip}.1:8300", "echo", 1, timeout=3)
                    c.send(f"{ip}.1:8300", TimeoutNow(1, name, "srv1"))
            await until(lambda: a.stats.tls_refused >= 4, 5, "four refusals counted")
            assert got == []
    run(scenario)


def test_verify_server_hostname_keeps_a_client_cert_out_of_raft(pki: dict[str, str]) -> None:
    """A "server" holding a client certificate (client.dc1.consul, our CA) accepts connections, but a server
    with verify_server_hostname never hands it Raft traffic nor requests; without the name check it would."""
    async def scenario(ip: str) -> None:
        got: list[Message] = []
        async with transport(ip, 1, tls(pki, cert="client", verify_incoming=True), got) as impostor:
            async with transport(ip, 2, tls(pki, **STRICT), port=0) as leader:
                leader.send(f"{ip}.1:8300", TimeoutNow(7, "srv2", "srv1"))
                with pytest.raises(errors.DialFailed, match=r"certificate is not for server\.<dc>\.consul"):
                    await leader.request(f"{ip}.1:8300", "echo", 1, timeout=3)
                # a negative check over a window: the Raft sender retries for a second, nothing may arrive
                await asyncio.sleep(1.0)
                assert got == []
            relaxed = tls(pki, verify_incoming=True, verify_outgoing=True)  # chain checked, name not
            async with transport(ip, 3, relaxed, port=0) as other:
                assert await other.request(f"{ip}.1:8300", "echo", 2) == 2
                other.send(f"{ip}.1:8300", TimeoutNow(8, "srv3", "srv1"))
                await until(lambda: len(got) == 1, 5, "the message without the name check")
            assert impostor.stats.tls_refused == 0
    run(scenario)


def test_connection_limits_and_timeouts_apply_before_the_handshake(pki: dict[str, str]) -> None:
    async def scenario(ip: str) -> None:
        rt = tls(pki, **STRICT)
        rt.handshake_timeout = 0.5
        limits = RpcLimits(max_conns_per_client=2, hello_timeout=0.5)
        async with transport(ip, 1, rt, limits=limits) as a:
            # two connections from .2 that send the TLS byte and then stall the handshake (slowloris)
            stalled = []
            for _ in range(2):
                r, w = await asyncio.open_connection(f"{ip}.1", 8300, local_addr=(f"{ip}.2", 0))
                w.write(bytes([RPC_TLS]))
                stalled.append((r, w))
            await until(lambda: a._mux is not None and a._mux.pending.get(f"{ip}.2") == 2, 5,
                        "both stalled handshakes to be counted")
            # a third from .2 is over limits.rpc_max_conns_per_client: closed at once, before any handshake
            r3, w3 = await asyncio.open_connection(f"{ip}.1", 8300, local_addr=(f"{ip}.2", 0))
            w3.write(bytes([RPC_TLS]))
            assert await closed_within(r3, 0.4)
            assert a.stats.conns_refused == 1
            # another source is not affected
            r4, w4 = await asyncio.open_connection(f"{ip}.1", 8300, local_addr=(f"{ip}.3", 0))
            assert not await closed_within(r4, 0.2)
            # the stalled handshakes are dropped after handshake_timeout; the silent one after hello_timeout
            for r, _ in stalled:
                assert await closed_within(r, 5)
            assert await closed_within(r4, 5)
            await until(lambda: a.stats.tls_refused >= 2 and a.stats.hello_timeouts >= 1, 5, "the counters")
            for _, w in [*stalled, (r3, w3), (r4, w4)]:
                w.close()
            # and .2 may connect again: the slots were released
            async with transport(ip, 2, tls(pki, **STRICT), port=0) as b:
                assert await b.request(f"{ip}.1:8300", "echo", "again") == "again"
    run(scenario)


# ---------------------------------------------------------------- real agents


def _agent_conf(tmp: Path, name: str, pki: dict[str, str], cert: str) -> str:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({"performance": {"raft_multiplier": 1}, "ca_file": pki["ca"],
                                "cert_file": pki[cert], "key_file": pki[f"{cert}_key"], **STRICT}))
    return f"-config-file={path}"


def _get(p: AgentProc, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{p.http}{path}", timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _put(p: AgentProc, path: str, body: bytes) -> bool:
    req = urllib.request.Request(f"http://{p.http}{path}", data=body, method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read() == b"true"
    except urllib.error.HTTPError:
        return False


def test_agents_with_tls_and_a_server_with_a_client_cert_cannot_join(cluster: Cluster, tmp_path: Path,
                                                                    pki: dict[str, str]) -> None:
    ip = new_block()
    s1, s2 = (cluster.agent(f"s{i}", f"{ip}.{i}", "-server", "-bootstrap-expect=2",
                            _agent_conf(tmp_path, f"s{i}", pki, "server")) for i in (1, 2))
    s2.cli("join", f"{ip}.1")
    wait_for(lambda: _get(s1, "/v1/status/leader")[1] == _get(s2, "/v1/status/leader")[1] != b'""' or None, 30,
             "a leader over TLS")
    # a client agent with a client certificate forwards to the servers over TLS
    c1 = cluster.agent("c1", f"{ip}.9", f"-join={ip}.1", _agent_conf(tmp_path, "c1", pki, "client"))
    wait_for(lambda: _put(c1, "/v1/kv/tls/a", b"1") or None, 20, "a write through the client agent")
    # a server holding a client certificate joins the gossip pool, but the servers never send it Raft traffic
    bad = cluster.agent("s3", f"{ip}.3", "-server", f"-join={ip}.1", _agent_conf(tmp_path, "s3", pki, "client"))
    wait_for(lambda: s1.members().get("s3", {}).get("Status") == 1 or None, 20, "s3 in the LAN pool")
    assert _put(s1, "/v1/kv/tls/b", b"2")
    wait_for(lambda: _get(s2, "/v1/kv/tls/b?stale&raw") == (200, b"2") or None, 10, "s2 has the write")
    def raft_servers() -> set[str]:
        return {s["Node"] for s in json.loads(_get(s1, "/v1/operator/raft/configuration")[1])["Servers"]}

    wait_for(lambda: "s3" in raft_servers() or None, 20, "the leader adds s3 to the Raft configuration")
    wait_for(lambda: "the certificate is not for server.dc1.consul" in s1.log() + s2.log() or None, 20,
             "the servers refuse s3's certificate")
    assert _get(bad, "/v1/status/leader") == (200, b'""')
    assert _get(bad, "/v1/kv/tls/a?stale")[0] != 200  # it never received the log
    assert _get(s2, "/v1/kv/tls/a?stale&raw") == (200, b"1")
    # a server with a proper server certificate joins after it and receives the log
    good = cluster.agent("s4", f"{ip}.4", "-server", f"-join={ip}.1", _agent_conf(tmp_path, "s4", pki, "server"))
    wait_for(lambda: _get(good, "/v1/kv/tls/b?stale&raw") == (200, b"2") or None, 30, "s4 receives the log")
    assert _get(good, "/v1/status/leader") == _get(s1, "/v1/status/leader")
    assert _get(bad, "/v1/status/leader") == (200, b'""')
