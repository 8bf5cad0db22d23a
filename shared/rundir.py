"""The run directory: the one format both implementations write and `compare/` reads.

FORMAT_VERSION 1. A run directory holds:
  run.json       {"format": "fmnist-parity-run", "version": 1, "framework", "backend",
                  "config": RunConfig.to_dict(), "data": {"source", "sha256": {file: digest}},
                  "environment": {python, framework versions, numpy, device, device_name, cpu,
                  threads, tf32, deterministic, ...}, "timing": {"startup_seconds", "data_seconds"},
                  "command": [argv]}
  status.json    {"state": running|completed|failed|diverged|interrupted, "message", "epoch", "updated"}
  metrics.jsonl  one JSON object per finished epoch, keys METRIC_KEYS:
                   epoch           1-based
                   train_loss      mean per-sample training loss over the epoch, i.e. the batch-mean
                                   losses weighted by batch size, each taken from that step's forward
                                   pass (before its update), so it trails the end-of-epoch weights
                   train_acc       fraction correct over the same forward passes
                   test_loss       mean per-sample loss on the full 10,000-image test set, after the epoch
                   test_acc        fraction correct on the full test set
                   train_seconds   wall time of the epoch's training steps (synchronised on GPU)
                   eval_seconds    wall time of the test-set evaluation
                   samples_per_second  training samples / train_seconds
  checkpoints/epoch-NNNN.<ext>   model + optimizer state after epoch NNNN (framework format),
                 with epoch-NNNN.<ext>.sha256 beside it (its digest: a damaged checkpoint is detected)
  .lock          held (flock) by the one live writer, holding its pid; the kernel releases it on any exit
  weights/initial.npz, weights/final.npz   framework-neutral weights (shared/weights.py)
Every file is replaced atomically (temp file + rename): a kill leaves the old or the new version
(and at most a hidden .*.tmp, removed by the next writer).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from shared import weights as fweights
from shared.atomic import atomic_write

FORMAT = "fmnist-parity-run"
FORMAT_VERSION = 1
STATES = ("running", "completed", "failed", "diverged", "interrupted")
LOCK = ".lock"
METRIC_KEYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "train_seconds",
    "eval_seconds",
    "samples_per_second",
)


class RunFormatError(ValueError):
    """A run directory that does not follow the format; the message names the file."""


def write_json(path: Path, obj) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(Path(path), lambda f: f.write(data))


def write_run(run_dir: Path, meta: dict) -> None:
    write_json(Path(run_dir) / "run.json", {"format": FORMAT, "version": FORMAT_VERSION, **meta})


def write_status(run_dir: Path, state: str, message: str = "", epoch: int = 0) -> None:
    assert state in STATES, state
    write_json(
        Path(run_dir) / "status.json", {"state": state, "message": message, "epoch": epoch, "updated": time.time()}
    )


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """Rewrite the whole metrics file (small) atomically, so it never holds half a line."""
    text = "".join(json.dumps({k: row[k] for k in METRIC_KEYS}) + "\n" for row in rows).encode()
    atomic_write(Path(run_dir) / "metrics.jsonl", lambda f: f.write(text))


def checkpoint_path(run_dir: Path, epoch: int, ext: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch-{epoch:04d}.{ext}"


def checkpoints(run_dir: Path, ext: str) -> list[tuple[int, Path]]:
    """(epoch, path) of every checkpoint, newest first."""
    found = sorted(Path(run_dir, "checkpoints").glob(f"epoch-*.{ext}"), reverse=True)
    return [(int(p.name.split("-")[1].split(".")[0]), p) for p in found]


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def seal_checkpoint(path: Path) -> None:
    """Record the checkpoint's digest beside it (written after the checkpoint itself)."""
    digest = _digest(path).encode()
    atomic_write(Path(f"{path}.sha256"), lambda f: f.write(digest))


def checkpoint_damage(path: Path) -> str | None:
    """Why the checkpoint cannot be trusted, or None. No digest file (a kill between the two writes):
    trusted as far as the framework's loader accepts it."""
    seal = Path(f"{path}.sha256")
    if not seal.exists():
        return None
    try:
        ok = _digest(path) == seal.read_text().strip()
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    return None if ok else "its content does not match its recorded SHA-256 (damaged or truncated)"


