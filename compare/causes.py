"""Why two lockstep traces part: the comparison of two traces (divergence, the first jump, the verdict
against the noise floor) and the hypotheses that name a cause (each layer recomputed exactly and under
float32 hypotheses; the first updates inverted to the learning rate, momentum or epsilon each side
applied). Below compare/lockstep.py, which runs the sides and the cells; imports no framework."""

from __future__ import annotations

import numpy as np

from shared import config as cfg
from shared import lockstep as trace_format
from shared import weights

REFERENCE = "pytorch"


FLOOR_FACTOR = 10.0  # cross-framework divergence within this factor of the floor = float noise


MATCHED_TOL = 1e-10  # float64, matched: the two must agree to this (max relative weight difference)


# a difference counts above this many units in the last place of the compute precision: float32/64
# matmuls of 784 terms accumulated in different orders part by up to a few hundred units; a bfloat16
# or float16 output is rounded once from a float32 accumulation, so two sides part by one unit at most
ULPS = {"float64": 1e3, "float32": 1e3, "bfloat16": 2, "float16": 2}


def eps(dtype: str) -> float:
    import ml_dtypes

    return float(ml_dtypes.finfo(trace_format.numpy_dtype(dtype)).eps)


def tol(dtype: str) -> float:
    return ULPS[dtype] * eps(dtype)


def _rel(a, b) -> float:
    """max |a - b| / max |b|: the largest difference relative to the tensor's scale."""
    scale = float(np.max(np.abs(b))) or 1.0
    return float(np.max(np.abs(a - b))) / scale


def divergence(a: dict, b: dict) -> dict:
    """Per-step and per-snapshot differences between two traces (a vs the reference b)."""
    n = min(len(a["loss"]), len(b["loss"]))
    la, lb = a["loss"][:n], b["loss"][:n]
    flips = np.unpackbits(a["signs"][:n] ^ b["signs"][:n], axis=1).sum(axis=1)
    layers = sum(1 for k in b if k.startswith("w_0_") and k.endswith("_k"))
    snaps, rel_l2, per_layer = [], [], []
    for s in (int(x) for x in b["snap_steps"] if x <= n and f"w_{x}_0_k" in a):
        # every tensor of the state: dense kernels and biases, then each normalisation layer's (if any)
        keys = [(f"w_{s}_{i}_{t}", i + 1, "kernel" if t == "k" else "bias") for i in range(layers) for t in "kb"]
        keys += [
            (k, int(k.split("_")[2]) + 1, k.split("_")[0] + " " + k.split("_", 3)[3])
            for k in sorted(b)
            if k.startswith(tuple(f"{kind}_{s}_" for kind in weights.NORMS)) and k in a
        ]
        num = np.sqrt(sum(float(np.sum((a[k] - b[k]) ** 2)) for k, _, _ in keys))
        den = np.sqrt(sum(float(np.sum(b[k] ** 2)) for k, _, _ in keys))
        snaps.append(s)
        rel_l2.append(num / den)
        per_layer.append(
            [
                {"layer": i, "part": part, "max_abs": float(np.max(np.abs(a[k] - b[k]))), "max_rel": _rel(a[k], b[k])}
                for k, i, part in keys
            ]
        )
    flip_steps = [int(i) + 1 for i in np.nonzero(flips)[0]]
    return {
        "steps": n,
        "loss_rel": (np.abs(la - lb) / np.maximum(np.abs(lb), 1e-300)).tolist(),
        "flips": flips.astype(int).tolist(),
        "first_flip_step": flip_steps[0] if flip_steps else None,
        "flip_steps": len(flip_steps),
        "snap_steps": snaps,
        "rel_l2": rel_l2,
        "per_layer": per_layer,
        "max_rel": [max((x["max_rel"] for x in parts), default=0.0) for parts in per_layer],  # per snapshot
        "final_max_rel": max(x["max_rel"] for x in per_layer[-1]) if per_layer else None,
        "final_rel_l2": rel_l2[-1] if rel_l2 else None,
    }


def floor_ratio(div: dict, floor: dict) -> float | None:
    """The pair's weight distance over the floor's at the same snapshot, at its widest (snapshots where the
    floor is 0 left out): where training is chaotic, one rounding grows to O(1) within the run, and the last
    snapshot alone would read any difference as float noise (the LSTM at the standard schedule)."""
    at = dict(zip(floor["snap_steps"], floor["rel_l2"]))
    ratios = [d / at[s] for s, d in zip(div["snap_steps"], div["rel_l2"]) if at.get(s)]
    return max(ratios) if ratios else None


def first_jump(div: dict, factor: float = 10.0) -> int | None:
    """The first snapshot (after step 5) where the weight divergence grew `factor`-fold since the last one."""
    s, d = div["snap_steps"], div["rel_l2"]
    for i in range(1, len(s)):
        if s[i] > 5 and d[i - 1] > 0 and d[i] >= factor * d[i - 1]:
            return s[i]
    return None


