"""The fast training paths give the same numbers as the step-by-step reference path, and
`fmnist-parity bench` runs and writes its results (no wall-clock assertions: machines are shared)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ONE_EPOCH, REPO
from helpers import env, metrics, train
from shared import config as cfg

TIMING = ("train_seconds", "eval_seconds", "samples_per_second")


def _run_both(who, tmp_path, trained, *extra):
    runs = {"step": tmp_path / "step"}
    train(who, runs["step"], *ONE_EPOCH, "--set", "host_sync=step", *extra)
    runs["epoch"] = trained(who, *ONE_EPOCH, *extra)  # host_sync=epoch is the default: the run other tests share
    weights = {k: np.load(p / "weights" / "final.npz") for k, p in runs.items()}
    same_weights = all(np.array_equal(weights["step"][k], weights["epoch"][k]) for k in weights["step"].files)
    return [metrics(runs[k]) for k in ("step", "epoch")], same_weights


def test_pytorch_per_epoch_host_sync_is_bit_identical(tmp_path, trained):
    (step, epoch), same_weights = _run_both("pytorch", tmp_path, trained)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    assert same_weights
    assert strip(step) == strip(epoch)  # train loss too: the same float32 values summed in the same order


# JAX and torch at batch 512 (118 steps: 3 full calls of 32 steps, then a short one with the short last batch):
# their train_on_batch reference pays Python per step
@pytest.mark.parametrize(
    "who,extra",
    [
        ("keras", []),
        pytest.param("keras", ["--set", "steps_per_execution=1"], marks=pytest.mark.slow),
        pytest.param("keras-jax", ["--set", "batch_size=512"], marks=pytest.mark.slow),
        pytest.param("keras-torch", ["--set", "batch_size=512"], marks=pytest.mark.slow),
    ],
)
def test_keras_fit_path_matches_train_on_batch(who, extra, tmp_path, trained):
    (step, epoch), same_weights = _run_both(who, tmp_path, trained, *extra)
    assert same_weights  # the same train_step runs, inside fit's loop instead of one call per batch
    for a, b in zip(step, epoch):
        assert (a["train_acc"], a["test_loss"], a["test_acc"]) == (b["train_acc"], b["test_loss"], b["test_acc"])
        # stated tolerance: fit averages the epoch's loss in float32 on the device, the reference in float64
        assert abs(a["train_loss"] - b["train_loss"]) <= 1e-6 * a["train_loss"], (a, b)


def test_bench_runs_and_writes_its_results(tmp_path):
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        "-m",
        "compare.cli",
        "bench",
        "--contestants",
        "pytorch,pytorch-step-sync,keras",
        "--device",
        "cpu",  # a GPU would add the CUDA-graph floor (tests/test_gpu.py)
        "--samples",
        "1024",
        "--reps",
        "2",
        "--warmup",
        "0",
        "--batch-sizes",
        "128,512",
        "--set",
        "threads=1",
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "bench.json").read_text())
    assert s["samples"] == 1024 and s["threads"] == 1 and s["batch_sizes"] == [128, 512]
    rows = {(t["contestant"], t["batch_size"]): t for t in s["table"]}
    assert set(rows) == {(c, b) for c in ("pytorch", "pytorch-step-sync", "keras") for b in (128, 512)}
    for t in rows.values():
        assert len([x for x in s["results"] if x["name"] == t["contestant"]][0]["rows"][0]["seconds"]) == 2
        assert t["median_s"] > 0 and t["floor_s"] > 0 and t["x_floor"] == pytest.approx(t["median_s"] / t["floor_s"])
    assert rows[("pytorch", 128)]["x_pytorch"] == 1.0
    assert {"torch", "keras", "tensorflow"} <= set(s["versions"])
    assert "| pytorch | 128 |" in (out / "bench.md").read_text()
    assert (out / "bench.png").stat().st_size > 1000
    assert "x floor" in r.stdout and "keras" in r.stdout
    assert all(t["x_graph_floor"] is None for t in rows.values())  # no CUDA here: no graph floor, no column
    assert "CUDA-graph" not in (out / "bench.md").read_text()


def test_bench_table_reads_the_cuda_graph_floor_when_measured():
    """On a GPU the pytorch process also times the products replayed from a CUDA graph: every contestant
    gets its ratio to that floor, and the table a column and a line saying what it is."""
    from compare import bench

    row = lambda median, floor, graph: {
        "batch_size": 128,
        "seconds": [median],
        "median": median,
        "floor_median": floor,
        "graph_floor_median": graph,
    }
    results = [
        {"name": "pytorch", "library": "torch", "samples": 60000, "rows": [row(2.0, 0.5, 0.25)]},
        {"name": "keras-jax", "library": "jax", "samples": 60000, "rows": [row(3.0, 0.4, None)]},
        {"name": "keras-torch", "error": "exit 1: out of memory"},
    ]
    rows = {r["contestant"]: r for r in bench.table(results)}
    assert rows["pytorch"]["x_graph_floor"] == 8.0 and rows["keras-jax"]["x_graph_floor"] == 12.0
    assert rows["keras-jax"]["x_floor"] == 6.0 and rows["keras-jax"]["own_floor_s"] == 0.4
    summary = {
        "host": {"cpu": "x", "cpu_count": 16},
        "threads": 16,
        "devices": {"pytorch": "cuda"},
        "reps": 1,
        "warmup": 1,
        "samples": 60000,
        "config": cfg.RunConfig().to_dict(),
        "table": list(rows.values()),
        "contestants": ["pytorch", "keras-jax", "keras-torch"],
        "results": results,
    }
    md = bench.markdown(summary)
    header = next(line for line in md.splitlines() if line.startswith("| contestant"))
    assert "| x floor | x CUDA-graph floor | x pytorch |" in header
    assert "| keras-jax | 128 | 3 | 3-3 | 20,000 | 6.00 | 12.00 | 1.50 |" in md
    assert "batch 128: 0.25 s (floor 0.5 s)" in md
    failed = next(line for line in md.splitlines() if line.startswith("| keras-torch |"))
    assert "failed: exit 1: out of memory" in failed and failed.count("|") == header.count("|")


@pytest.mark.slow  # the bench's mechanics are the test above's; this adds the CNN and augmentation rows
def test_bench_times_the_cnn_and_the_shared_augmentation(tmp_path, monkeypatch):
    """model=cnn: no matrix-product floor, ratios to PyTorch's CNN; the augmentation's own cost is kept."""
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        "-m",
        "compare.cli",
        "bench",
        "--contestants",
        "pytorch,keras",
        "--samples",
        "256",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--batch-sizes",
        "128",
        "--set",
        "threads=1",
        "--set",
        "model=cnn",
        "--set",
        "augment=rotate",
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "bench.json").read_text())
    rows = {t["contestant"]: t for t in s["table"]}
    assert rows["pytorch"]["x_floor"] is None and rows["pytorch"]["x_pytorch"] == 1.0 and rows["keras"]["x_pytorch"] > 0
    md = (out / "bench.md").read_text()
    assert rows["keras"]["augment_s"] > 0 and "CNN conv16-pool-conv32-pool-dense10" in md
    assert "Augmentation rotate (the shared one" in md and "images: pytorch " in md and ", keras " in md
    # a contestant the config refuses (the compiled step writes out the MLP's SGD) is a row, not a crash
    from compare import bench

    skipped = bench.run_contestant(
        "pytorch-compile-step",
        cfg.resolve("standard", ["model=cnn"]),
        [128],
        256,
        1,
        0,
        "unused",
        tmp_path,
        log=lambda m: None,
    )
    assert skipped["error"].startswith("not for this config") and "compile=step" in skipped["error"]
    # stopped during the third of three contestants: the two measured are on disk, marked partial
    assert s["partial"] is False and "Partial" not in (out / "bench.md").read_text()
    real = {x["name"]: x for x in s["results"]}

    def measured_or_stopped(name, *args, **kwargs):
        if name not in real:
            raise KeyboardInterrupt
        return real[name]

    monkeypatch.setattr(bench, "run_contestant", measured_or_stopped)
    with pytest.raises(KeyboardInterrupt):
        bench.bench(
            cfg.resolve("standard", ["model=cnn"]),
            ["pytorch", "keras", "keras-jax"],
            [128],
            256,
            1,
            0,
            "unused",
            tmp_path / "stopped",
            log=lambda m: None,
        )
    part = json.loads((tmp_path / "stopped" / "bench.json").read_text())
    assert part["partial"] is True and [x["name"] for x in part["results"]] == ["pytorch", "keras"]
    assert "Partial: 2 of 3 contestants measured" in (tmp_path / "stopped" / "bench.md").read_text()


COMPILED_STEP = """
import sys, tempfile
import numpy as np, torch
from shared import config as cfg
from pytorch_impl import train as T
backend, dtype, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
torch.set_default_dtype(getattr(torch, dtype))
x = torch.randn(12, 256, 784, generator=torch.Generator().manual_seed(0))
y = torch.randint(0, 10, (12, 256), generator=torch.Generator().manual_seed(1))
def state(sets, compiled):
    c = cfg.resolve("standard", ["init=shared", f"dtype={dtype}", "hidden=64,32", *sets])
    s = T.build(c, {**T.setup(c, 1), "device": "cpu"})
    T.import_weights(s, cfg.shared_init(c))
    if compiled:  # what build does for compile=step, with the backend under test
        s.step = torch.compile(T.compile_step(s), backend=backend, fullgraph=True)
    return s
