"""`fmnist-parity bench`: how fast each training path runs, measured against the floor.

Each contestant runs in its own process (`python -m <impl> bench`, shared/bench.py) and times
training epochs through the same train_epoch that `train` uses, after warm-up, plus the floor of its
own library: only the epoch's matrix products at the same shapes, dtype, device and threads. Every
contestant is shown as a ratio to its floor and to PyTorch eager, measured in the same run
(only ratios from one run mean anything on shared machines)."""

from __future__ import annotations

import json
import statistics
import platform
import subprocess
import tempfile
from pathlib import Path

from compare.harness import HarnessError, die_with_parent, last_line, subcommand
from shared import config as cfg
from shared import plan
from shared.atomic import atomic_write
from shared.environment import cpu_model

# name: (trainer, config overrides, what it is). The trainer's module and backend come from the harness.
CONTESTANTS = {
    "pytorch": ("pytorch", {}, "PyTorch eager, the default path: step losses stay on the device, read once per epoch"),
    "pytorch-step-sync": (
        "pytorch",
        {"host_sync": "step"},
        "PyTorch eager reading loss and accuracy after every step (.item())",
    ),
    "pytorch-compile": ("pytorch", {"compile": "on"}, "torch.compile of the model (Inductor; CUDA graphs on a GPU)"),
    "pytorch-compile-step": (
        "pytorch",
        {"compile": "step"},
        "the whole SGD step (forward, loss, backward, update) as one torch.compile graph "
        "(torch.func; Inductor; CUDA graphs on a GPU)",
    ),
    "pytorch-torchvision": (
        "pytorch",
        {"pipeline": "torchvision", "host_sync": "step"},
        "the lab report's pipeline: torchvision FashionMNIST + ToTensor + DataLoader",
    ),
    "keras": ("keras", {}, "Keras on TensorFlow, the default path: fit() over the epoch"),
    "keras-train-on-batch": ("keras", {"host_sync": "step"}, "Keras on TensorFlow, train_on_batch per step"),
    "keras-spe1": ("keras", {"steps_per_execution": 1}, "fit() with steps_per_execution=1 (one step per call)"),
    "keras-xla": (
        "keras",
        {"compile": "on", "steps_per_execution": 32},
        "fit() with jit_compile=True (XLA), steps_per_execution=32",
    ),
    "keras-jax": ("keras-jax", {"steps_per_execution": 32}, "Keras on JAX (jit), fit() with steps_per_execution=32"),
    "keras-torch": ("keras-torch", {}, "Keras on the torch backend, fit()"),
}
# below float32 (issue 18): opt-in with --contestants, as float16 autocast is slow on CPUs
PRECISION = {
    "pytorch-nhwc": ("pytorch", {"conv_layout": "nhwc"}, "PyTorch eager, CNN in torch.channels_last (NHWC) memory"),
    "pytorch-bf16": ("pytorch", {"dtype": "bfloat16"}, "PyTorch eager, pure bfloat16 (weights and computation)"),
    "pytorch-amp-bf16": ("pytorch", {"mixed_precision": "bfloat16"}, "PyTorch eager under torch.autocast(bfloat16)"),
    "pytorch-amp-fp16": (
        "pytorch",
        {"mixed_precision": "float16"},
        "PyTorch eager, torch.autocast(float16) + GradScaler",
    ),
    "keras-bf16": ("keras", {"dtype": "bfloat16"}, "Keras on TensorFlow, fit(), pure bfloat16"),
    "keras-mixed-bf16": ("keras", {"mixed_precision": "bfloat16"}, "Keras on TensorFlow, fit(), mixed_bfloat16 policy"),
    "keras-mixed-fp16": (
        "keras",
        {"mixed_precision": "float16"},
        "Keras on TensorFlow, fit(), mixed_float16 + LossScaleOptimizer",
    ),
    "keras-jax-mixed-bf16": (
        "keras-jax",
        {"mixed_precision": "bfloat16", "steps_per_execution": 32},
        "Keras on JAX, fit(), mixed_bfloat16 policy",
    ),
    "keras-jax-mixed-fp16": (
        "keras-jax",
        {"mixed_precision": "float16", "steps_per_execution": 32},
        "Keras on JAX, fit(), mixed_float16 + LossScaleOptimizer",
    ),
}
DEFAULT = ",".join(CONTESTANTS)
CONTESTANTS.update(PRECISION)
REFERENCE = "pytorch"
LIBRARY = {"pytorch": "torch", "keras": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}


