"""From a comparison directory to summary.json, PNG plots, report.md and a self-contained
report.html. Reads run directories only through shared.rundir; imports no framework."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from compare import ablate, defaults, lockstep
from compare.render import fmt, jsonable, pct, render_html, render_md, secs
from compare.summary import summarize, training_path
from shared import config as cfg
from shared import diagnostics, plan
from shared.atomic import atomic_write


# ---------------------------------------------------------------- plots

AUGMENT_IMPL = {
    "shared": "shared: the same pixels on every side",
    "native": "native: each library's own transforms with its defaults, so each side trains on other "
    "pixels; `fmnist-parity augment-diff` shows how they differ",
}


def plots(s: dict, out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    made = []
    labels = [l for l in s["comparison"]["contestants"] if s["per_epoch"][l]]

    def save(fig, name, alt):
        fig.tight_layout()
        atomic_write(out / name, lambda f: fig.savefig(f, format="png", dpi=100))
        plt.close(fig)
        made.append((name, alt))

    if labels:
        for key, name, title in (
            ("test_acc", "accuracy.png", "Test accuracy per epoch"),
            ("test_loss", "loss.png", "Test loss per epoch"),
        ):
            fig, ax = plt.subplots(figsize=(7, 4))
            for l in labels:
                rows = s["per_epoch"][l]
                ep = np.arange(1, len(rows) + 1)
                vals = [r[key]["values"] for r in rows]
                mean = np.array([np.mean(v) for v in vals])
                ax.plot(ep, mean, marker="o", ms=3, label=l)
                ax.fill_between(ep, [min(v) for v in vals], [max(v) for v in vals], alpha=0.2)
            ax.set(xlabel="epoch", ylabel=key.replace("_", " "), title=f"{title} (mean, band = min..max over seeds)")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.legend()
            save(fig, name, title)
        fig, ax = plt.subplots(figsize=(7, 4))
        x = np.arange(len(labels))
        med = [s["timing"][l]["median_epoch_seconds"]["mean"] for l in labels]
        first = [s["timing"][l]["first_epoch_seconds"]["mean"] for l in labels]
        ax.bar(x - 0.2, first, 0.4, label="first epoch (warm-up)", alpha=0.6)
        ax.bar(x + 0.2, med, 0.4, label="median later epoch")
        ax.set_xticks(x, labels)
        ax.set(ylabel="training seconds per epoch", title="Epoch time (mean over seeds)")
        ax.legend()
        save(fig, "epoch_time.png", "Epoch time per contestant")
    for v in s["verdicts"]:
        rows = [r for r in v["per_epoch"] if r["ci"]]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        ep = [r["epoch"] for r in rows]
        d = np.array([r["diff"] for r in rows]) * 100
        lo = d - np.array([r["ci"][0] for r in rows]) * 100
        hi = np.array([r["ci"][1] for r in rows]) * 100 - d
        ax.errorbar(ep, d, yerr=[lo, hi], fmt="o-", capsize=3, label=f"{v['a']} - {v['b']}")
        for m in (-s["margin"] * 100, s["margin"] * 100):
            ax.axhline(m, ls="--", color="gray")
        ax.axhline(0, color="black", lw=0.5)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set(
            xlabel="epoch",
            ylabel="test accuracy difference (pp)",
            title=f"{v['a']} - {v['b']}: difference with 95% CI; dashed = ±margin",
        )
        ax.legend()
        save(fig, f"acc_diff_{v['a']}.png", f"Accuracy difference {v['a']} - {v['b']}")
    return made


# ---------------------------------------------------------------- the document (one structure, two renderings)


def document(s: dict) -> list[tuple]:
    """The comparison report, in the order a reader needs it: the verdict, accuracy and curves first."""
    blocks = [("h1", "fmnist-parity: PyTorch vs Keras, side by side")]
    for section in (verdict_blocks, accuracy_blocks, curve_blocks, timing_blocks, setup_blocks):
        blocks += section(s)
    return blocks


def verdict_blocks(s: dict) -> list[tuple]:
    """The verdicts and speed ratios, what the verdict rests on, the network, and runs left out."""
    meta = s["comparison"]
    blocks = []
    blocks.append(("h2", "Verdict"))
    for v in s["verdicts"]:
        blocks.append(("p", v["sentence"]))
    for r in s["speed_ratios"]:
        if r["n"]:
            blocks.append(
                (
                    "p",
                    f"Speed: a median training epoch of {r['a']} takes {r['mean']:.2f}x as long as "
                    f"{r['b']}'s (over {r['n']} seed(s): {r['min']:.2f}x to {r['max']:.2f}x).",
                )
            )
    for v in s["verdicts"]:
        blocks.append(
            (
                "p",
                f"{v['a']} vs {v['b']}: the verdict uses the {v['why']}."
                + (
                    f" Welch's unpaired interval, for comparison: {v['welch_sentence'].split(': ', 1)[1]}"
                    if v.get("welch_sentence")
                    else ""
                ),
            )
        )
    config = cfg.from_dict(meta["config"])
    blocks.append(
        (
            "p",
            f"Network: {plan.describe(config)}"
            + (
                f"; augmentation {config.augment} ({AUGMENT_IMPL[config.augment_impl]})"
                if config.augment != "none"
                else ""
            )
            + ".",
        )
    )
    blocks.append(
        (
            "p",
            f"How to read it: equivalence is two one-sided t tests at alpha = 0.05 (the 90% CI of the "
            f"difference lies inside ±{100 * s['margin']:.2f} pp); the 95% CI shown is two-sided. "
            f"Each seed trains every contestant on the same batches in the same order.",
        )
    )
    if meta["config"]["init"] == "native":
        blocks.append(
            (
                "p",
                "Initialisation is native: each framework draws its own default initial weights "
                "(PyTorch Linear and Conv2d: Kaiming-uniform kernel and bias; Keras Dense and Conv2D: "
                "Glorot-uniform kernel, zero bias), a known source of early-epoch differences. "
                "--set init=shared loads identical weights.",
            )
        )
    bad = [r for r in s["runs"] if r["state"] != "completed"]
    if bad:
        blocks.append(
            (
                "p",
                "Runs left out of the statistics: "
                + "; ".join(f"{r['contestant']} seed {r['seed']}: {r['state']} {r['message']}".strip() for r in bad),
            )
        )
    return blocks


def accuracy_blocks(s: dict) -> list[tuple]:
    """Final test accuracy per contestant, with the curves' pictures."""
    labels = s["comparison"]["contestants"]
    blocks = []
    blocks.append(("h2", "Final test accuracy"))
    blocks.append(
        (
            "table",
            ["contestant", "seeds", "mean", "std", "per seed"],
            [
                [
                    l,
                    s["accuracy"][l]["n"],
                    pct(s["accuracy"][l]["mean"]),
                    pct(s["accuracy"][l]["std"]),
                    ", ".join(pct(x) for x in s["accuracy"][l]["values"]),
                ]
                for l in labels
            ],
        )
    )
    blocks.append(("imgs", [("accuracy.png", "Test accuracy per epoch"), ("loss.png", "Test loss per epoch")]))
    return blocks


