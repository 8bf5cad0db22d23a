"""docs/CLAIMS.md's data, figure and generated blocks: the lab report's augmentation and CNN claims.

    .venv/bin/python scripts/claims.py [--runs SWEEP ...]

--runs merges the completed runs of sweep directories (the commands are in docs/CLAIMS.md) into
docs/claims/claims.csv, the study's data: one row per run and epoch, keyed by model, augment, init,
epochs (the run's length), framework and seed. Then it recomputes docs/claims/claims.json (every
effect with its interval and verdict words) and claims.png from the CSV. The seeds 0-2 of the 40-epoch
and init=shared sweeps ran before the CSV held them: their per-seed values come from
docs/claims/legacy-3-seeds.json (that sweep's summary). `scripts/docs.py` writes the blocks below into
docs/CLAIMS.md."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import study  # noqa: E402
from study import S  # noqa: E402

OUT = study.ROOT / "docs" / "claims"
TARGET = 0.88  # "a given accuracy": both networks reach it under the standard schedule
AUGS = ("none", "flip", "vflip", "flip+rotate")
FRAMEWORKS = ("pytorch", "keras")
MAIN = {"mlp": 15, "cnn": 8}  # each network's run length in the main sweeps
LONG = 40
FIELDS = ("model", "augment", "init", "threads")
KEY = ("model", "augment", "init", "epochs", "framework", "seed")
EPOCH_MARGIN = 1.0  # epochs-to-target: equivalent within +-1 epoch
STYLE = {"pytorch": "-", "keras": "--"}
COLORS = {"none": "black", "flip": "tab:blue", "vflip": "tab:red", "flip+rotate": "tab:green"}


def select(runs: dict, model: str, aug: str, fw: str, init: str = "native", epochs: int | None = None) -> dict:
    """{seed: curve} of one cell."""
    n = epochs or MAIN[model]
    return {k[5]: c for k, c in runs.items() if k[:5] == (model, aug, init, n, fw)}


def paired(a: dict, b: dict, f=lambda c: c[-1]["test_acc"]) -> dict:
    """{seed: f(a) - f(b)} over the seeds both cells have (final test accuracy by default)."""
    return {s: f(a[s]) - f(b[s]) for s in sorted(set(a) & set(b))}


def to_target(c: list[dict]) -> int | None:
    return study.epochs_to(c, TARGET)


def acc_effect(a: dict, b: dict) -> dict:
    return S.effect(list(paired(a, b).values()), study.MARGIN)


def epoch_effect(a: dict, b: dict) -> dict:
    """Epochs to the target, a minus b per seed; runs that never reached it count as length + 1."""
    unreached = sum(to_target(c) is None for x in (a, b) for s, c in x.items() if s in a and s in b)
    d = paired(a, b, lambda c: study.epochs_needed(c, TARGET))
    return {**S.effect(list(d.values()), EPOCH_MARGIN), "unreached": unreached}


def legacy_finals(legacy: dict) -> dict:
    """{(augment, framework): {seed: final test acc}} of the 3-seed init=shared sweep (seeds 0, 1, 2)."""
    return {(c["augment"], c["framework"]): dict(enumerate(c["final_acc"])) for c in legacy["shared_init"]["cells"]}


def summarize(rows: list[dict], legacy: dict) -> dict:
    runs = study.curves(rows, KEY)
    s = {
        "target_acc": TARGET,
        "margin": study.MARGIN,
        "epoch_margin": EPOCH_MARGIN,
        "cells": [],
        "augmentation_effect": [],
        "cnn_vs_mlp": [],
        "keras_vs_pytorch": [],
        "effect_agreement": [],
        "timing": [],
    }
    for model in MAIN:
        for aug in AUGS:
            for fw in FRAMEWORKS:
                c = select(runs, model, aug, fw)
                if not c:
                    continue
                last = [x[-1] for x in c.values()]
                s["cells"].append(
                    {
                        "model": model,
                        "augment": aug,
                        "framework": fw,
                        "seeds": sorted(c),
                        "epochs": MAIN[model],
                        "final_acc_mean": statistics.mean(r["test_acc"] for r in last),
                        "best_acc_mean": statistics.mean(max(r["test_acc"] for r in x) for x in c.values()),
                        "epochs_to_target": [to_target(x) for x in c.values()],
                        "train_minus_test": statistics.mean(r["train_acc"] - r["test_acc"] for r in last),
                    }
                )
                none = select(runs, model, "none", fw)
                if aug != "none":  # paired by seed: the same initial weights and batch order
                    s["augmentation_effect"].append(
                        {
                            "model": model,
                            "augment": aug,
                            "framework": fw,
                            "accuracy": acc_effect(c, none),
                            "epochs": epoch_effect(c, none),
                        }
                    )
            k, p = select(runs, model, aug, "keras"), select(runs, model, aug, "pytorch")
            s["keras_vs_pytorch"].append({"model": model, "augment": aug, "accuracy": acc_effect(k, p)})
            if aug != "none":  # the effect in Keras minus the effect in PyTorch
                kd, pd = (
                    paired(k, select(runs, model, "none", "keras")),
                    paired(p, select(runs, model, "none", "pytorch")),
                )
                s["effect_agreement"].append(
                    {
                        "model": model,
                        "augment": aug,
                        "accuracy": S.effect([kd[x] - pd[x] for x in sorted(set(kd) & set(pd))], study.MARGIN),
                    }
                )
    for aug in AUGS:
        for fw in FRAMEWORKS:
            cnn, mlp = select(runs, "cnn", aug, fw), select(runs, "mlp", aug, fw)
            s["cnn_vs_mlp"].append(
                {"augment": aug, "framework": fw, "accuracy": acc_effect(cnn, mlp), "epochs": epoch_effect(cnn, mlp)}
            )
    for model in MAIN:
        for fw in FRAMEWORKS:
            rs = [r for k, c in runs.items() if k[:5] == (model, "none", "native", MAIN[model], fw) for r in c]
            s["timing"].append(
                {
                    "model": model,
                    "framework": fw,
                    "train_s": study.median(r["train_seconds"] for r in rs if r["epoch"] > 1),
                    "eval_s": study.median(r["eval_seconds"] for r in rs if r["epoch"] > 1),
                    "runs": len({r["seed"] for r in rs if r["train_seconds"] is not None}),
                }
            )
    s["shared_init"] = shared_init(runs, legacy)
    s["cause"] = S.cause(
        next(e["accuracy"] for e in s["effect_agreement"] if e["model"] == "cnn" and e["augment"] == "vflip"),
        s["shared_init"]["agreement_vflip"],
    )
    s["long"] = longer(runs, legacy)
    return s


def shared_init(runs: dict, legacy: dict) -> dict:
    """The CNN's none and vflip cells from the same initial weights on both sides (init=shared)."""
    f = legacy_finals(legacy)
    for (model, aug, init, n, fw, seed), c in runs.items():
        if (model, init, n) == ("cnn", "shared", MAIN["cnn"]):
            f.setdefault((aug, fw), {})[seed] = c[-1]["test_acc"]
    eff = {
        fw: {x: f[("vflip", fw)][x] - f[("none", fw)][x] for x in set(f[("vflip", fw)]) & set(f[("none", fw)])}
        for fw in FRAMEWORKS
    }
    return {
        "seeds": sorted(f[("none", "pytorch")]),
        "vflip_effect": {fw: S.effect([eff[fw][x] for x in sorted(eff[fw])], study.MARGIN) for fw in FRAMEWORKS},
        "keras_vs_pytorch_none": S.effect(
            [
                f[("none", "keras")][x] - f[("none", "pytorch")][x]
                for x in sorted(set(f[("none", "keras")]) & set(f[("none", "pytorch")]))
            ],
            study.MARGIN,
        ),
        "agreement_vflip": S.effect(
            [eff["keras"][x] - eff["pytorch"][x] for x in sorted(set(eff["keras"]) & set(eff["pytorch"]))], study.MARGIN
        ),
    }


