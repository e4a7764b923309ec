"""The pieces of a TLS reload, in process (agent/tlsreload.py): a switchable server context serves new
connections with the context it points to now; RpcTLS.update replaces contexts and rules in place (None: TLS off);
prepare() reads the files first (a bad key raises, nothing switched) and says what takes a restart."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509

from pyconsul.agent import tlsreload, tlsutil
from pyconsul.agent.cli.tls import CertSpec, create_ca, create_cert
from pyconsul.agent.raft.rpctls import RpcTLS
from pyconsul.agent.tlsutil import TLSConfig, TLSConfigError


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reloadpki")
    ca, ca_key = create_ca("consul", 30)
    files: dict[str, bytes] = {"ca": ca}
    for name in ("one", "two"):
        files[name], files[f"{name}_key"] = create_cert(CertSpec("server", "dc1", "consul", 30), ca, ca_key)
    out = {}
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
        out[name] = d / f"{name}.pem"
    return out


def cfg(pki: dict[str, Path], cert: str, **flags: Any) -> TLSConfig:
    return TLSConfig(ca_file=str(pki["ca"]), cert_file=str(pki[cert]), key_file=str(pki[f"{cert}_key"]), **flags)


def serial(pem: Path) -> int:
    return x509.load_pem_x509_certificate(pem.read_bytes()).serial_number


async def served_serial(port: int, ca: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    _, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = w.get_extra_info("ssl_object").getpeercert(binary_form=True)
    w.close()
    return x509.load_der_x509_certificate(der).serial_number


def test_switchable_context_serves_new_connections_with_the_current_one(pki: dict[str, Path]) -> None:
    async def main() -> None:
        holder = tlsutil.switchable(cfg(pki, "one").https_server_context())
        assert isinstance(holder, ssl.SSLContext)

        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(await r.readline())
            await w.drain()

        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=holder)
        port = server.sockets[0].getsockname()[1]
        try:
            assert await served_serial(port, pki["ca"]) == serial(pki["one"])
            tlsutil.switch(holder, cfg(pki, "two").https_server_context())
            assert await served_serial(port, pki["ca"]) == serial(pki["two"])
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_rpctls_update_in_place(pki: dict[str, Path]) -> None:
    cur = RpcTLS.from_config(cfg(pki, "one"), "dc1", "consul", 3.0)
    assert cur is not None and not cur.require_tls and cur.client_ctx is None
    new = RpcTLS.from_config(cfg(pki, "two", verify_incoming=True, verify_server_hostname=True), "dc1", "consul")
    assert new is not None
    cur.update(new)
    assert (cur.server_ctx, cur.client_ctx) == (new.server_ctx, new.client_ctx)
    assert cur.require_tls and cur.verify_name and cur.handshake_timeout == 3.0  # the timeout is kept
    cur.update(None)
    assert cur.server_ctx is None and cur.client_ctx is None and not cur.require_tls and not cur.verify_name
    assert not cur.listens()


def test_prepare_reads_first_and_reports_what_takes_a_restart(pki: dict[str, Path], tmp_path: Path) -> None:
    kw: dict[str, Any] = {"datacenter": "dc1", "domain": "consul", "handshake_timeout": 5.0}
    # a key that does not match its certificate: raised by prepare(), before anything is switched
    bad = TLSConfig(ca_file=str(pki["ca"]), cert_file=str(pki["two"]), key_file=str(pki["one_key"]))
    holder = tlsutil.switchable(cfg(pki, "one").https_server_context())
    before = holder.current  # type: ignore[attr-defined]
    with pytest.raises(TLSConfigError, match="cert_file/key_file"):
        tlsreload.prepare(bad, https=holder, transport=None, serving=False, **kw)
    assert holder.current is before  # type: ignore[attr-defined]
    # a server whose port-8300 listener started in plaintext: its RPC TLS is left as it was, with a warning
    plain: Any = SimpleNamespace(tls=None, _mux=None)
    apply = tlsreload.prepare(cfg(pki, "two"), https=holder, transport=plain, serving=True, **kw)
    warnings = apply()
    assert plain.tls is None and any("takes a restart" in w for w in warnings)
    assert holder.current is not before  # type: ignore[attr-defined]  # HTTPS switched
    # a client agent (dialling only) takes verify_outgoing on reload
    client: Any = SimpleNamespace(tls=None, _mux=None)
    assert tlsreload.prepare(TLSConfig(ca_file=str(pki["ca"]), verify_outgoing=True), https=None, transport=client,
                             serving=False, **kw)() == []
    assert client.tls is not None and client.tls.client_ctx is not None
    # HTTPS without a certificate any more keeps its certificate, and says so
    current = holder.current  # type: ignore[attr-defined]
    apply = tlsreload.prepare(TLSConfig(ca_file=str(pki["ca"])), https=holder, transport=None, serving=False, **kw)
    assert any("keeps its certificate" in w for w in apply()) and holder.current is current  # type: ignore[attr-defined]