def curve_blocks(s: dict) -> list[tuple]:
    """Epoch by epoch, per verdict: losses, accuracies and the gap with its interval."""
    blocks = []
    for v in s["verdicts"]:
        blocks.append(("h2", f"Curves, epoch by epoch: {v['a']} vs {v['b']}"))
        pa, pb = s["per_epoch"][v["a"]], s["per_epoch"][v["b"]]
        rows = []
        for e, pe in enumerate(v["per_epoch"]):
            rows.append(
                [
                    e + 1,
                    fmt(pb[e]["train_loss"]["mean"]),
                    fmt(pa[e]["train_loss"]["mean"]),
                    fmt(pb[e]["test_loss"]["mean"]),
                    fmt(pa[e]["test_loss"]["mean"]),
                    pct(pb[e]["test_acc"]["mean"]),
                    pct(pa[e]["test_acc"]["mean"]),
                    f"{100 * pe['diff']:+.2f}"
                    + (f" [{100 * pe['ci'][0]:+.2f}, {100 * pe['ci'][1]:+.2f}]" if pe["ci"] else ""),
                    pe["outcome"],
                ]
            )
        blocks.append(
            (
                "table",
                [
                    "epoch",
                    f"train loss {v['b']}",
                    f"train loss {v['a']}",
                    f"test loss {v['b']}",
                    f"test loss {v['a']}",
                    f"test acc {v['b']}",
                    f"test acc {v['a']}",
                    "gap pp [95% CI]",
                    "verdict",
                ],
                rows,
            )
        )
        blocks.append(("img", f"acc_diff_{v['a']}.png", f"Accuracy difference {v['a']} - {v['b']}"))
    return blocks


