"""The numbers of a comparison directory: its runs (read only through shared.rundir), per-contestant
accuracy and timing, and the verdict of each contestant against the first. No rendering here:
compare/report.py writes these numbers up; ablate and sweep read them per cell."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from compare import stats as S
from shared import rundir


def load_runs(comp_dir: Path) -> tuple[dict, list[dict]]:
    comp_dir = Path(comp_dir)
    if not (comp_dir / "comparison.json").exists():
        raise rundir.RunFormatError(
            f"{comp_dir}: no comparison.json; is this a comparison directory (made by `fmnist-parity run`)?"
        )
    meta = json.loads((comp_dir / "comparison.json").read_text())
    runs = []
    for label in meta["contestants"]:
        for seed in meta["seeds"]:
            d = comp_dir / "runs" / f"{label}-seed{seed}"
            entry = {"contestant": label, "seed": seed, "dir": str(d.relative_to(comp_dir)), "record": None}
            try:
                rec = rundir.read_run(d)
                entry.update(record=rec, state=rec.status["state"], message=rec.status.get("message", ""))
            except rundir.RunFormatError as e:
                failed = d / "failed.txt"
                entry.update(
                    state="failed" if failed.exists() else "missing",
                    message=failed.read_text().strip() if failed.exists() else str(e),
                )
            runs.append(entry)
    return meta, runs


def _where(run_dir: Path) -> dict:
    """Which engine and node ran it (engine.json, written by the Ray engine); local otherwise."""
    try:
        return json.loads((run_dir / "engine.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {"engine": "local"}


def run_timing(rec, target: float) -> dict:
    ts = [m["train_seconds"] for m in rec.metrics]
    time_to_target, total = None, 0.0
    for m in rec.metrics:
        total += m["train_seconds"]
        if m["test_acc"] >= target:
            time_to_target = total
            break
    return {
        "first_epoch_seconds": ts[0],
        "median_epoch_seconds": statistics.median(ts[1:] if len(ts) > 1 else ts),
        "samples_per_second": statistics.median(m["samples_per_second"] for m in rec.metrics[1:] or rec.metrics),
        "eval_seconds": statistics.median(m["eval_seconds"] for m in rec.metrics),
        "time_to_target_seconds": time_to_target,
        "startup_seconds": rec.meta.get("timing", {}).get("startup_seconds"),
        "data_seconds": rec.meta.get("timing", {}).get("data_seconds"),
    }


def training_path(config: dict, env: dict, label: str) -> str:
    """In words, which training loop a contestant ran (config keys host_sync, steps_per_execution,
    compile, pipeline; the run's environment says whether it was compiled)."""
    epoch = env.get("host_sync", config.get("host_sync", "step")) == "epoch"  # the loop the run used
    compiled = env.get("compiled", env.get("jit_compile", False))
    if label == "pytorch":
        return (
            ("torch.compile" if compiled else "eager")
            + (", loss read once per epoch" if epoch else ", loss read every step")
            + (", torchvision DataLoader" if config.get("pipeline") == "torchvision" else "")
        )
    spe = env.get("steps_per_execution", config.get("steps_per_execution", 1))
    return (f"fit(), steps_per_execution={spe}" if epoch else "train_on_batch per step") + (
        ", XLA" if compiled else ", no XLA"
    )


def summarize(comp_dir: Path) -> dict:
    meta, runs = load_runs(comp_dir)
    labels, epochs = meta["contestants"], meta["config"]["epochs"]
    margin, target = meta.get("margin", 0.01), meta.get("target_acc", 0.85)
    done = {
        l: [
            r for r in runs if r["contestant"] == l and r["state"] == "completed" and len(r["record"].metrics) == epochs
        ]
        for l in labels
    }
    any_rec = next((r["record"] for r in runs if r["record"]), None)
    s = {
        "comparison": meta,
        "margin": margin,
        "target_acc": target,
        "data": any_rec.meta["data"] if any_rec else None,
        "environments": {
            l: next((r["record"].meta["environment"] for r in runs if r["contestant"] == l and r["record"]), None)
            for l in labels
        },
        "runs": [],
        "accuracy": {},
        "per_epoch": {},
        "timing": {},
        "verdicts": [],
        "speed_ratios": [],
    }
    for r in runs:
        rec = r["record"]
        r["timing"] = run_timing(rec, target) if rec and rec.metrics else None
        s["runs"].append(
            {
                "contestant": r["contestant"],
                "seed": r["seed"],
                "dir": r["dir"],
                "state": r["state"],
                "message": r["message"],
                "epochs_done": len(rec.metrics) if rec else 0,
                "final_test_acc": rec.metrics[-1]["test_acc"] if rec and rec.metrics else None,
                "timing": r["timing"],
                "where": _where(comp_dir / r["dir"]),
            }
        )
    for l in labels:
        recs = [r["record"] for r in done[l]]
        s["accuracy"][l] = S.describe([rec.metrics[-1]["test_acc"] for rec in recs])
        s["per_epoch"][l] = (
            [
                {
                    k: S.describe([rec.metrics[e][k] for rec in recs])
                    for k in ("train_loss", "train_acc", "test_loss", "test_acc")
                }
                for e in range(epochs)
            ]
            if recs
            else []
        )
        timings = [r["timing"] for r in done[l]]
        s["timing"][l] = {
            k: S.describe([t[k] for t in timings if t[k] is not None]) for k in (timings[0] if timings else {})
        }
        s["timing"][l]["reached_target"] = sum(t["time_to_target_seconds"] is not None for t in timings)
    ref = labels[0]
    for other in labels[1:]:
        # paired when every completed run of one side has its seed's partner on the other (same batches)
        sa, sb = [r["seed"] for r in done[other]], [r["seed"] for r in done[ref]]
        paired = len(sa) >= 2 and sa == sb
        a = s["accuracy"][other]["values"]
        b = s["accuracy"][ref]["values"]
        v = S.verdict(a, b, margin, paired=paired)
        per_epoch = []
        for e in range(epochs if s["per_epoch"][ref] and s["per_epoch"][other] else 0):
            ea, eb = s["per_epoch"][other][e]["test_acc"]["values"], s["per_epoch"][ref][e]["test_acc"]["values"]
            pv = S.verdict(ea, eb, margin, paired=paired)
            per_epoch.append(
                {
                    "epoch": e + 1,
                    "outcome": pv["outcome"],
                    "diff": pv["interval"]["diff"] if pv["interval"] else float(np.mean(ea) - np.mean(eb)),
                    "ci": pv["interval"]["ci"] if pv["interval"] else None,
                }
            )
        why = (
            "paired t test on the per-seed differences: for each seed both saw the same batches in the same order"
            + (" from the same initial weights" if meta["config"]["init"] == "shared" else "")
            if paired
            else "Welch's unpaired test: the seeds do not pair up (a run is missing on one side)"
        )
        s["verdicts"].append(
            {
                "a": other,
                "b": ref,
                "final": v,
                "sentence": S.sentence(v, other, ref),
                "per_epoch": per_epoch,
                "test": v.get("test"),
                "why": why,
                "welch_sentence": S.sentence(
                    {**v, "interval": v["welch"], "test": "Welch", "outcome": v["outcome"]}, other, ref
                )
                if paired and v["welch"]
                else None,
            }
        )
        pairs = {r["seed"]: r["timing"] for r in done[ref]}
        ratios = [
            r["timing"]["median_epoch_seconds"] / pairs[r["seed"]]["median_epoch_seconds"]
            for r in done[other]
            if r["seed"] in pairs
        ]
        s["speed_ratios"].append(
            {
                "a": other,
                "b": ref,
                **S.describe(ratios),
                "min": min(ratios) if ratios else None,
                "max": max(ratios) if ratios else None,
            }
        )
    return s
