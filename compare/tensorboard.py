"""A comparison's per-epoch curves as TensorBoard event files, written with TensorBoard's own
writer (no framework imported): one run folder per contestant and seed, LOGDIR/<contestant>/seed<N>,
and the same tags everywhere, so `tensorboard --logdir LOGDIR` overlays PyTorch and Keras."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

# tag -> metrics.jsonl key
TAGS = {
    "loss/train": "train_loss",
    "loss/test": "test_loss",
    "accuracy/train": "train_acc",
    "accuracy/test": "test_acc",
    "time/epoch_seconds": "train_seconds",
    "time/samples_per_second": "samples_per_second",
}


def no_tensorflow() -> None:
    """TensorBoard's own switch (its `no_tensorflow` build) for its TF-free stub: without it,
    importing its writer or reader would import TensorFlow into this framework-free process."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


def export(comp_dir: str | Path, logdir: str | Path, log=lambda m: None) -> list[Path]:
    """Write every run's curves under logdir (replacing what an earlier export wrote there)."""
    import json
    from compare.summary import load_runs

    no_tensorflow()
    from tensorboard.summary import Writer

    comp_dir, logdir = Path(comp_dir), Path(logdir)
    meta, runs = load_runs(comp_dir)
    written = []
    for r in runs:
        rec = r["record"]
        if rec is None or not rec.metrics:
            continue
        final = logdir / r["contestant"] / f"seed{r['seed']}"
        tmp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        writer = Writer(str(tmp))
        wall = meta.get("created", 0.0)
        for m in rec.metrics:  # wall time: the run's own clock, so a re-export gives the same events
            wall += m["train_seconds"] + m["eval_seconds"]
            for tag, key in TAGS.items():
                writer.add_scalar(tag, m[key], step=m["epoch"], wall_time=wall)
        writer.close()
        (tmp / "source.json").write_text(json.dumps({"comparison": str(comp_dir.resolve()), "run": r["dir"]}) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        written.append(final)
        log(f"tensorboard: {r['contestant']} seed {r['seed']}: {len(rec.metrics)} epochs -> {final}")
    return written
