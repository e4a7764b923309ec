"""`pyconsul tls ca create` and `pyconsul tls cert create`: a private CA and agent certificates (Consul 1.7's
`consul tls`), written to the current directory with Consul's file names:

    <domain>-agent-ca.pem, <domain>-agent-ca-key.pem          the CA (default domain "consul")
    <dc>-server-<domain>-<n>.pem, ...-<n>-key.pem              -server: CN and SAN server.<dc>.<domain>,
                                                               localhost, 127.0.0.1 (+ -additional-*)
    <dc>-client-<domain>-<n>.pem, ...                          -client: client.<dc>.<domain>, localhost, 127.0.0.1
    <dc>-cli-<domain>-<n>.pem, ...                             -cli: cli.<dc>.<domain>, localhost

<n> is the first index whose files do not exist yet, so a second run never overwrites. Keys are ECDSA P-256
(as Consul's), private key files are written 0600, certificates are signed with SHA-256. The CA may carry
name constraints (-name-constraint: the domain and localhost, plus -additional-name-constraint).
Server and client certificates are usable for both TLS server and client authentication (an agent both
accepts and dials), CLI certificates for client authentication only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import CLIError
from pyconsul.agent.flags import FlagSet

DAY = datetime.timedelta(days=1)
SERVER_WARNING = """==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys."""


@dataclass
class CertSpec:
    """What one certificate says: its name (also the CN), SANs and extended key usages."""

    kind: str  # "server" | "client" | "cli"
    datacenter: str
    domain: str
    days: int
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.datacenter}.{self.domain}"

    def sans(self) -> tuple[list[str], list[str]]:
        dns = [self.name, "localhost", *self.dns_names]
        ips = ([] if self.kind == "cli" else ["127.0.0.1"]) + list(self.ip_addresses)
        return list(dict.fromkeys(dns)), list(dict.fromkeys(ips))


def _serial() -> int:
    return secrets.randbits(127) | 1  # positive, under 20 octets (RFC 5280); as a CN suffix under 64 chars


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (never overwrite) with `mode` from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def create_ca(domain: str, days: int, constraints: Sequence[str] | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a new self-signed CA; `constraints`: permitted DNS domains, or None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    serial = _serial()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pyconsul Agent CA {serial}"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pyconsul")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(serial).not_valid_before(now - DAY).not_valid_after(now + days * DAY)
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                      crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(ski, critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False))
    if constraints is not None:
        b = b.add_extension(x509.NameConstraints(permitted_subtrees=[x509.DNSName(d) for d in constraints],
                                                 excluded_subtrees=None), critical=True)
    cert = b.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def create_cert(spec: CertSpec, ca_pem: bytes, ca_key_pem: bytes) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a new leaf certificate signed by the CA; CLIError if the CA is unusable."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"Error loading the CA: {exc}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CLIError("Error loading the CA: unsupported key type (expected ECDSA or RSA)")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ca_key.public_key().public_bytes(*spki) != ca.public_key().public_bytes(*spki):
        raise CLIError("Error loading the CA: the key does not belong to the CA certificate")
    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = spec.sans()
    try:
        ip_objs = [ipaddress.ip_address(a) for a in ips]
    except ValueError as exc:
        raise CLIError(f"Error: -additional-ipaddress: {exc}") from None
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if spec.kind == "cli" else [ExtendedKeyUsageOID.SERVER_AUTH,
                                                                            ExtendedKeyUsageOID.CLIENT_AUTH]
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ip) for ip in ip_objs]
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(_serial())
            .not_valid_before(now - DAY).not_valid_after(now + spec.days * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def cmd_ca_create(args: Sequence[str]) -> int:
    fs = FlagSet("tls ca create")
    fs.int("days", 1825, "Provide number of days the CA is valid for from now on.")
    fs.string("domain", "consul", "Domain of consul cluster. Only used in combination with -name-constraint.")
    fs.bool("name-constraint", False, "Add name constraints for the CA. Results in rejecting certificates for "
            "other DCs and domains: the domain and localhost are permitted.")
    fs.string_list("additional-name-constraint", "Add additional name constraints for the CA (repeatable). "
                   "Implies -name-constraint.")
    res = common.parse(fs, args, "tls ca create [options]",
                       "Create a new certificate authority: <domain>-agent-ca.pem and <domain>-agent-ca-key.pem\n"
                       "  in the current directory.")
    common.no_positional(res, "tls ca create")
    days, domain = res.int("days"), res.str("domain").strip(".")
    if days < 1:
        raise CLIError("Error: -days must be at least 1")
    if not domain:
        raise CLIError("Error: -domain must not be empty")
    extra = res.list("additional-name-constraint")
    constraints = [domain, "localhost", *extra] if res.bool("name-constraint") or extra else None
    cert_file, key_file = Path(f"{domain}-agent-ca.pem"), Path(f"{domain}-agent-ca-key.pem")
    for p in (cert_file, key_file):
        if p.exists():
            raise CLIError(f"{p} already exists")
    cert, key = create_ca(domain, days, constraints)
    _write(cert_file, cert, 0o644)
    print(f"==> Saved {cert_file}")
    _write(key_file, key, 0o600)
    print(f"==> Saved {key_file}")
    return 0


def cmd_cert_create(args: Sequence[str]) -> int:
    fs = FlagSet("tls cert create")
    fs.string("ca", "#DOMAIN#-agent-ca.pem", "Provide path to the ca.")
    fs.string("key", "#DOMAIN#-agent-ca-key.pem", "Provide path to the key.")
    fs.bool("server", False, "Generate server certificate.")
    fs.bool("client", False, "Generate client certificate.")
    fs.bool("cli", False, "Generate cli certificate.")
    fs.string("dc", "dc1", "Provide the datacenter. Matters only for -server certificates.")
    fs.string("domain", "consul", "Provide the domain. Matters only for -server certificates.")
    fs.int("days", 365, "Provide number of days the certificate is valid for from now on.")
    fs.string_list("additional-dnsname", "Provide an additional dnsname for Subject Alternative Names "
                   "(repeatable). localhost is always included.")
    fs.string_list("additional-ipaddress", "Provide an additional ipaddress for Subject Alternative Names "
                   "(repeatable). 127.0.0.1 is always included (not for -cli).")
    res = common.parse(fs, args, "tls cert create [options]",
                       "Create a new certificate signed by the CA: <dc>-<server|client|cli>-<domain>-<n>.pem\n"
                       "  and its key in the current directory.")
    common.no_positional(res, "tls cert create")
    kinds = [k for k in ("server", "client", "cli") if res.bool(k)]
    if len(kinds) != 1:
        raise CLIError("Please provide either -server, -client, or -cli")
    dc, domain, days = res.str("dc").lower(), res.str("domain").strip("."), res.int("days")
    if not dc or not domain:
        raise CLIError("Error: -dc and -domain must not be empty")
    if days < 1:
        raise CLIError("Error: -days must be at least 1")
    spec = CertSpec(kinds[0], dc, domain, days, res.list("additional-dnsname"), res.list("additional-ipaddress"))
    ca_file = Path(res.str("ca").replace("#DOMAIN#", domain))
    key_file = Path(res.str("key").replace("#DOMAIN#", domain))
    for what, p in (("ca", ca_file), ("key", key_file)):
        if not p.is_file():
            raise CLIError(f"{what} file missing: {p}")
    cert, key = create_cert(spec, ca_file.read_bytes(), key_file.read_bytes())
    def files(n: int) -> tuple[Path, Path]:
        return Path(f"{dc}-{spec.kind}-{domain}-{n}.pem"), Path(f"{dc}-{spec.kind}-{domain}-{n}-key.pem")

    n = 0
    out, out_key = files(n)
    while out.exists() or out_key.exists():
        n += 1
        out, out_key = files(n)
    if spec.kind == "server":
        print(SERVER_WARNING)
    print(f"==> Using {ca_file} and {key_file}")
    _write(out, cert, 0o644)
    print(f"==> Saved {out}")
    _write(out_key, key, 0o600)
    print(f"==> Saved {out_key}")
    return 0


CA_COMMANDS: common.Table = {"create": (cmd_ca_create, "Create a new consul CA")}
CERT_COMMANDS: common.Table = {"create": (cmd_cert_create, "Create a new certificate")}


def cmd_ca(args: Sequence[str]) -> int:
    return common.run_group("tls ca", CA_COMMANDS, args, "Helpers for CAs.")


def cmd_cert(args: Sequence[str]) -> int:
    return common.run_group("tls cert", CERT_COMMANDS, args, "Helpers for certificates.")


TLS_COMMANDS: common.Table = {
    "ca": (cmd_ca, "Helpers for CAs"),
    "cert": (cmd_cert, "Helpers for certificates"),
}


def cmd_tls(args: Sequence[str]) -> int:
    return common.run_group("tls", TLS_COMMANDS, args,
                            "Helpers to set up a CA and the agents' certificates for TLS (files in the current\n"
                            "  directory, Consul's names).")
