"""pyconsul: a Consul-compatible agent in Python asyncio."""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _keep_openssl_out_of_the_agent() -> None:
    """`pyconsul agent` speaks no TLS and hashes nothing that needs OpenSSL, yet asyncio imports `ssl`
    and hashlib imports `_hashlib` at start-up, which map libssl and libcrypto into every agent: about
    4 MiB of its ~25 MiB resident memory. For the agent verb only (decided here, before asyncio is
    imported), mark both modules unavailable: asyncio then runs without TLS support and hashlib uses
    Python's built-in SHA and MD5. Gossip encryption is unaffected (the `cryptography` package carries
    its own OpenSSL and is loaded only with -encrypt). An agent configured for TLS (ports.https) lifts
    the marks when it builds its first context (agent/tlsutil.py load_ssl, which also hands ssl to asyncio),
    as an https:// check does (agent/checks/probes.py). PYCONSUL_OPENSSL=1 turns this off."""
    argv = _sys.argv
    if len(argv) < 2 or argv[1] != "agent" or _os.environ.get("PYCONSUL_OPENSSL") == "1":
        return
    if not _os.path.basename(argv[0]).startswith(("pyconsul", "-m", "__main__")):
        return  # somebody else's program that merely imports us
    for name in ("ssl", "_ssl", "_hashlib"):
        _sys.modules.setdefault(name, None)  # type: ignore[arg-type]


_keep_openssl_out_of_the_agent()
