"""Replacing a file all or nothing: `atomic_write`.

The data goes to a new temporary file in the target's directory (same file system, so the rename is
atomic), which is fsynced, renamed over the target with os.replace, and then the directory is fsynced
so the rename itself survives a crash. A reader, or the file after a crash, sees the old content or the
new content, never a mix or a truncated file. If anything fails, the temporary file is removed, the
target is untouched and the error propagates.

Temporary files are named `<name>.<random>.tmp` next to the target: a crash between creating and
renaming one leaves such a file behind (raft/storage.py removes `*.tmp` from its snapshot directory).
"""

from __future__ import annotations

import os

__all__ = ["atomic_write", "fsync_dir"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the directory's entries (a create, rename or unlink in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, mode: int | None = None,
                 durable: bool = True) -> None:
    """Replace `path` with `data` (str is written as UTF-8), all or nothing.

    `mode`: the new file's permission bits, exactly (the umask does not apply); None creates it as
    open() does (0o666 minus the umask). `durable=False` skips both fsyncs: still atomic for readers,
    but after a power loss the old or the new file may be found (never a mix).
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    tmp = f"{target}.{os.urandom(4).hex()}.tmp"
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666 if mode is None else 0o600)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(directory)
