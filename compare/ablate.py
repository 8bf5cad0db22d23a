"""`fmnist-parity ablate`: which out-of-the-box difference matters, and how much?

Start from "native" (each framework with its own defaults, as a newcomer writes it: own initialiser,
own LeakyReLU slope, own optimizer definition, own Adam epsilon, and for the porting features each
library's idiom: batch-norm conventions, dropout masks, weight-decay form, clipping scope, schedule
unit), switch the differences to matched
one at a time, then all together. Every cell is an ordinary comparison directory (cells/<name>/, made
by the same harness as `run`, so it resumes the same way and has its own report). Effects are read
per seed against native: the same seed means the same batches in every cell, so they are paired."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from compare import engines, harness
from compare.render import accuracy_per_cell, jsonable
from compare.render import render_md as md
from compare.summary import summarize as summarize_cell
from compare import stats as S
from shared import config as cfg
from shared import plan, training
from shared.atomic import atomic_write


def cells(config: cfg.RunConfig) -> dict[str, dict]:
    """cell name -> config overrides. Matched values are the config's own (e.g. its negative_slope)."""
    base = cfg.RunConfig()
    slope = config.negative_slope if config.negative_slope != "native" else base.negative_slope
    eps = config.eps if config.eps != "native" else base.eps
    native = {"init": "native", "negative_slope": "native", "update_rule": "native", "ops": "native"}
    switches = {
        "init": {"init": "shared"},
        "LeakyReLU slope": {"negative_slope": slope},
        "update rule": {"update_rule": "torch"},
    }
    if not any(l.kind == "leaky_relu" for l in plan.network(config)):  # the recurrent models have none
        del switches["LeakyReLU slope"]
    if config.optimizer in ("adam", "adamw", "rmsprop"):
        native["eps"] = "native"
        switches["RMSprop epsilon" if config.optimizer == "rmsprop" else "Adam epsilon"] = {"eps": eps}
    switches.update(training.differences(config))  # batch norm, dropout masks, decay, clipping, schedule
    out = {"native": native}
    for name, sw in switches.items():
        out[f"matched {name}"] = {**native, **sw}
    out["all matched"] = {**native, **{k: v for sw in switches.values() for k, v in sw.items()}}
    return out


def cell_dir(out: Path, name: str) -> Path:
    return Path(out) / "cells" / name.replace(" ", "-")


def ablate(
    config: cfg.RunConfig,
    seeds: list[int],
    labels: list[str],
    out: Path,
    data_dir: str,
    margin: float,
    only: list[str] | None = None,
    log=print,
    engine: dict | None = None,
) -> dict:
    out = Path(out)
    plan = cells(config)
    if only:
        unknown = [c for c in only if c not in plan]
        if unknown:
            raise harness.HarnessError(
                f"--cells: unknown cell(s) {', '.join(map(repr, unknown))}; choose from {', '.join(plan)}"
            )
        plan = {k: v for k, v in plan.items() if k in only or k == "native"}
    jobs = []
    for name, overrides in plan.items():
        c = cfg.from_dict(overrides, config)
        jobs.append(
            (
                name,
                c,
                harness.plan(
                    cell_dir(out, name),
                    c,
                    seeds,
                    labels,
                    {"margin": margin, "target_acc": 0.85, "reproduce": f"ablate cell {name}"},
                ),
            )
        )
    for name, c, _ in jobs:
        log(f"ablate cell '{name}': {json.dumps({k: c.to_dict()[k] for k in plan[name]})}")
    engines.run_jobs([(job, c) for _, c, cell_jobs in jobs for job in cell_jobs], data_dir, log, **(engine or {}))
    summaries = {name: summarize_cell(cell_dir(out, name)) for name in plan}  # their reports: report.write_cell_reports
    s = summarize(plan, summaries, labels, margin)
    atomic_write(out / "ablation.json", lambda f: f.write(json.dumps(jsonable(s), indent=1).encode()))
    plot(s, out / "ablation.png")
    atomic_write(out / "ablation.md", lambda f: f.write(render_md(s).encode()))
    return s


def _by_seed(summary: dict, label: str) -> dict[int, float]:
    return {
        r["seed"]: r["final_test_acc"]
        for r in summary["runs"]
        if r["contestant"] == label and r["state"] == "completed" and r["final_test_acc"] is not None
    }