def longer(runs: dict, legacy: dict) -> dict:
    """The MLP trained 40 epochs, augment none vs flip: flips' paired effect and the train-test gap at
    every epoch, per framework (seeds 0-2 from the legacy summary, later seeds from the CSV)."""
    out = {}
    for fw in FRAMEWORKS:
        flip, none = select(runs, "mlp", "flip", fw, epochs=LONG), select(runs, "mlp", "none", fw, epochs=LONG)
        seeds = sorted(set(flip) & set(none))
        old = legacy["long"][fw]["by_epoch"]
        n_old = legacy["long"][fw]["seeds"]
        by_epoch = []
        for e in range(LONG):
            new_d = [flip[x][e]["test_acc"] - none[x][e]["test_acc"] for x in seeds]
            gap = lambda c, o: (
                (sum(c[x][e]["train_acc"] - c[x][e]["test_acc"] for x in seeds) + n_old * o) / (len(seeds) + n_old)
            )
            by_epoch.append(
                {
                    "epoch": e + 1,
                    "effect": S.effect(old[e]["effect"]["values"] + new_d, study.MARGIN),
                    "none_gap": gap(none, old[e]["none_gap"]),
                    "flip_gap": gap(flip, old[e]["flip_gap"]),
                }
            )
        out[fw] = {"seeds": n_old + len(seeds), "by_epoch": by_epoch}
    return out


