"""One bench contestant, inside its own process (`python -m pytorch_impl bench` / `python -m keras_impl bench`):
time training epochs through the implementation's own train_epoch (the path `train` runs) and the
floor (only the epoch's matrix products, same library, dtype, device and threads) at each batch size.
Framework-free: the implementation is passed in; compare/bench.py runs the contestants and reports."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from shared import augment
from shared import batches as fbatches
from shared import config as cfg
from shared import data as fdata
from shared.atomic import atomic_write
from shared.parsing import Parser
from shared.environment import host_environment, resolve_threads


def _timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measure(
    impl, config: cfg.RunConfig, data_dir, batch_sizes: list[int], samples: int, reps: int, warmup: int
) -> dict:
    """Per batch size: `warmup` untimed epochs, then `reps` timed epochs of `samples` training
    images, and the same for the floor. Seconds per epoch, every repetition kept."""
    t_start = time.perf_counter()
    threads = resolve_threads(config.threads)
    env = {**host_environment(threads), **impl.setup(config, threads)}
    data = fdata.load(data_dir, log=lambda m: None, progress=False)
    x_train, x_test = data.scaled(config.scaling, config.dtype)
    rows = []
    for bs in batch_sizes:
        c = cfg.from_dict({"batch_size": bs}, base=config)
        state = impl.build(c, env)
        tensors = impl.to_device(
            state,
            x_train[:samples],
            data.train_labels[:samples].astype(np.int64),
            x_test,
            data.test_labels.astype(np.int64),
            data,
        )
        epochs = iter(range(1, warmup + reps + 1))

        def train():
            epoch = next(epochs)
            impl.train_epoch(
                state, tensors, fbatches.epoch_batches(c.seed, epoch, samples, bs, c.last_batch), lambda n: None, epoch
            )
            impl.sync(state)

        fixed = fbatches.epoch_batches(c.seed, 1, samples, bs, c.last_batch)
        # the floor is the MLP's matrix products; a CNN has no such floor here (its ratios are to PyTorch)
        floor = (lambda: impl.floor_epoch(state, tensors, fixed)) if c.model == "mlp" else (lambda: None)
        # on a GPU, the same products replayed from a CUDA graph: no per-kernel launch overhead (None elsewhere)
        graph = impl.graph_floor(state, tensors, fixed) if c.model == "mlp" else None
        _timed(train, warmup)
        _timed(floor, 1)
        if graph:
            _timed(graph, 1)  # the first replay uploads the graph
        seconds, floors, graphs = [], [], []
        for _ in range(reps):  # alternate, so that a slow spell of a shared machine hits all of them
            seconds += _timed(train, 1)
            floors += _timed(floor, 1)
            graphs += _timed(graph, 1) if graph else []
        rows.append(
            {
                "batch_size": bs,
                "seconds": seconds,
                "floor_seconds": floors if c.model == "mlp" else [],
                "median": statistics.median(seconds),
                "floor_median": statistics.median(floors) if c.model == "mlp" else None,
                "graph_floor_seconds": graphs,
                "graph_floor_median": statistics.median(graphs) if graphs else None,
            }
        )
    # the augmentation's own cost per epoch (the runner pays it between epochs; no batch size in it)
    augmented = (
        {
            "augment_seconds": _timed(
                lambda: augment.epoch_images_for(impl, data.train_images[:samples], config, 1), reps
            )
        }
        if config.augment != "none"
        else {}
    )
    return {
        "environment": env,
        "rows": rows,
        "samples": samples,
        **augmented,
        "process_seconds": time.perf_counter() - t_start,
    }


def main(framework: str, load_impl, argv=None) -> int:
    p = Parser(
        prog=f"python -m {framework}_impl bench",
        description="Time training epochs and the matrix-product floor of one contestant "
        "(run by `fmnist-parity bench`, which explains the options).",
    )
    if framework == "keras":
        p.add_argument("--backend", default="tensorflow", choices=("tensorflow", "torch", "jax"))
    p.add_argument("--config", type=Path, required=True, help="JSON config of the contestant")
    p.add_argument("--batch-sizes", required=True)
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--data-dir")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    a = p.parse_args(argv)
    config = cfg.load_json(a.config.read_text())
    impl = load_impl(getattr(a, "backend", None), config)
    result = measure(impl, config, a.data_dir, [int(b) for b in a.batch_sizes.split(",")], a.samples, a.reps, a.warmup)
    atomic_write(a.out, lambda f: f.write(json.dumps(result, indent=2).encode()))
    return 0