def timing_blocks(s: dict) -> list[tuple]:
    """What was timed and how long it took, per contestant."""
    meta = s["comparison"]
    labels = meta["contestants"]
    blocks = []
    blocks.append(("h2", "Timing"))
    if any(r["where"].get("packed") for r in s["runs"]):
        blocks.append(
            (
                "p",
                "Warning: these runs were packed onto shared Ray nodes (--pack): several trained at once on "
                "the same cores, so their timings are NOT comparable between contestants.",
            )
        )
    elif any(r["where"]["engine"] == "ray" for r in s["runs"]):
        nodes = sorted({r["where"]["node_id"][:8] for r in s["runs"] if r["where"]["engine"] == "ray"})
        blocks.append(
            (
                "p",
                f"Ran on Ray, one timed run per node at a time, on {len(nodes)} node(s) ({', '.join(nodes)}); "
                "compare timings across nodes only if the nodes are the same hardware.",
            )
        )
    blocks.append(
        (
            "p",
            "Training seconds exclude process start-up, data loading and evaluation (stated separately); "
            "GPU work is synchronised before the clock stops. The median epoch is the steady state: it leaves "
            "out each run's first epoch (start-up: compilation, autotuning, warm caches; on a GPU Keras-JAX's "
            "is mostly XLA compiling), which has a column of its own (a run of one epoch has only that one). "
            "Values are means over seeds of per-run figures; "
            f"time to target is cumulative training time until test accuracy first reached {pct(s['target_acc'])}."
            + (
                " Run locally, each contestant's runs share one process: its first run pays the start-up "
                "(imports, framework initialisation), the mean spreads it over the seeds."
                if all(r["where"]["engine"] == "local" for r in s["runs"])
                else ""
            ),
        )
    )
    keys = [
        "median_epoch_seconds",
        "first_epoch_seconds",
        "samples_per_second",
        "eval_seconds",
        "time_to_target_seconds",
        "startup_seconds",
        "data_seconds",
    ]
    rows = []
    for l in labels:
        t = s["timing"][l]
        rows.append(
            [l]
            + [
                (
                    "n/a"
                    if not (k in t and t[k]["n"])
                    else f"{t[k]['mean']:.0f}"
                    if k == "samples_per_second"
                    else secs(t[k]["mean"])
                )
                for k in keys
            ]
            + [f"{t.get('reached_target', 0)}/{s['accuracy'][l]['n']}"]
        )
    blocks.append(
        (
            "table",
            [
                "contestant",
                "median epoch s",
                "first epoch s",
                "samples/s",
                "eval s",
                "time to target s",
                "start-up s",
                "data load s",
                "reached target",
            ],
            rows,
        )
    )
    blocks.append(
        (
            "p",
            "Training path (what was timed): "
            + "; ".join(f"{l}: {training_path(meta['config'], s['environments'][l] or {}, l)}" for l in labels)
            + ".",
        )
    )
    blocks.append(("img", "epoch_time.png", "Epoch time per contestant"))
    return blocks


def setup_blocks(s: dict) -> list[tuple]:
    """How to reproduce it: the config, environments, data checksums and every run."""
    meta = s["comparison"]
    labels = meta["contestants"]
    blocks = []
    blocks.append(("h2", "Setup"))
    blocks.append(("p", "Reproduce: " + meta.get("reproduce", "")))
    c = meta["config"]
    blocks.append(
        (
            "table",
            ["key", "value"],
            [[k, json.dumps(c[k])] for k in sorted(c)]
            + [["seeds", json.dumps(meta["seeds"])], ["margin", f"±{100 * s['margin']:.2f} pp"]],
        )
    )
    env_keys = sorted({k for e in s["environments"].values() if e for k in e})
    blocks.append(
        (
            "table",
            ["environment"] + labels,
            [[k] + [str((s["environments"][l] or {}).get(k, "")) for l in labels] for k in env_keys],
        )
    )
    if s["data"]:
        blocks.append(("p", f"Data: {s['data']['source']}, verified by SHA-256 of the decompressed files:"))
        blocks.append(("table", ["file", "sha256"], [[n, d] for n, d in s["data"]["sha256"].items()]))
    blocks.append(
        (
            "table",
            ["run", "state", "epochs", "final test acc", "ran on", "message"],
            [
                [
                    r["dir"],
                    r["state"],
                    r["epochs_done"],
                    pct(r["final_test_acc"]),
                    "this machine"
                    if r["where"]["engine"] == "local"
                    else f"ray node {r['where']['node_id'][:8]} ({r['where']['host']})"
                    + (", packed" if r["where"].get("packed") else ""),
                    r["message"],
                ]
                for r in s["runs"]
            ],
        )
    )
    return blocks


