"""Figures and numbers of docs/CLAIMS.md (the lab report's augmentation and CNN claims), from the sweep
directories of the claims runs. Usage (the commands that make the sweeps are in docs/CLAIMS.md):

    .venv/bin/python scripts/claims.py --runs comparisons/claims-mlp comparisons/claims-cnn \
        --long comparisons/claims-mlp-40 --shared-init comparisons/claims-cnn-shared-none comparisons/claims-cnn-shared-vflip

Writes docs/claims/: claims.csv (every run's per-epoch metrics), claims.json (per model, augmentation
and framework: final and best accuracy, epochs to the target, the train-test gap; the paired effects of
each augmentation, CNN vs MLP, and PyTorch vs Keras, each with a 95% t interval over seeds; with
--long, the same MLP trained longer without and with flips: the paired effect at every epoch) and
claims.png."""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy import stats  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "claims"
TARGET = 0.88  # "a given accuracy": both networks reach it under the standard schedule
AUGS = ("none", "flip", "vflip", "flip+rotate")
FRAMEWORKS = ("pytorch", "keras")
STYLE = {"pytorch": "-", "keras": "--"}
COLORS = {"none": "black", "flip": "tab:blue", "vflip": "tab:red", "flip+rotate": "tab:green"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def load(roots: list[Path]) -> dict:
    """{(model, augment, framework, seed): {"metrics": [...], "parameters": int}} of completed runs."""
    runs = {}
    for root in roots:
        for run in sorted(root.glob("cells/*/runs/*-seed*")):
            status = run / "status.json"
            if not status.exists() or json.loads(status.read_text())["state"] != "completed":
                continue
            meta = json.loads((run / "run.json").read_text())
            c = meta["config"]
            framework, seed = run.name.rsplit("-seed", 1)
            runs[(c["model"], c["augment"], framework, int(seed))] = {
                "metrics": read_jsonl(run / "metrics.jsonl"), "parameters": meta["environment"].get("parameters"),
                "network": meta["environment"].get("network")}
    return runs


def epochs_to(rows: list[dict], target: float) -> int | None:
    return next((r["epoch"] for r in rows if r["test_acc"] >= target), None)


def ci(values: list[float]) -> dict:
    """Mean and two-sided 95% t interval (n - 1 degrees of freedom) of paired differences."""
    n, m = len(values), statistics.mean(values)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / n ** 0.5 if n > 1 else float("nan")
    return {"n": n, "mean": m, "lo": m - half, "hi": m + half, "values": values}


def final(run: dict) -> float:
    return run["metrics"][-1]["test_acc"]


def paired(runs: dict, seeds: list[int], diff) -> dict | None:
    """ci() of diff(seed) over the seeds whose runs diff needs all exist (diff: seed -> {key: sign});
    None where no seed has them all."""
    d = [sum(sign * final(runs[k]) for k, sign in diff(s).items()) for s in seeds if all(k in runs for k in diff(s))]
    return ci(d) if d else None


def summarize(runs: dict) -> dict:
    out = {"target_acc": TARGET, "cells": [], "augmentation_effect": [], "cnn_vs_mlp": [], "keras_vs_pytorch": [],
           "effect_agreement": []}
    models = sorted({k[0] for k in runs})
    seeds = sorted({k[3] for k in runs})

    def add(name: str, row: dict, e: dict | None) -> None:
        if e:
            out[name].append({**row, **e})

    for model in models:
        for aug in AUGS:
            for fw in FRAMEWORKS:
                rs = [runs[(model, aug, fw, s)] for s in seeds if (model, aug, fw, s) in runs]
                if not rs:
                    continue
                out["cells"].append({
                    "model": model, "augment": aug, "framework": fw, "seeds": len(rs), "epochs": len(rs[0]["metrics"]),
                    "parameters": rs[0]["parameters"], "network": rs[0]["network"],
                    "final_acc_mean": statistics.mean(map(final, rs)), "final_acc": list(map(final, rs)),
                    "best_acc_mean": statistics.mean(max(x["test_acc"] for x in r["metrics"]) for r in rs),
                    "epochs_to_target": [epochs_to(r["metrics"], TARGET) for r in rs],
                    "train_minus_test": statistics.mean(r["metrics"][-1]["train_acc"] - r["metrics"][-1]["test_acc"] for r in rs)})
                if aug != "none":  # paired by seed: the same initial weights and batch order
                    add("augmentation_effect", {"model": model, "augment": aug, "framework": fw},
                        paired(runs, seeds, lambda s: {(model, aug, fw, s): 1, (model, "none", fw, s): -1}))
            add("keras_vs_pytorch", {"model": model, "augment": aug},
                paired(runs, seeds, lambda s: {(model, aug, "keras", s): 1, (model, aug, "pytorch", s): -1}))
    for aug in AUGS:
        for fw in FRAMEWORKS:
            add("cnn_vs_mlp", {"augment": aug, "framework": fw},
                paired(runs, seeds, lambda s: {("cnn", aug, fw, s): 1, ("mlp", aug, fw, s): -1}))
    # does each augmentation move both frameworks the same way? (effect in Keras minus effect in PyTorch)
    for model in models:
        for aug in AUGS[1:]:
            add("effect_agreement", {"model": model, "augment": aug},
                paired(runs, seeds, lambda s: {(model, aug, "keras", s): 1, (model, "none", "keras", s): -1,
                                               (model, aug, "pytorch", s): -1, (model, "none", "pytorch", s): 1}))
    return out


def longer(runs: dict) -> dict:
    """The longer MLP sweep (augment none vs flip): the paired effect of flips and the train-test gap at
    every epoch, per framework."""
    seeds = sorted({k[3] for k in runs})
    out = {}
    for fw in FRAMEWORKS:
        pairs = [(runs[("mlp", "flip", fw, x)]["metrics"], runs[("mlp", "none", fw, x)]["metrics"]) for x in seeds
                 if ("mlp", "flip", fw, x) in runs and ("mlp", "none", fw, x) in runs]
        if not pairs:
            continue
        epochs = min(len(a) for a, _ in pairs)
        out[fw] = {"seeds": len(pairs), "epochs": epochs, "by_epoch": [
            {"epoch": e + 1, "effect": ci([a[e]["test_acc"] - b[e]["test_acc"] for a, b in pairs]),
             "none_acc": statistics.mean(b[e]["test_acc"] for _, b in pairs),
             "flip_acc": statistics.mean(a[e]["test_acc"] for a, _ in pairs),
             "none_gap": statistics.mean(b[e]["train_acc"] - b[e]["test_acc"] for _, b in pairs),
             "flip_gap": statistics.mean(a[e]["train_acc"] - a[e]["test_acc"] for a, _ in pairs)} for e in range(epochs)]}
    return out


def write_csv(runs: dict, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "augment", "framework", "seed", "epoch", "train_loss", "train_acc", "test_loss", "test_acc"])
        for (model, aug, fw, seed), r in sorted(runs.items()):
            for m in r["metrics"]:
                w.writerow([model, aug, fw, seed, m["epoch"], m["train_loss"], m["train_acc"], m["test_loss"], m["test_acc"]])