def _leaky(h, slope):
    return np.where(h > 0, h, h * slope)


def forward_hypotheses(t: dict, x: np.ndarray, slope: float, unit: str) -> list[dict]:
    """For each dense layer: how far the side's output departs from the exact float64 math applied to
    its own previous output, and which hypothesis reproduces it best. `unit`: the precision the layers
    compute in; below float32 the hypothesis of a layer computed in it (operands rounded to it, float32
    accumulation, the product and the sum with the bias each rounded to it)."""
    layers = sum(1 for k in t if k.startswith("act_"))
    c = t["_meta"]["config"]
    if c.get("model", "mlp") != "mlp":
        return []  # the hypotheses recompute an MLP's dense layers (x @ w + b)
    if c.get("batchnorm") or c.get("dropout"):
        layers = 1  # later inputs pass batch norm / dropout: only the first layer's input is known here
    out = []
    for i in range(layers):
        w, b = t[f"w_0_{i}_k"], t[f"w_0_{i}_b"]
        h_prev = x if i == 0 else t[f"act_{i - 1}"]
        f = (lambda s: h_prev) if i == 0 else (lambda s: _leaky(h_prev, s))
        f32 = lambda a: a.astype(np.float32).astype(np.float64)
        hyps = {"exact": f(slope) @ w + b}
        if i > 0:
            hyps["slope rounded to float32"] = f(float(np.float32(slope))) @ w + b
        hyps["matmul in float32"] = (f32(f(slope)).astype(np.float32) @ f32(w).astype(np.float32)).astype(
            np.float64
        ) + b
        if unit in ("bfloat16", "float16"):
            lo = lambda a: a.astype(trace_format.numpy_dtype(unit)).astype(np.float64)
            hyps[f"computed in {unit}"] = lo(
                lo((lo(f(slope)).astype(np.float32) @ lo(w).astype(np.float32)).astype(np.float64)) + lo(b)
            )
        got = t[f"act_{i}"]
        dev = {k: _rel(got, v) for k, v in hyps.items()}
        best = min(dev, key=dev.get)
        if dev[best] * 10 > dev["exact"]:
            best = "exact"  # a hypothesis must explain the deviation, not shave it
        out.append(
            {"layer": i + 1, "deviation": dev["exact"], "best": best, "best_deviation": dev[best], "hypotheses": dev}
        )
    return out


def implied_update(t: dict, config: cfg.RunConfig) -> dict:
    """Invert the first updates: the learning rate (and momentum, SGD) or effective epsilon (Adam)
    that this side actually applied, from its weights after steps 0-2 and its step-1 gradient."""
    w0, w1, g = t["w_0_0_k"], t.get("w_1_0_k"), t["grad_0_k"]
    if w1 is None:
        return {}
    big = np.abs(g) > max(np.quantile(np.abs(g), 0.5), 0.0) if np.any(g) else np.zeros_like(g, bool)
    if config.optimizer == "sgd":
        lr = float(np.median(((w0 - w1)[big] / g[big]))) if big.any() else float("nan")
        out = {"lr": lr}
        return out
    # Adam step 1: update = lr * g / (|g| + eps_eff)  =>  eps_eff = lr |g| / |update| - |g|
    small = (np.abs(g) > 0) & (np.abs(g) < np.quantile(np.abs(g[g != 0]), 0.05))
    u = np.abs(w0 - w1)
    keep = small & (u > 0)
    eff = config.lr * np.abs(g[keep]) / u[keep] - np.abs(g[keep])
    return {"effective_eps_step1": float(np.median(eff)) if keep.any() else None}


def momentum_gap(a: dict, b: dict, config: cfg.RunConfig) -> float | None:
    """SGD: mu_a - mu_b estimated from step 2, where momentum first acts. With equal step-1 states,
    the step-2 updates differ by lr * g1 * (mu_a - mu_b) whichever way momentum is written."""
    if config.optimizer != "sgd" or config.momentum == 0 or "w_2_0_k" not in a or "w_2_0_k" not in b:
        return None
    g = b["grad_0_k"]
    da = a["w_2_0_k"] - a["w_1_0_k"]
    db = b["w_2_0_k"] - b["w_1_0_k"]
    big = np.abs(g) > np.quantile(np.abs(g), 0.9)
    return float(np.median(((db - da) / (config.lr * g))[big]))


