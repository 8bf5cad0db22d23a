"""Framework-neutral weights: an .npz with `kernel_<i>` and `bias_<i>` ([out]) for weighted layer
i = 0 .. n-1 in forward order, plus `layers` = n. A dense kernel is [in, out] (PyTorch's Linear.weight
is [out, in]: its exporter transposes; a Keras Dense kernel is already [in, out]); a convolution
kernel is [kh, kw, in, out] (Keras' Conv2D layout; PyTorch's Conv2d.weight [out, in, kh, kw] is
transposed), and the dense layer after a convolution sees the features flattened in (row, column,
channel) order on both sides (shared/plan.py). A network with batch norm adds
`bn_<j>_gamma`, `bn_<j>_beta`, `bn_<j>_mean`, `bn_<j>_var` for hidden layer j ([width] each: scale,
offset, running/moving mean and variance) and `bn_layers`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.atomic import atomic_write


BN_PARTS = ("gamma", "beta", "mean", "var")


def save(path: str | Path, layers: list[tuple[np.ndarray, np.ndarray]], bn: list[tuple] = ()) -> None:
    arrays = {"layers": np.array(len(layers))}
    for i, (k, b) in enumerate(layers):
        arrays[f"kernel_{i}"], arrays[f"bias_{i}"] = np.asarray(k), np.asarray(b)
    if bn:
        arrays["bn_layers"] = np.array(len(bn))
        for j, parts in enumerate(bn):
            arrays.update({f"bn_{j}_{name}": np.asarray(a) for name, a in zip(BN_PARTS, parts)})
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def chains(k: np.ndarray, b: np.ndarray, nxt: np.ndarray | None) -> bool:
    """A dense [in, out] or convolution [kh, kw, in, out] kernel with its [out] bias, feeding the next
    kernel: a convolution takes `out` channels; a dense layer after a dense one takes `out` inputs, after
    a convolution the flattened (row, column, channel) features, a multiple of `out`."""
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


def load_bn(path: str | Path) -> list[tuple[np.ndarray, ...]]:
    """The batch-norm layers' (gamma, beta, mean, var), [] for a network without batch norm."""
    with np.load(path) as z:
        n = int(z["bn_layers"]) if "bn_layers" in z.files else 0
        return [tuple(z[f"bn_{j}_{name}"] for name in BN_PARTS) for j in range(n)]
