"""The training driver both implementations share: run directory, resume, batch loop, timing,
divergence. It is framework-free; each implementation passes its `train` module, whose functions
(setup, build, to_device, batches, train_step, train_epoch, sync, evaluate, checkpoints, weights) are the only
places the frameworks differ. Read pytorch_impl/train.py and keras_impl/train.py side by side."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from shared import batches as fbatches
from shared import config as cfg
from shared import data as fdata
from shared import augment, diagnostics, memory, plan, rundir
from shared.environment import host_environment, resolve_threads


class RunError(Exception):
    """A run that cannot start or continue as asked; the message says why and what to do."""


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=quiet or not sys.stderr.isatty())


def _only_leftovers(out: Path) -> bool:
    """True if `out` holds nothing but what a run killed while starting leaves: its lock, temp files,
    initial weights, run.json."""
    ours = {rundir.LOCK, "run.json", "weights", "initial.npz", "checkpoints"}
    return all(p.name in ours or p.name.endswith(".tmp") for p in out.rglob("*"))


def prepare_out(out: Path, config: cfg.RunConfig, framework: str, backend: str | None, resume: bool) -> int:
    """Check the output directory; return the epoch to resume after (0 for a fresh run)."""
    if not (out / "run.json").exists() or not (out / "status.json").exists():
        if out.exists() and not _only_leftovers(out):
            raise RunError(f"{out} exists and is not a run directory; choose another --out")
        return 0  # nothing, or what a run killed before its first status left: start it afresh
    if not resume:
        raise RunError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    rec = rundir.read_run(out)
    if rec.meta["framework"] != framework or rec.meta.get("backend") != backend:
        raise RunError(
            f"{out} holds a {rec.label} run; it cannot be resumed as {framework}" + (f"-{backend}" if backend else "")
        )
    if rec.config != config.to_dict():
        diff = sorted(k for k in config.to_dict() if rec.config.get(k) != config.to_dict()[k])
        raise RunError(
            f"{out} was started with a different config ({', '.join(diff)} differ); "
            f"resume with the same settings or choose another --out"
        )
    return len(rec.metrics)


def resume_from(impl, state, out: Path, done: int, quiet: bool) -> int:
    """Load the newest intact checkpoint at or before epoch `done` (the last epoch with a metrics
    line: a kill can fall between the two writes) and return its epoch. A damaged one is skipped
    with one line; if none is intact, refuse naming the files (or start over when there are none)."""
    found = [(e, p) for e, p in rundir.checkpoints(out, impl.CHECKPOINT_EXT) if e <= done]
    if not found:
        return 0
    damaged = []
    for epoch, path in found:
        why = rundir.checkpoint_damage(path)
        if why is None:
            try:
                impl.load_checkpoint(state, path)
            except Exception as e:  # the framework's loader: truncated zip, missing arrays, bad pickle
                why = f"cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        if why is None:
            if damaged:
                _say(
                    False,
                    f"warning: skipped damaged checkpoint {damaged[0][0]} ({damaged[0][1]}); "
                    f"resuming from the intact one of epoch {epoch}",
                )
            return epoch
        damaged.append((path, why))
    raise RunError(
        f"no intact checkpoint to resume from: {damaged[0][0]} {damaged[0][1]}"
        + (f" (and {len(damaged) - 1} older ones)" if len(damaged) > 1 else "")
        + f"; delete {out} and start again, or restore the checkpoint"
    )


def step_by_step(step, batches, tick, before=None) -> tuple[list, list]:
    """Run `step(xb, yb) -> (loss, correct)` on every batch, in order; the per-step values as the step
    returns them (host numbers, or device scalars an implementation reads once per epoch). `before(i)`,
    if given, runs before step i (1-based): e.g. setting that step's shared dropout masks."""
    losses, rights = [], []
    for i, (xb, yb) in enumerate(batches, 1):
        if before:
            before(i)
        loss, right = step(xb, yb)
        losses.append(loss)
        rights.append(right)
        tick(1)
    return losses, rights


