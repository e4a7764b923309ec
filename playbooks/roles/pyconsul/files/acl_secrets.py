#!/usr/bin/env python3
"""Keep the cluster's ACL secrets on the controller: create them once, then always reuse them.

Usage: acl_secrets.py FILE [--dns]

FILE (JSON, mode 0600, in the git-ignored .secrets/<inventory>/) holds
  master          acl.tokens.master of every server: the leader of each datacenter creates this
                  management token (Consul's way to bootstrap ACLs from configuration), so one secret
                  manages every datacenter and is valid wherever a request is forwarded
  agent_accessor  the AccessorID and
  agent_secret    the SecretID of the agent token (acl.tokens.agent of every agent), created by
                  acl_setup.py in each datacenter with the agent policy
  agent_master    acl.tokens.agent_master of every agent: local agent operations (reload) with no server
  dns_accessor    with --dns (pyconsul_acl_dns_token) only: the AccessorID and
  dns_secret      the SecretID of the DNS token (acl.tokens.default of every agent), created by acl_setup.py
                  in each datacenter with the DNS policy (read nodes, services and prepared queries)
Missing entries are generated (UUIDs); existing ones are never changed. Delete an entry to rotate it
(docs/security.md). Prints {"changed": bool, "created": [names]} and never a secret.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

KEYS = ("master", "agent_accessor", "agent_secret", "agent_master")
DNS_KEYS = ("dns_accessor", "dns_secret")


def main() -> int:
    args = sys.argv[1:]
    if len(args) not in (1, 2) or args[1:] not in ([], ["--dns"]):
        print(json.dumps({"failed": True, "msg": "usage: acl_secrets.py FILE [--dns]"}))
        return 2
    path = Path(args[0])
    keys = KEYS + (DNS_KEYS if args[1:] == ["--dns"] else ())
    have: dict[str, str] = {}
    if path.exists():
        loaded = json.loads(path.read_text() or "{}")
        if not isinstance(loaded, dict):
            print(json.dumps({"failed": True, "msg": f"{path}: not a JSON object"}))
            return 1
        have = {k: str(v) for k, v in loaded.items() if v}
    created = [k for k in keys if k not in have]
    if not created:
        print(json.dumps({"changed": False, "created": []}))
        return 0
    for k in created:
        have[k] = str(uuid.uuid4())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(have, f, indent=2, sort_keys=True)
        f.write("\n")
    partial.replace(path)
    print(json.dumps({"changed": True, "created": created}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
