"""Lockstep trace: train K steps from the shared initial weights on the shared batches and record
what every step did, for compare/lockstep.py to set two such traces side by side. Framework-free:
the implementation's train module (setup, build, train_step, activations, gradients, weights)
does the math, exactly as in a normal run.

trace.npz holds
  loss            [K]      each step's batch-mean loss (its forward pass, before the update)
  signs           [K, B]   packed bits: which hidden pre-activations of that step's batch were > 0
                           (of a convolution: of the first SIGN_IMAGES images)
  snap_steps      [S]      the steps after which weights were saved (0 = the initial weights)
  w_<s>_<i>_k / w_<s>_<i>_b    kernel [in, out] / bias of layer i after step s
  <kind>_<s>_<j>_<part>        normalisation layer j's state after step s (if any; weights.NORMS: bn_, ln_)
  act_<i>         weighted layer i's output for the first batch at the initial weights (training mode;
                  a convolution's in NHWC)
  grad_<i>_k / grad_<i>_b     the first batch's gradients at the initial weights (training mode)
Shared dropout masks are set before every step, as in a run; a per-epoch schedule steps between epochs.
trace.json holds the config, framework, backend, environment, the perturbation (if any) and the
dtype each layer computed in (the implementation's precision(), read from the running program).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from shared import batches as fbatches
from shared import config as cfg
from shared import data as fdata
from shared import augment, plan, weights
from shared.atomic import atomic_write
from shared.environment import host_environment, resolve_threads
from shared.runner import RunError


SIGN_IMAGES = 4  # convolution outputs: the sign bits of this many images per step


def numpy_dtype(name: str):
    """A dtype name as numpy's, bfloat16 through ml_dtypes (numpy has none)."""
    import ml_dtypes

    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def perturb(layers, dtype: str, seed: int, unit: str | None = None):
    """Move every initial weight (stored in `dtype`) one unit in the last place of `unit` (the precision
    the layers compute in; default `dtype`), up or down at random: the size of a single rounding, the
    smallest change the run's arithmetic can represent. Under mixed precision the float32 weights
    move by one bfloat16/float16 unit."""
    rng = np.random.default_rng(seed)
    low, kept = numpy_dtype(unit or dtype), numpy_dtype(dtype)

    def step(a):
        r = a.astype(low)
        delta = np.nextafter(r, np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(low)).astype(
            np.float64
        ) - r.astype(np.float64)  # one unit of `unit` at this weight's size
        return (a.astype(kept).astype(np.float64) + delta).astype(kept).astype(np.float64)

    return [(step(k), step(b)) for k, b in layers]