def epoch_totals(losses, rights, index_batches) -> tuple[float, int, tuple | None]:
    """Per-step batch-mean losses and correct counts (host numbers, in step order) -> the epoch's
    size-weighted mean loss, total correct and the first non-finite step (1-based, value) or None.
    Summed in float64 in step order, so reading the values per step or once per epoch gives the same bits."""
    loss_sum, correct = 0.0, 0
    for step, (loss, right, idx) in enumerate(zip(losses, rights, index_batches), 1):
        loss = float(loss)
        if not math.isfinite(loss):
            return math.nan, 0, (step, loss)
        loss_sum, correct = loss_sum + loss * len(idx), correct + int(right)
    return loss_sum / sum(len(i) for i in index_batches), correct, None


def run(
    impl,
    config: cfg.RunConfig,
    out: str | Path,
    data_dir=None,
    resume: bool = False,
    quiet: bool = False,
    backend: str | None = None,
    keep_checkpoints: int = 0,
    t_start: float | None = None,
) -> int:
    """Train one run into `out`. Exit codes: 0 completed, 3 diverged (see status.json)."""
    out = Path(out)
    t_start = t_start or time.perf_counter()
    # refuse bad input before creating anything: the output folder, the data, the device, the memory
    prepare_out(out, config, impl.FRAMEWORK, backend, resume)
    t_data = time.perf_counter()
    data = fdata.load(data_dir, log=lambda m: _say(quiet, m), progress=not quiet and sys.stderr.isatty())
    t_loaded = time.perf_counter()
    threads = resolve_threads(config.threads)
    env = {**host_environment(threads), **impl.setup(config, threads)}
    on_gpu = env.get("device", "cpu") != "cpu"
    memory.check(
        config,
        env.get("device_free_bytes") if on_gpu else memory.host_available(),
        f"the GPU ({env.get('device_name', 'cuda')})" if on_gpu else "this machine's RAM",
    )
    try:
        rundir.lock(out)
    except rundir.LockedError as e:
        raise RunError(str(e)) from None
    done = prepare_out(out, config, impl.FRAMEWORK, backend, resume)  # again, now as the one writer
    t_build = time.perf_counter()
    state, tensors, x_test = _build(impl, config, data, env)
    # start-up: the process, imports, device set-up, the lock; data: reading, scaling, building, moving
    timing = {
        "startup_seconds": (t_data - t_start) + (t_build - t_loaded),
        "data_seconds": (t_loaded - t_data) + (time.perf_counter() - t_build),
    }
    record = rundir.Writer(out, impl.CHECKPOINT_EXT, keep_checkpoints)
    rows = []
    epoch = resume_from(impl, state, out, done, quiet) if done else 0
    diag = diagnostics.read(out)[:epoch] if config.diagnostics else []
    if epoch:
        rows = rundir.read_run(out).metrics[:epoch]
        _say(quiet, f"resuming {out} after epoch {epoch}")
    else:
        if config.init == "shared":
            impl.import_weights(state, cfg.shared_init(config))
        record.weights("initial", impl.export_weights(state), impl.export_norms(state))
    record.start(_meta(impl, config, backend, data, env, timing), len(rows))
    label = impl.FRAMEWORK + (f"-{backend}" if backend else "")
    for epoch in range(len(rows) + 1, config.epochs + 1):
        row, bad = _epoch(impl, config, state, tensors, data, x_test, epoch, label, quiet)
        if bad is not None:
            where = f"step {bad[0]}" if bad[0] else "a step (fit reads the loss once per epoch)"
            msg = (
                f"loss became {bad[1]} at epoch {epoch}, {where}; likely causes: the learning rate "
                f"(lr={config.lr}) is too high for this model, or the head/loss pairing "
                f"(head={config.head}) produces log(0); the last good checkpoint is epoch {epoch - 1}"
            )
            record.end("diverged", epoch - 1, msg)
            _say(False, f"{label}: diverged: {msg}")
            return 3
        rows.append(row)
        if config.diagnostics:  # before the checkpoint: a resume never lacks an epoch's row
            diag.append(diagnostics.measure(impl, state, tensors, len(data.train_labels), epoch))
            diagnostics.write(out, diag)
            if diag[-1]["warning"] and not any(d["warning"] for d in diag[:-1]):
                _say(quiet, f"{label} epoch {epoch}: {diag[-1]['warning']}")
        record.epoch(epoch, rows, lambda path: impl.save_checkpoint(state, path, epoch))
        _say(
            quiet,
            f"{label} epoch {epoch}/{config.epochs}: train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f} | test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f} | "
            f"{row['train_seconds']:.2f}s train, {row['eval_seconds']:.2f}s eval",
        )
    record.weights("final", impl.export_weights(state), impl.export_norms(state))
    record.end("completed", len(rows))
    return 0


