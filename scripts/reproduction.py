"""Figures and summary numbers of docs/REPRODUCTION.md, from the comparison directories of the
reproduction runs and the notebook's own log. Usage (the commands are in docs/REPRODUCTION.md):

    .venv/bin/python scripts/reproduction.py --runs comparisons/repro --notebook-log PATH/notebook_log.csv

Writes docs/reproduction/: curves.csv (every run's per-epoch metrics and gradient norms),
summary.json (plateau, peak, final figures per run and for the notebook) and the figures.
With --precision, only the precision study: precision.csv, precision.json, precision.png."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import study  # noqa: E402  (scripts/: the studies' shared helpers and the verdict words)

OUT = Path(__file__).resolve().parent.parent / "docs" / "reproduction"
CHANCE_PLUS = 0.11  # "left the plateau": test accuracy above 11% (chance is 10%)
COLORS = {"pytorch": "tab:red", "keras": "tab:blue"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def load(runs_root: Path) -> dict:
    """{experiment: {(framework, seed): {"metrics": [...], "diagnostics": [...], "config": {...}}}}"""
    exps = {}
    for run in sorted(runs_root.glob("*/runs/*-seed*")):
        framework, seed = run.name.rsplit("-seed", 1)
        meta = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
        exps.setdefault(run.parent.parent.name, {})[(framework, int(seed))] = {
            "metrics": read_jsonl(run / "metrics.jsonl"),
            "diagnostics": read_jsonl(run / "diagnostics.jsonl"),
            "config": meta.get("config", {}),
            "environment": meta.get("environment", {}),
            "state": json.loads((run / "status.json").read_text())["state"]
            if (run / "status.json").exists()
            else "missing",
        }
    return exps


def notebook(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [
            {"epoch": int(r["epoch"]), "test_loss": float(r["test_loss"]), "test_acc": float(r["test_acc"])}
            for r in csv.DictReader(f)
        ]


def figures(rows: list[dict]) -> dict:
    """Plateau end (first epoch above 11%), peak and final test accuracy of one curve."""
    acc = [(r["epoch"], r["test_acc"]) for r in rows if r["epoch"] >= 1]
    if not acc:
        return {}
    left = next((e for e, a in acc if a > CHANCE_PLUS), None)
    one_class = next((e for e, a in acc if abs(a - 0.1) > 1e-9), acc[-1][0] + 1) - 1  # exactly 10%: one class for all
    peak = max(acc, key=lambda x: x[1])
    return {
        "epochs": acc[-1][0],
        "exactly_10pct_until": one_class,
        "plateau_until": (left - 1) if left else acc[-1][0],
        "left_plateau_at": left,
        "peak_acc": peak[1],
        "peak_epoch": peak[0],
        "final_acc": acc[-1][1],
        "final_test_loss": rows[-1]["test_loss"],
    }


def init_signal(sizes: list[int], seeds=range(1, 6)) -> dict:
    """At initialisation, on the first 1024 training images (x/255): how much of each output score
    depends on the input, against the spread of the scores' means (the biases), under each library's
    default initialiser distribution (PyTorch: weight and bias U(+-1/sqrt(fan_in)); Keras: Glorot
    uniform, zero bias), LeakyReLU 0.01, drawn in numpy for several seeds."""
    import sys
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from shared import data as fdata

    d = fdata.load(None, log=lambda m: None, progress=False)
    x = d.scaled("unit", "float64")[0][:1024]
    out = {}
    for name in ("pytorch", "keras"):
        rows = []
        for seed in seeds:
            rng, h = np.random.default_rng(seed), x
            for a, b in zip(sizes[:-1], sizes[1:]):
                bound = 1 / np.sqrt(a) if name == "pytorch" else np.sqrt(6 / (a + b))
                w = rng.uniform(-bound, bound, (a, b))
                z = h @ w + (rng.uniform(-bound, bound, b) if name == "pytorch" else 0)
                h = np.where(z > 0, z, 0.01 * z)
            rows.append(
                {
                    "input_dependent_std": float(z.std(0).mean()),
                    "mean_score_spread": float(z.mean(0).std()),
                    "classes_predicted": int(len(set(z.argmax(1)))),
                }
            )
        out[name] = {k: [r[k] for r in rows] for k in rows[0]}
    return out


def plot_curves(ax_acc, ax_loss, runs: dict, label_suffix="", style="-", nb=None):
    for (fw, seed), r in sorted(runs.items()):
        m = r["metrics"]
        e = [x["epoch"] for x in m]
        ax_acc.plot(
            e,
            [100 * x["test_acc"] for x in m],
            style,
            color=COLORS[fw],
            alpha=0.55 + 0.2 * (seed % 2),
            lw=1.2,
            label=f"{fw} seed {seed}{label_suffix}",
        )
        if ax_loss is not None:
            ax_loss.plot(e, [x["test_loss"] for x in m], style, color=COLORS[fw], alpha=0.55 + 0.2 * (seed % 2), lw=1.2)
    if nb:
        ax_acc.plot(
            [x["epoch"] for x in nb],
            [100 * x["test_acc"] for x in nb],
            color="k",
            lw=1.5,
            label="the notebook's log (its own DataLoader order, CUDA)",
        )
        if ax_loss is not None:
            ax_loss.plot([x["epoch"] for x in nb], [x["test_loss"] for x in nb], color="k", lw=1.5)


PRECISIONS = {"float64": "tab:gray", "float32": "k", "mixed-bfloat16": "tab:orange", "bfloat16": "tab:purple"}
FRAMEWORK_STYLE = {"pytorch": "-", "keras": "--"}


def changed_fraction(run: Path) -> list[float]:
    """Per layer (kernel and bias together): the fraction of weights whose final value differs from
    the initial one, from the run's neutral weights (weights/initial.npz, weights/final.npz)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from shared import weights

    a, b = weights.load(run / "weights" / "initial.npz"), weights.load(run / "weights" / "final.npz")
    import numpy as np

    return [float((np.sum(k0 != k1) + np.sum(b0 != b1)) / (k0.size + b0.size)) for (k0, b0), (k1, b1) in zip(a, b)]


