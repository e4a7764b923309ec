"""TLS re-read on reload (SIGHUP, `pyconsul reload`, PUT /v1/agent/reload), as Consul 1.7's reload updates its
tlsutil.Configurator: ca_file/ca_path, cert_file/key_file, verify_*, tls_min_version, tls_cipher_suites and
tls_prefer_server_cipher_suites take effect for NEW connections -- HTTPS accepted, server RPC accepted and dialled;
open connections keep the session they have. So rotating certificates takes a reload, not a restart.

Two steps, so a TLS config that does not load changes nothing: `prepare()` builds every new context (reading and
parsing the files; a TLSConfigError names the key) before the reload changes anything, and the returned apply()
swaps them in, on the event loop, between two accepts:
  HTTPS   the listener was started with a switchable context (tlsutil.switchable): each accepted connection's TLS
          object comes from the context it currently points to.
  RPC     the transport's RpcTLS is updated in place (rpctls.RpcTLS.update): the port-8300 listener reads it per
          accepted connection, the dialler per dial.
What a reload cannot do (the listener would have to be rebuilt; apply() logs a warning, the rest applies):
start an HTTPS listener that was not started (ports.https without a certificate at start) or stop one (the
certificate removed: it keeps the last one), and turn TLS on for the port-8300 listener of a server that started
without a certificate and without verify_incoming (it listens in plaintext only). Turning TLS off works.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyconsul.agent.raft.rpctls import RpcTLS

if TYPE_CHECKING:
    from pyconsul.agent.raft.transport import Transport
    from pyconsul.agent.tlsutil import TLSConfig

log = logging.getLogger("agent.tls")

__all__ = ["prepare"]


def prepare(new: TLSConfig, *, https: Any, transport: Transport | None, serving: bool, datacenter: str,
            domain: str, handshake_timeout: float) -> Callable[[], list[str]]:
    """Build the contexts of `new` now (TLSConfigError if its files do not load); the function that switches to
    them and returns what it could not apply. `https`: the HTTPS listener's switchable context (None: no HTTPS
    listener); `transport`: the server-RPC transport (a client agent's dials only: `serving` False)."""
    from pyconsul.agent import tlsutil

    https_ctx = new.https_server_context() if https is not None and new.cert_file else None
    rpc = RpcTLS.from_config(new, datacenter, domain, handshake_timeout) if transport is not None else None

    def apply() -> list[str]:
        warnings: list[str] = []
        if https is not None:
            if https_ctx is not None:
                tlsutil.switch(https, https_ctx)
            else:
                warnings.append("cert_file and key_file removed: the HTTPS server keeps its certificate until a "
                                "restart")
        if transport is not None:
            listening = transport._mux is not None  # the port-8300 listener reads the first byte (RPC_TLS)
            if serving and rpc is not None and rpc.listens() and not listening:
                # changing only the dialling side would break connections both ways: nothing changes
                warnings.append("server RPC started without a certificate or verify_incoming (it listens in "
                                "plaintext only): turning its TLS on takes a restart; server RPC TLS unchanged")
            elif transport.tls is not None:
                transport.tls.update(rpc)  # the listener and the dialler share it; None: TLS off both ways
            else:
                transport.tls = rpc  # dialling only (a client agent, or a server with verify_outgoing, no cert)
        for w in warnings:
            log.warning("Reload: %s", w)
        return warnings

    return apply
