"""`fmnist-parity diff A B`: what differs between two run directories or two comparisons
(config, environment, data, results), e.g. the same comparison made on two machines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from compare.harness import dtype_init_warning
from compare.render import pct, secs
from shared import rundir


def _load(path: Path) -> dict:
    """Flatten a run or comparison directory into {section.key: value}."""
    path = Path(path)
    if (path / "comparison.json").exists():
        meta = json.loads((path / "comparison.json").read_text())
        flat = {f"config.{k}": v for k, v in meta["config"].items()}
        flat.update(
            {
                "comparison.seeds": meta["seeds"],
                "comparison.contestants": meta["contestants"],
                "comparison.margin": meta.get("margin"),
            }
        )
        summary = path / "summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            for label, env in (s.get("environments") or {}).items():
                flat.update({f"environment.{label}.{k}": v for k, v in (env or {}).items()})
            for label, acc in s["accuracy"].items():
                flat[f"result.{label}.final_test_acc_mean"] = acc["mean"]
            for label, t in s["timing"].items():
                if t.get("median_epoch_seconds", {}).get("n"):
                    flat[f"result.{label}.median_epoch_seconds"] = t["median_epoch_seconds"]["mean"]
            if s.get("data"):
                flat.update({f"data.sha256.{n}": d for n, d in s["data"]["sha256"].items()})
        return flat
    rec = rundir.read_run(path)
    flat = {f"config.{k}": v for k, v in rec.config.items()}
    flat.update({"run.framework": rec.label, "run.state": rec.status["state"]})
    flat.update({f"environment.{k}": v for k, v in rec.meta["environment"].items()})
    flat.update({f"data.sha256.{n}": d for n, d in rec.meta["data"].get("sha256", {}).items()})
    if rec.metrics:
        flat["result.final_test_acc"] = rec.metrics[-1]["test_acc"]
        flat["result.epochs"] = len(rec.metrics)
    return flat


ABSENT = "(absent)"


def _shown(key: str, value) -> str:
    """A value as the report writes it: seconds to 3 significant digits, accuracies in %, else repr."""
    if isinstance(value, float):
        if "seconds" in key:
            return f"{secs(value)} s"
        if key.endswith("acc") or "acc_" in key:
            return pct(value)
    return value if value == ABSENT else repr(value)


def _weights(a: Path, b: Path) -> list[str]:
    """Two runs' final weights, tensor by tensor (dense and batch norm): the largest relative differences."""
    from compare.results import load_weights

    try:
        wa, wb = load_weights(a), load_weights(b)
    except OSError:
        return []
    if set(wa) != set(wb) or any(wa[k].shape != wb[k].shape for k in wa):
        return ["final weights: different shapes or tensors (different networks)"]
    rel = {k: float(np.max(np.abs(wa[k] - wb[k])) / (np.max(np.abs(wb[k])) or 1.0)) for k in wa}
    if not any(rel.values()):
        return [
            "final weights: identical, bit for bit (batch-norm state included)"
            if any(k.startswith("bn_") for k in wa)
            else "final weights: identical, bit for bit"
        ]
    top = sorted(rel, key=rel.get, reverse=True)[:4]
    return ["final weights that differ most (max |A - B| / max |B|): " + ", ".join(f"{k} {rel[k]:.3g}" for k in top)]


def describe(a: Path, b: Path) -> str:
    fa, fb = _load(a), _load(b)
    if any(k.startswith("comparison.") for k in fa) != any(k.startswith("comparison.") for k in fb):
        raise rundir.RunFormatError("diff compares two run directories or two comparison directories, not one of each")
    keys = sorted(set(fa) | set(fb))
    changed = [k for k in keys if fa.get(k) != fb.get(k)]
    lines = [f"A: {a}", f"B: {b}"]
    for section, title in (
        ("config", "settings"),
        ("comparison", "comparison"),
        ("run", "run"),
        ("data", "data"),
        ("environment", "environment"),
        ("result", "results"),
    ):
        rows = [k for k in changed if k.startswith(section + ".")]
        if rows:
            lines.append(f"{title} that differ:")
            lines += [
                f"  {k[len(section) + 1 :]}: {_shown(k, fa.get(k, ABSENT))} -> {_shown(k, fb.get(k, ABSENT))}"
                for k in rows
            ]
        elif section in ("config", "data"):
            lines.append(f"{title}: identical")
    configs = [{k[len("config.") :]: v for k, v in f.items() if k.startswith("config.")} for f in (fa, fb)]
    labels = [str(l) for f in (fa, fb) for l in (f.get("comparison.contestants") or [f.get("run.framework", "")])]
    warning = dtype_init_warning(configs, labels)
    if warning:
        lines.append(warning)
    lines += _weights(a, b)
    same_settings = not any(k.startswith(("config.", "comparison.", "data.")) for k in changed)
    lines.append(
        "The settings and data are the same; differences are in environment or results only."
        if same_settings
        else "The two differ in settings or data: results are not directly comparable."
    )
    return "\n".join(lines)
