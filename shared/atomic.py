"""Atomic file writes: every file the project writes (run records, checkpoints, weights, reports,
the data cache) goes through a temp file in the same directory and a rename, so a reader, or a
run resumed after a kill, sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_writes = 0


def _fault_point(f) -> None:
    """Fault injection for the kill-and-resume tests: FMNIST_PARITY_KILL_IN_WRITE=N makes this
    process SIGKILL itself in the middle of its N-th atomic write (half the bytes on disk)."""
    global _writes
    target = os.environ.get("FMNIST_PARITY_KILL_IN_WRITE")
    if not target:
        return
    _writes += 1
    if _writes == int(target):
        f.flush()
        os.ftruncate(f.fileno(), f.tell() // 2)
        os.fsync(f.fileno())
        os.kill(os.getpid(), 9)


def atomic_write(path: Path, write: Callable) -> None:
    """Write through a temp file in the same directory, then rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what an ordinary file gets
        with os.fdopen(fd, "wb") as f:
            write(f)
            _fault_point(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