def run_contestant(
    name: str,
    config: cfg.RunConfig,
    batch_sizes: list[int],
    samples: int,
    reps: int,
    warmup: int,
    data_dir: str,
    work: Path,
    log,
) -> dict:
    trainer, overrides, _ = CONTESTANTS[name]
    try:
        c = cfg.from_dict(overrides, base=config)
    except cfg.ConfigError as e:  # e.g. pytorch-compile-step (plain SGD MLP steps) with model=cnn
        log(f"bench {name}: skipped, not for this config: {e}")
        return {"name": name, "error": f"not for this config: {e}"}
    cfg_path, out = work / f"{name}.config.json", work / f"{name}.json"
    cfg_path.write_text(c.to_json())
    cmd = subcommand(
        trainer,
        "bench",
        "--config",
        str(cfg_path),
        "--batch-sizes",
        ",".join(map(str, batch_sizes)),
        "--samples",
        str(samples),
        "--reps",
        str(reps),
        "--warmup",
        str(warmup),
        "--data-dir",
        data_dir,
        "--out",
        str(out),
    )
    log(f"bench {name}: batch sizes {','.join(map(str, batch_sizes))}, {reps} timed epochs each ...")
    r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=die_with_parent)
    if r.returncode != 0:
        return {"name": name, "error": f"exit {r.returncode}: {last_line(r.stderr)}"}
    result = json.loads(out.read_text())
    return {"name": name, "trainer": trainer, "library": LIBRARY[trainer], "config": c.to_dict(), **result}


def table(results: list[dict]) -> list[dict]:
    """One row per contestant x batch size: median, spread, ratio to the floor and to PyTorch eager.
    The floor is PyTorch's (the `pytorch` process's bare matrix products at the same shapes, dtype and
    threads); each process's floor in its own library is kept beside it (`own_floor_s`)."""
    ref = {r["batch_size"]: r for x in results if x["name"] == REFERENCE and "rows" in x for r in x["rows"]}
    rows = []
    for x in results:
        if "rows" not in x:
            rows.append({"contestant": x["name"], "error": x["error"]})
            continue
        for r in x["rows"]:
            base = ref.get(r["batch_size"])
            rows.append(
                {
                    "contestant": x["name"],
                    "library": x["library"],
                    "batch_size": r["batch_size"],
                    "median_s": r["median"],
                    "min_s": min(r["seconds"]),
                    "max_s": max(r["seconds"]),
                    "samples_per_s": x["samples"] / r["median"],
                    "floor_s": base["floor_median"] if base else None,
                    "x_floor": r["median"] / base["floor_median"] if base and base["floor_median"] else None,
                    "x_pytorch": r["median"] / base["median"] if base else None,
                    "own_floor_s": r["floor_median"],
                    "graph_floor_s": base.get("graph_floor_median") if base else None,
                    "x_graph_floor": r["median"] / base["graph_floor_median"]
                    if base and base.get("graph_floor_median")
                    else None,
                    "augment_s": statistics.median(x["augment_seconds"]) if x.get("augment_seconds") else None,
                }
            )
    return rows


