"""`fmnist-parity lockstep`: are PyTorch and Keras computing the same function?

Both sides start from the same weights (init=shared) and train K steps on the same batches, each in
its own process (shared/lockstep.py records every step). This module sets the traces side by side:
per-step loss, per-layer weight differences, pre-activations whose sign differs in one run only, and
the first batch's layer outputs and gradients at identical weights. It then finds the cause:
  - each side's layer outputs are recomputed in numpy from its own previous layer, exactly and under
    float32 hypotheses (slope rounded to float32, matmul in float32), so the first layer that departs
    from the exact math is named, with the hypothesis that reproduces it;
  - the first updates are inverted to the learning rate and momentum (SGD) or effective epsilon (Adam)
    each side actually applied;
  - the same comparison is repeated with the differences switched off one at a time (cells).
The verdict is read against a measured noise floor: PyTorch against itself with every initial weight
moved one unit in the last place (the size of one rounding). Imports no framework.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from compare.harness import HarnessError, keras_label, last_line, subcommand
from compare.render import render_md as md
from shared import config as cfg
from shared import lockstep as trace_format
from shared import training
from shared.atomic import atomic_write

REFERENCE = "pytorch"
# name -> (config overrides, what stays different between the two sides); "definitions" are the
# optimizer's update rule and every porting feature each library defines its own way (shared/training.py)
CELLS = {
    "native": (
        {"ops": "native", "update_rule": "native"},
        "the libraries as shipped (layers, loss, optimizer classes)",
    ),
    "exact ops": ({"ops": "exact"}, "only the definitions (each framework's own, written out exactly)"),
    "same definition": ({"update_rule": "torch"}, "only the libraries' layer and loss arithmetic"),
    "matched": (
        {"ops": "exact", "update_rule": "torch"},
        "nothing: same definitions, every constant in the model dtype",
    ),
}
DEFINITIONS = ("same definition", "matched")  # the cells that also match the porting features


def canonical(label: str, c: cfg.RunConfig) -> cfg.RunConfig:
    """On the PyTorch side, native means PyTorch's own update rule and idioms: spelled out, one trace
    serves both spellings (e.g. the matched cell and 'batch-norm running variance alone')."""
    if label != REFERENCE:
        return c
    over = {**training.pytorch_canonical(c), **({"update_rule": "torch"} if c.update_rule == "native" else {})}
    return cfg.from_dict(over, c) if over else c


def cell_overrides(cell: str, config: cfg.RunConfig) -> dict:
    over = dict(CELLS[cell][0])
    return {**over, **training.matched(config)} if cell in DEFINITIONS else over


def alone_cells(config: cfg.RunConfig) -> dict[str, dict]:
    """'<difference> alone' -> matched, except that one difference as each library has it: which
    difference makes the two depart, and where (the update rule, the arithmetic, each porting feature)."""
    matched = cell_overrides("matched", config)
    native = {
        "update rule": {"update_rule": "native"},
        "library arithmetic": {"ops": "native"},
        **{name: {k: getattr(config, k) for k in over} for name, over in training.differences(config).items()},
    }
    return {f"{name} alone": {**matched, **over} for name, over in native.items()}


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


# ---------------------------------------------------------------- running the sides


def run_sides(
    label: str, jobs: list[tuple[cfg.RunConfig, Path, int | None]], steps: int, every: int, data_dir: str
) -> None:
    """Traces of one side, (config, out, perturbation seed or None) each, one after another in one
    process: they share its start-up (most of a short trace's cost). The configs share
    cfg.PROCESS_KEYS."""
    for _, out, _ in jobs:
        out.mkdir(parents=True, exist_ok=True)
    spec = jobs[0][1] / "jobs.json"
    spec.write_text(json.dumps([{"config": c.to_dict(), "out": str(o), "perturb": p} for c, o, p in jobs]))
    cmd = subcommand(
        label, "lockstep", "--jobs", str(spec), "--steps", str(steps), "--every", str(every), "--data-dir", data_dir
    )
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise HarnessError(f"lockstep side {label} failed (exit {r.returncode}): {last_line(r.stderr)}")


def run_side(
    label: str, config: cfg.RunConfig, out: Path, steps: int, every: int, data_dir: str, perturb: int | None = None
) -> Path:
    """One trace in its own process."""
    run_sides(label, [(config, out, perturb)], steps, every, data_dir)
    return out


# ---------------------------------------------------------------- comparing two traces


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
        # every tensor of the state: dense kernels and biases, then batch norm's four (if any)
        keys = [(f"w_{s}_{i}_{t}", i + 1, "kernel" if t == "k" else "bias") for i in range(layers) for t in "kb"]
        keys += [
            (k, int(k.split("_")[2]) + 1, "bn " + k.split("_", 3)[3])
            for k in sorted(b)
            if k.startswith(f"bn_{s}_") and k in a
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
        "final_max_rel": max(x["max_rel"] for x in per_layer[-1]) if per_layer else None,
        "final_rel_l2": rel_l2[-1] if rel_l2 else None,
    }


def first_jump(div: dict, factor: float = 10.0) -> int | None:
    """The first snapshot (after step 5) where the weight divergence grew `factor`-fold since the last one."""
    s, d = div["snap_steps"], div["rel_l2"]
    for i in range(1, len(s)):
        if s[i] > 5 and d[i - 1] > 0 and d[i] >= factor * d[i - 1]:
            return s[i]
    return None


# ---------------------------------------------------------------- finding the cause


def _leaky(h, slope):
    return np.where(h > 0, h, h * slope)


def first_batch(config: cfg.RunConfig, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    from shared import batches, data

    d = data.load(data_dir)
    x, _ = d.scaled(config.scaling, "float64")
    idx = batches.epoch_batches(config.seed, 1, len(x), config.batch_size, config.last_batch)[0]
    return x[idx], d.train_labels[idx].astype(np.int64)


def forward_hypotheses(t: dict, x: np.ndarray, slope: float, unit: str) -> list[dict]:
    """For each dense layer: how far the side's output departs from the exact float64 math applied to
    its own previous output, and which hypothesis reproduces it best. `unit`: the precision the layers
    compute in; below float32 the hypothesis of a layer computed in it (operands rounded to it, float32
    accumulation, the product and the sum with the bias each rounded to it)."""
    layers = sum(1 for k in t if k.startswith("act_"))
    c = t["_meta"]["config"]
    if c.get("model") == "cnn":
        return []  # the hypotheses recompute dense layers (x @ w + b)
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
    dt, unit = config.dtype, cfg.compute_dtype(config)
    level = tol(unit)
    lines = []
    for side, t in ((REFERENCE, b), (label, a)):
        side_slope = float(_slope_value(t))
        for f in forward_hypotheses(t, x, side_slope, unit):
            if f["deviation"] > level:
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
    sa, sb = _slope_value(a), _slope_value(b)
    if sa != sb:
        lines.append(f"The LeakyReLU slopes differ: {label} uses {sa}, {REFERENCE} {sb} (config negative_slope).")
    g = step1_gradients(a, b)
    if max(g) > level:
        worst = int(np.argmax(g))
        lines.append(
            f"Step-1 gradients (identical weights, same batch) differ most in layer {worst + 1}: "
            f"{g[worst]:.1e} relative."
        )
    else:
        lines.append(f"Step-1 gradients agree to {max(g):.1e} (relative) in every layer.")
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


def where_first(a: dict, b: dict, div: dict, unit: str, noise: float = 0.0) -> dict:
    """Where two traces first part: the first dense output that differs at step 1 (identical weights), else
    the first layer whose step-1 gradient differs, else the first weight snapshot that differs and the
    tensor that differs most there; with the first step whose loss differs. {} where they agree. A
    difference counts above tol(unit) (the compute precision's), and above 10x `noise` (what the matched
    pair reaches: Adam turns the rounding noise of a bias that feeds batch norm, whose gradient is zero,
    into whole steps)."""
    tol_ = max(tol(unit), 10 * noise)
    layers = sum(1 for k in b if k.startswith("act_"))
    loss_step = next((i + 1 for i, r in enumerate(div["loss_rel"]) if r > tol_), None)
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
            if worst and worst["max_rel"] > tol_:
                out.update(step=s, where=f"{_tensor_name(worst)} after step {s}", rel=worst["max_rel"])
                break
    if "where" not in out and loss_step is None:
        return {}
    return out


def _layer(t: dict, i: int) -> str:
    """Weighted layer i by kind and number: 'dense layer 2', 'conv layer 1' (numbered among all)."""
    return f"{'conv' if t[f'w_0_{i}_k'].ndim == 4 else 'dense'} layer {i + 1}"


def _tensor_name(part: dict) -> str:
    """A divergence entry as words: 'layer 2 kernel', 'batch norm 1 var'."""
    p = part["part"]
    return f"batch norm {part['layer']} {p[3:]}" if p.startswith("bn ") else f"layer {part['layer']} {p}"


def _slope_value(t: dict):
    return t["_meta"]["slope"]


# ---------------------------------------------------------------- the whole comparison


def _load(path: Path) -> dict:
    meta, arrays = trace_format.load(path)
    arrays["_meta"] = meta
    return arrays


def lockstep(
    config: cfg.RunConfig,
    backends: list[str],
    dtypes: list[str],
    steps: int,
    every: int,
    out: Path,
    data_dir: str,
    keras_sets: list[str] | None = None,
    keep_traces: bool = False,
    cells: list[str] | None = None,
    log=print,
) -> dict:
    """Run every (dtype, cell, backend) pair and the noise floors; write lockstep.json/.md/.png into `out`.
    The cells that attribute a difference ('exact ops', 'same definition') run only where the native
    pair shows a real difference."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "traces" if keep_traces else Path(tempfile.mkdtemp(prefix=".lockstep-", dir=out))
    labels = [keras_label(b) for b in backends]
    alone = alone_cells(config) if training.differences(config) else {}
    cells = cells or [*CELLS, *alone]  # by default: the four cells, then each difference alone
    summary = {
        "steps": steps,
        "every": every,
        "backends": labels,
        "dtypes": dtypes,
        "config": {"preset_config": config.to_dict()},
        "keras_sets": keras_sets or [],
        "floor_factor": FLOOR_FACTOR,
        "matched_tol": MATCHED_TOL,
        "results": [],
    }
    cache = {}
    attribute = ("exact ops", "same definition", *alone)  # run only where the native pair differs for real

    def configs(base, cell):
        c = cfg.from_dict(alone[cell] if cell in alone else cell_overrides(cell, base), base)
        return (cfg.from_dict(cfg.parse_sets(keras_sets), c) if keras_sets else c), c

    def fetch(sides):
        """Run the sides not yet traced: each side's traces in one process (start-up is most of a short
        trace's cost), side by side on the cores; a trace does not depend on what ran before it in its
        process or what runs beside it (tests/test_porting.py)."""
        todo = {}  # key -> (label, config, perturb), each side once
        for label, c, perturb in sides:
            c = canonical(label, c)
            key = (label, c.to_json(), perturb)
            if key not in cache:
                todo.setdefault(key, (label, c, perturb))
        if not todo:
            return
        for label, c, perturb in todo.values():
            log(
                f"lockstep {c.dtype}: {label}"
                + (" (perturbed by 1 ulp)" if perturb is not None else "")
                + f", ops={c.ops}, update_rule={c.update_rule}"
            )
        # one process per side and process settings, split further where cores would sit idle
        dirs = {k: work / f"{len(cache) + i:02d}-{k[0]}" for i, k in enumerate(todo)}
        groups = {}
        for k, (label, c, perturb) in todo.items():
            groups.setdefault((label, *cfg.process_settings(c)), []).append((c, dirs[k], perturb))
        cores = os.cpu_count() or 1
        n = max(1, cores // len(groups))
        chunks = [(key[0], jobs[i::n]) for key, jobs in groups.items() for i in range(min(n, len(jobs)))]
        with ThreadPoolExecutor(min(len(chunks), cores)) as pool:
            list(pool.map(lambda chunk: run_sides(chunk[0], chunk[1], steps, every, data_dir), chunks))
        cache.update((key, _load(dirs[key])) for key in todo)

    def side(label, c, perturb=None):
        fetch([(label, c, perturb)])
        return cache[(label, canonical(label, c).to_json(), perturb)]

    try:
        for dt in dtypes:
            base = cfg.from_dict({"dtype": dt, "init": "shared"}, config)
            unit, name = cfg.compute_dtype(base), precision_name(base)
            summary["config"][dt] = base.to_dict()
            x, _ = first_batch(base, data_dir)
            # up front: every cell that runs whatever the native pair shows (all of them without a native cell)
            fetch(
                [(REFERENCE, base, 1), (REFERENCE, base, None)]
                + [
                    (who, c, None)
                    for label in labels
                    for cell in cells
                    if cell not in attribute or "native" not in cells
                    for who, c in zip((label, REFERENCE), configs(base, cell))
                ]
            )
            floor = divergence(side(REFERENCE, base, perturb=1), side(REFERENCE, base))  # the noise floor
            entry = {"dtype": dt, "unit": unit, "name": name, "floor": _compact(floor), "pairs": []}
            for label in labels:
                real = True
                for cell in cells:
                    if cell in attribute and not real:
                        continue  # nothing to attribute
                    ck, c = configs(base, cell)
                    a, b = side(label, ck), side(REFERENCE, c)
                    div = divergence(a, b)
                    ratio = (div["final_rel_l2"] / floor["final_rel_l2"]) if floor["final_rel_l2"] else None
                    meaning = (
                        CELLS[cell][1] if cell in CELLS else f"only {cell[: -len(' alone')]}, as each library has it"
                    )
                    noise = next(
                        (p["final_max_rel"] for p in entry["pairs"] if p["a"] == label and p["cell"] == "matched"), 0.0
                    )
                    pair = {
                        "cell": cell,
                        "meaning": meaning,
                        "a": label,
                        "b": REFERENCE,
                        **_compact(div),
                        "floor_ratio": ratio,
                        "where": where_first(a, b, div, unit, noise),
                        "explanation": explain(label, a, b, ck, x, div),
                        "forward": {
                            s: forward_hypotheses(t, x, float(_slope_value(t)), unit)
                            for s, t in ((REFERENCE, b), (label, a))
                        },
                        "precision": {s: t["_meta"].get("precision", {}) for s, t in ((REFERENCE, b), (label, a))},
                        "step1_gradients": step1_gradients(a, b),
                    }
                    pair["verdict"] = verdict(pair, dt)
                    if cell == "native":
                        real = pair["verdict"].startswith("real")
                        if real:  # the attributing cells of this backend, together
                            fetch(
                                [
                                    (who, c, None)
                                    for cell2 in cells
                                    if cell2 in attribute
                                    for who, c in zip((label, REFERENCE), configs(base, cell2))
                                ]
                            )
                    log(
                        f"  {name} {cell}: {label} vs {REFERENCE}: final max rel {div['final_max_rel']:.2e}, rel L2 "
                        f"{div['final_rel_l2']:.2e} (floor {floor['final_rel_l2']:.2e}): {pair['verdict']}"
                    )
                    entry["pairs"].append(pair)
            summary["results"].append(entry)
    finally:
        if not keep_traces:
            shutil.rmtree(work, ignore_errors=True)
    summary["findings"] = findings(summary)
    atomic_write(out / "lockstep.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    plot(summary, out / "lockstep.png")
    atomic_write(out / "lockstep.md", lambda f: f.write(render_md(summary).encode()))
    return summary


def precision_name(c: cfg.RunConfig) -> str:
    """How a lockstep entry is named: its dtype, or 'mixed bfloat16' (float32 weights)."""
    return f"mixed {c.mixed_precision}" if c.mixed_precision != "off" else c.dtype


def _compact(div: dict) -> dict:
    keep = (
        "steps",
        "loss_rel",
        "flips",
        "first_flip_step",
        "flip_steps",
        "snap_steps",
        "rel_l2",
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


def findings(summary: dict) -> list[str]:
    """Per (dtype, backend): the verdict, and which switch removes a real difference."""
    out = []
    for e in summary["results"]:
        by = {}
        for p in e["pairs"]:
            by.setdefault(p["a"], {})[p["cell"]] = p
        for label, cells in by.items():
            n = cells.get("native")
            line = (
                f"{e['name']}, {label} vs {REFERENCE}: final max relative weight difference "
                + ", ".join(f"{c} {p['final_max_rel']:.1e}" for c, p in cells.items())
                + "."
            )
            if n and n["verdict"].startswith("real"):
                level = tol(e["unit"])
                gone = {c: cells[c]["final_max_rel"] <= level for c in ("exact ops", "same definition") if c in cells}
                if gone.get("exact ops") and not gone.get("same definition"):
                    line += (
                        " The libraries' own arithmetic is the cause: with exact ops (each framework keeping its own "
                        "update definition) they agree; matching only the definitions does not help."
                    )
                elif gone.get("same definition") and not gone.get("exact ops"):
                    line += (
                        " The update definitions are the cause: with the same definition they agree; "
                        "exact arithmetic alone does not help."
                    )
                elif gone.get("exact ops") and gone.get("same definition"):
                    line += " Either switch alone removes it."
                elif len(gone) == 2:
                    line += " Only both switches together remove it (arithmetic and definitions both differ)."
            elif n:
                line += f" Native: {n['verdict']}."
            out.append(line)
            if e["unit"] in ("bfloat16", "float16") and "native" in cells and "matched" in cells:
                out.append(
                    f"{e['name']}, {label}: below float32 a single rounding grows to the floor's size within "
                    f"the epoch, so how early the two part tells more: "
                    + "; ".join(f"{c} {_parted(cells[c])}" for c in ("native", "matched"))
                    + "."
                )
            causes = [(c[: -len(" alone")], p) for c, p in cells.items() if c.endswith(" alone")]
            if causes:
                out.append(
                    f"{e['name']}, {label}: each difference alone, everything else matched: "
                    + "; ".join(_cause(name, p) for name, p in causes)
                    + "."
                )
    return out


def _parted(p: dict) -> str:
    """When and where a pair first parts by more than rounding, and how far apart it is then."""
    w = p.get("where") or {}
    if "where" not in w:
        return "never parts by more than rounding"
    return f"from step {w['step']}, in {w['where']} ({w['rel']:.1e} relative)"


def _cause(name: str, p: dict) -> str:
    w = p.get("where") or {}
    if not w or "where" not in w:
        return f"{name}: no effect ({p['verdict']})"
    loss = f", the loss from step {w['loss_step']}" if w.get("loss_step") else ""
    return (
        f"{name}: first at step {w['step']} in {w['where']} ({w['rel']:.1e} relative){loss}; "
        f"after {p['steps']} steps {p['final_max_rel']:.1e}, {p['verdict']}"
    )


# ---------------------------------------------------------------- output


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(summary["results"])
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 4.2), squeeze=False)
    for ax, e in zip(axes[0], summary["results"]):
        f = e["floor"]
        ax.plot(
            f["snap_steps"], np.maximum(f["rel_l2"], 1e-18), color="gray", lw=2, label="noise floor (pytorch, 1 ulp)"
        )
        for p in e["pairs"]:
            if p["cell"] not in ("native", "matched"):
                continue
            style = "-" if p["cell"] == "native" else "--"
            (line,) = ax.plot(p["snap_steps"], np.maximum(p["rel_l2"], 1e-18), style, label=f"{p['a']} ({p['cell']})")
            flips = [i + 1 for i, c in enumerate(p["flips"]) if c]
            if flips:
                ys = np.interp(flips, p["snap_steps"], np.maximum(p["rel_l2"], 1e-18))
                ax.plot(flips, ys, "|", color=line.get_color(), ms=8)
        ax.set_yscale("log")
        ax.set(
            xlabel="step",
            ylabel="relative L2 distance of all weights",
            title=f"{e['name']}: divergence from pytorch (| = a sign flip in one run only)",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=90))
    plt.close(fig)


def blocks(summary: dict) -> list[tuple]:
    """The lockstep section, in the report's block structure (compare/report.py renders it)."""
    b = [("h2", "Lockstep: are they computing the same function?")]
    b.append(
        (
            "p",
            f"Both sides start from the same weights (init=shared) and train {summary['steps']} steps on the "
            f"same batches; weights are compared every {summary['every']} steps. The noise floor is PyTorch "
            f"against itself with every initial weight moved one unit in the last place (one rounding). "
            f"Within {summary['floor_factor']:g}x the floor reads as float noise; float64 with everything "
            f"matched must agree to {summary['matched_tol']:g}. Cells switch the differences off: "
            + "; ".join(f"{k}: {v[1]}" for k, v in CELLS.items())
            + ".",
        )
    )
    rows = []
    for e in summary["results"]:
        for p in e["pairs"]:
            rows.append(
                [
                    e["name"],
                    p["a"],
                    p["cell"],
                    f"{p['final_max_rel']:.2e}",
                    f"{p['final_rel_l2']:.2e}",
                    f"{e['floor']['final_rel_l2']:.2e}",
                    p["first_flip_step"] or "none",
                    p["verdict"],
                ]
            )
    b.append(
        (
            "table",
            [
                "precision",
                "vs pytorch",
                "cell",
                "max rel diff (end)",
                "rel L2 (end)",
                "floor rel L2",
                "first sign flip",
                "verdict",
            ],
            rows,
        )
    )
    b.append(("img", "lockstep/lockstep.png", "Weight divergence per step, log scale"))
    b.append(("p", "What differs and why:"))
    for line in summary["findings"]:
        b.append(("p", line))
    for e in summary["results"]:
        for p in e["pairs"]:
            if p["cell"] == "native":
                b.append(("p", f"{e['name']}, {p['a']} (native): " + " ".join(p["explanation"])))
    for e in summary["results"]:
        if e["unit"] != e["dtype"] or e["unit"] not in ("float32", "float64"):  # below float32: what ran in what
            b += precision_blocks(e)
    return b


def precision_blocks(e: dict) -> list[tuple]:
    """Per layer, the dtype each side's output came out in (precision(), read from each running program),
    natively and in the matched cell: where the two libraries cast differently."""
    out = []
    for p in e["pairs"]:
        if p["cell"] not in ("native", "matched") or not all(p["precision"].values()):
            continue
        ref, other = p["precision"][REFERENCE], p["precision"][p["a"]]
        layers = lambda q: [l.split(": ")[1] for l in q["layers"]] + [q["loss"], q["weights"]]
        names = [
            f"layer {i + 1} ({a.split(': ')[0]} / {b.split(': ')[0]})"
            for i, (a, b) in enumerate(zip(ref["layers"], other["layers"]))
        ] + ["loss", "weights"]
        rows = [[n, x, y, "" if x == y else "differs"] for n, x, y in zip(names, layers(ref), layers(other))]
        out.append(
            (
                "p",
                f"{e['name']}, {p['cell']}: the dtype each layer's output came out in, read from the running programs",
            )
        )
        out.append(("table", ["layer (pytorch / " + p["a"] + ")", REFERENCE, p["a"], ""], rows))
    return out


def render_md(summary: dict) -> str:
    return md(blocks(summary), {"lockstep/lockstep.png"}).replace("lockstep/lockstep.png", "lockstep.png")
