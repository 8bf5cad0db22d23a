"""On a CUDA GPU (opt-in: `./test.sh -m gpu`; scripts/gpu_check.sh runs these): the device paths
train, deterministic mode repeats bit for bit, and the fast path equals the step-synchronous one."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from helpers import env, metrics, train

pytestmark = pytest.mark.gpu
TIMING = ("train_seconds", "eval_seconds", "samples_per_second")


@pytest.fixture(scope="module", autouse=True)
def cuda():
    r = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        env=env(),
    )
    if r.stdout.strip() != "True":
        pytest.skip("no CUDA GPU visible to PyTorch")


def _same(a, b):
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    wa, wb = np.load(a / "weights" / "final.npz"), np.load(b / "weights" / "final.npz")
    return strip(metrics(a)) == strip(metrics(b)) and all(np.array_equal(wa[k], wb[k]) for k in wa.files)


def test_pytorch_deterministic_on_gpu_repeats_and_fast_path_is_identical(tmp_path):
    for name, sync in (("a", "epoch"), ("b", "epoch"), ("c", "step")):
        train(
            "pytorch",
            tmp_path / name,
            "--device",
            "cuda",
            "--epochs",
            "1",
            "--set",
            "deterministic=true",
            "--set",
            f"host_sync={sync}",
        )
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["environment"]["device"] == "cuda" and run["environment"]["device_free_bytes"] > 0
    assert _same(tmp_path / "a", tmp_path / "b")
    assert _same(tmp_path / "a", tmp_path / "c")
    assert metrics(tmp_path / "a")[0]["test_acc"] > 0.8


@pytest.mark.parametrize("who", ["keras-jax", "keras-torch"])
def test_keras_trains_on_gpu(who, tmp_path):
    train(who, tmp_path / "run", "--device", "cuda", "--epochs", "1")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["environment"]["device"] == "cuda"
    assert metrics(tmp_path / "run")[0]["test_acc"] > 0.8


def test_too_large_for_the_gpu_is_refused_in_one_line(tmp_path):
    r = train("pytorch", tmp_path / "run", "--device", "cuda", "--set", "hidden=400000,400000", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "needs about" in r.stderr and "GPU" in r.stderr


def test_bench_measures_the_cuda_graph_floor(tmp_path):
    """The pytorch process captures the floor's products in a CUDA graph and times its replays."""
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "compare.cli", "bench", "--device", "cuda", "--contestants", "pytorch,keras-torch"]
    cmd += ["--samples", "4096", "--reps", "2", "--batch-sizes", "128", "--out", str(out)]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "bench.json").read_text())
    rows = {t["contestant"]: t for t in s["table"]}
    assert 0 < rows["pytorch"]["graph_floor_s"] <= 1.5 * rows["pytorch"]["floor_s"]
    assert rows["keras-torch"]["x_graph_floor"] == pytest.approx(
        rows["keras-torch"]["median_s"] / rows["pytorch"]["graph_floor_s"]
    )
    assert "x CUDA-graph floor" in (out / "bench.md").read_text()


GRAPH = """
import numpy as np, torch
from pytorch_impl import train as T
from shared import config as cfg
c = cfg.resolve("standard", [], {"device": "cuda"})
state = T.build(c, T.setup(c, 1))
x = torch.from_numpy(np.random.default_rng(0).random((1024, 784), dtype=np.float32)).cuda()
epoch = T.graph_floor(state, {"x_train": x}, [np.arange(128)] * 3 + [np.arange(96)])
epoch()
ws = epoch.static["weights"]
for n, grads in epoch.static["outputs"].items():  # the replayed products are the same products run eagerly
    acts = [x[:n]]
    for w in ws:
        acts.append(acts[-1] @ w)
    want = acts[-2].T @ acts[-1]  # cuBLAS may pick another algorithm inside a capture: equal to rounding
    assert torch.allclose(grads[0], want, rtol=1e-4, atol=1e-4 * float(want.abs().max())), n
print("ok", sorted(epoch.static["outputs"]))
"""


def test_the_cuda_graph_floor_replays_the_floors_products():
    r = subprocess.run([sys.executable, "-c", GRAPH], env=env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0 and "ok [96, 128]" in r.stdout, r.stderr[-3000:]


def test_defaults_measure_the_float32_product_on_the_gpu(tmp_path):
    """The measured row runs where a run would: on the GPU, for PyTorch and Keras alike."""
    cmd = [sys.executable, "-m", "compare.cli", "defaults", "--device", "cuda", "--backends", "torch,jax", "--fresh"]
    r = subprocess.run([*cmd, "--out", str(tmp_path)], env=env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    t = json.loads((tmp_path / "defaults.json").read_text())
    row = next(r for r in t["rows"] if r["what"].startswith("float32 matmul on the run's device"))
    assert all(v.endswith("on cuda") for v in row["values"].values()), row
