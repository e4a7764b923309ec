"""Snapshot archives: what `GET /v1/snapshot` returns, `PUT /v1/snapshot` takes and
`pyconsul snapshot save/restore/inspect` handle.

Layout (the shape of Consul's archive): a gzip-compressed tar with three members, in this order:
- `meta.json`: {"ID", "Size", "Index", "Term", "Version"}; Size is the length of state.bin, Index the
  highest Raft index recorded in the state, Version the archive version (1).
- `state.bin`: the state machine snapshot (state/snapshot.py: versioned msgpack).
- `SHA256SUMS`: `<hex>  <name>` lines for meta.json and state.bin.
The contents are pyconsul's own state, so an archive from HashiCorp Consul is refused (and vice versa).

`read_archive` verifies everything (gzip and tar structure, member names, checksums, Size, meta fields,
and that state.bin decodes) and raises ArchiveError with one line saying what is wrong; it never returns
half-checked data. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from dataclasses import dataclass

from agent.state import snapshot
from agent.state.wire import DecodeError

VERSION = 1
MEMBERS = ("meta.json", "state.bin", "SHA256SUMS")
MAX_MEMBER = 1 << 30  # refuse absurd sizes before reading them


class ArchiveError(ValueError):
    """Not a valid pyconsul snapshot archive; the message says why."""


@dataclass(frozen=True, slots=True)
class Meta:
    id: str
    size: int
    index: int
    term: int
    version: int = VERSION

    def to_json(self) -> dict[str, object]:
        return {"ID": self.id, "Size": self.size, "Index": self.index, "Term": self.term, "Version": self.version}


def write_archive(state: bytes, index: int, term: int = 0, created_ms: int = 0) -> bytes:
    """An archive for `state`. Deterministic for equal arguments (tar and gzip times come from
    `created_ms`), so equal states saved at the same moment give equal files."""
    meta = Meta(f"{term}-{index}-{created_ms}", len(state), index, term)
    meta_bytes = (json.dumps(meta.to_json(), indent=1, sort_keys=True) + "\n").encode()
    sums = "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in (("meta.json", meta_bytes),
                                                                           ("state.bin", state))).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in zip(MEMBERS, (meta_bytes, state, sums), strict=True):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = created_ms // 1000
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=created_ms // 1000)


def read_archive(data: bytes) -> tuple[Meta, bytes]:
    """(meta, state bytes) of a verified archive; ArchiveError otherwise."""
    if not data:
        raise ArchiveError("empty snapshot archive")
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"not a gzip-compressed snapshot archive: {exc}") from None
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for info in tar:
                if not info.isfile() or info.name not in MEMBERS:
                    raise ArchiveError(f"unexpected archive member {info.name!r}")
                if info.name in files:
                    raise ArchiveError(f"duplicate archive member {info.name!r}")
                if info.size > MAX_MEMBER:
                    raise ArchiveError(f"archive member {info.name!r} is too large ({info.size} bytes)")
                f = tar.extractfile(info)
                if f is None:
                    raise ArchiveError(f"cannot read archive member {info.name!r}")
                files[info.name] = f.read()
    except tarfile.TarError as exc:
        raise ArchiveError(f"corrupt snapshot archive: {exc}") from None
    missing = [n for n in MEMBERS if n not in files]
    if missing:
        raise ArchiveError(f"snapshot archive lacks {', '.join(missing)}")
    _check_sums(files)
    meta = _meta(files["meta.json"])
    state = files["state.bin"]
    if meta.size != len(state):
        raise ArchiveError(f"state.bin is {len(state)} bytes but meta.json says {meta.size}")
    try:
        snapshot.load(state)
    except DecodeError as exc:
        raise ArchiveError(f"state.bin is not a valid state snapshot: {exc}") from None
    return meta, state


def _check_sums(files: dict[str, bytes]) -> None:
    want: dict[str, str] = {}
    for line in files["SHA256SUMS"].decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) != 2:
            raise ArchiveError(f"malformed SHA256SUMS line {line!r}")
        want[parts[1]] = parts[0].lower()
    for name in ("meta.json", "state.bin"):
        if name not in want:
            raise ArchiveError(f"SHA256SUMS has no checksum for {name}")
        if hashlib.sha256(files[name]).hexdigest() != want[name]:
            raise ArchiveError(f"checksum mismatch for {name}: the archive is corrupt")


def _meta(data: bytes) -> Meta:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"meta.json is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ArchiveError("meta.json is not a JSON object")
    fields: dict[str, int] = {}
    for key in ("Size", "Index", "Term", "Version"):
        v = obj.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ArchiveError(f"meta.json: {key} must be a non-negative integer, got {v!r}")
        fields[key] = v
    if fields["Version"] != VERSION:
        raise ArchiveError(f"unsupported snapshot archive version {fields['Version']}")
    ident = obj.get("ID")
    if not isinstance(ident, str):
        raise ArchiveError("meta.json: ID must be a string")
    return Meta(ident, fields["Size"], fields["Index"], fields["Term"], fields["Version"])
