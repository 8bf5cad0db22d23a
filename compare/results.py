"""Results as data: `compare.load(DIR)` returns the runs of a comparison (or one run directory) as
a pandas DataFrame, one row per contestant x seed x epoch, for study in a notebook."""

from __future__ import annotations

from pathlib import Path

from shared import rundir

ID_COLUMNS = ["contestant", "framework", "backend", "seed", "state"]


def _rows(contestant: str, rec: rundir.RunRecord) -> list[dict]:
    # config values as scalars (hidden 200,200 -> "200,200") so every column has one type
    config = {k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in rec.config.items()}
    ident = {
        "contestant": contestant,
        "framework": rec.meta["framework"],
        "backend": rec.meta.get("backend"),
        "seed": rec.config.get("seed"),
        "state": rec.status["state"],
    }
    return [{**ident, **m, **{k: v for k, v in config.items() if k not in ident}} for m in rec.metrics]


def load(directory: str | Path):
    """Columns: contestant, framework, backend, seed, state, then the per-epoch metrics
    (shared/rundir.METRIC_KEYS: epoch, train/test loss and accuracy, seconds, samples/s), then the
    run's config keys (lr, momentum, hidden, ...). Runs that never wrote a record are left out."""
    import pandas as pd

    directory = Path(directory)
    if (directory / "run.json").exists():
        rec = rundir.read_run(directory)
        rows = _rows(rec.label, rec)
    else:
        from compare.summary import load_runs

        _, runs = load_runs(directory)
        rows = [row for r in runs if r["record"] is not None for row in _rows(r["contestant"], r["record"])]
    columns = ID_COLUMNS + list(rundir.METRIC_KEYS)
    extra = [k for row in rows[:1] for k in row if k not in columns]
    return pd.DataFrame(rows, columns=columns + extra)


def load_weights(run: str | Path, which: str = "final") -> dict:
    """A run's neutral weights (weights/<which>.npz) as {name: array}: kernel_<i> [in, out], bias_<i>, and
    with normalisation layers bn_<j>_gamma / _beta / _mean / _var, ln_<j>_gamma / _beta (shared/weights.py)."""
    import numpy as np

    with np.load(Path(run) / "weights" / f"{which}.npz") as z:
        return {k: z[k] for k in z.files if not k.endswith("layers")}
