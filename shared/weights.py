"""Framework-neutral weights: an .npz with `kernel_<i>` and `bias_<i>` ([out]) for weighted layer
i = 0 .. n-1 in forward order, plus `layers` = n. A dense kernel is [in, out] (PyTorch's Linear.weight
is [out, in]: its exporter transposes; a Keras Dense kernel is already [in, out]); a convolution
kernel is [kh, kw, in, out] (Keras' Conv2D layout; PyTorch's Conv2d.weight [out, in, kh, kw] is
transposed), and the dense layer after a convolution sees the features flattened in (row, column,
channel) order on both sides (shared/plan.py). A recurrent layer (GRU, LSTM) stores its input kernel
above its recurrent kernel, [in + units, gates x units], and its input bias above its recurrent bias,
[2, gates x units], gates in Keras' order (shared/plan.py; an LSTM with one bias has 0 in the second row).
A network with normalisation layers adds, per kind
(NORMS) and per such layer j in forward order, `<kind>_<j>_<part>` ([width] each) and `<kind>_layers`:
batch norm `bn_<j>_gamma`, `_beta`, `_mean`, `_var` (scale, offset, running/moving mean and variance),
layer norm `ln_<j>_gamma`, `_beta`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared import plan
from shared.atomic import atomic_write


# each kind of normalisation layer -> the parts of its state, in the order the twins export them
NORMS = {"bn": ("gamma", "beta", "mean", "var"), "ln": ("gamma", "beta")}


def save(path: str | Path, layers: list[tuple[np.ndarray, np.ndarray]], norms: dict | None = None) -> None:
    """`norms`: {kind: [parts per layer]} (the twins' export_norms), empty kinds left out."""
    arrays = {"layers": np.array(len(layers))}
    for i, (k, b) in enumerate(layers):
        arrays[f"kernel_{i}"], arrays[f"bias_{i}"] = np.asarray(k), np.asarray(b)
    for kind, found in (norms or {}).items():
        if found:
            arrays[f"{kind}_layers"] = np.array(len(found))
            for j, parts in enumerate(found):
                arrays.update({f"{kind}_{j}_{name}": np.asarray(a) for name, a in zip(NORMS[kind], parts)})
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def chains(k: np.ndarray, b: np.ndarray, nxt: np.ndarray | None) -> bool:
    """A dense [in, out] or convolution [kh, kw, in, out] kernel with its [out] bias, feeding the next
    kernel: a convolution takes `out` channels; a dense layer after a dense one takes `out` inputs, after
    a convolution the flattened (row, column, channel) features, a multiple of `out`. A recurrent
    [in + units, gates x units] kernel with its [2, gates x units] bias feeds a dense layer its units."""
    if k.ndim == 2 and b.shape == (2, k.shape[1]) and nxt is not None and nxt.ndim == 2:
        units = nxt.shape[0]
        return k.shape[1] in [g * units for g in plan.GATES.values()] and k.shape[0] > units
    if k.ndim not in (2, 4) or b.shape != (k.shape[-1],):
        return False
    out = k.shape[-1]
    if nxt is None:
        return True
    if nxt.ndim == 4:
        return k.ndim == 4 and nxt.shape[2] == out
    return nxt.shape[0] == out if k.ndim == 2 else nxt.shape[0] % out == 0


def load(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    with np.load(path) as z:
        n = int(z["layers"])
        layers = [(z[f"kernel_{i}"], z[f"bias_{i}"]) for i in range(n)]
    for i, ((k, b), nxt) in enumerate(zip(layers, [x[0] for x in layers[1:]] + [None])):
        if not chains(k, b, nxt):
            raise ValueError(f"{path}: layer {i} has kernel {k.shape} and bias {b.shape}, which do not chain")
    return layers


def load_norms(path: str | Path) -> dict[str, list[tuple[np.ndarray, ...]]]:
    """{kind: each layer's parts} for every kind of NORMS ([] where the network has none)."""
    with np.load(path) as z:
        count = {kind: int(z[f"{kind}_layers"]) if f"{kind}_layers" in z.files else 0 for kind in NORMS}
        return {kind: [tuple(z[f"{kind}_{j}_{p}"] for p in NORMS[kind]) for j in range(count[kind])] for kind in NORMS}
