#!/usr/bin/env python3
"""Build (once per source hash) the wheelhouse the `pyconsul` role copies to hosts.

Run on the controller by the role with the controller's Python (it needs pip). It snapshots the
distribution's sources (pyproject.toml and the packages it ships: agent/, lab/, chaos/), hashes
the snapshot together with the requirements and this recipe, and, unless
`<cache>/<hash>.tar` exists already, builds wheels for pyconsul and all its dependencies (plus
pip, supervisor and any extras) and packs them with a pinned requirements.txt into that tar.

Contract: the tar's bytes depend only on the hash, so an unchanged tree means an unchanged file
on the hosts (changed=0). Wheels are never rebuilt for a hash that exists: zip timestamps would
make the bytes differ (SOURCE_DATE_EPOCH is fixed anyway, for reproducible rebuilds).

Prints one JSON object: {"changed": bool, "hash": str, "tar": path, "wheels": [file names]}.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

RECIPE = "1"  # bump when the way wheelhouses are built changes
SOURCES = ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in", "agent", "lab", "chaos")
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip file can hold
KEEP = 5  # wheelhouses kept in the cache


def source_files(root: Path) -> list[str]:
    """Relative paths of the distribution's source files: git's view (tracked plus untracked,
    not ignored) when `root` is a git work tree, else a walk without caches."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *SOURCES],
            check=True, capture_output=True,
        ).stdout.decode()
        files = {p for p in out.split("\0") if p and (root / p).is_file()}
    except (OSError, subprocess.CalledProcessError):
        files = set()
        for top in SOURCES:
            base = root / top
            if base.is_file():
                files.add(top)
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.endswith(".egg-info")]
                files.update(str(Path(dirpath, f).relative_to(root)) for f in filenames if not f.endswith(".pyc"))
    return sorted(files)


def snapshot(root: Path, dest: Path, extras: list[str]) -> str:
    """Copy the sources to `dest` and return the hash of what was copied."""
    h = hashlib.sha256(f"recipe={RECIPE}\npython={sys.version_info[:2]}\nextras={sorted(extras)}\n".encode())
    for rel in source_files(root):
        data = (root / rel).read_bytes()
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


def wheel_requirement(name: str) -> str:
    """`cffi-2.1.1-cp311-...whl` -> `cffi==2.1.1`."""
    dist, version = name.split("-")[:2]
    return f"{dist}=={version}"


def pack(wheels: Path, tar_path: Path) -> list[str]:
    """A deterministic tar of the wheels and a pinned requirements.txt."""
    names = sorted(p.name for p in wheels.glob("*.whl"))
    reqs = "".join(wheel_requirement(n) + "\n" for n in names).encode()
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in [("requirements.txt", reqs)] + [(n, (wheels / n).read_bytes()) for n in names]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, type=Path)
    ap.add_argument("--cache", type=Path, help="where wheelhouses are kept (required unless --snapshot)")
    ap.add_argument("--extra", action="append", default=[], help="extra requirement (repeatable)")
    ap.add_argument("--snapshot", type=Path, help="only copy the sources into this (new) directory and exit: "
                    "a frozen tree to build from while the work tree keeps changing (Molecule does this)")
    args = ap.parse_args()
    root = args.source.resolve()
    if args.snapshot:
        if args.snapshot.exists():
            shutil.rmtree(args.snapshot)
        digest = snapshot(root, args.snapshot, [])
        print(json.dumps({"changed": True, "snapshot": str(args.snapshot), "hash": digest}))
        return 0
    if args.cache is None:
        ap.error("--cache is required")
    cache = args.cache.resolve()
    requirements = ["pip", "supervisor", *args.extra]  # pip: hosts need no ensurepip
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock, tempfile.TemporaryDirectory(prefix="wheelhouse-") as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time per cache
        src, wheels = Path(tmp, "src"), Path(tmp, "wheels")
        digest = snapshot(root, src, requirements)
        tar_path = cache / f"{digest}.tar"
        if tar_path.exists():
            with tarfile.open(tar_path) as tar:
                names = sorted(n for n in tar.getnames() if n.endswith(".whl"))
            print(json.dumps({"changed": False, "hash": digest, "tar": str(tar_path), "wheels": names}))
            return 0
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(src), *requirements],
            env=env, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            print(json.dumps({"changed": False, "failed": True, "msg": "pip wheel failed", "hash": digest}))
            return 1
        partial = tar_path.with_suffix(".tar.partial")
        names = pack(wheels, partial)
        partial.replace(tar_path)
        old = sorted(cache.glob("*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]
        for p in old:
            with contextlib.suppress(OSError):
                p.unlink()
        shutil.rmtree(src, ignore_errors=True)
    print(json.dumps({"changed": True, "hash": digest, "tar": str(tar_path), "wheels": names}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