def remove_checkpoint(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.sha256").unlink(missing_ok=True)


@dataclass
class Writer:
    """A run's record, written by its one live writer (after lock()) in the order a resume relies on:
    the checkpoint, its seal, the metrics, then the status naming the epoch."""

    out: Path
    ext: str  # the framework's checkpoint extension
    keep: int = 0  # checkpoints to keep (0: all)

    def start(self, meta: dict, epochs_done: int) -> None:
        write_run(self.out, meta)
        write_status(self.out, "running", "", epochs_done)

    def epoch(self, epoch: int, rows: list[dict], save_checkpoint) -> None:
        """Record a finished epoch; save_checkpoint(path) writes the framework's checkpoint."""
        path = checkpoint_path(self.out, epoch, self.ext)
        save_checkpoint(path)
        seal_checkpoint(path)
        write_metrics(self.out, rows)
        write_status(self.out, "running", "", epoch)
        if self.keep and epoch > self.keep:
            remove_checkpoint(checkpoint_path(self.out, epoch - self.keep, self.ext))

    def weights(self, which: str, layers: list, norms: dict) -> None:
        """weights/<which>.npz in the neutral format (initial, final)."""
        fweights.save(self.out / "weights" / f"{which}.npz", layers, norms)

    def end(self, state: str, epoch: int, message: str = "") -> None:
        write_status(self.out, state, message, epoch)


class LockedError(RuntimeError):
    """Another live process writes to this directory."""


_held: dict[str, int] = {}  # directory -> open lock fd, kept for the life of the process


def holds_lock(directory: Path) -> bool:
    return str(Path(directory).resolve()) in _held


def release_all() -> None:
    """Give up every lock this process holds (a serving process between runs)."""
    while _held:
        os.close(_held.popitem()[1])


def first_missing(path: Path) -> Path | None:
    """The outermost of `path` and its parents that does not exist yet: what writing into `path`
    would create. None if `path` exists. Taken before a command writes, so that a refusal can
    remove exactly what the command itself created (remove_unstarted)."""
    path = Path(path).absolute()
    if path.exists() or path.is_symlink():
        return None
    while not (path.parent.exists() or path.parent == path):
        path = path.parent
    return path


def remove_unstarted(root: Path | None) -> None:
    """Remove `root` (from first_missing) if no run started under it: a refused command leaves
    the file system as it found it. Anything holding a status.json is a run and is kept."""
    if root is None or not root.is_dir() or any(root.rglob("status.json")):
        return
    top = root.resolve()
    for key in [k for k in _held if Path(k) == top or top in Path(k).parents]:
        os.close(_held.pop(key))  # our own lock goes with the folder
    shutil.rmtree(root, ignore_errors=True)


def lock(directory: Path, what: str = "run directory") -> None:
    """Become the one live writer of `directory` (created if needed), or raise LockedError naming
    the process that is. An flock: released by the kernel however the holder exits, even SIGKILL.
    Then remove temp files a killed writer left behind (no one else can be writing them)."""
    directory = Path(directory)
    key = str(directory.resolve())
    if key in _held:
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise LockedError(
            f"{directory}: this {what} is in use by another live process (pid {holder}); "
            f"wait for it to finish or stop it (kill {holder}), then run again"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd
    for tmp in directory.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


@dataclass
class RunRecord:
    path: Path
    meta: dict
    status: dict
    metrics: list[dict]

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def label(self) -> str:
        b = self.meta.get("backend")
        return self.meta["framework"] + (f"-{b}" if b and self.meta["framework"] == "keras" else "")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunFormatError(f"{path}: missing; is this a run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFormatError(f"{path}: not valid JSON ({e})") from None


def read_run(run_dir: str | Path) -> RunRecord:
    """Read and validate a run directory."""
    run_dir = Path(run_dir)
    meta = _read_json(run_dir / "run.json")
    if meta.get("format") != FORMAT:
        raise RunFormatError(f"{run_dir / 'run.json'}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise RunFormatError(
            f"{run_dir / 'run.json'}: format version {meta.get('version')!r}; this tool reads version {FORMAT_VERSION}"
        )
    for key in ("framework", "config", "environment", "data"):
        if key not in meta:
            raise RunFormatError(f"{run_dir / 'run.json'}: missing key {key!r}")
    status = _read_json(run_dir / "status.json")
    if status.get("state") not in STATES:
        raise RunFormatError(f"{run_dir / 'status.json'}: state {status.get('state')!r} is not one of {STATES}")
    metrics = []
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for i, line in enumerate(path.read_text().splitlines(), 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise RunFormatError(f"{path}:{i}: not valid JSON ({e})") from None
            missing = [k for k in METRIC_KEYS if k not in row]
            if missing:
                raise RunFormatError(f"{path}:{i}: missing {', '.join(missing)}")
            if row["epoch"] != i:
                raise RunFormatError(f"{path}:{i}: epoch {row['epoch']}, expected {i}")
            metrics.append(row)
    return RunRecord(run_dir, meta, status, metrics)
