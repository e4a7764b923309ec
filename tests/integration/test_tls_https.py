"""HTTPS (ports.https): the HTTP API over TLS at the client address, next to plain HTTP; with verify_incoming
a client without a certificate signed by the CA is refused at the handshake; py-consul with scheme=https."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import consul
import pytest

from pyconsul.agent.cli.tls import CertSpec, create_ca, create_cert
from tests.harness import ROOT, Cluster, new_block, wait_for

pytestmark = pytest.mark.integration


def _pki(d: Path, ip: str) -> dict[str, str]:
    """A CA, a server cert for `ip`, a client cert of the same CA, and a client cert of another CA."""
    ca, ca_key = create_ca("consul", 30)
    other_ca, other_key = create_ca("consul", 30)
    files: dict[str, bytes] = {"ca": ca}
    files["server"], files["server_key"] = create_cert(CertSpec("server", "dc1", "consul", 30, [], [ip]), ca, ca_key)
    files["cli"], files["cli_key"] = create_cert(CertSpec("cli", "dc1", "consul", 30), ca, ca_key)
    files["rogue"], files["rogue_key"] = create_cert(CertSpec("cli", "dc1", "consul", 30), other_ca, other_key)
    out = {}
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
        out[name] = str(d / f"{name}.pem")
    return out


def _get(url: str, ctx: ssl.SSLContext | None = None) -> Any:
    with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
        return json.loads(resp.read())


def _client_ctx(ca: str, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def test_https_beside_http_and_verify_incoming(cluster: Cluster, tmp_path: Path) -> None:
    ip = new_block()
    pki = _pki(tmp_path, f"{ip}.1")
    conf = tmp_path / "tls.json"
    conf.write_text(json.dumps({"ports": {"https": 8501}, "ca_file": pki["ca"], "cert_file": pki["server"],
                                "key_file": pki["server_key"], "verify_incoming_https": True}))
    p = cluster.agent("tls1", f"{ip}.1", "-dev", f"-config-file={conf}")
    wait_for(lambda: p.api("/v1/status/leader") or None, 20, "a leader")
    # plain HTTP still answers; the TLS state is in /v1/agent/self
    dbg = p.api("/v1/agent/self")["DebugConfig"]
    assert dbg["HTTPSPort"] == 8501 and dbg["HTTPPort"] == 8500
    base = f"https://{ip}.1:8501"
    # a client cert of our CA: the same API over TLS, checked against the CA and the IP SAN
    ok = _client_ctx(pki["ca"], (pki["cli"], pki["cli_key"]))
    assert _get(f"{base}/v1/status/leader", ok) == f"{ip}.1:8300"
    req = urllib.request.Request(f"{base}/v1/kv/tls/x", data=b"secret", method="PUT")
    with urllib.request.urlopen(req, timeout=5, context=ok) as resp:
        assert resp.read() == b"true"
    # no client cert, or one of another CA: refused at the handshake, nothing answered
    for ctx in (_client_ctx(pki["ca"]), _client_ctx(pki["ca"], (pki["rogue"], pki["rogue_key"]))):
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
            _get(f"{base}/v1/status/leader", ctx)
    # a client that does not trust our CA refuses us
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        _get(f"{base}/v1/status/leader", ssl.create_default_context())
    # plain HTTP on the HTTPS port gets no answer
    with pytest.raises((urllib.error.URLError, ConnectionResetError, OSError)):
        _get(f"http://{ip}.1:8501/v1/status/leader")
    # py-consul, unchanged, over HTTPS with verify=<CA file> and a client cert
    c = consul.Consul(host=f"{ip}.1", port=8501, scheme="https", verify=pki["ca"], cert=(pki["cli"], pki["cli_key"]))
    _, item = c.kv.get("tls/x")
    assert item is not None and item["Value"] == b"secret"
    assert c.kv.put("tls/y", "via-py-consul") is True
    _, item = consul.Consul(host=f"{ip}.1", port=8500).kv.get("tls/y")
    assert item is not None and item["Value"] == b"via-py-consul"
    # the CLI with Consul's variables: an https:// address, the CA and a client certificate
    env = {**os.environ, "CONSUL_HTTP_ADDR": f"https://{ip}.1:8501", "CONSUL_CACERT": pki["ca"],
           "CONSUL_CLIENT_CERT": pki["cli"], "CONSUL_CLIENT_KEY": pki["cli_key"]}
    cli = [sys.executable, "-m", "pyconsul.agent", "kv", "get", "tls/y"]
    cp = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert (cp.returncode, cp.stdout) == (0, "via-py-consul\n"), cp.stderr
    env["CONSUL_HTTP_ADDR"] = f"{ip}.1:8501"
    env["CONSUL_HTTP_SSL"] = "true"
    del env["CONSUL_CLIENT_CERT"], env["CONSUL_CLIENT_KEY"]
    cp = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert cp.returncode == 1 and f'Get "https://{ip}.1:8501/v1/kv/tls/y' in cp.stderr  # no client cert: refused
    # the agent process loaded ssl because TLS is configured (and only then: test_agent_api)
    with open(f"/proc/{p.pid}/maps") as f:
        assert "_ssl." in f.read()


def test_https_without_verify_incoming_and_http_off(cluster: Cluster, tmp_path: Path) -> None:
    ip = new_block()
    pki = _pki(tmp_path, f"{ip}.1")
    conf = tmp_path / "tls.json"
    conf.write_text(json.dumps({"ports": {"https": 8501, "http": -1}, "ca_file": pki["ca"],
                                "cert_file": pki["server"], "key_file": pki["server_key"],
                                "tls_min_version": "tls13"}))
    p = cluster.agent("tls2", f"{ip}.1", "-dev", f"-config-file={conf}", wait=False)
    ctx = _client_ctx(pki["ca"])  # no client cert: fine without verify_incoming
    base = f"https://{ip}.1:8501"
    wait_for(lambda: _get(f"{base}/v1/status/leader", ctx) or None if p.running() else pytest.fail(p.log()),
             20, "HTTPS answers")
    assert _get(f"{base}/v1/agent/self", ctx)["DebugConfig"]["HTTPPort"] == -1
    with pytest.raises(OSError):  # ports.http = -1: no plain listener
        _get(f"http://{ip}.1:8500/v1/status/leader")
    old = ssl.create_default_context(cafile=pki["ca"])
    old.maximum_version = ssl.TLSVersion.TLSv1_2  # below tls_min_version
    with pytest.raises((ssl.SSLError, urllib.error.URLError)):
        _get(f"{base}/v1/status/leader", old)
    assert "Started HTTPS server" in p.log()