def _build(impl, config: cfg.RunConfig, data, env: dict) -> tuple:
    """The model and optimizer on the device, the data beside them; what they compute in goes into env.
    Returns (state, tensors, the scaled test images)."""
    x_train, x_test = data.scaled(config.scaling, config.dtype)
    state = impl.build(config, env)
    tensors = impl.to_device(
        state, x_train, data.train_labels.astype(np.int64), x_test, data.test_labels.astype(np.int64), data
    )
    env["precision"] = impl.precision(
        state, tensors["x_train"][:2]
    )  # what each layer, the loss, the weights computed in
    env["parameters"], env["network"] = impl.param_count(state), plan.describe(config)  # counted in the built model
    return state, tensors, x_test


def _meta(impl, config: cfg.RunConfig, backend, data, env: dict, timing: dict) -> dict:
    """run.json: what ran, on what data and machine, typed how."""
    mean, std = data.train_pixel_stats
    return {
        "framework": impl.FRAMEWORK,
        "backend": backend,
        "config": config.to_dict(),
        "data": {"source": data.source, "sha256": data.sha256, "train_pixel_mean": mean, "train_pixel_std": std},
        "environment": env,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "timing": timing,
    }


def _epoch(impl, config: cfg.RunConfig, state, tensors: dict, data, x_test, epoch: int, label: str, quiet: bool):
    """Train one epoch and evaluate: (its metrics row, None), or (None, (step, loss)) if the loss went bad.
    With augmentation, this epoch's pixels replace the training tensors first."""
    n = len(data.train_labels)
    idx = fbatches.epoch_batches(config.seed, epoch, n, config.batch_size, config.last_batch)
    if config.augment != "none":  # this epoch's pixels: shared (the same on every side) or the library's own
        mean, std = data.train_pixel_stats
        x_epoch = fdata.scale(
            augment.epoch_images_for(impl, data.train_images, config, epoch), config.scaling, mean, std, config.dtype
        )
        tensors.update(
            impl.to_device(
                state,
                x_epoch,
                data.train_labels.astype(np.int64),
                x_test,
                data.test_labels.astype(np.int64),
                data,
            )
        )
    bar = _progress(len(idx), f"{label} epoch {epoch}/{config.epochs}", quiet)
    t0 = time.perf_counter()
    train_loss, correct, bad = impl.train_epoch(state, tensors, idx, bar.update, epoch)
    if bad is not None:
        bar.close()
        return None, bad
    seen = sum(len(i) for i in idx)
    impl.sync(state)
    train_seconds = time.perf_counter() - t0
    bar.close()
    t1 = time.perf_counter()
    test_loss, test_acc = impl.evaluate(state, tensors)
    eval_seconds = time.perf_counter() - t1
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_acc": correct / seen,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "samples_per_second": seen / train_seconds,
    }
    return row, None