def step1_gradients(a: dict, b: dict) -> list[float]:
    layers = sum(1 for k in b if k.startswith("grad_") and k.endswith("_k"))

    # relative to the layer's largest gradient: a bias feeding batch norm has a gradient of zero up to
    # rounding, which no relative measure of its own can read
    def rel(i):
        k, bias = (a[f"grad_{i}_k"], b[f"grad_{i}_k"]), (a[f"grad_{i}_b"], b[f"grad_{i}_b"])
        scale = max(float(np.max(np.abs(k[1]))), float(np.max(np.abs(bias[1])))) or 1.0
        return max(float(np.max(np.abs(k[0] - k[1]))), float(np.max(np.abs(bias[0] - bias[1])))) / scale

    return [rel(i) for i in range(layers)]


def explain(label: str, a: dict, b: dict, config: cfg.RunConfig, x: np.ndarray, div: dict) -> list[str]:
    """Plain sentences: which quantity differs, from which step, in which layer, with the evidence."""
    return [
        *_forward_lines(label, a, b, config, x),
        *_gradient_lines(label, a, b, config),
        *_update_lines(label, a, b, config),
        *_trajectory_lines(div),
    ]


def _forward_lines(label: str, a: dict, b: dict, config: cfg.RunConfig, x: np.ndarray) -> list[str]:
    """Per side: the first dense layer whose step-1 output departs from the exact math, and what reproduces it."""
    unit = cfg.compute_dtype(config)
    lines = []
    for side, t in ((REFERENCE, b), (label, a)):
        for f in forward_hypotheses(t, x, float(slope_value(t)), unit):
            if f["deviation"] > tol(unit):
                m32 = f["hypotheses"]["matmul in float32"]
                how = (
                    f"; {f['best']} reproduces it to {f['best_deviation']:.1e}"
                    if f["best"] != "exact"
                    else f"; that is the size of float32 rounding (a float32 matmul of the same operands departs by "
                    f"{m32:.1e}): computed in float32"
                    if f["deviation"] > m32 / 5
                    else ""
                )
                lines.append(
                    f"{side}: at step 1 (identical weights) dense layer {f['layer']}'s output departs from "
                    f"exact {unit} math on its own input by {f['deviation']:.1e} (relative){how}."
                )
                break
    return lines


def _gradient_lines(label: str, a: dict, b: dict, config: cfg.RunConfig) -> list[str]:
    """The slopes each side used, and how far the step-1 gradients part."""
    lines = []
    sa, sb = slope_value(a), slope_value(b)
    if sa != sb:
        lines.append(f"The LeakyReLU slopes differ: {label} uses {sa}, {REFERENCE} {sb} (config negative_slope).")
    g = step1_gradients(a, b)
    if max(g) > tol(cfg.compute_dtype(config)):
        worst = int(np.argmax(g))
        lines.append(
            f"Step-1 gradients (identical weights, same batch) differ most in layer {worst + 1}: "
            f"{g[worst]:.1e} relative."
        )
    else:
        lines.append(f"Step-1 gradients agree to {max(g):.1e} (relative) in every layer.")
    return lines


def _update_lines(label: str, a: dict, b: dict, config: cfg.RunConfig) -> list[str]:
    """The first updates inverted: the learning rate and momentum (SGD) or effective epsilon (Adam) applied."""
    dt, lines = config.dtype, []
    ia, ib = implied_update(a, config), implied_update(b, config)
    if config.optimizer == "sgd" and ia and ib:
        for side, imp in ((REFERENCE, ib), (label, ia)):
            if abs(imp["lr"] - config.lr) > 1e4 * eps(dt) * config.lr:
                lines.append(f"{side} applied a learning rate of {imp['lr']:.10g} at step 1 (config {config.lr}).")
        gap = momentum_gap(a, b, config)
        if gap is not None and abs(gap) > 1e4 * eps(dt):
            m32 = float(np.float32(config.momentum)) - config.momentum
            hint = (
                f", the gap between {config.momentum} and its float32 rounding ({m32:+.2e})"
                if abs(gap - m32) < 0.05 * abs(m32) or abs(gap + m32) < 0.05 * abs(m32)
                else ""
            )
            lines.append(
                f"Step 2, the first with momentum: the updates imply momentum({label}) - momentum({REFERENCE}) "
                f"= {gap:+.2e}{hint}."
            )
    if config.optimizer == "adam" and ia and ib and ia.get("effective_eps_step1") and ib.get("effective_eps_step1"):
        ea, eb = ia["effective_eps_step1"], ib["effective_eps_step1"]
        if abs(ea - eb) > 0.1 * max(abs(ea), abs(eb)):
            lines.append(
                f"Adam's step 1 implies an effective epsilon of {ea:.2e} in {label} and {eb:.2e} in "
                f"{REFERENCE}: their ratio {ea / eb:.3g} vs 1/sqrt(1 - beta2) = "
                f"{1 / np.sqrt(1 - config.beta2):.3g} (Keras adds epsilon to sqrt(v) before the bias "
                f"correction, PyTorch after)."
            )
    return lines