# ---- the generated blocks of docs/CLAIMS.md -------------------------------------------------------


def _cell(s: dict, model: str, aug: str, fw: str) -> dict | None:
    return next((c for c in s["cells"] if (c["model"], c["augment"], c["framework"]) == (model, aug, fw)), None)


def _find(rows: list[dict], **want) -> dict:
    return next(r for r in rows if all(r[k] == v for k, v in want.items()))


def _seeds(c: dict) -> str:
    return ", ".join("never" if x is None else str(x) for x in c["epochs_to_target"])


def blocks(out: Path = OUT) -> dict[str, str]:
    s = json.loads((out / "claims.json").read_text())
    b = {"claims-provenance": study.provenance(out / "provenance.json")}
    rows = ["| | seeds | epochs to 88% (per seed) | final test accuracy | best epoch, mean |", "|---|---|---|---|---|"]
    for model in MAIN:
        for fw in FRAMEWORKS:
            c = _cell(s, model, "none", fw)
            rows.append(
                f"| {model.upper()}, {fw} ({MAIN[model]} epochs) | {len(c['seeds'])} | {_seeds(c)} | "
                f"{100 * c['final_acc_mean']:.2f}% | {100 * c['best_acc_mean']:.2f}% |"
            )
    lines = ["CNN minus MLP, paired by seed (the CNN after 8 epochs, the MLP after 15):", ""]
    for e in s["cnn_vs_mlp"]:
        lines.append(
            f"- {e['augment']}, {e['framework']}: accuracy **{study.pp(e['accuracy'])}**; epochs to 88%: "
            f"{study.epochs(e['epochs'])}"
            + (
                f" ({e['epochs']['unreached']} run(s) never reached 88%: counted as their length + 1)"
                if e["epochs"]["unreached"]
                else ""
            )
        )
    t = {(x["model"], x["framework"]): x for x in s["timing"]}
    timing = (
        "Median seconds per epoch after the first (training / test-set evaluation), one thread, from "
        "the runs that recorded it: "
        + "; ".join(
            f"{m.upper()} {fw} {x['train_s']:.1f} / {x['eval_s']:.1f} s ({x['runs']} seed{'' if x['runs'] == 1 else 's'})"
            for (m, fw), x in t.items()
            if x["train_s"] is not None
        )
        + "."
    )
    b["claims-cnn"] = "\n".join(rows + [""] + lines + ["", timing])
    rows = ["| | " + " | ".join(f"{m.upper()}, {fw}" for m in MAIN for fw in FRAMEWORKS) + " |", "|---|" + "---|" * 4]
    for aug in AUGS[1:]:
        rows.append(
            f"| {aug} | "
            + " | ".join(
                study.pp(_find(s["augmentation_effect"], model=m, augment=aug, framework=fw)["accuracy"])
                for m in MAIN
                for fw in FRAMEWORKS
            )
            + " |"
        )
    rows += [
        "",
        "Epochs to 88%, augmented minus not (paired by seed; a run that never reached 88% counts as its "
        "length + 1, so its effect is a lower bound):",
        "",
    ]
    for e in s["augmentation_effect"]:
        ee = e["epochs"]
        rows.append(
            f"- {e['model'].upper()} {e['augment']}, {e['framework']}: {study.epochs(ee)}"
            + (
                f"; {ee['unreached']} run(s) never reached 88% within {MAIN[e['model']]} epochs"
                if ee["unreached"]
                else ""
            )
        )
    gaps = [
        "",
        "Train minus test accuracy at the last epoch (mean over seeds): "
        + "; ".join(
            f"{c['model'].upper()} {c['augment']} {c['framework']} {100 * c['train_minus_test']:.1f} pp"
            for c in s["cells"]
        )
        + ".",
    ]
    b["claims-augmentation"] = "\n".join(rows + gaps)
    lines = []
    for fw, L in s["long"].items():
        ep = L["by_epoch"]
        later = [r["effect"] for r in ep[14:]]
        words = sorted({r["word"] for r in later})
        lines.append(
            f"- {fw} ({L['seeds']} seeds): at epoch {ep[-1]['epoch']}, flips minus none **{study.pp(ep[-1]['effect'])}**; "
            f"the train-test gap {100 * ep[-1]['none_gap']:.1f} pp without flips, {100 * ep[-1]['flip_gap']:.1f} with. "
            f"From epoch 15 to 40 the paired effect ranges over {100 * min(e['mean'] for e in later):+.2f} to "
            f"{100 * max(e['mean'] for e in later):+.2f} pp; verdicts over those epochs: "
            + ", ".join(f"{w} ({sum(e['word'] == w for e in later)})" for w in words)
            + "."
        )
    b["claims-long"] = "\n".join(lines)
    rows = ["| | " + " | ".join(AUGS) + " |", "|---|" + "---|" * len(AUGS)]
    for model in MAIN:
        rows.append(
            f"| {model.upper()}, Keras minus PyTorch | "
            + " | ".join(
                study.pp(
                    _find(s["keras_vs_pytorch"], model=model, augment=a)["accuracy"], directions=("higher", "lower")
                )
                for a in AUGS
            )
            + " |"
        )
    rows += [
        "",
        "The augmentation's effect in Keras minus its effect in PyTorch (the same seeds, the same pixels):",
        "",
    ]
    rows += [
        f"- {e['model'].upper()} {e['augment']}: {study.pp(e['accuracy'], directions=('larger in Keras', 'smaller in Keras'))}"
        for e in s["effect_agreement"]
    ]
    sh = s["shared_init"]
    rows += [
        "",
        f"From the same initial weights (`init=shared`, seeds {', '.join(map(str, sh['seeds']))}): vertical flips' "
        f"effect in PyTorch {study.pp(sh['vflip_effect']['pytorch'])}; in Keras {study.pp(sh['vflip_effect']['keras'])}; "
        f"Keras' effect minus PyTorch's {study.pp(sh['agreement_vflip'], directions=('larger in Keras', 'smaller in Keras'))}; "
        f"Keras minus PyTorch without augmentation {study.pp(sh['keras_vs_pytorch_none'], directions=('higher', 'lower'))}.",
        "",
        f"The default initialisers as the cause of the CNN's framework-dependent vertical-flip effect: "
        f"**{s['cause']['word']}** ({s['cause']['why']}).",
    ]
    b["claims-frameworks"] = "\n".join(rows)
    b["claims-bench"] = study.bench_block(out / "bench-cnn.json")
    b["readme-claims"] = readme_block(s)
    b["readme-augment-diff"] = augment_diff_block(json.loads((out / "augment-diff.json").read_text()))
    b["claims-augment-cost"] = "\n\n".join(
        study.bench_block(out / f"bench-augment-{k}.json") for k in ("shared", "native")
    )
    return b


