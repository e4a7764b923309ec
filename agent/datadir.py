"""The agent's data directory: the node ID and the serf keyrings (Consul's layout).

    <data_dir>/node-id                 the node's UUID, created once and kept across restarts
    <data_dir>/serf/local.keyring      the LAN pool's keys (JSON list, primary first)
    <data_dir>/serf/remote.keyring     the WAN pool's keys (servers)
    <data_dir>/serf/*.snapshot.json    members to rejoin after a restart (rejoin.py)

Without a data directory (-dev) nothing is persisted: the node ID is fresh on every start.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyconsul.agent.fsutil import atomic_write
from pyconsul.agent.gossip.keyring import Keyring, decode_key
from pyconsul.agent.ids import uuid4

log = logging.getLogger("agent")

LAN_KEYRING = "local.keyring"
WAN_KEYRING = "remote.keyring"


def prepare(data_dir: Path | None, node_id: str) -> str:
    """Create the directory layout and settle the node ID: the configured one (written if the file
    does not exist yet), else the stored one, else a new UUID (stored)."""
    if data_dir is None:
        return node_id or uuid4()
    (data_dir / "serf").mkdir(parents=True, exist_ok=True)
    id_file = data_dir / "node-id"
    if not node_id:
        if id_file.exists():
            return id_file.read_text().strip()
        node_id = uuid4()
        atomic_write(id_file, node_id)
    elif not id_file.exists():
        atomic_write(id_file, node_id)
    return node_id


def load_keyring(data_dir: Path | None, name: str, encrypt: str | None) -> Keyring | None:
    """A stored keyring wins over the `encrypt` key (Consul's rule, with a warning); otherwise the
    `encrypt` key starts a keyring that is stored from then on. None: gossip is not encrypted."""
    path = data_dir / "serf" / name if data_dir else None
    if path is not None and path.exists():
        if encrypt:
            log.warning("loaded keyring %s; ignoring the 'encrypt' key", path)
        return Keyring.load(str(path))
    if not encrypt:
        return None
    ring = Keyring(decode_key(encrypt))
    if path is not None:
        ring.save(str(path))
    return ring


def save_keyrings(data_dir: Path | None, lan: Keyring | None, wan: Keyring | None) -> None:
    if data_dir is None:
        return
    for name, ring in ((LAN_KEYRING, lan), (WAN_KEYRING, wan)):
        if ring is not None:
            ring.save(str(data_dir / "serf" / name))