def why_sections(comp_dir: Path, config: dict) -> tuple[list[tuple], dict]:
    """The sections `run` (and `--with lockstep,defaults,ablate`) left in the comparison directory, if
    any; `config`: the comparison's, for what the run does about each default that differs."""
    blocks, found = [], {}
    full_defaults = lambda t: (
        defaults.differ_blocks(t, config) + (defaults.blocks(t, folded=True) if t.get("full", True) else [])
    )
    for name, path, make in (
        ("defaults", comp_dir / "defaults.json", full_defaults),
        ("lockstep", comp_dir / "lockstep" / "lockstep.json", lockstep.blocks),
        ("ablation", comp_dir / "ablation" / "ablation.json", ablate.blocks),
    ):
        if path.exists():
            data = json.loads(path.read_text())
            found[name] = (
                data.get("findings")
                or data.get("conclusions")
                or [r["what"] for r in data.get("rows", []) if r.get("differ")]
            )
            blocks += make(data)
    return blocks, found


def diagnostics_section(comp_dir: Path, s: dict) -> tuple[list[tuple], dict]:
    """Per-layer gradient norms per epoch (runs trained with diagnostics=true): one panel per
    contestant (its first seed), log scale, and every vanishing/exploding warning."""
    per_run = [(r, diagnostics.read(comp_dir / r["dir"])) for r in s["runs"]]
    found = {}
    for r, rows in per_run:
        if rows:
            found.setdefault(r["contestant"], (r["seed"], rows))
    if not found:
        return [], {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(found), figsize=(5.5 * len(found), 3.8), squeeze=False)
    for ax, (label, (seed, rows)) in zip(axes[0], found.items()):
        g = np.array([row["grad_norm"] for row in rows])
        for i in range(g.shape[1]):
            ax.semilogy([row["epoch"] for row in rows], g[:, i], marker=".", label=f"layer {i + 1}")
        ax.set(title=f"{label} seed {seed}: gradient norm per layer", xlabel="epoch", ylabel="L2 norm (probe batch)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(comp_dir / "diagnostics.png", lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)
    warnings = [
        f"{r['contestant']} seed {r['seed']}, epoch {row['epoch']}: {row['warning']}"
        for r, rows in per_run
        for row in rows
        if row["warning"]
    ]
    blocks = [
        ("h2", "Gradient diagnostics"),
        (
            "p",
            f"Per-layer L2 norm of the gradient (kernel and bias) on a fixed probe batch (the first "
            f"{diagnostics.PROBE} training images) after every epoch; weight norms are in each run's "
            f"{diagnostics.FILE}. A layer below {diagnostics.VANISH:g} x the largest layer's norm reads as "
            f"vanishing, a total above {diagnostics.EXPLODE:g} as exploding.",
        ),
        ("img", "diagnostics.png", "Gradient norm per layer and epoch"),
    ]
    first = {}
    for w in warnings:  # the first warning of each run, not one per epoch
        first.setdefault(w.split(", epoch")[0], w)
    blocks += [("p", "Warning: " + w) for w in first.values()] or [
        ("p", "No vanishing or exploding gradients detected.")
    ]
    return blocks, {"warnings": list(first.values())}


def write_cell_reports(root: Path) -> None:
    """The report of every comparison directory under root/cells (the cells of an ablation or a sweep)."""
    for cell in sorted(Path(root, "cells").iterdir()):
        if (cell / "comparison.json").exists():
            write_report(cell)


def write_report(comp_dir: Path) -> dict:
    comp_dir = Path(comp_dir)
    s = summarize(comp_dir)
    images = {name for name, _ in plots(s, comp_dir)}
    blocks = document(s)
    diag_blocks, s["diagnostics"] = diagnostics_section(comp_dir, s)
    images |= {b[1] for b in diag_blocks if b[0] == "img"}
    blocks[-1:-1] = diag_blocks  # before the table of runs
    extra, s["why"] = why_sections(comp_dir, s["comparison"]["config"])
    at = blocks.index(("h2", "Timing"))
    blocks[at:at] = extra  # after the verdict, the accuracy and the curves: the "why" before the details
    images |= {b[1] for b in extra if b[0] == "img" and (comp_dir / b[1]).exists()}
    atomic_write(comp_dir / "summary.json", lambda f: f.write(json.dumps(jsonable(s), indent=2).encode()))
    atomic_write(comp_dir / "report.md", lambda f: f.write(render_md(blocks, images).encode()))
    atomic_write(comp_dir / "report.html", lambda f: f.write(render_html(blocks, comp_dir, images).encode()))
    return s
