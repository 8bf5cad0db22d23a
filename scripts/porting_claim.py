"""Figures and tables of docs/PORTING.md: the lab report's claim that dropout and batch norm raise
Fashion-MNIST accuracy "with little effect on the number of epochs needed", tested in both
frameworks, from a grid comparison (the commands are in docs/PORTING.md):

    fmnist-parity run --grid batchnorm=false,true --grid dropout=0,0.2 --seeds 3 --out comparisons/claim
    .venv/bin/python scripts/porting_claim.py --grid comparisons/claim [--ablation comparisons/porting-ablate]

Writes docs/porting/: claim.json (per framework and cell: final accuracy, epochs to the target, paired
effects against plain with 95% CIs), claim.csv (every run's per-epoch test accuracy), curves.png, and
with --ablation a copy of the ablation table (ablation.md) and figure."""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from compare import stats  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "porting"
CELLS = {"plain": "batchnorm=false,dropout=0", "dropout": "batchnorm=false,dropout=0.2",
         "batch norm": "batchnorm=true,dropout=0", "both": "batchnorm=true,dropout=0.2"}
TARGET = 0.88  # "epochs needed": the first epoch whose test accuracy reaches 88%
FRAMEWORKS = ("pytorch", "keras")


def load(grid: Path) -> dict:
    """{cell: {framework: {seed: [test_acc per epoch]}}}"""
    out = {}
    for name, folder in CELLS.items():
        for run in sorted((grid / "cells" / folder / "runs").glob("*-seed*")):
            fw, seed = run.name.rsplit("-seed", 1)
            rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
            out.setdefault(name, {}).setdefault(fw, {})[int(seed)] = [r["test_acc"] for r in rows]
    return out


def epochs_to(curve: list[float], target: float = TARGET) -> float:
    return next((i + 1 for i, a in enumerate(curve) if a >= target), np.nan)


def summarize(runs: dict) -> dict:
    table = {}
    for fw in FRAMEWORKS:
        plain = runs["plain"][fw]
        seeds = sorted(plain)
        for name in CELLS:
            curves = runs[name][fw]
            final = [curves[s][-1] for s in seeds]
            need = [epochs_to(curves[s]) for s in seeds]
            row = {"final_acc": stats.describe(final), "epochs_to_target": need,
                   "best_acc": stats.describe([max(curves[s]) for s in seeds])}
            if name != "plain":
                row["acc_effect"] = stats.paired_t(final, [plain[s][-1] for s in seeds])
                base = [epochs_to(plain[s]) for s in seeds]
                ok = [i for i, (a, b) in enumerate(zip(need, base)) if np.isfinite(a) and np.isfinite(b)]
                row["epochs_effect"] = (stats.paired_t([need[i] for i in ok], [base[i] for i in ok])
                                        if len(ok) > 1 else None)
            table.setdefault(fw, {})[name] = row
    return table


def plot(runs: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, fw in zip(axes, FRAMEWORKS):
        for name, color in zip(CELLS, ("black", "tab:orange", "tab:blue", "tab:green")):
            curves = np.array([runs[name][fw][s] for s in sorted(runs[name][fw])])
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(epochs, curves.mean(0) * 100, color=color, label=name)
            ax.fill_between(epochs, curves.min(0) * 100, curves.max(0) * 100, color=color, alpha=0.15)
        ax.axhline(TARGET * 100, color="gray", lw=0.8, ls=":")
        ax.set(title=f"{fw}: test accuracy (mean of seeds, band = min..max)", xlabel="epoch", ylim=(80, 91))
        ax.legend()
    axes[0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=Path, required=True, help="the grid comparison directory")
    p.add_argument("--ablation", type=Path, help="an `fmnist-parity ablate --preset porting` directory")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    runs = load(args.grid)
    table = summarize(runs)
    (OUT / "claim.json").write_text(json.dumps({"target": TARGET, "cells": CELLS, "table": table}, indent=1))
    with open(OUT / "claim.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cell", "framework", "seed", "epoch", "test_acc"])
        for name, by_fw in runs.items():
            for fw, by_seed in by_fw.items():
                for seed, curve in sorted(by_seed.items()):
                    w.writerows([name, fw, seed, e + 1, a] for e, a in enumerate(curve))
    plot(runs, OUT / "curves.png")
    if args.ablation:
        for name in ("ablation.md", "ablation.png", "ablation.json"):
            shutil.copy(args.ablation / name, OUT / name)
    for fw in FRAMEWORKS:
        for name, row in table[fw].items():
            eff = row.get("acc_effect")
            print(f"{fw:8s} {name:10s} final {row['final_acc']['mean'] * 100:.2f}%  epochs to {TARGET:.0%} "
                  f"{row['epochs_to_target']}" + (f"  effect {eff['diff'] * 100:+.2f} pp "
                                                  f"[{eff['ci'][0] * 100:+.2f}, {eff['ci'][1] * 100:+.2f}]" if eff else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
