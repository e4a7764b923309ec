"""kill -9 a process that is appending to RaftStorage: every save() it acknowledged survives.

The child prints an index only after save() returned. The parent kills it at a random moment (a bounded
random delay is the fault, not synchronisation), reopens the directory and checks every acknowledged
entry, the hard state and the snapshot. The same directory is reused across rounds, so later rounds also
recover from the torn tails, rotations and snapshot compactions left by earlier ones.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyconsul.agent.raft.storage import RaftStorage

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from pyconsul.agent.raft.messages import Entry, HardState, Snapshot, SnapshotMeta
from pyconsul.agent.raft.storage import RaftStorage

def payload(i):
    return b"entry-%d;" % i * (i % 13 + 1)

s = RaftStorage.open(sys.argv[1], segment_size=32 * 1024)
hs, meta, entries = s.initial_state()
last = entries[-1].index if entries else meta.index
term, first, n = hs.term + 1, last + 1, 0
while True:
    n += 1
    batch = [Entry(term, i, data=payload(i)) for i in range(last + 1, last + 2 + n % 9)]
    s.save(HardState(term, "child", batch[-1].index), None, batch)
    last = batch[-1].index
    print(last, flush=True)
    if n % 25 == 0:  # a local snapshot of an entry of this term, a few entries behind
        at = max(first, last - 5)
        s.save_snapshot(Snapshot(SnapshotMeta(at, term), b"snap@%d" % at))
"""


def payload(i: int) -> bytes:
    return b"entry-%d;" % i * (i % 13 + 1)


def _crash_once(path: Path, rng: random.Random, wait_for_ack: bool) -> list[int]:
    """Run the child, kill -9 it at a random moment, return the indexes it acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + 10
    kill_at = None if wait_for_ack else time.monotonic() + rng.uniform(0.0, 0.3)
    try:
        while True:
            now = time.monotonic()
            assert now < deadline, "child never acknowledged a save"
            if kill_at is None and b"\n" in out:
                kill_at = now + rng.uniform(0.0, 0.15)  # the fault: a random moment after the first ack
            if kill_at is not None and now >= kill_at:
                break
            timeout = 0.05 if kill_at is None else max(0.0, kill_at - now)
            if select.select([fd], [], [], timeout)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"child exited early: {proc.stderr.read().decode()}"
                out += chunk
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    out += proc.stdout.read()  # lines already in the pipe were acknowledged before the kill
    proc.stdout.close()
    proc.stderr.close()
    return [int(line) for line in out.split(b"\n")[:-1]]  # a partial last line was not fully printed


def _check(path: Path, acked: list[int]) -> None:
    s = RaftStorage.open(path, segment_size=32 * 1024)
    try:
        hs, meta, entries = s.initial_state()
        top = max(acked, default=0)
        assert hs.commit >= top, "the hard state saved with the last acknowledged batch survives"
        assert [e.index for e in entries] == list(range(meta.index + 1, meta.index + 1 + len(entries)))
        assert meta.index + len(entries) >= top, f"acknowledged index {top} lost"
        for e in entries:
            assert e.data == payload(e.index), f"entry {e.index} has wrong content"
        snap = s.load_snapshot()
        if meta.index:
            assert snap is not None and snap.data == b"snap@%d" % meta.index
    finally:
        s.close()


def test_kill_9_never_loses_an_acknowledged_save(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    path = tmp_path / "raft"
    acked: list[int] = []
    for round_ in range(10):
        acked += _crash_once(path, rng, wait_for_ack=round_ % 3 != 2)
        _check(path, acked)
    assert acked, f"no round acknowledged anything (seed {seed})"