def spacing(x: float, dtype: str) -> float:
    """The distance between adjacent numbers of `dtype` at |x| (one unit in the last place)."""
    import sys
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from shared.lockstep import numpy_dtype

    t = numpy_dtype(dtype)
    v = np.array(abs(x), dtype=t)
    return float(np.nextafter(v, np.array(np.inf, dtype=t)).astype(np.float64) - v.astype(np.float64))


def precision_study(runs_root: Path) -> dict:
    """docs/REPRODUCTION.md's precision section: the seed's two networks at float64, float32, mixed
    bfloat16 and pure bfloat16, both frameworks from the same initial weights (init=shared), seed 1.
    Writes precision.csv (curves and gradient norms), precision.json (the figures quoted) and
    precision.png."""
    import numpy as np

    exps = load(runs_root)
    out, rows = {}, []
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    for col, (net, sizes) in enumerate(
        (("seed-report", [784, 200, 200, 10]), ("seed-notebook", [784, 784, 784, 200, 200, 10]))
    ):
        for prec, color in PRECISIONS.items():
            for (fw, seed), r in sorted(exps.get(f"{net}-{prec}", {}).items()):
                m, diag = r["metrics"], r["diagnostics"]
                run = runs_root / f"{net}-{prec}" / "runs" / f"{fw}-seed{seed}"
                c = r["config"]
                g1 = [d["grad_norm"][0] for d in diag]
                # typical SGD step of a first-layer weight: lr x the RMS gradient entry (probe batch);
                # momentum mu makes a steady step 1/(1 - mu) times larger
                rms = g1[0] / np.sqrt(sizes[0] * sizes[1] + sizes[1]) if g1 else None
                step = c["lr"] * rms / (1 - c["momentum"]) if rms else None
                wdtype = "float32" if prec == "mixed-bfloat16" else prec
                typical_w = 0.5 / np.sqrt(sizes[0])  # median |w| of U(+-1/sqrt(fan_in))
                out.setdefault(net, {})[f"{prec} {fw}"] = {
                    **figures(m),
                    "state": r["state"],
                    "grad_norm_layers_epoch1": diag[0]["grad_norm"] if diag else None,
                    "grad_norm_layers_last": diag[-1]["grad_norm"] if diag else None,
                    "weights_changed_fraction": changed_fraction(run)
                    if (run / "weights" / "final.npz").exists()
                    else None,
                    "first_layer_step": step,
                    "weight_dtype": wdtype,
                    "half_spacing_at_median_weight": spacing(typical_w, wdtype) / 2,
                }
                for x in m:
                    d = next((d for d in diag if d["epoch"] == x["epoch"]), {})
                    rows.append(
                        [
                            net,
                            prec,
                            fw,
                            seed,
                            x["epoch"],
                            f"{x['train_loss']:.6g}",
                            f"{x['test_loss']:.6g}",
                            f"{x['test_acc']:.6g}",
                            ";".join(f"{v:.4g}" for v in d.get("grad_norm", [])),
                        ]
                    )
                e = [x["epoch"] for x in m]
                label = f"{prec} {fw}"
                axes[0, col].plot(
                    e, [100 * x["test_acc"] for x in m], FRAMEWORK_STYLE[fw], color=color, lw=1.3, label=label
                )
                axes[1, col].semilogy(
                    [d["epoch"] for d in diag], g1, FRAMEWORK_STYLE[fw], color=color, lw=1.3, label=label
                )
        axes[0, col].axhline(10, color="grey", ls=":", lw=0.8)
        axes[0, col].set(
            xlabel="epoch", ylabel="test accuracy %", title=f"{net}: init=shared, seed 1 (pytorch solid, keras dashed)"
        )
        axes[1, col].set(xlabel="epoch", ylabel="first layer's gradient norm (probe batch)")
        axes[0, col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "precision.png", dpi=100)
    plt.close(fig)
    with open(OUT / "precision.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "network",
                "precision",
                "framework",
                "seed",
                "epoch",
                "train_loss",
                "test_loss",
                "test_acc",
                "grad_norm_per_layer",
            ]
        )
        w.writerows(rows)
    (OUT / "precision.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


# ---- the generated blocks of docs/REPRODUCTION.md and docs/PRECISION.md ------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _run_row(name: str, r: dict, ten: bool = True) -> str:
    cells = (
        [name]
        + ([f"epoch {r['exactly_10pct_until']}" if r["exactly_10pct_until"] else "-"] if ten else [])
        + [
            f"epoch {r['plateau_until']}",
            f"{_pct(r['peak_acc'])} ({r['peak_epoch']})",
            _pct(r["final_acc"]),
            f"{r['final_test_loss']:.3f}",
        ]
    )
    return "| " + " | ".join(cells) + " |"


def _pair(c: dict, a: tuple, b: tuple, n: int | None = None) -> dict:
    """Two runs' curves epoch by epoch (first n epochs): equal test accuracies, the largest accuracy gap
    in images of 10,000, the largest test-loss gap."""
    x, y = c[a][:n], c[b][:n]
    acc = [abs(p["test_acc"] - q["test_acc"]) for p, q in zip(x, y)]
    return {
        "epochs": len(acc),
        "equal": sum(d < 5e-5 for d in acc),
        "max_images": round(max(acc) * 10000),
        "max_loss": max(abs(p["test_loss"] - q["test_loss"]) for p, q in zip(x, y)),
    }


def _pair_text(d: dict) -> str:
    return (
        f"the same test accuracy at {d['equal']} of {d['epochs']} epochs (at most {d['max_images']} image(s) of "
        f"10,000 apart), test loss within {d['max_loss']:.2g} (curves.csv keeps 6 significant digits)"
    )


def repro_blocks(out: Path) -> dict[str, str]:
    S = study.S
    sm = json.loads((out / "summary.json").read_text())
    runs, b = sm["runs"], {}
    c = study.curves(study.read(out / "curves.csv"), ("experiment", "framework", "seed"))
    head = {
        True: [
            "| run | exactly 10% (one class) until | at most 11% until | peak test acc (epoch) | at epoch 300 | "
            "test loss at 300 |",
            "|---|---|---|---|---|---|",
        ],
        False: [
            "| run | at most 11% until | peak test acc (epoch) | at epoch 300 | test loss at 300 |",
            "|---|---|---|---|---|",
        ],
    }
    for exp, ten in (("seed-notebook", True), ("seed-report", False)):
        rows = head[ten] + ([_run_row("the notebook (log)", sm["notebook"])] if ten else [])
        rows += [
            _run_row(f"{k.split('-')[0].replace('pytorch', 'PyTorch').replace('keras', 'Keras')} seed {k[-1]}", r, ten)
            for k, r in sorted(runs[exp].items(), key=lambda kv: (kv[0].startswith("keras"), kv[0]))
        ]
        gap = S.effect(
            [runs[exp][f"keras-seed{s}"]["final_acc"] - runs[exp][f"pytorch-seed{s}"]["final_acc"] for s in (1, 2)],
            study.MARGIN,
        )
        shared = _pair(c, (f"{exp}-shared-init", "pytorch", 1), (f"{exp}-shared-init", "keras", 1))
        sc = (
            c[(f"{exp}-shared-init", "keras", 1)][-1]["test_acc"]
            - c[(f"{exp}-shared-init", "pytorch", 1)][-1]["test_acc"]
        )
        cause = S.cause(gap, S.effect([sc], study.MARGIN))
        b[f"repro-{exp}"] = "\n".join(
            rows
            + [
                "",
                f"Keras minus PyTorch, final test accuracy, native defaults: "
                f"**{S.says(gap, directions=('higher', 'lower'))}**.",
                "",
                f"From identical initial weights (`init=shared`, seed 1, {shared['epochs']} epochs): "
                f"{_pair_text(shared)}.",
                "",
                f"The default initialisers as the cause of the native gap: **{cause['word']}** ({cause['why']}).",
            ]
        )
    match = [
        f"PyTorch seed {k[-1]}: mean absolute test-loss difference from the notebook's {r['test_loss_vs_notebook']['mean_abs']:.3f}, "
        f"largest {r['test_loss_vs_notebook']['max_abs']:.3f}"
        for k, r in sorted(runs["seed-notebook"].items())
        if k.startswith("pytorch") and r.get("test_loss_vs_notebook")
    ]
    b["repro-notebook-match"] = "; ".join(match) + "."
    f64 = _pair(c, ("seed-notebook", "pytorch", 1), ("seed-notebook-float64", "pytorch", 1), 80)
    k64 = _pair(c, ("seed-notebook-shared-init", "keras", 1), ("seed-notebook-float64-shared-init", "keras", 1))
    b["repro-float64"] = (
        f"- PyTorch, seed 1, float64 against float32 (the same initial weights and batches): {_pair_text(f64)}.\n"
        f"- Keras, seed 1, `init=shared`, float64 against float32: {_pair_text(k64)}."
    )
    ratios = []
    for fw in ("pytorch", "keras"):
        for seed in (1, 2):
            for r in c[("seed-notebook", fw, seed)]:
                g = [float(v) for v in str(r["grad_norm_per_layer"]).split(";") if v not in ("", "None")]
                if g:
                    ratios.append((g[0] / max(g), min(g) / max(g)))
    first = lambda e: [
        float(v) for v in str(c[("seed-notebook", "pytorch", 1)][e - 1]["grad_norm_per_layer"]).split(";")
    ]
    b["repro-gradients"] = (
        f"Over every epoch of the four 300-epoch seed-notebook runs, the first layer's gradient norm is never "
        f"below {min(r[0] for r in ratios):.2f}x the largest layer's, and no layer's below "
        f"{min(r[1] for r in ratios):.2f}x. PyTorch seed 1, layers 1-5, at epoch 1: "
        + ", ".join(f"{v:.2g}" for v in first(1))
        + "; at epoch 300: "
        + ", ".join(f"{v:.2g}" for v in first(300))
        + f"; Keras seed 1, layer 1 at epoch 1: {float(str(c[('seed-notebook', 'keras', 1)][0]['grad_norm_per_layer']).split(';')[0]):.2g}."
    )
    sig = sm["init_signal"]
    rng = lambda v: f"{min(v):.2g}-{max(v):.2g}"
    b["repro-init-signal"] = "\n".join(
        f"- {net}, {fw}'s default initialisation ({len(x['input_dependent_std'])} seeds): input-dependent part of the output "
        f"scores {rng(x['input_dependent_std'])} (standard deviation), spread of the class scores' means {rng(x['mean_score_spread'])}, "
        f"classes predicted over 1024 images {min(x['classes_predicted'])}-{max(x['classes_predicted'])}"
        for net, by in sig.items()
        for fw, x in by.items()
    )
    lg = {fw: c[("seed-notebook-logits", fw, 1)] for fw in ("pytorch", "keras")}
    seedhead = {fw: c[("seed-notebook", fw, 1)] for fw in ("pytorch", "keras")}
    above = lambda curve, t: next((r["epoch"] for r in curve if r["test_acc"] > t), None)
    b["repro-logits"] = "\n".join(
        f"- {fw}: logits head {_pct(lg[fw][39]['test_acc'])} at epoch 40 and {_pct(lg[fw][59]['test_acc'])} at 60 (test loss "
        f"{lg[fw][59]['test_loss']:.3f}); the report's head {_pct(seedhead[fw][39]['test_acc'])} and {_pct(seedhead[fw][59]['test_acc'])}. "
        f"Logits head first above 25% at epoch {above(lg[fw], 0.25)}, above 40% at {above(lg[fw], 0.40)}, above 80% at "
        f"{above(lg[fw], 0.80) or 'none within 60'}"
        for fw in ("pytorch", "keras")
    )
    return b


def blocks(out: Path = OUT) -> dict[str, str]:
    """REPRODUCTION.md's tables and figures; the precision study's table, and how far apart each
    PyTorch/Keras twin ran (one seed each)."""
    p = json.loads((out / "precision.json").read_text())
    rows = [
        "| network | precision | framework | at most 11% until | peak test acc (epoch) | final test acc | "
        "first layer's gradient norm, first -> last epoch | weights ever changed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for net, runs in p.items():
        for name, r in runs.items():
            prec, fw = name.rsplit(" ", 1)
            wc = r["weights_changed_fraction"]
            changed = (
                "n/a"
                if not wc
                else (f"{100 * min(wc):.3g}-{100 * max(wc):.3g}%" if min(wc) != max(wc) else f"{100 * wc[0]:.3g}%")
            )
            g0, g1 = r["grad_norm_layers_epoch1"], r["grad_norm_layers_last"]
            rows.append(
                f"| {net} ({r['epochs']} epochs) | {prec} | {fw} | epoch {r['plateau_until']} | "
                f"{100 * r['peak_acc']:.2f}% ({r['peak_epoch']}) | {100 * r['final_acc']:.2f}% | "
                f"{g0[0]:.4f} -> {g1[0]:.4f} | {changed} |"
            )
    b = {"precision-seed-table": "\n".join(rows), **repro_blocks(out)}
    curves = study.curves(study.read(out / "precision.csv"), ("network", "precision", "framework", "seed"))
    lines = []
    for (net, prec, fw, seed), c in sorted(curves.items()):
        twin = curves.get((net, prec, "keras", seed))
        if fw != "pytorch" or not twin:
            continue
        gaps = [(k["test_acc"] - t["test_acc"], t["epoch"]) for t, k in zip(c, twin)]
        worst = max(gaps, key=lambda g: abs(g[0]))
        lines.append(
            f"- {net}, {prec}, seed {seed}: Keras minus PyTorch at the last epoch {100 * gaps[-1][0]:+.2f} pp; "
            f"largest over the {len(gaps)} epochs {100 * worst[0]:+.2f} pp (epoch {worst[1]})"
        )
    swamp = []
    for net, runs in p.items():
        bf, f32 = runs.get("bfloat16 pytorch"), runs.get("float32 pytorch")
        if not bf or not f32:
            continue
        step, half = bf["first_layer_step"], bf["half_spacing_at_median_weight"]
        wc = lambda r: f"{100 * min(r['weights_changed_fraction']):.3g}-{100 * max(r['weights_changed_fraction']):.3g}%"
        swamp.append(
            f"- {net}: first-layer gradient norm at epoch 1, bfloat16 {bf['grad_norm_layers_epoch1'][0]:.4f} against "
            f"float32 {f32['grad_norm_layers_epoch1'][0]:.4f}; a typical first-layer SGD step (lr x RMS gradient "
            f"entry / (1 - momentum)) {step:.2g}, half a bfloat16 spacing at a typical initial weight {half:.2g}: "
            f"{half / step:,.0f}x the step; weights ever changed {wc(bf)} in bfloat16 (PyTorch), "
            f"{wc(runs['bfloat16 keras']) if 'bfloat16 keras' in runs else 'n/a'} (Keras), {wc(f32)} in float32; "
            f"final test loss in bfloat16, PyTorch {bf['final_test_loss']:.4g}, Keras "
            f"{runs['bfloat16 keras']['final_test_loss']:.4g}"
            if "bfloat16 keras" in runs
            else ""
        )
    b["precision-swamping"] = "\n".join(swamp)
    locks = [(name, out / f"lockstep-{name}.json") for name in ("mixed", "bf16", "fp16")]
    b["precision-lockstep"] = "\n\n".join(
        study.lockstep_table(json.loads(f.read_text()))
        if f.exists()
        else f"(no lockstep record committed at docs/reproduction/{f.name}: run its command above and copy lockstep.json)"
        for name, f in locks
    )
    b["precision-bench"] = study.bench_block(out / "bench-precision.json")
    b["precision-twins"] = "\n".join(lines) + (
        f"\n\nOne seed per twin, so the verdict is **{study.S.NO_EVIDENCE}** (at least 2 paired seeds are needed); these are single-run distances."
    )
    return b


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=Path("comparisons/repro"))
    p.add_argument("--notebook-log", type=Path, help="notebook_log.csv beside the lab report")
    p.add_argument(
        "--precision",
        action="store_true",
        help="only the precision study (float64 / float32 / mixed bfloat16 / bfloat16 runs under --runs)",
    )
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if a.precision:
        print(json.dumps(precision_study(a.runs), indent=1))
        return 0
    if a.notebook_log is None:
        p.error("--notebook-log is required (except with --precision)")
    exps, nb = load(a.runs), notebook(a.notebook_log)

    with open(OUT / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "experiment",
                "framework",
                "seed",
                "epoch",
                "train_loss",
                "train_acc",
                "test_loss",
                "test_acc",
                "train_seconds",
                "grad_norm_per_layer",
            ]
        )
        for name, runs in sorted(exps.items()):
            for (fw, seed), r in sorted(runs.items()):
                diag = {d["epoch"]: d for d in r["diagnostics"]}
                for m in r["metrics"]:
                    g = diag.get(m["epoch"], {}).get("grad_norm", [])
                    w.writerow(
                        [
                            name,
                            fw,
                            seed,
                            m["epoch"],
                            f"{m['train_loss']:.6g}",
                            f"{m['train_acc']:.6g}",
                            f"{m['test_loss']:.6g}",
                            f"{m['test_acc']:.6g}",
                            f"{m['train_seconds']:.3f}",
                            ";".join(f"{x:.4g}" for x in g),
                        ]
                    )

    summary = {
        "notebook": {**figures(nb), "source": str(a.notebook_log.name)},
        "runs": {
            name: {
                f"{fw}-seed{seed}": {
                    **figures(r["metrics"]),
                    "state": r["state"],
                    "dtype": r["config"].get("dtype"),
                    "head": r["config"].get("head"),
                    "cpu": r["environment"].get("cpu"),
                    "threads": r["environment"].get("threads"),
                }
                for (fw, seed), r in sorted(runs.items())
            }
            for name, runs in sorted(exps.items())
        },
    }
    nbl = {r["epoch"]: r["test_loss"] for r in nb}
    for key, r in summary["runs"].get("seed-notebook", {}).items():
        fw, seed = key.rsplit("-seed", 1)
        d = [
            abs(m["test_loss"] - nbl[m["epoch"]])
            for m in exps["seed-notebook"][(fw, int(seed))]["metrics"]
            if m["epoch"] in nbl
        ]
        r["test_loss_vs_notebook"] = {"max_abs": max(d), "mean_abs": sum(d) / len(d)}
    summary["init_signal"] = {
        "seed-notebook": init_signal([784, 784, 784, 200, 200, 10]),
        "seed-report": init_signal([784, 200, 200, 10]),
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    for name, title in (
        ("seed-notebook", "seed-notebook: 784-784-784-200-200-10, Sigmoid+LogSoftmax, SGD 0.001/0.5, batch 512"),
        ("seed-report", "seed-report: 784-200-200-10, Sigmoid+LogSoftmax, SGD 0.001/0.5, batch 512"),
    ):
        if name not in exps:
            continue
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
        fig.suptitle(title)
        plot_curves(ax1, ax2, exps[name], nb=nb if name == "seed-notebook" else None)
        ax1.axhline(10, color="grey", ls=":", lw=0.8)  # chance
        ax1.set(xlabel="epoch", ylabel="test accuracy %")
        ax2.axhline(1.4611, color="grey", ls=":", lw=0.8)
        ax2.text(1, 1.47, "loss floor ln(9+e)-1 = 1.461", fontsize=8, color="grey")
        ax2.set(xlabel="epoch", ylabel="test loss (NLL)")
        ax1.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(OUT / f"{name}.png", dpi=100)
        plt.close(fig)

    # float64 vs float32, same seed, same initial weights: PyTorch with its native init (drawn in
    # float32, then converted), Keras with init=shared (Keras draws its init in the layer dtype)
    pairs = [
        (fw, exps.get(a, {}).get((fw, 1)), exps.get(b, {}).get((fw, 1)), label)
        for fw, a, b, label in (
            ("pytorch", "seed-notebook", "seed-notebook-float64", "native init"),
            ("keras", "seed-notebook-shared-init", "seed-notebook-float64-shared-init", "init=shared"),
        )
    ]
    pairs = [p for p in pairs if p[1] and p[2]]
    if pairs:
        fig, axes = plt.subplots(1, 1 + len(pairs), figsize=(6 * (1 + len(pairs)), 4.5))
        for fw, f32, f64, label in pairs:
            n = len(f64["metrics"])
            for r, style, dt in ((f32, "-", "float32"), (f64, "--", "float64")):
                m = r["metrics"][:n]
                axes[0].plot(
                    [x["epoch"] for x in m],
                    [100 * x["test_acc"] for x in m],
                    style,
                    color=COLORS[fw],
                    label=f"{fw} seed 1 ({label}) {dt}",
                )
        axes[0].set(xlabel="epoch", ylabel="test accuracy %", title="seed-notebook: float32 vs float64")
        axes[0].legend(fontsize=8)
        for ax, (fw, f32, f64, label) in zip(axes[1:], pairs):
            n = len(f64["diagnostics"])
            for r, style, dt in ((f32, "-", "float32"), (f64, "--", "float64")):
                diag = r["diagnostics"][:n]
                layers = len(diag[0]["grad_norm"])
                for i in range(layers):
                    ax.semilogy(
                        [d["epoch"] for d in diag],
                        [d["grad_norm"][i] for d in diag],
                        style,
                        color=plt.cm.viridis(i / max(1, layers - 1)),
                        lw=1,
                        label=f"layer {i + 1}" if dt == "float32" else None,
                    )
            ax.set(xlabel="epoch", ylabel="gradient norm (probe batch)")
            ax.set_title(
                f"{fw} ({label}): gradient norm per layer\nfloat32 solid, float64 dashed (on top of it)", fontsize=10
            )
            ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(OUT / "float64.png", dpi=100)
        plt.close(fig)

    if "seed-notebook-logits" in exps and "seed-notebook" in exps:
        lg = exps["seed-notebook-logits"]
        n = max(len(r["metrics"]) for r in lg.values())
        seedh = {k: {**v, "metrics": v["metrics"][:n]} for k, v in exps["seed-notebook"].items() if k in lg}
        fig, ax = plt.subplots(figsize=(7, 4.5))
        plot_curves(ax, None, seedh, " Sigmoid+LogSoftmax head", "-")
        plot_curves(ax, None, lg, " logits head", "--")
        ax.set(xlabel="epoch", ylabel="test accuracy %", title="seed-notebook: the report's head vs plain logits")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(OUT / "logits.png", dpi=100)
        plt.close(fig)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
