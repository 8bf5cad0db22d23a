"""The run directory: the one format both implementations write and `compare/` reads.

FORMAT_VERSION 1. A run directory holds:
  run.json       {"format": "fmnist-parity-run", "version": 1, "framework", "backend",
                  "config": RunConfig.to_dict(), "data": {"source", "sha256": {file: digest}},
                  "environment": {python, framework versions, numpy, device, device_name, cpu,
                  threads, tf32, deterministic, ...}, "timing": {"startup_seconds", "data_seconds"},
                  "command": [argv]}
  status.json    {"state": running|completed|failed|diverged, "message", "epoch", "updated"}
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
  checkpoints/epoch-NNNN.<ext>   model + optimizer state after epoch NNNN (framework format)
  weights/initial.npz, weights/final.npz   framework-neutral weights (shared/weights.py)
Every file is replaced atomically (temp file + rename): a kill leaves the old or the new version.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from shared.data import atomic_write

FORMAT = "fmnist-parity-run"
FORMAT_VERSION = 1
STATES = ("running", "completed", "failed", "diverged")
METRIC_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc",
               "train_seconds", "eval_seconds", "samples_per_second")


class RunFormatError(ValueError):
    """A run directory that does not follow the format; the message names the file."""


def write_json(path: Path, obj) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(Path(path), lambda f: f.write(data))


def write_run(run_dir: Path, meta: dict) -> None:
    write_json(Path(run_dir) / "run.json", {"format": FORMAT, "version": FORMAT_VERSION, **meta})


def write_status(run_dir: Path, state: str, message: str = "", epoch: int = 0) -> None:
    assert state in STATES, state
    write_json(Path(run_dir) / "status.json",
               {"state": state, "message": message, "epoch": epoch, "updated": time.time()})


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """Rewrite the whole metrics file (small) atomically, so it never holds half a line."""
    text = "".join(json.dumps({k: row[k] for k in METRIC_KEYS}) + "\n" for row in rows).encode()
    atomic_write(Path(run_dir) / "metrics.jsonl", lambda f: f.write(text))


def checkpoint_path(run_dir: Path, epoch: int, ext: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch-{epoch:04d}.{ext}"


def latest_checkpoint(run_dir: Path, ext: str) -> tuple[int, Path] | None:
    found = sorted(Path(run_dir, "checkpoints").glob(f"epoch-*.{ext}"))
    if not found:
        return None
    return int(found[-1].name.split("-")[1].split(".")[0]), found[-1]


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
        raise RunFormatError(f"{run_dir / 'run.json'}: format version {meta.get('version')!r}; "
                             f"this tool reads version {FORMAT_VERSION}")
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
