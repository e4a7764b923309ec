"""Where a benchmark figure came from: the revision, the machine and the exact command.

Every bench script prints `header()` first, so a figure copied into docs/benchmarks.md can be traced
to a committed revision and rerun. Import it from a bench script with

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
    from provenance import header, provenance

A revision ends in "+dirty" when tracked files differ from HEAD or untracked files exist in the code
directories (agent/, chaos/, lab/, bench/): such figures are not reproducible from the revision alone.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ("agent", "chaos", "lab", "bench", "pyproject.toml")


def _git(*args: str) -> str:
    try:
        r = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.rstrip() if r.returncode == 0 else ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def revision() -> tuple[str, list[str]]:
    """(HEAD's full hash, plus "+dirty" if the tree differs; the paths that make it dirty)."""
    head = _git("rev-parse", "HEAD") or "unknown"
    changed = _git("status", "--porcelain", "--untracked-files=no").splitlines()
    untracked = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_DIRS).splitlines()
    dirty = sorted({ln[3:] for ln in changed + untracked if ln.strip()})
    return head + ("+dirty" if dirty else ""), dirty


def provenance() -> dict[str, Any]:
    rev, dirty = revision()
    return {
        "revision": rev,
        "dirty_paths": dirty,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
    }


def header(p: dict[str, Any] | None = None) -> str:
    """The lines a bench prints before its results (each starts with '# ')."""
    p = p or provenance()
    lines = [
        f"# revision: {p['revision']}",
        f"# machine: nproc {p['nproc']}, {p['cpu']}, Linux {p['kernel']}, Python {p['python']}",
        f"# command: {p['command']}  (in {p['cwd']})",
        f"# date: {p['date']}",
    ]
    if p["dirty_paths"]:
        shown = ", ".join(p["dirty_paths"][:8]) + (", ..." if len(p["dirty_paths"]) > 8 else "")
        lines.append(f"# uncommitted: {len(p['dirty_paths'])} paths ({shown})")
    return "\n".join(lines)


if __name__ == "__main__":
    print(header())


def launch_code(tree: Path | str, then: str = "run") -> str:
    """Python code (for `python -c`) that runs `pyconsul` from source tree `tree`, whatever this venv's editable
    install points at, so benches can run any revision side by side. Trees since the pyconsul namespace (a
    setup.py mapping pyconsul.agent onto agent/) get a `pyconsul` package whose path is the tree; older trees
    import top-level `agent` from it. then="run" runs the CLI with the remaining argv; "where" prints the file
    of the agent package that would run."""
    return (
        "import os, runpy, sys, types\n"
        f"tree = {str(tree)!r}\n"
        f"sys.path[:] = [p for p in sys.path if p not in ('', {str(REPO)!r})]\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')]\n"
        "setup = os.path.join(tree, 'setup.py')\n"
        "if os.path.exists(setup) and 'pyconsul.' in open(setup).read():\n"
        "    pkg = types.ModuleType('pyconsul'); pkg.__path__ = [tree]; sys.modules['pyconsul'] = pkg\n"
        "    mod = 'pyconsul.agent'\n"
        "else:\n"
        "    sys.path.insert(0, tree); mod = 'agent'\n"
        + ("import importlib; print(importlib.import_module(mod).__file__)\n" if then == "where" else
           "sys.argv[0] = 'pyconsul'\nrunpy.run_module(mod, run_name='__main__', alter_sys=True)\n")
    )
