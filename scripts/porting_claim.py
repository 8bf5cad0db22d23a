"""docs/PORTING.md's data, figure and generated blocks: the lab report's claim that dropout and batch
norm raise Fashion-MNIST accuracy "with little effect on the number of epochs needed", in both
frameworks; the `porting` preset's ablation; the porting lockstep tables.

    .venv/bin/python scripts/porting_claim.py [--runs SWEEP ...] [--ablation DIR] [--lockstep DIR ...]

--runs merges the completed runs of grid sweeps over batchnorm and dropout (commands in docs/PORTING.md)
into docs/porting/claim.csv (one row per run and epoch), the plain cell included: every cell of a seed
runs on the same machine, since the same seed gives other bits on another machine.
--ablation copies an `fmnist-parity ablate --preset porting` record (ablation.json/.md/.png);
--lockstep copies `fmnist-parity lockstep` records (lockstep.json) as lockstep-<name>.json.
`scripts/docs.py` writes the blocks below into docs/PORTING.md."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import study  # noqa: E402
import port_check  # noqa: E402
from study import S  # noqa: E402
from compare.defaults import source_text  # noqa: E402

OUT = study.ROOT / "docs" / "porting"
CLAIMS_CSV = study.ROOT / "docs" / "claims" / "claims.csv"
CELLS = {"plain": (False, 0.0), "dropout 0.2": (False, 0.2), "batch norm": (True, 0.0), "both": (True, 0.2)}
TARGET = 0.88  # "epochs needed": the first epoch whose test accuracy reaches 88%
EPOCHS = 15
FRAMEWORKS = ("pytorch", "keras")
FIELDS = ("batchnorm", "dropout", "threads")
KEY = ("batchnorm", "dropout", "epochs", "framework", "seed")


def load(out: Path = OUT) -> dict:
    """{cell: {framework: {seed: curve}}}"""
    runs = study.curves(study.read(out / "claim.csv") if (out / "claim.csv").exists() else [], KEY)
    return {
        name: {fw: {k[4]: c for k, c in runs.items() if k[:4] == (bn, do, EPOCHS, fw)} for fw in FRAMEWORKS}
        for name, (bn, do) in CELLS.items()
    }


def to_target(c: list[dict]) -> int:
    return study.epochs_needed(c, TARGET)


def summarize(cells: dict) -> dict:
    out = {}
    for fw in FRAMEWORKS:
        plain = cells["plain"][fw]
        for name in CELLS:
            c = cells[name][fw]
            seeds = sorted(set(c) & set(plain))
            row = {
                "seeds": sorted(c),
                "final_acc": statistics.mean(c[x][-1]["test_acc"] for x in c) if c else None,
                "epochs_to_target": [to_target(c[x]) for x in sorted(c)],
            }
            if name != "plain":
                row["acc_effect"] = S.effect(
                    [c[x][-1]["test_acc"] - plain[x][-1]["test_acc"] for x in seeds], study.MARGIN
                )
                row["epochs_effect"] = S.effect([to_target(c[x]) - to_target(plain[x]) for x in seeds], 1.0)
            out.setdefault(fw, {})[name] = row
    for name in CELLS:
        k, p = cells[name]["keras"], cells[name]["pytorch"]
        out.setdefault("keras_vs_pytorch", {})[name] = S.effect(
            [k[x][-1]["test_acc"] - p[x][-1]["test_acc"] for x in sorted(set(k) & set(p))], study.MARGIN
        )
    return out


def twice(a: dict, b: dict) -> dict:
    """The same runs made twice, a and b ({framework: {seed: curve}}): per framework, the seeds both have,
    those whose whole test curve is identical, and the final accuracy a minus b."""
    res = {}
    for fw in FRAMEWORKS:
        seeds = sorted(set(a[fw]) & set(b[fw]))
        acc = lambda c: [r["test_acc"] for r in c]
        res[fw] = {
            "seeds": seeds,
            "identical": [x for x in seeds if acc(a[fw][x]) == acc(b[fw][x])],
            "final_diff": [a[fw][x][-1]["test_acc"] - b[fw][x][-1]["test_acc"] for x in seeds],
        }
    return res


def plain_of_2026_11_30() -> dict:
    """The claims study's plain cell (augment none), one thread, seeds 0-2: run on 2026-11-30's machine
    (docs/claims/provenance.json)."""
    claims = study.curves(study.read(CLAIMS_CSV), ("model", "augment", "init", "epochs", "framework", "seed"))
    return {
        fw: {k[5]: c for k, c in claims.items() if k[:5] == ("mlp", "none", "native", EPOCHS, fw) and k[5] in (0, 1, 2)}
        for fw in FRAMEWORKS
    }


def threads(out: Path = OUT) -> dict:
    """The plain cell run twice per seed on the 2026-11-30 machine: on one thread (that day's claims
    study) and on all cores (that day's grid)."""
    allcores = study.curves(study.read(out / "claim-threads-all-cores.csv"), ("cell", "framework", "seed"))
    return twice(
        plain_of_2026_11_30(),
        {fw: {s: c for (cell, f, s), c in allcores.items() if (cell, f) == ("plain", fw)} for fw in FRAMEWORKS},
    )


def machines(out: Path = OUT) -> dict:
    """The plain cell, one thread, seeds 0-2, on two machines: this grid's and 2026-11-30's."""
    return twice(load(out)["plain"], plain_of_2026_11_30())


def twice_lines(res: dict, where: str, minus: str) -> str:
    return "\n".join(
        f"- {fw}: seeds {', '.join(map(str, r['seeds'])) or 'none yet'}; identical test curves {where}: "
        f"{len(r['identical'])} of {len(r['seeds'])}; final accuracy, {minus}: "
        + (", ".join(f"{100 * d:+.2f} pp" for d in r["final_diff"]) or "-")
        for fw, r in res.items()
    )


def plot(cells: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, fw in zip(axes, FRAMEWORKS):
        for name, color in zip(CELLS, ("black", "tab:orange", "tab:blue", "tab:green")):
            curves = np.array([[r["test_acc"] for r in c] for _, c in sorted(cells[name][fw].items())])
            if not len(curves):
                continue
            e = np.arange(1, curves.shape[1] + 1)
            ax.plot(e, curves.mean(0) * 100, color=color, label=name)
            ax.fill_between(e, curves.min(0) * 100, curves.max(0) * 100, color=color, alpha=0.15)
        ax.axhline(TARGET * 100, color="gray", lw=0.8, ls=":")
        ax.set(title=f"{fw}: test accuracy (mean of seeds, band = min..max)", xlabel="epoch", ylim=(80, 91))
        ax.legend()
    axes[0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---- the generated blocks of docs/PORTING.md ------------------------------------------------------


def blocks(out: Path = OUT) -> dict[str, str]:
    s = summarize(load(out))
    rows = [
        "| cell | framework | seeds | final (mean) | effect on accuracy vs plain | epochs to 88% (per seed) | "
        "effect on epochs vs plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in CELLS:
        for fw in FRAMEWORKS:
            r = s[fw][name]
            eff = study.pp(r["acc_effect"]) if "acc_effect" in r else ""
            ep = study.epochs(r["epochs_effect"]) if "epochs_effect" in r else ""
            final = f"{100 * r['final_acc']:.2f}%" if r["final_acc"] is not None else "not run"
            rows.append(
                f"| {name} | {fw} | {len(r['seeds'])} | {final} | {eff} | "
                f"{', '.join(map(str, r['epochs_to_target']))} | {ep} |"
            )
    rows += [
        "",
        "Keras minus PyTorch, per cell (paired by seed): "
        + "; ".join(
            f"{name}: {study.pp(e, directions=('higher', 'lower'))}" for name, e in s["keras_vs_pytorch"].items()
        )
        + ".",
    ]
    b = {
        "porting-claim": "\n".join(rows),
        "porting-provenance": study.provenance(out / "provenance.json")
        if (out / "provenance.json").exists()
        else "(no runs merged yet: run the commands above)",
    }
    b["porting-threads"] = twice_lines(threads(out), "on one thread and on all cores", "one thread minus all cores")
    b["porting-machines"] = twice_lines(machines(out), "on the two machines", "this grid's machine minus 2026-11-30's")
    b["porting-defaults"] = defaults_block(json.loads((out / "defaults.json").read_text()))
    b["porting-ablation"] = ablation_block(json.loads((out / "ablation.json").read_text()))
    for name in ("layernorm", "lstm"):
        f = out / f"ablation-{name}.json"
        b[f"porting-ablation-{name}"] = (
            ablation_block(json.loads(f.read_text())) if f.exists() else "(no ablation record committed)"
        )
    for name in ("all", "alone", "layernorm", "stride", "gru", "lstm"):
        f = out / f"lockstep-{name}.json"
        b[f"porting-lockstep-{name}"] = (
            lockstep_block(json.loads(f.read_text()), sentences=name not in ("all", "alone"))
            if f.exists()
            else "(no lockstep record committed: run the command above, then scripts/porting_claim.py --lockstep)"
        )
    found = [json.loads(f.read_text()) for f in sorted(out.glob("conversion-*.json"))]
    b["porting-conversion"] = (
        port_check.block(found) if found else "(no conversion record committed: run the commands above)"
    )
    return b


def lockstep_block(summary: dict, sentences: bool = False) -> str:
    """A lockstep record's table; with `sentences`, what its findings say (written by today's code from
    the record's numbers, so a wording fixed since reads the same numbers)."""
    from compare import lockstep

    table = study.lockstep_table(summary)
    return table + ("\n\n" + "\n".join(f"- {line}" for line in lockstep.findings(summary)) if sentences else "")


PORTING_ROWS = (
    "GRU",
    "LSTM",
    "recurrent",
    "BatchNorm",
    "LayerNorm",
    "strided",
    "Dropout",
    "Adam(weight_decay",
    "AdamW",
    "L2 penalty",
    "gradient clipping",
    "the idiom clips",
    "clipping:",
    "a learning-rate schedule",
    "label smoothing",
)


def defaults_block(d: dict) -> str:
    """The porting features' rows of a committed `defaults --json` (PyTorch and Keras on TensorFlow)."""
    rows = ["| default | PyTorch | Keras | source | controlled by |", "|---|---|---|---|---|"]
    for r in d["rows"]:
        if r["what"].startswith(PORTING_ROWS):
            two = {**r, "source": {k: v for k, v in r["source"].items() if k in ("pytorch", "keras")}}
            rows.append(
                f"| {r['what']} | {r['values']['pytorch']} | {r['values']['keras']} | "
                f"{source_text(two)} | `{r['config_key']}` |"
            )
    return "\n".join(rows)


def ablation_block(a: dict) -> str:
    """The ablation's table from its record (per-seed accuracies; effects in the study's words)."""
    labels, margin = a["labels"], a["margin"]
    native = next(r for r in a["rows"] if r["cell"] == "native")
    rows = [
        "| cell | " + " | ".join(f"{l}" for l in labels) + " | gap keras - pytorch | effect on the gap vs native |",
        "|---|" + "---|" * (len(labels) + 2),
    ]
    gap = lambda r: [k - p for k, p in zip(r["accuracy"]["keras"]["values"], r["accuracy"]["pytorch"]["values"])]
    for r in a["rows"]:
        acc = [f"{100 * r['accuracy'][l]['mean']:.2f}%" for l in labels]
        g = S.effect(gap(r), margin)
        eff = "" if r is native else study.pp(S.effect([x - y for x, y in zip(gap(r), gap(native))], margin))
        rows.append(f"| {r['cell']} | {' | '.join(acc)} | {study.pp(g, directions=('higher', 'lower'))} | {eff} |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, nargs="*", default=[], help="grid sweep directories to merge into claim.csv")
    p.add_argument("--ablation", type=Path, help="an `fmnist-parity ablate --preset porting` directory")
    p.add_argument(
        "--lockstep",
        type=Path,
        nargs="*",
        default=[],
        metavar="NAME=DIR",
        help="lockstep directories, as all=DIR (every backend, native and matched) and alone=DIR",
    )
    args = p.parse_args()
    if args.runs:
        new, envs = study.collect(args.runs, FIELDS)
        study.merge(OUT / "claim.csv", new, KEY)
        study.merge_provenance(OUT / "provenance.json", envs)
    if args.ablation:
        for name in ("ablation.md", "ablation.png", "ablation.json"):
            shutil.copy(args.ablation / name, OUT / name)
    for spec in args.lockstep:
        name, folder = str(spec).split("=", 1)
        shutil.copy(Path(folder) / "lockstep.json", OUT / f"lockstep-{name}.json")
    plot(load(), OUT / "curves.png")
    for name, text in blocks().items():
        print(f"== {name}\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
