"""`pyconsul keygen` and `pyconsul keyring`: gossip encryption keys."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet


def keyring_lines(responses: Sequence[Mapping[str, Any]]) -> list[str]:
    """Render `GET /v1/operator/keyring` like `consul keyring -list` (keys sorted)."""
    out = ["==> Gathering installed encryption keys..."]
    for r in responses:
        if r.get("WAN"):
            pool = "WAN"
        else:
            pool = f"{r.get('Datacenter', '')} (LAN)"
            if r.get("Segment"):
                pool += f" [{r['Segment']}]"
        out += ["", f"{pool}:"]
        total = r.get("NumNodes", 0)
        for key, count in sorted((r.get("Keys") or {}).items()):
            out.append(f"  {key} [{count}/{total}]")
    return out


def cmd_keygen(args: Sequence[str]) -> int:
    res = common.parse(FlagSet("keygen"), args, "keygen", "Prints a new random 32-byte gossip encryption key.")
    common.no_positional(res, "keygen")
    print(base64.b64encode(secrets.token_bytes(32)).decode())
    return 0


def cmd_keyring(args: Sequence[str]) -> int:
    fs = FlagSet("keyring")
    common.http_flags(fs)
    fs.bool("list", False, "List the keys installed in every pool.")
    fs.string("install", "", "Install a new key; it is used for decryption until made primary.")
    fs.string("use", "", "Make an installed key the primary (encryption) key.")
    fs.string("remove", "", "Remove a key; the primary key cannot be removed.")
    fs.int("relay-factor", 0, "Number of extra members (0-5) that relay each reply.")
    res = common.parse(fs, args, "keyring [options]", "Manages the gossip encryption keys of the cluster.")
    common.no_positional(res, "keyring")
    ops = [op for op in ("list", "install", "use", "remove") if op in res.explicit and res.values[op]]
    if len(ops) != 1:
        raise CLIError("Exactly one of -list, -install, -use or -remove must be given.")
    relay = res.int("relay-factor")
    if not 0 <= relay <= 5:
        raise CLIError("Relay factor must be in range: [0, 5]")
    base = common.http_addr(res)
    query = {"relay-factor": str(relay)} if relay else None
    op = ops[0]
    try:
        if op == "list":
            data = common.api_request("GET", base, "/v1/operator/keyring", query=query)
            if not isinstance(data, list):
                raise CLIError(f"Error: unexpected response {data!r}")
            common.out(keyring_lines(data))
            return 0
        method, banner = {"install": ("POST", "Installing new gossip encryption key..."),
                          "use": ("PUT", "Changing primary gossip encryption key..."),
                          "remove": ("DELETE", "Removing gossip encryption key...")}[op]
        print(f"==> {banner}")
        common.api_request(method, base, "/v1/operator/keyring", query=query, body={"Key": res.str(op)})
    except ApiError as exc:
        raise CLIError(f"Error: {exc}") from None
    return 0


COMMANDS: common.Table = {
    "keygen": (cmd_keygen, "Generates a new gossip encryption key"),
    "keyring": (cmd_keyring, "Lists, installs, selects and removes gossip encryption keys"),
}
