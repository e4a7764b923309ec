"""`pyconsul snapshot save|restore|inspect`: Consul 1.7's snapshot verbs over `/v1/snapshot`.

`save` downloads the archive, verifies it (state/archive.py) and only then replaces FILE with it
(agent.fsutil.atomic_write), so a failed or corrupt download never replaces a good file; a corrupt one
is kept in FILE.part for inspection. `restore` verifies the file locally before sending it.
Messages follow Consul's ("Saved and verified snapshot to index N").
"""

from __future__ import annotations

from collections.abc import Sequence

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet, ParseResult
from pyconsul.agent.fsutil import atomic_write
from pyconsul.agent.state import archive


def _one_file(res: ParseResult) -> str:
    if len(res.positional) != 1:
        raise CLIError(f"This command takes one argument: <file>, got {len(res.positional)}")
    return res.positional[0]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CLIError(f"Error opening snapshot file: open {path}: {(exc.strerror or str(exc)).lower()}") from None


def cmd_save(args: Sequence[str]) -> int:
    fs = FlagSet("snapshot save")
    common.http_flags(fs)
    common.server_flags(fs)
    res = common.parse(fs, args, "snapshot save [options] FILE",
                       "Retrieves an atomic, point-in-time snapshot of the state of the servers\n"
                       "  (KV, catalog, sessions) and saves it to FILE.")
    path = _one_file(res)
    try:
        data = common.api_request("GET", common.http_addr(res), "/v1/snapshot",
                                  query=common.server_query(res), timeout=120.0, decode=False)
    except ApiError as exc:
        raise CLIError(f"Error saving snapshot: {exc}") from None
    try:
        meta, _ = archive.read_archive(data)
    except archive.ArchiveError as exc:
        part = path + ".part"
        try:
            atomic_write(part, data)
        except OSError:
            raise CLIError(f"Error verifying snapshot file: {exc}") from None
        raise CLIError(f"Error verifying snapshot file: {exc} (left in {part})") from None
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise CLIError(f"Error creating snapshot file: {exc}") from None
    print(f"Saved and verified snapshot to index {meta.index}")
    return 0


def cmd_restore(args: Sequence[str]) -> int:
    fs = FlagSet("snapshot restore")
    common.http_flags(fs)
    fs.string("datacenter", "", "Name of the datacenter to restore into. Defaults to the agent's.")
    res = common.parse(fs, args, "snapshot restore [options] FILE",
                       "Restores the state of the servers (KV, catalog, sessions) from a snapshot file\n"
                       "  made by `pyconsul snapshot save`. This replaces all existing state.")
    path = _one_file(res)
    data = _read(path)
    try:
        archive.read_archive(data)
    except archive.ArchiveError as exc:
        raise CLIError(f"Error restoring snapshot: {path}: {exc}") from None
    query = {"dc": res.str("datacenter")} if res.str("datacenter") else {}
    try:
        common.api_request("PUT", common.http_addr(res), "/v1/snapshot", query=query,
                           raw=data, timeout=120.0)
    except ApiError as exc:
        raise CLIError(f"Error restoring snapshot: {exc}") from None
    print("Restored snapshot")
    return 0


def inspect_lines(meta: archive.Meta) -> list[str]:
    rows = [("ID", meta.id), ("Size", str(meta.size)), ("Index", str(meta.index)), ("Term", str(meta.term)),
            ("Version", str(meta.version))]
    return [f" {k.ljust(12)} {v}" for k, v in rows]


def cmd_inspect(args: Sequence[str]) -> int:
    fs = FlagSet("snapshot inspect")
    res = common.parse(fs, args, "snapshot inspect FILE", "Displays information about a snapshot file.")
    path = _one_file(res)
    try:
        meta, _ = archive.read_archive(_read(path))
    except archive.ArchiveError as exc:
        raise CLIError(f"Error inspecting snapshot: {path}: {exc}") from None
    common.out(inspect_lines(meta))
    return 0


COMMANDS = {
    "save": (cmd_save, "Saves snapshot of the servers' state"),
    "restore": (cmd_restore, "Restores snapshot of the servers' state"),
    "inspect": (cmd_inspect, "Displays information about a snapshot file"),
}


def cmd_snapshot(args: Sequence[str]) -> int:
    return common.run_group("snapshot", COMMANDS, args,
                            "Saves, restores and inspects snapshots of the servers' state (KV, catalog, sessions).")
