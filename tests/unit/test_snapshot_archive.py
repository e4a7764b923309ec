"""Snapshot archives (state/archive.py) and the Restore command of the state machine."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from pyconsul.agent.state import archive, snapshot
from pyconsul.agent.state.commands import KVSet, Register, Restore, decode, encode
from pyconsul.agent.state.results import StateError
from pyconsul.agent.state.store import StateStore


def store_with(*keys: str) -> StateStore:
    st = StateStore()
    for i, k in enumerate(keys, start=1):
        assert st.apply(i, encode(KVSet(k, f"v-{k}".encode()))) is True
    return st


def tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def members_of(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        for info in tar:
            f = tar.extractfile(info)
            assert f is not None
            out[info.name] = f.read()
    return out


def sums(files: dict[str, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in ("meta.json", "state.bin")).encode()


def test_round_trip_and_determinism() -> None:
    state = store_with("a", "b").snapshot()
    data = archive.write_archive(state, index=2, term=3, created_ms=1_700_000_000_123)
    meta, got = archive.read_archive(data)
    assert got == state
    assert meta == archive.Meta("3-2-1700000000123", len(state), 2, 3, 1)
    assert archive.write_archive(state, 2, 3, 1_700_000_000_123) == data
    assert list(members_of(data)) == ["meta.json", "state.bin", "SHA256SUMS"]


def _tampered(change: str) -> bytes:
    state = store_with("a").snapshot()
    files = members_of(archive.write_archive(state, 1, 1, 0))
    if change == "state-bytes":
        files["state.bin"] = files["state.bin"][:-1] + b"\x00"
    elif change == "state-garbage-resummed":
        files["state.bin"] = b"not msgpack at all"
        meta = json.loads(files["meta.json"])
        meta["Size"] = len(files["state.bin"])
        files["meta.json"] = json.dumps(meta).encode()
        files["SHA256SUMS"] = sums(files)
    elif change == "size":
        meta = json.loads(files["meta.json"])
        meta["Size"] += 1
        files["meta.json"] = json.dumps(meta).encode()
        files["SHA256SUMS"] = sums(files)
    elif change == "version":
        meta = json.loads(files["meta.json"])
        meta["Version"] = 2
        files["meta.json"] = json.dumps(meta).encode()
        files["SHA256SUMS"] = sums(files)
    elif change == "missing-sums":
        del files["SHA256SUMS"]
    elif change == "extra-member":
        files["../evil"] = b"x"
    return tar_gz(list(files.items()))


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty snapshot archive"),
    (b"hello world", "not a gzip"),
    (gzip.compress(b"not a tar archive, just text" * 40), "corrupt snapshot archive"),
    (_tampered("state-bytes"), "checksum mismatch for state.bin"),
    (_tampered("state-garbage-resummed"), "state.bin is not a valid state snapshot"),
    (_tampered("size"), "meta.json says"),
    (_tampered("version"), "unsupported snapshot archive version 2"),
    (_tampered("missing-sums"), "lacks SHA256SUMS"),
    (_tampered("extra-member"), "unexpected archive member '../evil'"),
])
def test_bad_archives_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(archive.ArchiveError, match=message.replace("(", r"\(").replace(".", r"\.")):
        archive.read_archive(data)


def test_truncated_archive_is_refused() -> None:
    data = archive.write_archive(store_with("a", "b", "c").snapshot(), 3, 1, 0)
    for cut in (10, len(data) // 2, len(data) - 4):
        with pytest.raises(archive.ArchiveError):
            archive.read_archive(data[:cut])


def test_restore_command_replaces_state_and_keeps_indexes_growing() -> None:
    saved = store_with("a", "b")
    st = store_with("a", "x", "y", "z")  # index 4
    st.apply(5, encode(Register("n1", "10.77.0.1", now=0.0)))
    assert decode(encode(Restore(saved.snapshot()))) == Restore(saved.snapshot())
    assert st.apply(6, encode(Restore(saved.snapshot()))) is True
    assert [e.key for e in st.kv_list("")] == ["a", "b"]
    assert st.nodes() == []
    assert st.kv_index("") == 6 and st.table_index("nodes") == 6  # monotonic X-Consul-Index
    assert {"kvs", "nodes"} <= st.last_changed
    # the entries themselves keep the snapshot's indexes
    e = st.kv_get("b")
    assert e is not None and e.modify_index == 2


def test_restore_of_garbage_is_an_error_and_changes_nothing() -> None:
    st = store_with("a")
    before = st.snapshot()
    res = st.apply(2, encode(Restore(b"\x93garbage")))
    assert isinstance(res, StateError) and "invalid snapshot" in res.message
    assert st.snapshot() == before


def test_replicas_applying_restore_agree() -> None:
    saved = store_with("k1", "k2").snapshot()
    a, b = store_with("p"), store_with("q", "r")
    a.apply(7, encode(Restore(saved)))
    b.apply(7, encode(Restore(saved)))
    assert a.snapshot() == b.snapshot()
    assert snapshot.load(a.snapshot()).kvs.keys() == {"k1", "k2"}


def test_cli_inspect_and_argument_errors(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from pyconsul.agent import cli

    path = Path(str(tmp_path)) / "s.snap"
    state = store_with("a").snapshot()
    path.write_bytes(archive.write_archive(state, 7, 2, 5000))
    assert cli.main(["snapshot", "inspect", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split() for line in out] == [["ID", "2-7-5000"], ["Size", str(len(state))], ["Index", "7"],
                                              ["Term", "2"], ["Version", "1"]]
    assert cli.main(["snapshot", "save"]) == 1
    assert "takes one argument" in capsys.readouterr().err
    path.write_bytes(b"junk")
    assert cli.main(["snapshot", "inspect", str(path)]) == 1
    assert "not a gzip" in capsys.readouterr().err
    assert cli.main(["snapshot", "restore", str(path) + ".missing"]) == 1
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("n", [0, 1, 511, 512, 10240, archive.CHUNK + 7, 3 * archive.CHUNK])
def test_archive_chunks_are_the_bytes_tarfile_and_gzip_write(n: int) -> None:
    """GET /v1/snapshot streams archive_chunks; joined they are exactly what tarfile + gzip.compress write."""
    state = bytes(range(256)) * (n // 512) + b"s" * (n - n // 512 * 256)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        meta = archive.Meta(f"3-2-{1_700_000_000_123}", len(state), 2, 3)
        meta_bytes = (json.dumps(meta.to_json(), indent=1, sort_keys=True) + "\n").encode()
        files = {"meta.json": meta_bytes, "state.bin": state}
        for name, data in (("meta.json", meta_bytes), ("state.bin", state), ("SHA256SUMS", sums(files))):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o600
            tar.addfile(info, io.BytesIO(data))
    want = gzip.compress(raw.getvalue(), mtime=1_700_000_000)
    pieces = list(archive.archive_chunks(state, 2, 3, 1_700_000_000_123))
    assert b"".join(pieces) == want == archive.write_archive(state, 2, 3, 1_700_000_000_123)
    assert max(len(p) for p in pieces) <= archive.CHUNK + 64 * 1024
    assert members_of(want)["state.bin"] == state