def snapshot(s):
    bufs = [s.optimizer.state[p].get("momentum_buffer") for p in s.model.parameters()]
    return [a for kb in T.export_weights(s) for a in kb] + [b.detach().numpy().copy() for b in bufs if b is not None]
def rel(a, b):
    return max(float(np.max(np.abs(u - v)) / np.max(np.abs(u))) for u, v in zip(a, b))
for sets in ([], ["nesterov=true"], ["momentum=0"]):
    eager, comp = state(sets, False), state(sets, True)
    for i in range(6):
        le, _ = T.train_step(eager, x[i], y[i]); lc, _ = T.train_step(comp, x[i], y[i])
        assert abs(le - lc) <= tol * abs(le), (sets, i, le, lc)
    # a checkpoint of the compiled run, loaded into a fresh compiled state: it goes on as eager does
    path = tempfile.mktemp(suffix=".pt"); T.save_checkpoint(comp, path, 1)
    comp = state(sets, True); T.load_checkpoint(comp, path)
    for i in range(6, 12):
        T.train_step(eager, x[i], y[i]); T.train_step(comp, x[i], y[i])
    a, b = snapshot(eager), snapshot(comp)
    assert len(a) == len(b) == (6 if sets == ["momentum=0"] else 12)  # 3 layers' kernel and bias (and buffers)
    print(sets, rel(a, b))
    assert rel(a, b) <= tol, (sets, rel(a, b))
print("ok")
"""


@pytest.mark.parametrize(
    "backend,dtype,tol",
    [
        ("eager", "float64", 1e-12),  # Dynamo traces the step whole (fullgraph): our SGD step equals torch.optim.SGD's
        pytest.param("inductor", "float64", 1e-10, marks=pytest.mark.slow),  # Inductor's kernels (a minute to compile)
        pytest.param("inductor", "float32", 1e-5, marks=pytest.mark.slow),
    ],
)
def test_compiled_step_matches_eager_sgd(backend, dtype, tol):
    """compile=step (bench contestant pytorch-compile-step) writes SGD out to compile forward, backward and
    update as one graph: the same losses, weights and momentum buffers as eager torch.optim.SGD, across
    a checkpoint, within a stated float tolerance."""
    r = subprocess.run(
        [sys.executable, "-c", COMPILED_STEP, backend, dtype, str(tol)],
        env=env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
