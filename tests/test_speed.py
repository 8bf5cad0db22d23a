"""The fast training paths give the same numbers as the step-by-step reference path, and
`fmnist-parity bench` runs and writes its results (no wall-clock assertions: machines are shared)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ONE_EPOCH, REPO
from helpers import env, metrics, train

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
@pytest.mark.parametrize("who,extra", [("keras", []), ("keras", ["--set", "steps_per_execution=1"]),
                                      ("keras-jax", ["--set", "batch_size=512"]),
                                      ("keras-torch", ["--set", "batch_size=512"])])
def test_keras_fit_path_matches_train_on_batch(who, extra, tmp_path, trained):
    (step, epoch), same_weights = _run_both(who, tmp_path, trained, *extra)
    assert same_weights  # the same train_step runs, inside fit's loop instead of one call per batch
    for a, b in zip(step, epoch):
        assert (a["train_acc"], a["test_loss"], a["test_acc"]) == (b["train_acc"], b["test_loss"], b["test_acc"])
        # stated tolerance: fit averages the epoch's loss in float32 on the device, the reference in float64
        assert abs(a["train_loss"] - b["train_loss"]) <= 1e-6 * a["train_loss"], (a, b)


def test_bench_runs_and_writes_its_results(tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "compare.cli", "bench", "--contestants", "pytorch,pytorch-step-sync,keras",
           "--samples", "1024", "--reps", "2", "--warmup", "0", "--batch-sizes", "128,512", "--set", "threads=1",
           "--out", str(out)]
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