def augment_diff_block(d: dict) -> str:
    """`fmnist-parity augment-diff`'s record: how far torchvision's and Keras' pixels are apart."""
    rows = [
        "| operation | pixels that differ, defaults | mean difference (of 255), defaults | pixels that differ, "
        "matched | mean difference, matched | Keras vs the shared augmentation, matched |",
        "|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        m = lambda k, f: f.format(r[k]) if k in r else "-"
        rows.append(
            f"| {r['op']} | {100 * r['pixels_differ']:.0f}% | {r['pytorch_vs_keras']:.2g} | "
            f"{m('matched_pixels_differ', '{:.1%}')} | {m('matched_pytorch_vs_keras', '{:.2g}')} | "
            f"{m('matched_keras_vs_shared', '{:.1g}')} |"
        )
    return (
        f"{d['images']} test images, rotation {d['angle_degrees']:g} degrees, shift {d['shift']} of the image:\n\n"
        + "\n".join(rows)
    )


def readme_block(s: dict) -> str:
    """The claims study in a few lines for the README (the same words as CLAIMS.md's blocks)."""
    short = lambda e, **kw: study.pp(e, **kw).split(";")[0]
    cnn = "; ".join(
        f"{e['framework']} accuracy {short(e['accuracy'])}, epochs to 88% {study.epochs(e['epochs']).split(';')[0]}"
        for e in s["cnn_vs_mlp"]
        if e["augment"] == "none"
    )
    aug = []
    for a in AUGS[1:]:
        words = [
            f"{e['model'].upper()} {e['framework']}: {e['accuracy']['word']}"
            for e in s["augmentation_effect"]
            if e["augment"] == a
        ]
        aug.append(f"{a} ({', '.join(words)})")
    long = "; ".join(f"{fw} {short(L['by_epoch'][-1]['effect'])}" for fw, L in s["long"].items())
    named = {S.RAISES: "Keras higher", S.LOWERS: "Keras lower"}
    frameworks = [named.get(e["accuracy"]["word"], e["accuracy"]["word"]) for e in s["keras_vs_pytorch"]]
    return "\n".join(
        [
            f"- **(b) CNN vs MLP** (no augmentation, CNN 8 epochs vs MLP 15, paired by seed): {cnn}.",
            "- **(a) augmentation**, effect on final accuracy per cell: " + "; ".join(aug) + ".",
            f"- flips over 40 MLP epochs, at epoch 40: {long}.",
            "- **Keras vs PyTorch**, final accuracy per cell (8 cells): "
            + ", ".join(f"{w} {frameworks.count(w)}" for w in sorted(set(frameworks)))
            + "; the CNN's framework-dependent "
            f"vertical-flip effect and the initialisers: {s['cause']['word']}.",
        ]
    )


def plot(rows: list[dict], s: dict, path: Path) -> None:
    runs = study.curves(rows, KEY)
    fig, ax = plt.subplots(2, 2, figsize=(14, 10))
    ax = ax.ravel()
    for i, model in enumerate(MAIN):
        for aug in AUGS:
            for fw in FRAMEWORKS:
                c = list(select(runs, model, aug, fw).values())
                if c:
                    ax[i].plot(
                        range(1, MAIN[model] + 1),
                        [100 * statistics.mean(x[e]["test_acc"] for x in c) for e in range(MAIN[model])],
                        STYLE[fw],
                        color=COLORS[aug],
                        label=f"{aug} ({fw})",
                    )
        ax[i].set(
            title=f"{model.upper()}: test accuracy, mean of seeds",
            xlabel="epoch",
            ylabel="test accuracy (%)",
            ylim=(84, 92),
        )
        ax[i].axhline(TARGET * 100, color="grey", lw=0.5)
        ax[i].legend(fontsize=7, ncol=2)
    labels = []
    for x, e in enumerate(s["augmentation_effect"]):
        a = e["accuracy"]
        ax[2].errorbar(
            x,
            a["mean"] * 100,
            yerr=[[100 * (a["mean"] - a["lo"])], [100 * (a["hi"] - a["mean"])]],
            fmt="o" if e["framework"] == "pytorch" else "s",
            color=COLORS[e["augment"]],
            capsize=3,
        )
        ax[2].scatter(
            [x] * len(a["values"]), [v * 100 for v in a["values"]], color=COLORS[e["augment"]], s=8, alpha=0.5
        )
        labels.append(f"{e['model']} {e['augment']}\n{e['framework']}")
    ax[2].axhline(0, color="grey", lw=0.8)
    ax[2].set_xticks(range(len(labels)), labels, fontsize=6, rotation=60)
    ax[2].set(
        title="augmentation minus none, final test accuracy\n(paired by seed; 95% t interval; dots: seeds)",
        ylabel="percentage points",
    )
    for fw, L in s["long"].items():
        r = L["by_epoch"]
        e = [x["epoch"] for x in r]
        ax[3].plot(e, [100 * x["effect"]["mean"] for x in r], STYLE[fw], color="tab:blue", label=f"flip - none ({fw})")
        ax[3].fill_between(
            e, [100 * x["effect"]["lo"] for x in r], [100 * x["effect"]["hi"] for x in r], color="tab:blue", alpha=0.1
        )
        ax[3].plot(
            e, [100 * x["none_gap"] for x in r], STYLE[fw], color="black", lw=0.8, label=f"train - test, none ({fw})"
        )
        ax[3].plot(
            e, [100 * x["flip_gap"] for x in r], STYLE[fw], color="tab:cyan", lw=0.8, label=f"train - test, flip ({fw})"
        )
    ax[3].axhline(0, color="grey", lw=0.8)
    ax[3].set(
        title="MLP trained longer: flips' paired effect (95% t band)\nand the train-test gap",
        xlabel="epoch",
        ylabel="percentage points",
    )
    ax[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, nargs="*", default=[], help="sweep directories to merge into claims.csv")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.runs:
        new, envs = study.collect(args.runs, FIELDS)
        if not new:
            raise SystemExit(f"no completed runs under {', '.join(map(str, args.runs))}")
        study.merge(args.out / "claims.csv", new, KEY)
        study.merge_provenance(args.out / "provenance.json", envs)
    rows = study.read(args.out / "claims.csv")
    s = summarize(rows, json.loads((args.out / "legacy-3-seeds.json").read_text()))
    (args.out / "claims.json").write_text(json.dumps(s, indent=1) + "\n")
    plot(rows, s, args.out / "claims.png")
    for name, text in blocks(args.out).items():
        print(f"== {name}\n{text}\n")


if __name__ == "__main__":
    main()
