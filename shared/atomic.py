"""Atomic file writes: every file the project writes (run records, checkpoints, weights, reports,
the data cache) goes through a temp file in the same directory and a rename, so a reader, or a
run resumed after a kill, sees the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_writes = 0


class _FullDisk(io.RawIOBase):
    """A file on a full disk: every write fails with ENOSPC, as the OS reports it."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))


_disk_full = False


def _full_disk(path: Path) -> _FullDisk | None:
    """Fault injection for the tests: FMNIST_PARITY_FULL_DISK_AT=NAME makes the first atomic write of a
    file named NAME, and every write after it, write to a full disk."""
    global _disk_full
    full = os.environ.get("FMNIST_PARITY_FULL_DISK_AT")
    _disk_full = _disk_full or bool(full) and path.name == full
    return _FullDisk(path) if _disk_full else None


def _fault_point(f) -> None:
    """Fault injection for the kill-and-resume tests: FMNIST_PARITY_KILL_IN_WRITE=N makes this
    process SIGKILL itself in the middle of its N-th atomic write (half the bytes on disk)."""
    global _writes
    kill = os.environ.get("FMNIST_PARITY_KILL_IN_WRITE")
    if not kill:
        return
    _writes += 1
    if _writes == int(kill):
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
            write(_full_disk(path) or f)
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
