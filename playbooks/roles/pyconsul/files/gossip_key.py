#!/usr/bin/env python3
"""Keep one gossip key per cluster on the controller: create it once, then always reuse it.

Usage: gossip_key.py FILE  (stdin: a JSON object {host: key already in that host's config})

- FILE exists: it is the key. Hosts that already run with another key are an error (the agents
  keep their keyring in the data dir, so a new key in config.json would split the pool); rotate
  with `pyconsul keyring` and update FILE instead.
- FILE is missing and the hosts agree on a deployed key: adopt it (a fresh checkout of this
  repository must not rotate the key of a running cluster).
- Otherwise: generate 32 random bytes (what `pyconsul keygen` prints) into FILE, mode 0600.

Prints {"changed": bool, "source": "file"|"adopted"|"generated"} and never the key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from pathlib import Path


def fail(msg: str) -> int:
    print(json.dumps({"failed": True, "msg": msg}))
    return 1


def main() -> int:
    path = Path(sys.argv[1])
    raw = sys.stdin.read().strip()
    deployed: dict[str, str] = {h: k for h, k in (json.loads(raw) if raw else {}).items() if k}
    keys = sorted(set(deployed.values()))
    if path.exists():
        key = path.read_text().strip()
        others = sorted(h for h, k in deployed.items() if k != key)
        if others:
            return fail(f"gossip key mismatch: {', '.join(others)} already run(s) with a key other than {path}; "
                        "rotate keys with `pyconsul keyring` and then update that file")
        print(json.dumps({"changed": False, "source": "file"}))
        return 0
    if len(keys) > 1:
        groups = {k: sorted(h for h, v in deployed.items() if v == k) for k in keys}
        listing = "; ".join(", ".join(hs) for hs in groups.values())
        return fail(f"hosts run with {len(keys)} different gossip keys ({listing}) and {path} is missing: "
                    "put the right key into that file")
    if keys:
        key, source = keys[0], "adopted"
    else:
        key, source = base64.b64encode(secrets.token_bytes(32)).decode(), "generated"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    partial.replace(path)
    print(json.dumps({"changed": True, "source": source}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