def step_rows(config: cfg.RunConfig, data, index_batches: list, epochs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The scaled images and labels the steps use, in step order (step i: training images
    index_batches[i] of epoch epochs[i]), augmented as their epochs augment them (shared/augment.py)."""
    order = np.concatenate(index_batches)
    raw = data.train_images[order]
    if config.augment != "none":
        of_row = np.concatenate([np.full(len(b), e) for b, e in zip(index_batches, epochs)])
        raw = np.concatenate(
            [augment.apply(raw[of_row == e], order[of_row == e], config, e) for e in np.unique(of_row)]
        )
    mean, std = data.train_pixel_stats
    return fdata.scale(raw, config.scaling, mean, std, config.dtype), data.train_labels[order].astype(np.int64)


def snapshot_steps(steps: int, every: int) -> list[int]:
    """0, the first few steps (where a cause shows before anything amplifies it), every `every`, the end."""
    return sorted({0, 1, 2, 3, 5, *range(every, steps, every), steps} & set(range(steps + 1)))


def trace(
    impl,
    config: cfg.RunConfig,
    out: Path,
    steps: int,
    every: int,
    perturb_seed: int | None = None,
    data_dir=None,
    backend: str | None = None,
) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = resolve_threads(config.threads)
    env = {**host_environment(threads), **impl.setup(config, threads)}
    data = fdata.load(data_dir)
    index_batches, where, epoch = [], [], 0  # where: (epoch, step in epoch) of each step, 1-based
    while len(index_batches) < steps:
        epoch += 1
        batches = fbatches.epoch_batches(
            config.seed, epoch, len(data.train_labels), config.batch_size, config.last_batch
        )
        index_batches += batches
        where += [(epoch, i) for i in range(1, len(batches) + 1)]
    index_batches, where = index_batches[:steps], where[:steps]
    state = impl.build(config, env)
    if config.pipeline == "memory":
        # only the rows these steps use, in step order: scaling is per pixel with the full training
        # set's statistics, so they are the same values as in the full scaled set (no test set: no evaluation)
        x_rows, y_rows = step_rows(config, data, index_batches, [e for e, _ in where])
        tensors = impl.to_device(state, x_rows, y_rows, x_rows[:1], y_rows[:1], data)
        ends = np.cumsum([len(b) for b in index_batches])
        index_batches = [np.arange(e - len(b), e) for b, e in zip(index_batches, ends)]
    else:
        x_train, x_test = data.scaled(config.scaling, config.dtype)
        tensors = impl.to_device(
            state, x_train, data.train_labels.astype(np.int64), x_test, data.test_labels.astype(np.int64), data
        )
    init = cfg.shared_init(config)
    impl.import_weights(
        state,
        perturb(init, config.dtype, perturb_seed, cfg.compute_dtype(config)) if perturb_seed is not None else init,
    )
    snaps = snapshot_steps(steps, every)
    arrays = {"snap_steps": np.array(snaps)}

    def snap(s):
        for i, (k, b) in enumerate(impl.export_weights(state)):
            arrays[f"w_{s}_{i}_k"], arrays[f"w_{s}_{i}_b"] = k, b
        for kind, found in impl.export_norms(state).items():
            for j, parts in enumerate(found):
                arrays.update({f"{kind}_{s}_{j}_{name}": a for name, a in zip(weights.NORMS[kind], parts)})

    snap(0)
    losses, signs = [], []
    for step, (xb, yb) in enumerate(impl.batches(state, tensors, index_batches), 1):
        (ep, i), n = where[step - 1], len(index_batches[step - 1])
        impl.set_masks(state, plan.dropout_masks(config, ep, i, n) if plan.shared_masks(config) else [])
        acts = impl.activations(state, xb)
        if step == 1:
            first = xb
            for i, a in enumerate(acts):
                arrays[f"act_{i}"] = a
            for i, (gk, gb) in enumerate(impl.gradients(state, xb, yb)):
                arrays[f"grad_{i}_k"], arrays[f"grad_{i}_b"] = gk, gb
        # a convolution's output is large (28x28xC per image): its signs for the first SIGN_IMAGES images
        signs.append(
            np.packbits(np.concatenate([(a if a.ndim == 2 else a[:SIGN_IMAGES]).ravel() > 0 for a in acts[:-1]]))
        )
        loss, _ = impl.train_step(state, xb, yb)
        losses.append(loss)
        if step < len(where) and where[step][0] != ep:
            impl.end_epoch(state)
        if step in snaps:
            snap(step)
        if not np.isfinite(loss):
            break
    width = max(len(s) for s in signs)
    arrays["loss"] = np.array(losses)
    arrays["signs"] = np.stack([np.pad(s, (0, width - len(s))) for s in signs])  # the last batch may be short
    atomic_write(out / "trace.npz", lambda f: np.savez(f, **arrays))
    meta = {
        "framework": impl.FRAMEWORK,
        "backend": backend,
        "config": config.to_dict(),
        "steps": len(losses),
        "perturb_seed": perturb_seed,
        "environment": env,
        "slope": impl.M.negative_slope(config),
        "eps": impl.M.training_plan(config).optimizer.eps,  # the values really used
        "precision": impl.precision(state, first),
    }  # the dtype each layer computed in, read from the program
    atomic_write(out / "trace.json", lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))


def load(path: Path) -> tuple[dict, dict]:
    """(trace.json, the arrays of trace.npz) of a trace directory."""
    path = Path(path)
    meta = json.loads((path / "trace.json").read_text())
    with np.load(path / "trace.npz") as z:
        return meta, {k: z[k] for k in z.files}


def main(framework: str, load_impl, argv) -> int:
    """`python -m <impl> lockstep`: traces of one side of a lockstep comparison (see compare/lockstep.py),
    one after another in this process."""
    from shared.parsing import Parser

    p = Parser(
        prog=f"python -m {framework}_impl lockstep",
        description="Train K steps from the shared initial weights and record every step.",
    )
    p.add_argument(
        "--jobs",
        type=Path,
        required=True,
        help='JSON list of traces, each {"config": {...}, "out": DIR, "perturb": SEED or null} '
        "(perturb: a one-ulp perturbation of the initial weights)",
    )
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--every", type=int, default=20, help="save the weights every N steps (and at the end)")
    p.add_argument("--data-dir")
    if framework == "keras":
        p.add_argument("--backend", choices=("tensorflow", "torch", "jax"), default="tensorflow")
    args = p.parse_args(argv)
    try:
        jobs = [
            (cfg.from_dict(j["config"]), Path(j["out"]), j.get("perturb")) for j in json.loads(args.jobs.read_text())
        ]
        if not jobs:
            raise cfg.ConfigError(f"{args.jobs} lists no traces")
        for config, _, _ in jobs:
            if config.init != "shared":
                raise cfg.ConfigError("lockstep needs init=shared (both sides must start from the same weights)")
            if cfg.process_settings(config) != cfg.process_settings(jobs[0][0]):
                raise cfg.ConfigError(f"the traces of one process must share {', '.join(cfg.PROCESS_KEYS)}")
        backend = getattr(args, "backend", None)
        impl = load_impl(backend, jobs[0][0])
        for config, out, perturb in jobs:
            trace(impl, config, out, args.steps, args.every, perturb, args.data_dir, backend)
    except (cfg.ConfigError, fdata.DataError, RunError, OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
