"""TLS settings and the ssl.SSLContext objects built from them (Consul 1.7's tlsutil, its keys and checks).

Keys (top level, as Consul 1.7): `ca_file`, `ca_path`, `cert_file`, `key_file`, `verify_incoming`,
`verify_incoming_rpc`, `verify_incoming_https`, `verify_outgoing`, `verify_server_hostname`,
`tls_min_version` ("tls10" | "tls11" | "tls12" | "tls13"; default "tls12"), `tls_cipher_suites` (Go's
names, comma-separated; mapped to OpenSSL's; an unknown name is a config error) and
`tls_prefer_server_cipher_suites`.

What each context is for:
  https_server_context()  the HTTPS listener (ports.https); client certs required with verify_incoming or
                          verify_incoming_https
  rpc_server_context()    server RPC after the RPCTLS byte; client certs required with verify_incoming or
                          verify_incoming_rpc
  rpc_client_context()    dialling another server; the peer's cert is checked against the CA with
                          verify_outgoing (its name, `server.<dc>.<domain>` with verify_server_hostname, by
                          agent/raft/rpctls.py)

`pyconsul agent` starts with the ssl module marked unavailable (agent/__init__.py keeps libssl out of agents
that speak no TLS), so nothing here imports ssl at module level: `load_ssl()` lifts the marks when TLS is
configured and hands the module to asyncio too (its modules looked for ssl once, at import, and found none).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pyconsul.agent.config_schema import Kind

if TYPE_CHECKING:
    import ssl

__all__ = ["CIPHER_SUITES", "TLS_VERSIONS", "TLSConfig", "TLSConfigError", "load_ssl", "server_name", "switch",
           "switchable"]

TLS_VERSIONS = ("tls10", "tls11", "tls12", "tls13")

# Consul 1.7 accepts Go's cipher suite names; OpenSSL knows the same suites by other names. Suites the
# local OpenSSL no longer builds (RC4, 3DES) are accepted by name and simply never negotiated; a list with
# no usable suite at all is an error when the context is built.
CIPHER_SUITES: dict[str, str] = {
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
}

# config keys -> TLSConfig fields (all top-level keys, the same names)
KEYS: dict[str, Kind] = {
    "ca_file": "str", "ca_path": "str", "cert_file": "str", "key_file": "str",
    "verify_incoming": "bool", "verify_incoming_rpc": "bool", "verify_incoming_https": "bool",
    "verify_outgoing": "bool", "verify_server_hostname": "bool",
    "tls_min_version": "str", "tls_cipher_suites": "str", "tls_prefer_server_cipher_suites": "bool",
}


class TLSConfigError(ValueError):
    """An invalid TLS setting; the message names the key (config.py turns it into a ConfigError)."""


def server_name(datacenter: str, domain: str) -> str:
    """The name a server's certificate must carry with verify_server_hostname: `server.<dc>.<domain>`."""
    return f"server.{datacenter}.{domain.strip('.')}"


def load_ssl() -> ModuleType:
    """The ssl module, imported now. Lifts the "unavailable" marks `pyconsul agent` sets at start (see
    agent/__init__.py) and gives the module to asyncio's modules, which bound `ssl = None` when they were
    imported without it and would otherwise fail to wrap a transport."""
    for name in ("ssl", "_ssl"):
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
    mod = importlib.import_module("ssl")
    for name in ("asyncio.base_events", "asyncio.selector_events"):
        amod = sys.modules.get(name)
        if amod is not None and getattr(amod, "ssl", None) is None:
            amod.ssl = mod  # type: ignore[attr-defined]
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and getattr(sslproto, "ssl", None) is None:
        importlib.reload(sslproto)  # it derives module-level names from ssl at import (SSLAgainErrors)
    return mod


_SWITCHABLE: Any = None  # the class, made once ssl is loaded


