"""agent/tlsutil.py: the TLS keys' checks and the SSLContext options built from them, and `pyconsul tls`
(the files it writes verify with `openssl verify` and carry Consul's names and SANs)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from pyconsul.agent.cli import main as cli_main
from pyconsul.agent.config import ConfigError, build_config
from pyconsul.agent.tlsutil import CIPHER_SUITES, TLSConfig, TLSConfigError, server_name


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and one server, client and cli certificate made by `pyconsul tls` in a fresh directory."""
    d = tmp_path_factory.mktemp("pki")
    import os

    old = os.getcwd()
    os.chdir(d)
    try:
        assert cli_main(["tls", "ca", "create"]) == 0
        assert cli_main(["tls", "cert", "create", "-server", "-dc=dc1"]) == 0
        assert cli_main(["tls", "cert", "create", "-client"]) == 0
        assert cli_main(["tls", "cert", "create", "-cli"]) == 0
        assert cli_main(["tls", "cert", "create", "-server", "-dc=east", "-domain=example",
                         "-additional-dnsname=node1.example", "-additional-ipaddress=10.1.2.3",
                         "-ca=consul-agent-ca.pem", "-key=consul-agent-ca-key.pem"]) == 0
    finally:
        os.chdir(old)
    return d


def _server_cfg(pki: Path, **kw: object) -> TLSConfig:
    return TLSConfig(ca_file=str(pki / "consul-agent-ca.pem"), cert_file=str(pki / "dc1-server-consul-0.pem"),
                     key_file=str(pki / "dc1-server-consul-0-key.pem"), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the CLI's files


def test_cli_files_names_and_modes(pki: Path) -> None:
    names = sorted(p.name for p in pki.iterdir())
    assert names == ["consul-agent-ca-key.pem", "consul-agent-ca.pem", "dc1-cli-consul-0-key.pem",
                     "dc1-cli-consul-0.pem", "dc1-client-consul-0-key.pem", "dc1-client-consul-0.pem",
                     "dc1-server-consul-0-key.pem", "dc1-server-consul-0.pem", "east-server-example-0-key.pem",
                     "east-server-example-0.pem"]
    for p in pki.iterdir():
        assert p.stat().st_mode & 0o777 == (0o600 if p.name.endswith("-key.pem") else 0o644), p.name


def test_cli_certificates_verify_with_openssl(pki: Path) -> None:
    certs = ["dc1-server-consul-0.pem", "dc1-client-consul-0.pem", "dc1-cli-consul-0.pem", "east-server-example-0.pem"]
    cp = subprocess.run(["openssl", "verify", "-CAfile", "consul-agent-ca.pem", *certs], cwd=pki,
                        capture_output=True, text=True, check=False)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.count(": OK") == 4


def _sans(path: Path) -> tuple[str, list[str], list[str], list[str]]:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    usages = [{ExtendedKeyUsageOID.SERVER_AUTH: "server", ExtendedKeyUsageOID.CLIENT_AUTH: "client"}[u] for u in eku]
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return (str(cn), san.get_values_for_type(x509.DNSName),
            [str(ip) for ip in san.get_values_for_type(x509.IPAddress)], usages)


def test_cli_certificates_carry_consuls_names(pki: Path) -> None:
    assert _sans(pki / "dc1-server-consul-0.pem") == ("server.dc1.consul", ["server.dc1.consul", "localhost"],
                                                      ["127.0.0.1"], ["server", "client"])
    assert _sans(pki / "dc1-client-consul-0.pem") == ("client.dc1.consul", ["client.dc1.consul", "localhost"],
                                                      ["127.0.0.1"], ["server", "client"])
    assert _sans(pki / "dc1-cli-consul-0.pem") == ("cli.dc1.consul", ["cli.dc1.consul", "localhost"], [],
                                                   ["client"])
    assert _sans(pki / "east-server-example-0.pem") == (
        "server.east.example", ["server.east.example", "localhost", "node1.example"], ["127.0.0.1", "10.1.2.3"],
        ["server", "client"])


def test_cli_never_overwrites_and_numbers_the_next_cert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["tls", "ca", "create", "-domain=lab", "-name-constraint"]) == 0
    ca_before = (tmp_path / "lab-agent-ca.pem").read_bytes()
    assert cli_main(["tls", "ca", "create", "-domain=lab"]) == 1
    assert "lab-agent-ca.pem already exists" in capsys.readouterr().err
    assert (tmp_path / "lab-agent-ca.pem").read_bytes() == ca_before
    assert cli_main(["tls", "cert", "create", "-client", "-domain=lab"]) == 0
    assert cli_main(["tls", "cert", "create", "-client", "-domain=lab"]) == 0
    assert (tmp_path / "dc1-client-lab-1.pem").exists() and (tmp_path / "dc1-client-lab-1-key.pem").exists()
    capsys.readouterr()
    assert cli_main(["tls", "cert", "create", "-domain=lab"]) == 1
    assert "Please provide either -server, -client, or -cli" in capsys.readouterr().err
    assert cli_main(["tls", "cert", "create", "-server", "-client", "-domain=lab"]) == 1
    assert cli_main(["tls", "cert", "create", "-server"]) == 1  # default domain: consul-agent-ca.pem is missing
    assert "ca file missing: consul-agent-ca.pem" in capsys.readouterr().err
    # the name-constrained CA: a cert outside its domain does not verify
    assert cli_main(["tls", "cert", "create", "-server", "-domain=other", "-ca=lab-agent-ca.pem",
                     "-key=lab-agent-ca-key.pem"]) == 0
    ctx = ssl.create_default_context(cafile=str(tmp_path / "lab-agent-ca.pem"))
    assert ctx.cert_store_stats()["x509_ca"] == 1
    if shutil.which("openssl"):
        bad = subprocess.run(["openssl", "verify", "-CAfile", "lab-agent-ca.pem", "dc1-server-other-0.pem"],
                             cwd=tmp_path, capture_output=True, text=True, check=False)
        good = subprocess.run(["openssl", "verify", "-CAfile", "lab-agent-ca.pem", "dc1-client-lab-0.pem"],
                              cwd=tmp_path, capture_output=True, text=True, check=False)
        assert bad.returncode != 0 and good.returncode == 0, (bad.stdout, good.stderr)