def markdown(summary: dict) -> str:
    h = summary["host"]
    lines = [
        f"# fmnist-parity bench: one training epoch ({summary['samples']} samples, "
        f"{plan.describe(cfg.from_dict(summary['config']))}, {summary['config']['dtype']})",
        "",
        f"Host: {h['cpu']} ({h['cpu_count']} CPUs), threads {summary['threads']}; devices: "
        f"{', '.join(sorted(set(summary['devices'].values())))}. Medians of {summary['reps']} timed epochs after "
        f"{summary['warmup']} warm-up. Floor = only the matrix products of the epoch (forward, weight and "
        f"input gradients) in PyTorch, same shapes, dtype and threads, timed in the `pytorch` process "
        f"alternately with its epochs; 'own floor' = the same products in the contestant's library, one "
        f"compiled call per step. Ratios are from this one run.",
        "",
        "| contestant | batch | median s | spread s | samples/s | x floor | x pytorch | own floor s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if summary.get("partial"):
        done = len(summary["results"])
        lines[2:2] = [
            f"**Partial: {done} of {len(summary['contestants'])} contestants measured** (the bench stopped "
            f"or is still running; not yet measured: {', '.join(summary['contestants'][done:])}).",
            "",
        ]
    graph = any(r.get("x_graph_floor") for r in summary["table"])  # measured on a CUDA GPU only
    if graph:
        lines[-2] = lines[-2].replace("| x floor |", "| x floor | x CUDA-graph floor |")
        lines[-1] += "---|"
        floors = {r["batch_size"]: r for r in summary["table"] if r.get("graph_floor_s")}
        lines[-2:-2] = [
            "CUDA-graph floor = the same products captured once per batch shape in a CUDA graph and replayed "
            "per step (one launch a step: the floor without per-kernel launch overhead): "
            + ", ".join(
                f"batch {b}: {r['graph_floor_s']:.3g} s (floor {r['floor_s']:.3g} s)" for b, r in floors.items()
            )
            + ".",
            "",
        ]
    cells = lines[-1].count("|") - 1  # the table's columns (the separator line), the CUDA-graph one included
    for r in summary["table"]:
        if "error" in r:
            lines.append(f"| {r['contestant']} | - | failed: {r['error']} |" + " |" * (cells - 3))
            continue
        f = lambda v, fmt: format(v, fmt) if v is not None else "-"
        lines.append(
            f"| {r['contestant']} | {r['batch_size']} | {r['median_s']:.3g} | {r['min_s']:.3g}-{r['max_s']:.3g} "
            f"| {r['samples_per_s']:,.0f} | {f(r['x_floor'], '.2f')} "
            + (f"| {f(r['x_graph_floor'], '.2f')} " if graph else "")
            + f"| {f(r['x_pytorch'], '.2f')} "
            f"| {f(r['own_floor_s'], '.3g')} ({r['library']}) |"
        )
    aug = {r["contestant"]: r["augment_s"] for r in summary["table"] if r.get("augment_s")}
    if aug:
        c = summary["config"]
        how = (
            "the shared one: numpy, the same pixels for every contestant"
            if c.get("augment_impl", "shared") == "shared"
            else "each contestant's own library: torchvision transforms v2 per image, Keras preprocessing layers per batch"
        )
        lines += [
            "",
            f"Augmentation {c['augment']} ({how}), on the host between epochs, not in the epoch times above; "
            f"median seconds per epoch of {summary['samples']} images: "
            + ", ".join(f"{n} {v:.3g}" for n, v in aug.items())
            + ".",
        ]
    lines += ["", "Contestants:"] + [f"- `{n}`: {CONTESTANTS[n][2]}" for n in summary["contestants"]]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in summary["table"] if "error" not in r]
    key = "x_floor" if any(r["x_floor"] is not None for r in ok) else "x_pytorch"  # a CNN has no floor
    rows = [r for r in ok if r[key] is not None]
    sizes = sorted({r["batch_size"] for r in rows})
    names = list(dict.fromkeys(r["contestant"] for r in rows))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 0.45 * len(names) + 1.5), squeeze=False)
    for ax, bs in zip(axes[0], sizes):
        got = {r["contestant"]: r for r in rows if r["batch_size"] == bs}
        ys = [n for n in names if n in got]
        ax.barh(ys, [got[n][key] for n in ys], color="tab:blue")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.invert_yaxis()
        ax.set_title(f"batch {bs}: epoch time / {'floor' if key == 'x_floor' else 'pytorch'}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench(
    config: cfg.RunConfig,
    names: list[str],
    batch_sizes: list[int],
    samples: int,
    reps: int,
    warmup: int,
    data_dir: str,
    out: Path,
    log,
) -> dict:
    """Each contestant in its own process, one after another; bench.json and bench.md are rewritten
    after each one (marked partial until the last), so a bench stopped midway keeps what it measured."""
    names = [REFERENCE] + [n for n in names if n != REFERENCE]  # the floor and the ratios need it
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in names:
            results.append(run_contestant(n, config, batch_sizes, samples, reps, warmup, data_dir, Path(tmp), log))
            summary = summarize(config, names, results, batch_sizes, samples, reps, warmup)
            if summary is not None:
                out.mkdir(parents=True, exist_ok=True)
                atomic_write(out / "bench.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
                atomic_write(out / "bench.md", lambda f: f.write(markdown(summary).encode()))
    if summary is None:
        raise HarnessError("every bench contestant failed: " + "; ".join(f"{x['name']}: {x['error']}" for x in results))
    plot(summary, out / "bench.png")
    return summary


def summarize(
    config: cfg.RunConfig,
    names: list[str],
    results: list[dict],
    batch_sizes: list[int],
    samples: int,
    reps: int,
    warmup: int,
) -> dict | None:
    """The bench record of the contestants run so far (None while none has succeeded)."""
    ok = [x for x in results if "rows" in x]
    if not ok:
        return None
    versions = {}
    for x in ok:
        env = x["environment"]
        versions.update({k: env[k] for k in ("torch", "keras", "tensorflow", "jax", "torchvision") if k in env})
    return {
        "format": "fmnist-parity-bench",
        "version": 1,
        "config": config.to_dict(),
        "contestants": names,
        "partial": len(results) < len(names),
        "batch_sizes": batch_sizes,
        "samples": samples,
        "reps": reps,
        "warmup": warmup,
        "threads": ok[0]["environment"]["threads"],
        "host": {
            "cpu": cpu_model(),
            "cpu_count": ok[0]["environment"]["cpu_count"],
            "python": platform.python_version(),
        },
        "devices": {x["name"]: x["environment"].get("device_name", "cpu") for x in ok},
        "versions": versions,
        "results": results,
        "table": table(results),
    }


def terminal(summary: dict) -> str:
    lines = [f"{'contestant':22s} {'batch':>5s} {'median s':>9s} {'x floor':>8s} {'x pytorch':>9s}"]
    for r in summary["table"]:
        if "error" in r:
            lines.append(f"{r['contestant']:22s} failed: {r['error']}")
            continue
        f = lambda v: f"{v:.2f}" if v is not None else "-"
        lines.append(
            f"{r['contestant']:22s} {r['batch_size']:5d} {r['median_s']:9.3f} {f(r['x_floor']):>8s} {f(r['x_pytorch']):>9s}"
        )
    return "\n".join(lines)
