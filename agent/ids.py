"""Random identifiers without the `uuid` module: in Python 3.11 `import uuid` also imports `platform`, about
0.25 MiB of every agent's memory for one call (bench/gossip/rss.py; tests/unit/test_lean_agent.py keeps it out)."""

from __future__ import annotations

import os


def uuid4() -> str:
    """A random (version 4, RFC 4122 variant) UUID in its canonical text form, as str(uuid.uuid4())."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