# ---------------------------------------------------------------- config checks


@pytest.mark.parametrize(("kw", "msg"), [
    ({"tls_min_version": "ssl3"}, "tls_min_version: TLS version 'ssl3' is not supported"),
    ({"tls_cipher_suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_BOGUS"},
     "tls_cipher_suites: unsupported cipher 'TLS_BOGUS'"),
    ({"cert_file": "/x.pem"}, "cert_file and key_file: both must be given, or neither"),
    ({"ca_file": "/nonexistent/ca.pem"}, "ca_file: no such file"),
    ({"ca_path": "/nonexistent/dir"}, "ca_path: no such directory"),
    ({"verify_incoming": True}, "VerifyIncoming set, and no CA certificate provided!"),
    ({"verify_incoming_https": True}, "VerifyIncoming set, and no CA certificate provided!"),
    ({"verify_outgoing": True}, "VerifyOutgoing set, and no CA certificate provided!"),
    ({"verify_server_hostname": True}, "VerifyOutgoing set, and no CA certificate provided!"),
])
def test_bad_settings_are_errors(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(TLSConfigError, match=msg.replace("(", r"\(").replace("!", "!")):
        TLSConfig(**kw).validate()  # type: ignore[arg-type]


def test_verify_incoming_needs_a_cert(pki: Path) -> None:
    with pytest.raises(TLSConfigError, match="no Cert/Key pair provided"):
        TLSConfig(ca_file=str(pki / "consul-agent-ca.pem"), verify_incoming_rpc=True).validate()


def test_config_file_keys_reach_the_tls_settings(pki: Path, tmp_path: Path) -> None:
    doc = {"ports": {"https": 8501}, "ca_file": str(pki / "consul-agent-ca.pem"),
           "cert_file": str(pki / "dc1-server-consul-0.pem"), "key_file": str(pki / "dc1-server-consul-0-key.pem"),
           "verify_incoming_https": True, "tls_min_version": "tls13", "addresses": {"https": "127.0.0.2"}}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    cfg, warnings = build_config({"config-file": [str(tmp_path / "a.json")], "data-dir": str(tmp_path)})
    assert cfg.ports.https == 8501 and cfg.https_addr == "127.0.0.2"
    assert cfg.tls.verify_incoming_https and cfg.tls.tls_min_version == "tls13"
    assert warnings == []
    (tmp_path / "b.json").write_text(json.dumps({"tls_cipher_suites": "RC4"}))
    with pytest.raises(ConfigError, match="tls_cipher_suites: unsupported cipher 'RC4'"):
        build_config({"config-file": [str(tmp_path / "b.json")], "data-dir": str(tmp_path)})
    (tmp_path / "c.json").write_text(json.dumps({"ports": {"https": 8501}}))
    cfg, warnings = build_config({"config-file": [str(tmp_path / "c.json")], "data-dir": str(tmp_path)})
    assert warnings == ["ports.https = 8501 without cert_file and key_file: the HTTPS server is not started"]
    assert TLSConfig().enabled() is False  # defaults: the agent never loads ssl
    assert TLSConfig(ca_file=str(pki / "consul-agent-ca.pem"), verify_outgoing=True).warnings(-1) == []


# ---------------------------------------------------------------- contexts


def test_https_context_requires_client_certs_only_when_asked(pki: Path) -> None:
    assert _server_cfg(pki).https_server_context().verify_mode == ssl.CERT_NONE
    assert _server_cfg(pki, verify_incoming=True).https_server_context().verify_mode == ssl.CERT_REQUIRED
    assert _server_cfg(pki, verify_incoming_https=True).https_server_context().verify_mode == ssl.CERT_REQUIRED
    assert _server_cfg(pki, verify_incoming_rpc=True).https_server_context().verify_mode == ssl.CERT_NONE
    assert _server_cfg(pki, verify_incoming_rpc=True).rpc_server_context().verify_mode == ssl.CERT_REQUIRED
    assert _server_cfg(pki, verify_incoming_https=True).rpc_server_context().verify_mode == ssl.CERT_NONE


def test_context_versions_ciphers_and_preference(pki: Path) -> None:
    ctx = _server_cfg(pki).https_server_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2  # Consul's default tls12
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx = _server_cfg(pki, tls_min_version="tls13", tls_prefer_server_cipher_suites=True).https_server_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
    ctx = _server_cfg(pki, tls_cipher_suites=suites).https_server_context()
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"}
    with pytest.raises(TLSConfigError, match="none of 'TLS_RSA_WITH_RC4_128_SHA' is available"):
        _server_cfg(pki, tls_cipher_suites="TLS_RSA_WITH_RC4_128_SHA").https_server_context()
    assert all(name.startswith("TLS_") for name in CIPHER_SUITES)


def test_client_context_verifies_the_chain_only_when_asked(pki: Path) -> None:
    ca = str(pki / "consul-agent-ca.pem")
    ctx = TLSConfig(ca_file=ca, verify_outgoing=True).rpc_client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    ctx = TLSConfig(ca_file=ca, verify_server_hostname=True).rpc_client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname  # the name: agent/raft/rpctls.py
    ctx = TLSConfig().rpc_client_context()
    assert ctx.verify_mode == ssl.CERT_NONE
    assert server_name("dc1", "consul.") == "server.dc1.consul"


def test_bad_files_are_reported_by_key(pki: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a pem\n")
    with pytest.raises(TLSConfigError, match="cert_file/key_file: cannot load"):
        TLSConfig(cert_file=str(tmp_path / "junk.pem"), key_file=str(tmp_path / "junk.pem")).https_server_context()
    with pytest.raises(TLSConfigError, match="cert_file/key_file: cannot load"):  # a key of another cert
        TLSConfig(cert_file=str(pki / "dc1-server-consul-0.pem"),
                  key_file=str(pki / "dc1-client-consul-0-key.pem")).https_server_context()
    with pytest.raises(TLSConfigError, match="ca_file/ca_path: cannot load"):
        TLSConfig(ca_file=str(tmp_path / "junk.pem")).rpc_client_context()


def test_rpc_tls_name_rule_and_when_it_is_on(pki: Path) -> None:
    from pyconsul.agent.raft.rpctls import RpcTLS

    ca = str(pki / "consul-agent-ca.pem")
    assert RpcTLS.from_config(TLSConfig(), "dc1", "consul.") is None  # nothing asked: plaintext, ssl unused
    rt = RpcTLS.from_config(_server_cfg(pki, verify_incoming_rpc=True, verify_server_hostname=True), "dc1",
                            "consul.")
    assert rt is not None and rt.listens() and rt.require_tls and rt.verify_name and rt.domain == "consul"
    assert rt.server_ctx is not None and rt.server_ctx.verify_mode == ssl.CERT_REQUIRED
    assert rt.client_ctx is not None  # verify_server_hostname implies verify_outgoing
    only_out = RpcTLS.from_config(TLSConfig(ca_file=ca, verify_outgoing=True), "dc1", "consul")
    assert only_out is not None and not only_out.listens() and only_out.server_ctx is None

    def cert(*names: str) -> dict[str, object]:
        return {"subjectAltName": (*(("DNS", n) for n in names), ("IP Address", "127.0.0.1"))}

    assert rt.name_ok(cert("server.dc1.consul", "localhost"), same_dc=True)
    assert rt.name_ok(cert("SERVER.DC1.CONSUL"), same_dc=True)
    assert not rt.name_ok(cert("client.dc1.consul", "localhost"), same_dc=True)
    assert not rt.name_ok(cert("server.dc2.consul"), same_dc=True)
    assert rt.name_ok(cert("server.dc2.consul"), same_dc=False)  # a forwarded request may cross datacenters
    assert not rt.name_ok(cert("server.dc1.consul.evil"), same_dc=False)
    assert not rt.name_ok(cert("x.server.dc1.consul"), same_dc=True)
    assert not rt.name_ok({"subject": ((("commonName", "server.dc1.consul"),),)}, same_dc=True)  # SANs only
    assert not rt.name_ok(None, same_dc=True) and not rt.name_ok({}, same_dc=False)


def test_cli_https_settings_from_consuls_variables(pki: Path) -> None:
    from pyconsul.agent.cli.common import CLIError, https_context, parse_http_addr

    assert parse_http_addr("10.0.0.1:8501", {"CONSUL_HTTP_SSL": "true"}) == "https://10.0.0.1:8501"
    assert parse_http_addr("10.0.0.1:8500", {}) == "http://10.0.0.1:8500"
    assert parse_http_addr("http://10.0.0.1:8500", {"CONSUL_HTTP_SSL": "true"}) == "http://10.0.0.1:8500"
    assert https_context({}) is None
    ctx = https_context({"CONSUL_CACERT": str(pki / "consul-agent-ca.pem"),
                         "CONSUL_CLIENT_CERT": str(pki / "dc1-cli-consul-0.pem"),
                         "CONSUL_CLIENT_KEY": str(pki / "dc1-cli-consul-0-key.pem")})
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 1
    loose = https_context({"CONSUL_HTTP_SSL_VERIFY": "false"})
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
    with pytest.raises(CLIError, match="Error loading the TLS files"):
        https_context({"CONSUL_CACERT": str(pki / "nope.pem")})


def test_readme_limits_table_states_the_tls_timeouts() -> None:
    from pyconsul.agent.httpd import h1
    from pyconsul.agent.raft import rpctls
    from pyconsul.agent.raft.transport import RpcLimits

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| What")}

    def secs(x: float) -> str:
        return f"{x:g} s"

    assert rows["HTTPS (`ports.https`): TLS handshake, from accept"] == secs(h1.TLS_HANDSHAKE_TIMEOUT)
    key = ("Server RPC with TLS on: first byte (RPC_TLS or a HELLO) / TLS handshake; connections before their "
           "handshake count toward the connection limits")
    assert rows[key] == f"{secs(RpcLimits().hello_timeout)} / {secs(rpctls.TLS_HANDSHAKE_TIMEOUT)}"
    assert rpctls.RPC_TLS == 3  # Consul's pool.RPCTLS