def _trajectory_lines(div: dict) -> list[str]:
    """When the weights first part, and when a pre-activation first crosses zero in one run only."""
    lines = []
    lr0 = next((s for s, r in zip(div["snap_steps"], div["rel_l2"]) if r > 0), None)
    if lr0 is not None:
        lines.append(
            f"The weights first differ after step {lr0} ({div['rel_l2'][div['snap_steps'].index(lr0)]:.1e} "
            f"relative L2)."
        )
    if div["first_flip_step"]:
        jump = first_jump(div)
        lines.append(
            f"A pre-activation first lands on the other side of zero in one run only at step "
            f"{div['first_flip_step']} ({div['flip_steps']} of {div['steps']} steps have such flips)"
            + (f"; the divergence jumps tenfold by step {jump}." if jump else ".")
        )
    else:
        lines.append("No pre-activation changed sign in one run only.")
    return lines


def where_first(a: dict, b: dict, div: dict, unit: str, noise: dict | None = None) -> dict:
    """Where two traces first part: the first dense output that differs at step 1 (identical weights), else
    the first layer whose step-1 gradient differs, else the first weight snapshot that differs and the
    tensor that differs most there; with the first step whose loss differs. {} where they agree. A
    difference counts above tol(unit) (the compute precision's), and above 10x `noise`, what the matched
    pair reaches by the same snapshot ({step: max relative difference}; Adam turns the rounding noise of a
    bias that feeds batch norm, whose gradient is zero, into whole steps; chaotic training grows one
    rounding to O(1) late in the run, which says nothing about step 1)."""
    noise = noise or {}
    at = lambda step: max(tol(unit), 10 * max((v for s, v in noise.items() if s <= step), default=0.0))
    tol_ = at(1)
    layers = sum(1 for k in b if k.startswith("act_"))
    loss_step = next((i + 1 for i, r in enumerate(div["loss_rel"]) if r > at(i + 1)), None)
    acts = [_rel(a[f"act_{i}"], b[f"act_{i}"]) for i in range(layers)]
    grads = step1_gradients(a, b)
    out = {"loss_step": loss_step}
    if any(r > tol_ for r in acts):
        i = next(i for i, r in enumerate(acts) if r > tol_)
        out.update(step=1, where=f"{_layer(b, i)}'s output (forward pass, identical weights)", rel=acts[i])
    elif any(r > tol_ for r in grads):
        i = next(i for i, r in enumerate(grads) if r > tol_)
        out.update(step=1, where=f"{_layer(b, i)}'s gradient (identical weights and outputs)", rel=grads[i])
    else:
        for s, parts in zip(div["snap_steps"], div["per_layer"]):  # every tensor, per snapshot
            worst = max(parts, key=lambda p: p["max_rel"]) if s > 0 and parts else None
            if worst and worst["max_rel"] > at(s):
                out.update(step=s, where=f"{_tensor_name(worst)} after step {s}", rel=worst["max_rel"])
                break
    if "where" not in out and loss_step is None:
        return {}
    return out


def _layer(t: dict, i: int) -> str:
    """Weighted layer i by kind and number: 'dense layer 2', 'conv layer 1', 'recurrent layer 1' (numbered
    among all; a recurrent layer's bias has two rows, shared/weights.py)."""
    kind = "conv" if t[f"w_0_{i}_k"].ndim == 4 else "recurrent" if t[f"w_0_{i}_b"].ndim == 2 else "dense"
    return f"{kind} layer {i + 1}"


def _tensor_name(part: dict) -> str:
    """A divergence entry as words: 'layer 2 kernel', 'batch norm 1 var'."""
    p = part["part"]
    return f"batch norm {part['layer']} {p[3:]}" if p.startswith("bn ") else f"layer {part['layer']} {p}"


def slope_value(t: dict):
    return t["_meta"]["slope"]


def compact(div: dict) -> dict:
    keep = (
        "steps",
        "loss_rel",
        "flips",
        "first_flip_step",
        "flip_steps",
        "snap_steps",
        "rel_l2",
        "max_rel",
        "final_max_rel",
        "final_rel_l2",
    )
    out = {k: div[k] for k in keep}
    out["final_per_layer"] = div["per_layer"][-1] if div["per_layer"] else []
    out["first_jump"] = first_jump(div)
    return out


def verdict(pair: dict, dtype: str) -> str:
    if dtype == "float64" and pair["final_max_rel"] is not None and pair["final_max_rel"] <= MATCHED_TOL:
        return f"agree (max relative difference {pair['final_max_rel']:.1e} <= {MATCHED_TOL:g})"
    r = pair["floor_ratio"]
    if r is None:
        return "identical" if not pair["final_rel_l2"] else "different (the floor is zero)"
    if r <= FLOOR_FACTOR:
        return f"same algorithm, float noise ({r:.2g}x the floor)"
    return f"real difference ({r:.2g}x the floor)"