def summarize(plan: dict, summaries: dict, labels: list[str], margin: float) -> dict:
    ref, others = labels[0], labels[1:]
    native = summaries["native"]
    rows = []
    for name in plan:
        sm = summaries[name]
        row = {"cell": name, "overrides": plan[name], "accuracy": {}, "gaps": {}, "effects": {}}
        for l in labels:
            acc = _by_seed(sm, l)
            row["accuracy"][l] = S.describe(list(acc.values()))
            if name != "native":
                base = _by_seed(native, l)
                common = sorted(set(acc) & set(base))
                row["effects"][l] = _effect([acc[k] - base[k] for k in common], margin)
        for o in others:
            a, b = _by_seed(sm, o), _by_seed(sm, ref)
            common = sorted(set(a) & set(b))
            gap = [a[k] - b[k] for k in common]
            v = S.verdict([a[k] for k in common], [b[k] for k in common], margin, paired=True)
            row["gaps"][o] = {
                "values": gap,
                "verdict": v["outcome"],
                "sentence": S.sentence(v, o, ref),
                "diff": v["interval"]["diff"] if v["interval"] else (float(np.mean(gap)) if gap else None),
                "ci": v["interval"]["ci"] if v["interval"] else None,
            }
            if name != "native":
                na, nb = _by_seed(native, o), _by_seed(native, ref)
                both = sorted(set(common) & set(na) & set(nb))
                dg = [(a[k] - b[k]) for k in both]
                dn = [(na[k] - nb[k]) for k in both]
                row["effects"][f"gap {o} - {ref}"] = _effect([g - n for g, n in zip(dg, dn)], margin)
        rows.append(row)
    return {"labels": labels, "margin": margin, "rows": rows, "conclusions": conclusions(rows, labels, margin)}


def _effect(diffs: list[float], margin: float) -> dict:
    """A cell's effect against native, paired by seed, in the study's words (compare.stats.effect)."""
    e = S.effect(diffs, margin)
    return {
        "outcome": e["word"],
        "diff": e["mean"] if e["n"] else None,
        "ci": (e["lo"], e["hi"]) if e["n"] >= 2 else None,
        "meaning": S.says(e),
    }


def conclusions(rows: list[dict], labels: list[str], margin: float) -> list[str]:
    out = []
    for row in rows:
        if row["cell"] == "native":
            for g in row["gaps"].values():
                out.append(f"native (each framework's own defaults): {g['sentence']}")
            continue
        parts = []
        for k, e in row["effects"].items():
            if e["diff"] is None:
                continue
            parts.append(f"{k}: {e['meaning']}")
        out.append(f"{row['cell']} vs native, paired by seed: " + "; ".join(parts) + ".")
    return out


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, labels = s["rows"], s["labels"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(rows))
    accuracy_per_cell(ax1, rows, labels, "Accuracy per cell (dots: seeds)")
    for o in labels[1:]:
        d = np.array([100 * (r["gaps"][o]["diff"] if r["gaps"][o]["diff"] is not None else np.nan) for r in rows])
        lo = np.array([100 * r["gaps"][o]["ci"][0] if r["gaps"][o]["ci"] else np.nan for r in rows])
        hi = np.array([100 * r["gaps"][o]["ci"][1] if r["gaps"][o]["ci"] else np.nan for r in rows])
        ax2.errorbar(
            x, d, yerr=[np.nan_to_num(d - lo), np.nan_to_num(hi - d)], fmt="o", capsize=3, label=f"{o} - {labels[0]}"
        )
    for m in (-100 * s["margin"], 100 * s["margin"]):
        ax2.axhline(m, ls="--", color="gray")
    ax2.axhline(0, color="black", lw=0.5)
    ax2.set_xticks(x, [r["cell"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax2.set(ylabel="gap (pp), 95% CI paired by seed", title="Framework gap per cell; dashed = ±margin")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)


def blocks(s: dict) -> list[tuple]:
    labels = s["labels"]
    b = [("h2", "Ablation: which difference matters, and how much?")]
    b.append(
        (
            "p",
            "Native = each framework with its own defaults (initialiser, LeakyReLU slope, optimizer "
            "definition, Adam epsilon); each cell switches one difference to matched, the last all of them. "
            f"Effects are per-seed differences from native (paired: the same seed means the same batches), "
            f"read against ±{100 * s['margin']:.2f} pp.",
        )
    )
    rows = []
    for r in s["rows"]:
        acc = [
            f"{100 * r['accuracy'][l]['mean']:.2f}% (n={r['accuracy'][l]['n']})" if r["accuracy"][l]["n"] else "n/a"
            for l in labels
        ]
        gaps = [
            f"{100 * g['diff']:+.2f}"
            + (f" [{100 * g['ci'][0]:+.2f}, {100 * g['ci'][1]:+.2f}]" if g["ci"] else "")
            + f" {g['verdict']}"
            if g["diff"] is not None
            else "n/a"
            for g in r["gaps"].values()
        ]
        rows.append([r["cell"], *acc, *gaps])
    b.append(
        (
            "table",
            ["cell", *(f"{l} acc" for l in labels), *(f"gap {o} - {labels[0]} pp [95% CI]" for o in labels[1:])],
            rows,
        )
    )
    b.append(("img", "ablation/ablation.png", "Accuracy and framework gap per ablation cell"))
    for line in s["conclusions"]:
        b.append(("p", line))
    return b


def render_md(s: dict) -> str:
    return md(blocks(s), {"ablation/ablation.png"}).replace("ablation/ablation.png", "ablation.png")