def switchable(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """A server context that hands every connection to the context it currently points to (`ctx`, then what
    switch() gives): asyncio's server wraps each accepted connection with the context it was started with, through
    its wrap_bio(), so a listener started with this one serves new connections with reloaded settings
    (agent/tlsreload.py). Its own settings are never used."""
    global _SWITCHABLE
    m = load_ssl()
    if _SWITCHABLE is None:
        class Switchable(m.SSLContext):  # type: ignore[name-defined,misc]
            current: ssl.SSLContext

            def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
                return self.current.wrap_bio(*args, **kwargs)

            def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
                return self.current.wrap_socket(*args, **kwargs)

        _SWITCHABLE = Switchable
    out: ssl.SSLContext = _SWITCHABLE(m.PROTOCOL_TLS_SERVER)
    switch(out, ctx)
    return out


def switch(holder: ssl.SSLContext, ctx: ssl.SSLContext) -> None:
    """Point a switchable() context at `ctx`, for the connections accepted from now on."""
    holder.current = ctx  # type: ignore[attr-defined]


@dataclass
class TLSConfig:
    ca_file: str = ""
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify_incoming: bool = False
    verify_incoming_rpc: bool = False
    verify_incoming_https: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False
    tls_min_version: str = "tls12"
    tls_cipher_suites: str = ""
    tls_prefer_server_cipher_suites: bool = False

    # -- checks (Consul 1.7's messages where it has them)

    def validate(self) -> None:
        """Raise TLSConfigError for settings that cannot work."""
        if self.tls_min_version not in TLS_VERSIONS:
            raise TLSConfigError(f"tls_min_version: TLS version {self.tls_min_version!r} is not supported, "
                                 f"please use one of {', '.join(TLS_VERSIONS)}")
        self.openssl_ciphers()
        if bool(self.cert_file) != bool(self.key_file):
            raise TLSConfigError("cert_file and key_file: both must be given, or neither")
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path and not os.path.isfile(path):
                raise TLSConfigError(f"{key}: no such file: {path!r}")
        if self.ca_path and not os.path.isdir(self.ca_path):
            raise TLSConfigError(f"ca_path: no such directory: {self.ca_path!r}")
        has_ca = bool(self.ca_file or self.ca_path)
        has_cert = bool(self.cert_file)
        if self.verify_incoming or self.verify_incoming_rpc or self.verify_incoming_https:
            if not has_ca:
                raise TLSConfigError("verify_incoming: VerifyIncoming set, and no CA certificate provided!")
            if not has_cert:
                raise TLSConfigError("verify_incoming: VerifyIncoming set, and no Cert/Key pair provided!")
        if self.outgoing_verified() and not has_ca:
            raise TLSConfigError("verify_outgoing: VerifyOutgoing set, and no CA certificate provided!")

    def warnings(self, https_port: int) -> list[str]:
        """Settings that work but do less than asked. Consul starts an HTTPS listener without a certificate
        (every handshake then fails); we say so once and do not start it."""
        out = []
        if https_port > 0 and not self.cert_file:
            out.append(f"ports.https = {https_port} without cert_file and key_file: the HTTPS server is not started")
        return out

    def openssl_ciphers(self) -> str:
        """tls_cipher_suites as an OpenSSL cipher string ("" = OpenSSL's defaults)."""
        names = [n.strip() for n in self.tls_cipher_suites.split(",") if n.strip()]
        unknown = [n for n in names if n not in CIPHER_SUITES]
        if unknown:
            raise TLSConfigError(f"tls_cipher_suites: unsupported cipher {unknown[0]!r}")
        return ":".join(CIPHER_SUITES[n] for n in names)

    def outgoing_verified(self) -> bool:
        """verify_server_hostname implies verify_outgoing (a name check without a chain check means nothing)."""
        return self.verify_outgoing or self.verify_server_hostname

    def enabled(self) -> bool:
        """Any TLS setting that needs the ssl module at run time."""
        return bool(self.cert_file or self.outgoing_verified())

    def incoming_rpc_verified(self) -> bool:
        return self.verify_incoming or self.verify_incoming_rpc

    def incoming_https_verified(self) -> bool:
        return self.verify_incoming or self.verify_incoming_https

    # -- contexts

    def _base(self, server_side: bool) -> ssl.SSLContext:
        m = load_ssl()
        ctx: ssl.SSLContext = m.SSLContext(m.PROTOCOL_TLS_SERVER if server_side else m.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = {"tls10": m.TLSVersion.TLSv1, "tls11": m.TLSVersion.TLSv1_1,
                               "tls12": m.TLSVersion.TLSv1_2, "tls13": m.TLSVersion.TLSv1_3}[self.tls_min_version]
        ciphers = self.openssl_ciphers()
        if ciphers:
            try:
                ctx.set_ciphers(ciphers)
            except m.SSLError:
                raise TLSConfigError(f"tls_cipher_suites: none of {self.tls_cipher_suites!r} is available "
                                     f"in this OpenSSL") from None
        if server_side and self.tls_prefer_server_cipher_suites:
            ctx.options |= m.OP_CIPHER_SERVER_PREFERENCE
        elif server_side:  # Python sets it by default; Consul's default (false) lets the client choose
            ctx.options &= ~m.OP_CIPHER_SERVER_PREFERENCE
        if self.ca_file or self.ca_path:
            try:
                ctx.load_verify_locations(cafile=self.ca_file or None, capath=self.ca_path or None)
            except (OSError, m.SSLError) as exc:
                raise TLSConfigError(f"ca_file/ca_path: cannot load the CA certificates: {exc}") from None
        if self.cert_file:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, m.SSLError) as exc:
                raise TLSConfigError(f"cert_file/key_file: cannot load the certificate and key: {exc}") from None
        return ctx

    def _server(self, verify_clients: bool) -> ssl.SSLContext:
        m = load_ssl()
        ctx = self._base(server_side=True)
        ctx.verify_mode = m.CERT_REQUIRED if verify_clients else m.CERT_NONE
        return ctx

    def https_server_context(self) -> ssl.SSLContext:
        return self._server(self.incoming_https_verified())

    def rpc_server_context(self) -> ssl.SSLContext:
        return self._server(self.incoming_rpc_verified())

    def rpc_client_context(self) -> ssl.SSLContext:
        """For dialling servers. The chain is checked here (verify_outgoing); the name (verify_server_hostname:
        server.<dc>.<domain>) is checked by agent/raft/rpctls.py after the handshake, as a forwarded request
        may go to another datacenter's server."""
        m = load_ssl()
        ctx = self._base(server_side=False)
        ctx.check_hostname = False
        ctx.verify_mode = m.CERT_REQUIRED if self.outgoing_verified() else m.CERT_NONE
        return ctx
