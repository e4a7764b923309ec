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
half-checked data. Pure: bytes (or a readable binary file: PUT /v1/snapshot hands it the spooled body) in,
bytes out.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from pyconsul.agent.state import snapshot
from pyconsul.agent.state.wire import DecodeError

VERSION = 1
MEMBERS = ("meta.json", "state.bin", "SHA256SUMS")
MAX_STATE = 512 * 1024 * 1024  # state.bin, decompressed: the largest state a restore accepts (README "Limits")
MAX_SMALL = 64 * 1024  # meta.json and SHA256SUMS
HEADER_SLACK = 1024 * 1024  # inflated output allowed beyond the announced members (tar and pax headers, padding)


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
    return b"".join(archive_chunks(state, index, term, created_ms))


CHUNK = 1024 * 1024  # state bytes compressed per step of archive_chunks


def archive_chunks(state: bytes, index: int, term: int = 0, created_ms: int = 0) -> Iterator[bytes]:
    """write_archive's bytes in pieces, compressed as they are produced: serving a large state (GET
    /v1/snapshot) never holds the tar stream or the whole archive, only `state` and a piece. CPU-bound: on
    an event loop, take each piece in a worker thread. A gzip member (RFC 1952: header with the mtime,
    raw deflate, CRC-32 and length) over a ustar/pax stream (512-byte blocks, two zero blocks, padded to
    tarfile's 10240-byte records), as tarfile and gzip write them."""
    meta = Meta(f"{term}-{index}-{created_ms}", len(state), index, term)
    meta_bytes = (json.dumps(meta.to_json(), indent=1, sort_keys=True) + "\n").encode()
    sums = "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in (("meta.json", meta_bytes),
                                                                           ("state.bin", state))).encode()
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc, size = 0, 0

    def deflate(data: bytes | memoryview) -> bytes:
        nonlocal crc, size
        crc = zlib.crc32(data, crc)
        size += len(data)
        return z.compress(data)

    yield b"\x1f\x8b\x08\x00" + struct.pack("<I", (created_ms // 1000) & 0xFFFFFFFF) + b"\x02\xff"
    for name, data in zip(MEMBERS, (meta_bytes, state, sums), strict=True):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = created_ms // 1000
        info.mode = 0o600
        out = deflate(info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
        view = memoryview(data)
        for pos in range(0, len(view), CHUNK):
            out += deflate(view[pos:pos + CHUNK])
            if out:
                yield out
                out = b""
        out += deflate(bytes(-len(data) % tarfile.BLOCKSIZE))
        if out:
            yield out
    written = size + 2 * tarfile.BLOCKSIZE
    tail = deflate(bytes(2 * tarfile.BLOCKSIZE + -written % tarfile.RECORDSIZE))
    yield tail + z.flush() + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)


class Readable(Protocol):
    """A binary file open for reading (only read(n) is used)."""

    def read(self, n: int = -1, /) -> bytes: ...


def read_archive(data: bytes | Readable, max_state: int = MAX_STATE) -> tuple[Meta, bytes]:
    """(meta, state bytes) of a verified archive; ArchiveError otherwise. `data`: the archive's bytes, or a
    binary file positioned at its start (read in 64 KiB pieces to its end; any size: only what the tar
    headers announce is ever inflated and kept).

    The gzip stream is inflated incrementally and never beyond what the members' tar headers announce
    (each member has its cap: `max_state` for state.bin, MAX_SMALL for the others), so a decompression
    bomb costs a few KiB of memory and is refused at its first oversized header. CPU-bound: callers on
    an event loop run it in a worker thread."""
    src = _Inflater(data, HEADER_SLACK)
    magic = src.peek(2)
    if not magic:
        raise ArchiveError("empty snapshot archive")
    if magic != b"\x1f\x8b":
        raise ArchiveError("not a gzip-compressed snapshot archive: bad magic number")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=src, mode="r|") as tar:  # type: ignore[call-overload]
            for info in tar:
                name = info.name
                if name.startswith("/") or ".." in name.split("/") or not info.isfile() or name not in MEMBERS:
                    unsafe = " (unsafe path)" if name.startswith("/") or ".." in name.split("/") else ""
                    raise ArchiveError(f"unexpected archive member {name!r}{unsafe}")
                if name in files:
                    raise ArchiveError(f"duplicate archive member {name!r}")
                cap = max_state if name == "state.bin" else MAX_SMALL
                if info.size > cap:
                    raise ArchiveError(f"archive member {name!r} is too large ({info.size} bytes; the limit is "
                                       f"{cap} bytes)")
                src.limit = info.offset_data + info.size + HEADER_SLACK  # this member, then the next headers
                f = tar.extractfile(info)
                if f is None:
                    raise ArchiveError(f"cannot read archive member {name!r}")
                files[name] = f.read()
        src.finish()
    except tarfile.TarError as exc:
        raise ArchiveError(f"corrupt snapshot archive: {exc}") from None
    except (EOFError, zlib.error) as exc:
        raise ArchiveError(f"not a gzip-compressed snapshot archive: {exc}") from None
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


class _Inflater:
    """A read-only file over the gzip stream in `data`, inflated on demand. Reading past `limit` bytes
    of output raises ArchiveError (the caller raises the limit as tar headers announce members); the
    stream must be one gzip member, complete, with nothing after it."""

    def __init__(self, data: bytes | Readable, limit: int) -> None:
        self._src: memoryview | None = None
        self._file: Readable | None = None
        if isinstance(data, bytes | bytearray | memoryview):
            self._src = memoryview(data)
        else:
            self._file = data
        self._pos = 0
        self._head = b""  # compressed bytes read from the file by peek, not yet inflated
        self._z = zlib.decompressobj(wbits=31)  # gzip header and trailer
        self._pending = b""
        self.produced = 0
        self.limit = limit

    def _next_piece(self) -> bytes | memoryview:
        """The next compressed piece (up to 64 KiB); empty at the end of the input."""
        if self._head:
            piece, self._head = self._head, b""
            return piece
        if self._src is not None:
            mv = self._src[self._pos : self._pos + 65536]
            self._pos += len(mv)
            return mv
        assert self._file is not None
        return self._file.read(65536)

    def peek(self, n: int) -> bytes:
        """The first n compressed bytes (fewer at the end of the input), left to be inflated."""
        if self._src is not None:
            return bytes(self._src[:n])
        while len(self._head) < n:
            more = self._file.read(65536) if self._file is not None else b""
            if not more:
                break
            self._head += more
        return self._head[:n]

    def _at_end(self) -> bool:
        if self._src is not None:
            return self._pos >= len(self._src)
        if self._head:
            return False
        assert self._file is not None
        self._head = self._file.read(65536)
        return not self._head

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        out = bytearray(self._pending[:n])
        self._pending = self._pending[n:]
        while len(out) < n and not self._z.eof:
            want = n - len(out)
            if self._z.unconsumed_tail:
                chunk = self._z.decompress(self._z.unconsumed_tail, want)
            else:
                piece = self._next_piece()
                if not piece:
                    raise EOFError("truncated gzip stream")
                chunk = self._z.decompress(piece, want)
            out += chunk
        if self._z.eof and (self._z.unused_data or not self._at_end()):
            raise ArchiveError("trailing data after the gzip stream")
        self.produced += len(out)
        if self.produced > self.limit:
            raise ArchiveError(f"the archive inflates beyond what its members announce (more than {self.limit} "
                               "bytes): refused")
        return bytes(out)

    def finish(self) -> None:
        """Inflate the rest (the tar end blocks: within the limit) so a truncated or corrupt gzip trailer
        (CRC, length) is noticed."""
        while not self._z.eof:
            if not self.read(65536) and not self._z.eof:
                raise EOFError("truncated gzip stream")


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