def plot(runs: dict, s: dict, path: Path) -> None:
    seeds = sorted({k[3] for k in runs})
    fig, ax = plt.subplots(2, 2, figsize=(14, 10))
    ax = ax.ravel()
    for i, model in enumerate(("mlp", "cnn")):
        for aug in AUGS:
            for fw in FRAMEWORKS:
                rs = [runs[(model, aug, fw, x)]["metrics"] for x in seeds if (model, aug, fw, x) in runs]
                if not rs:
                    continue
                epochs = [m["epoch"] for m in rs[0]]
                mean = [statistics.mean(r[e - 1]["test_acc"] for r in rs) * 100 for e in epochs]
                ax[i].plot(epochs, mean, STYLE[fw], color=COLORS[aug], label=f"{aug} ({fw})")
        params = next((c["parameters"] for c in s["cells"] if c["model"] == model), None)
        if params is None:
            continue
        ax[i].set(title=f"{model.upper()} ({params:,} parameters): test accuracy, mean of {len(seeds)} seeds",
                  xlabel="epoch", ylabel="test accuracy (%)", ylim=(84, 92))
        ax[i].axhline(TARGET * 100, color="grey", lw=0.5)
        ax[i].legend(fontsize=7, ncol=2)
    labels, x = [], 0
    for e in s["augmentation_effect"]:
        ax[2].errorbar(x, e["mean"] * 100, yerr=[[100 * (e["mean"] - e["lo"])], [100 * (e["hi"] - e["mean"])]],
                       fmt="o" if e["framework"] == "pytorch" else "s", color=COLORS[e["augment"]], capsize=3)
        ax[2].scatter([x] * len(e["values"]), [v * 100 for v in e["values"]], color=COLORS[e["augment"]], s=8, alpha=0.5)
        labels.append(f"{e['model']} {e['augment']}\n{e['framework']}")
        x += 1
    ax[2].axhline(0, color="grey", lw=0.8)
    ax[2].set_xticks(range(len(labels)), labels, fontsize=6, rotation=60)
    ax[2].set(title="augmentation minus none, final test accuracy\n(paired by seed; 95% t interval; dots: seeds)",
              ylabel="percentage points")
    for fw, L in (s.get("long") or {}).items():
        rows = L["by_epoch"]
        e = [r["epoch"] for r in rows]
        ax[3].plot(e, [100 * r["effect"]["mean"] for r in rows], STYLE[fw], color="tab:blue", label=f"flip - none ({fw})")
        ax[3].fill_between(e, [100 * r["effect"]["lo"] for r in rows], [100 * r["effect"]["hi"] for r in rows],
                           color="tab:blue", alpha=0.1)
        ax[3].plot(e, [100 * r["none_gap"] for r in rows], STYLE[fw], color="black", lw=0.8, label=f"train - test, none ({fw})")
        ax[3].plot(e, [100 * r["flip_gap"] for r in rows], STYLE[fw], color="tab:cyan", lw=0.8, label=f"train - test, flip ({fw})")
    if not s.get("long"):
        ax[3].set_visible(False)
    else:
        ax[3].axhline(0, color="grey", lw=0.8)
        ax[3].set(title=f"MLP trained longer: flips' paired effect (95% t band)\nand the train-test gap",
                  xlabel="epoch", ylabel="percentage points")
        ax[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="sweep directories (fmnist-parity run --grid ...)")
    p.add_argument("--long", type=Path, help="a sweep of the MLP trained longer, augment none and flip")
    p.add_argument("--shared-init", type=Path, nargs="*", default=[],
                   help="sweeps of the same cells with init=shared (both frameworks start from the same weights)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    runs = load(args.runs)
    if not runs:
        raise SystemExit(f"no completed runs under {', '.join(map(str, args.runs))}")
    args.out.mkdir(parents=True, exist_ok=True)
    s = summarize(runs)
    if args.long:
        s["long"] = longer(load([args.long]))
    if args.shared_init:  # the same comparisons from the same initial weights: what the initialisers account for
        s["shared_init"] = summarize(load(args.shared_init))
    (args.out / "claims.json").write_text(json.dumps(s, indent=1))
    write_csv(runs, args.out / "claims.csv")
    plot(runs, s, args.out / "claims.png")
    pp = lambda v: f"{100 * v:+.2f}"
    print(f"{'model':5s} {'augment':12s} {'framework':9s} {'final %':>8s} {'best %':>7s} {'to 88%':>10s} {'train-test':>10s}")
    for c in s["cells"]:
        print(f"{c['model']:5s} {c['augment']:12s} {c['framework']:9s} {100 * c['final_acc_mean']:8.2f} "
              f"{100 * c['best_acc_mean']:7.2f} {str(c['epochs_to_target']):>10s} {100 * c['train_minus_test']:10.2f}")
    for fw, L in (s.get("long") or {}).items():
        print(f"\nlonger MLP, {fw} ({L['seeds']} seeds): epoch, flip - none pp [95% CI], train-test gap none / flip")
        for r in L["by_epoch"][4::5]:
            e = r["effect"]
            print(f"  {r['epoch']:3d}  {pp(e['mean'])} [{pp(e['lo'])}, {pp(e['hi'])}]  {100 * r['none_gap']:.2f} / {100 * r['flip_gap']:.2f}")
    blocks = [(name, s[name]) for name in ("augmentation_effect", "cnn_vs_mlp", "keras_vs_pytorch", "effect_agreement")]
    if "shared_init" in s:
        blocks += [(f"init=shared: {name}", s["shared_init"][name])
                   for name in ("augmentation_effect", "keras_vs_pytorch", "effect_agreement")]
    for name, rows in blocks:
        print(f"\n{name} (pp, mean [95% CI], per seed)")
        for e in rows:
            what = " ".join(str(e[k]) for k in ("model", "augment", "framework") if k in e)
            print(f"  {what:28s} {pp(e['mean'])} [{pp(e['lo'])}, {pp(e['hi'])}]  {[round(100 * v, 2) for v in e['values']]}")


if __name__ == "__main__":
    main()
