"""Per-layer gradient and weight norms per epoch (opt-in: --set diagnostics=true), framework-free:
the implementation supplies gradients on a fixed probe batch (its `gradients` twin, also used by
lockstep) and its weights; the norms, the file and the vanishing/exploding reading live here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.atomic import atomic_write

FILE = "diagnostics.jsonl"
PROBE = 1024  # the first 1024 training images: the same probe every epoch, in both frameworks
VANISH, EXPLODE = 1e-4, 1e3  # layer grad norm relative to the largest layer's / absolute total


def probe_indices(n: int) -> list[np.ndarray]:
    return [np.arange(min(PROBE, n))]


def measure(impl, state, tensors, n: int, epoch: int) -> dict:
    xb, yb = next(iter(impl.batches(state, tensors, probe_indices(n))))
    g = norms(impl.gradients(state, xb, yb, training=False))  # evaluation mode: the same function every epoch
    return {"epoch": epoch, "grad_norm": g, "weight_norm": norms(impl.export_weights(state)), "warning": reading(g)}


def norms(layers) -> list[float]:
    """L2 norm of each (kernel, bias) pair, in float64."""
    return [
        float(np.sqrt(np.sum(np.square(k, dtype=np.float64)) + np.sum(np.square(b, dtype=np.float64))))
        for k, b in layers
    ]


def reading(g: list[float]) -> str:
    """One line when the gradients vanish or explode, else ''."""
    total = float(np.sqrt(np.sum(np.square(g))))
    if not np.isfinite(total) or total > EXPLODE:
        return f"exploding gradients: total norm {total:.3g} > {EXPLODE:g}"
    top = max(g) if g else 0.0
    low = [i + 1 for i, x in enumerate(g) if top > 0 and x < VANISH * top]
    if top == 0 or total < 1e-12:
        return "vanishing gradients: all zero"
    if low:
        return (
            f"vanishing gradients: layer(s) {', '.join(map(str, low))} below {VANISH:g} x the largest "
            f"layer's norm ({min(g):.3g} vs {top:.3g})"
        )
    return ""


def write(run_dir: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    atomic_write(Path(run_dir) / FILE, lambda f: f.write(text))


def read(run_dir: Path) -> list[dict]:
    p = Path(run_dir) / FILE
    return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []
