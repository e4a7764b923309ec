"""Decompression bombs against state/archive.py: the gzip stream is inflated incrementally and never
beyond what the tar headers announce, so memory stays bounded and the refusal names the reason."""

from __future__ import annotations

import io
import tarfile
import time
import tracemalloc
import zlib

import pytest

from pyconsul.agent.state import archive
from pyconsul.agent.state.store import StateStore

MiB = 1024 * 1024


def _gzip_stream(prefix: bytes, zeros: int) -> bytes:
    """gzip(prefix + zeros x b"\\0"), compressed chunk by chunk (the plain text is never in memory)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(prefix)]
    block = bytes(MiB)
    for _ in range(zeros // MiB):
        out.append(z.compress(block))
    out.append(z.flush())
    return b"".join(out)


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _peak_while(fn: object) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    err: BaseException | None = None
    try:
        fn()  # type: ignore[operator]
    except Exception as exc:
        err = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, err


def test_zero_bomb_is_refused_without_inflating_it() -> None:
    bomb = _gzip_stream(b"", 256 * MiB)  # ~256 KiB on the wire
    assert len(bomb) < MiB
    t0 = time.monotonic()
    peak, err = _peak_while(lambda: archive.read_archive(bomb))
    assert isinstance(err, archive.ArchiveError), err
    assert "lacks meta.json" in str(err) or "inflates beyond" in str(err)
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB while refusing a bomb"
    assert time.monotonic() - t0 < 5.0


def test_member_announcing_a_huge_size_is_refused_from_its_header() -> None:
    bomb = _gzip_stream(_tar_header("state.bin", 100 * 1024 * MiB), 64 * MiB)
    peak, err = _peak_while(lambda: archive.read_archive(bomb))
    assert isinstance(err, archive.ArchiveError)
    assert "archive member 'state.bin' is too large (107374182400 bytes; the limit is" in str(err)
    assert peak < 16 * MiB


def test_output_beyond_the_announced_members_is_refused() -> None:
    # A valid small member, then 128 MiB of "padding" after the tar end: the inflater stops at the slack.
    bomb = _gzip_stream(_tar_header("meta.json", 2) + b"{}".ljust(512, b"\0"), 128 * MiB)
    peak, err = _peak_while(lambda: archive.read_archive(bomb))
    assert isinstance(err, archive.ArchiveError)
    assert "inflates beyond what its members announce" in str(err)
    assert peak < 16 * MiB


def test_state_cap_is_a_parameter() -> None:


    state = StateStore().snapshot()
    data = archive.write_archive(state, 1, 1, 0)
    assert archive.read_archive(data)[1] == state
    with pytest.raises(archive.ArchiveError, match=r"'state\.bin' is too large"):
        archive.read_archive(data, max_state=len(state) - 1)


@pytest.mark.parametrize("name", ["/etc/passwd", "../state.bin", "a/../../meta.json"])
def test_unsafe_member_paths_are_refused(name: str) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = z.compress(raw.getvalue()) + z.flush()
    with pytest.raises(archive.ArchiveError, match="unsafe path"):
        archive.read_archive(data)


def test_trailing_garbage_after_the_gzip_stream_is_refused() -> None:


    data = archive.write_archive(StateStore().snapshot(), 1, 1, 0)
    with pytest.raises(archive.ArchiveError, match="trailing data"):
        archive.read_archive(data + b"junk")
