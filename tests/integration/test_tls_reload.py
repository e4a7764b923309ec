"""TLS files re-read on reload (agent/tlsreload.py; Consul 1.7 reloads its TLS configuration): a certificate made
by `pyconsul tls ca create` / `tls cert create` replaces the files, `PUT /v1/agent/reload` (SIGHUP, `pyconsul
reload`), and new connections -- HTTPS and server RPC (RPC_TLS byte) -- see the new certificate's serial while an
open HTTPS connection goes on; a key that does not load fails the reload and changes nothing; a client agent's
dialling side takes a new CA (verify_outgoing) on reload."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from pyconsul.agent.cli.tls import CertSpec, create_ca, create_cert
from pyconsul.agent.raft.rpctls import RPC_TLS
from tests.harness import ROOT, AgentProc, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration


def tls_cli(cwd: Path, *args: str) -> None:
    cp = subprocess.run([sys.executable, "-m", "pyconsul.agent", "tls", *args], cwd=cwd, capture_output=True,
                        text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert cp.returncode == 0, cp.stderr


def serial_of(pem: Path) -> int:
    return x509.load_pem_x509_certificate(pem.read_bytes()).serial_number


def client_ctx(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # the serial is what is looked at; the chain is still verified
    return ctx


def https_serial(ip: str, port: int, ca: Path) -> int:
    with socket.create_connection((ip, port), timeout=10) as raw, \
            client_ctx(ca).wrap_socket(raw, server_hostname="server.dc1.consul") as s:
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def rpc_serial(ip: str, ca: Path) -> int:
    """The certificate a new TLS server-RPC connection (first byte RPC_TLS, port 8300) is served with."""
    with socket.create_connection((ip, 8300), timeout=10) as raw:
        raw.sendall(bytes([RPC_TLS]))
        with client_ctx(ca).wrap_socket(raw, server_hostname="server.dc1.consul") as s:
            der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def reload(p: AgentProc) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://{p.http}/v1/agent/reload", method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_new_certificate_on_reload(cluster: Cluster, tmp_path: Path) -> None:
    ip = new_block()
    host = f"{ip}.1"
    pki = tmp_path / "pki"
    pki.mkdir()
    tls_cli(pki, "ca", "create")
    ca = pki / "consul-agent-ca.pem"
    tls_cli(pki, "cert", "create", "-server", f"-additional-ipaddress={host}")
    cert, key = tmp_path / "server.pem", tmp_path / "server-key.pem"
    shutil.copy(pki / "dc1-server-consul-0.pem", cert)
    shutil.copy(pki / "dc1-server-consul-0-key.pem", key)
    first = serial_of(cert)
    conf = tmp_path / "tls.json"
    conf.write_text(json.dumps({"ports": {"https": 8501}, "ca_file": str(ca), "cert_file": str(cert),
                                "key_file": str(key), "verify_outgoing": True}))
    p = cluster.agent("tls1", host, "-dev", f"-config-file={conf}")
    wait_for(lambda: p.api("/v1/status/leader") or None, 20, "a leader")
    assert https_serial(host, 8501, ca) == first
    assert rpc_serial(host, ca) == first
    # an HTTPS connection opened before the reload
    kept = http.client.HTTPSConnection(host, 8501, context=client_ctx(ca), timeout=10)
    kept.request("GET", "/v1/status/leader")
    assert kept.getresponse().read() == f'"{host}:8300"'.encode()

    # a new certificate from the same CA replaces the files; a reload is enough
    tls_cli(pki, "cert", "create", "-server", f"-additional-ipaddress={host}")
    shutil.copy(pki / "dc1-server-consul-1.pem", cert)
    shutil.copy(pki / "dc1-server-consul-1-key.pem", key)
    second = serial_of(cert)
    assert second != first
    assert reload(p) == (200, b"")
    assert https_serial(host, 8501, ca) == second
    assert rpc_serial(host, ca) == second
    kept.request("GET", "/v1/status/leader")  # the open connection goes on with its session
    assert kept.getresponse().read() == f'"{host}:8300"'.encode()
    kept.close()
    assert "Reloaded TLS settings" in p.log()

    # a key that does not load (another certificate's key): the reload fails with the error, nothing changes
    shutil.copy(pki / "dc1-server-consul-0-key.pem", key)
    status, body = reload(p)
    assert status == 500 and b"Failed to reload configs: cert_file/key_file" in body, body
    assert https_serial(host, 8501, ca) == second
    assert rpc_serial(host, ca) == second
    assert p.api("/v1/status/leader") == f"{host}:8300"


def test_client_agent_takes_a_new_ca_for_outgoing_rpc(cluster: Cluster, tmp_path: Path) -> None:
    ip = new_block()
    ca_a, _ = create_ca("consul", 30)
    ca_b, ca_b_key = create_ca("consul", 30)
    srv_cert, srv_key = create_cert(CertSpec("server", "dc1", "consul", 30), ca_b, ca_b_key)
    files = {"ca_a.pem": ca_a, "ca_b.pem": ca_b, "srv.pem": srv_cert, "srv-key.pem": srv_key}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    s_conf, c_conf, c_ca = tmp_path / "s.json", tmp_path / "c.json", tmp_path / "client-ca.pem"
    s_conf.write_text(json.dumps({"ca_file": str(tmp_path / "ca_b.pem"), "cert_file": str(tmp_path / "srv.pem"),
                                  "key_file": str(tmp_path / "srv-key.pem"), "verify_incoming_rpc": False}))
    c_ca.write_bytes(ca_a)  # the client trusts another CA than the server's
    c_conf.write_text(json.dumps({"ca_file": str(c_ca), "verify_outgoing": True, "verify_server_hostname": True}))
    s1 = cluster.agent("s1", f"{ip}.1", "-server", "-bootstrap-expect=1", f"-config-file={s_conf}")
    wait_for(lambda: s1.api("/v1/status/leader") or None, 20, "a leader")
    c1 = cluster.agent("c1", f"{ip}.2", f"-join={ip}.1", f"-config-file={c_conf}")

    def put() -> int:
        req = urllib.request.Request(f"http://{c1.http}/v1/kv/tls/x", data=b"1", method="PUT")
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert put() == 500, "the server's certificate is not of the client's CA"
    c_ca.write_bytes(ca_b)
    assert reload(c1) == (200, b"")
    wait_for(lambda: put() == 200 or None, 20, "a write through the client agent over TLS")
    assert s1.api("/v1/kv/tls/x?raw") == 1
