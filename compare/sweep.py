"""Grid sweeps: `fmnist-parity run --grid key=v1,v2 ...` runs the cross product of config values
(x seeds x contestants); each cell is an ordinary comparison directory (OUT/cells/<key=v,...>/) with
its own report, and sweep.md / sweep.json / sweep.png compare the cells."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from compare.render import accuracy_per_cell, jsonable, pct, render_md, secs
from shared import config as cfg
from shared.atomic import atomic_write


def cells(grid: list[str], base: cfg.RunConfig) -> list[tuple[str, cfg.RunConfig]]:
    """['lr=0.01,0.1', 'momentum=0,0.9'] -> [('lr=0.01,momentum=0', config), ...], each validated."""
    axes = []
    for item in grid:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise cfg.ConfigError(f"--grid {item!r} must look like key=v1,v2 (e.g. --grid lr=0.01,0.1)")
        if key in (k for k, _ in axes):
            raise cfg.ConfigError(f"--grid {key} is given twice; list all its values in one --grid")
        if key in ("hidden", "channels"):
            raise cfg.ConfigError(f"--grid {key}: widths contain commas; sweep {key} with separate runs")
        axes.append((key, [v.strip() for v in values.split(",") if v.strip()]))
    out = []
    for combo in itertools.product(*(vals for _, vals in axes)):
        sets = [f"{k}={v}" for (k, _), v in zip(axes, combo)]
        out.append((",".join(sets), cfg.from_dict(cfg.parse_sets(sets), base)))
    return out


def summarize(out: Path, names: list[str], labels: list[str]) -> dict:
    """One row per cell: each contestant's final accuracy and the verdict of each against the first."""
    rows = []
    for name in names:
        s = json.loads((out / "cells" / name / "summary.json").read_text())
        rows.append(
            {
                "cell": name,
                "accuracy": {l: s["accuracy"][l] for l in labels},
                "verdicts": [v["sentence"] for v in s["verdicts"]],
                "median_epoch_seconds": {
                    l: s["timing"][l]["median_epoch_seconds"]["mean"]
                    if s["timing"][l]["median_epoch_seconds"]["n"]
                    else None
                    for l in labels
                },
            }
        )
    result = {"labels": labels, "rows": rows}
    atomic_write(out / "sweep.json", lambda f: f.write(json.dumps(jsonable(result), indent=1).encode()))
    blocks = [
        ("h1", "Sweep"),
        ("p", f"{len(rows)} cells; each is a comparison directory under cells/ with its own report."),
        (
            "table",
            ["cell", *(f"{l} final acc" for l in labels), *(f"{l} epoch s" for l in labels), "verdict"],
            [
                [
                    r["cell"],
                    *(pct(r["accuracy"][l]["mean"]) + f" (n={r['accuracy'][l]['n']})" for l in labels),
                    *(secs(r["median_epoch_seconds"][l]) for l in labels),
                    " ".join(r["verdicts"]),
                ]
                for r in rows
            ],
        ),
        ("img", "sweep.png", "Final test accuracy per cell and contestant"),
    ]
    plot(result, out / "sweep.png")
    atomic_write(out / "sweep.md", lambda f: f.write(render_md(blocks, {"sweep.png"}).encode()))
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, labels = result["rows"], result["labels"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4))
    accuracy_per_cell(ax, rows, labels, "Sweep: accuracy per cell (dots: seeds)")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)
