"""agent.fsutil.atomic_write: the file is complete or absent, the mode is honoured, the directory is fsynced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pyconsul.agent import fsutil
from pyconsul.agent.fsutil import atomic_write


def test_writes_bytes_and_text_and_replaces(tmp_path: Path) -> None:
    p = tmp_path / "f"
    atomic_write(p, b"\x00one")
    assert p.read_bytes() == b"\x00one"
    atomic_write(str(p), "twö")
    assert p.read_text(encoding="utf-8") == "twö"
    atomic_write(p, b"")
    assert p.read_bytes() == b""
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]  # no temporary file left behind


def test_mode_is_exact_and_default_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "secret", "k", mode=0o600)
        atomic_write(tmp_path / "open", "k", mode=0o666)  # exact: the umask does not narrow it
        atomic_write(tmp_path / "plain", "k")
        os.umask(0o077)
        atomic_write(tmp_path / "private", "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "open").stat().st_mode) == 0o666
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600
    atomic_write(tmp_path / "secret", "k2", mode=0o640)  # replacing sets the new mode
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o640


def _record_syscalls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    monkeypatch.setattr(fsutil.os, "replace", replace)
    return calls


def test_file_fsynced_before_rename_and_directory_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_syscalls(monkeypatch)
    atomic_write(tmp_path / "f", "data")
    assert calls == [("fsync", "file"), ("replace", "f"), ("fsync", "dir")]
    calls.clear()
    atomic_write(tmp_path / "g", "data", durable=False)
    assert calls == [("replace", "g")]


def test_failure_leaves_old_content_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "f"
    atomic_write(p, "old")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(fsutil.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write(p, "new")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]
    with pytest.raises(OSError):
        atomic_write(tmp_path / "absent", "new")
    assert not (tmp_path / "absent").exists()  # complete or absent, never partial
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]


def test_missing_directory_raises_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "no" / "f", "x")
    assert list(tmp_path.iterdir()) == []
