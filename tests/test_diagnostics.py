"""Gradient diagnostics (opt-in) and the memory estimate: norms per layer and epoch in both
frameworks, vanishing gradients detected on a deliberately deep narrow net, training unchanged by
measuring, an obviously too large config refused before allocating, OOM errors in one line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SMALL_2
from helpers import env, metrics, train
from shared import config as cfg, diagnostics, memory, training
from shared import cli as shared_cli

DEEP = ",".join(["32"] * 16)  # 16 LeakyReLU layers, U(+-1/sqrt(fan_in)) init (PyTorch's bounds): gradients vanish


@pytest.mark.parametrize("who", ["pytorch", "keras"])
def test_measuring_does_not_change_training(who, tmp_path, trained):
    off = trained(who, *SMALL_2)
    train(who, tmp_path / "on", *SMALL_2, "--set", "diagnostics=true")
    strip = lambda rows: [{k: r[k] for k in ("train_loss", "test_loss", "test_acc")} for r in rows]
    assert strip(metrics(off)) == strip(metrics(tmp_path / "on"))
    rows = diagnostics.read(tmp_path / "on")
    assert [r["epoch"] for r in rows] == [1, 2] and not diagnostics.read(off)
    assert all(len(r["grad_norm"]) == len(r["weight_norm"]) == 2 and min(r["grad_norm"]) > 0 for r in rows)
    w = np.load(tmp_path / "on" / "weights" / "final.npz")  # after the last epoch, as the last row saw it
    norms = [
        np.sqrt(
            np.sum(np.square(w[f"kernel_{i}"], dtype=np.float64)) + np.sum(np.square(w[f"bias_{i}"], dtype=np.float64))
        )
        for i in range(2)
    ]
    assert np.allclose(rows[-1]["weight_norm"], norms, rtol=1e-12)


@pytest.mark.slow  # a 17-layer net for an epoch in both; reading() and the per-layer norms are checked by default
def test_deep_narrow_net_shows_vanishing_gradients_in_both_frameworks_and_the_report(tmp_path):
    out = tmp_path / "c"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "compare.cli",
            "run",
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--set",
            f"hidden={DEEP}",
            "--set",
            "init=shared",
            "--set",
            "diagnostics=true",
            "--out",
            str(out),
        ],
        env=env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("pytorch-seed0", "keras-seed0"):
        row = diagnostics.read(out / "runs" / name)[0]
        assert len(row["grad_norm"]) == 17
        assert row["grad_norm"][0] < 1e-4 * max(row["grad_norm"]), row["grad_norm"]
        assert row["warning"].startswith("vanishing gradients: layer(s) 1,"), row["warning"]
    md = (out / "report.md").read_text()
    assert "## Gradient diagnostics" in md and "diagnostics.png" in md and "Warning: pytorch seed 0" in md
    assert "vanishing" in json.dumps(json.loads((out / "summary.json").read_text())["diagnostics"])


def test_reading_names_vanishing_and_exploding():
    assert diagnostics.reading([0.5, 0.4, 0.3]) == ""
    assert diagnostics.reading([1e-9, 0.1, 0.2]).startswith("vanishing gradients: layer(s) 1 ")
    assert diagnostics.reading([5e3, 1.0]).startswith("exploding gradients")
    assert diagnostics.reading([float("nan"), 1.0]).startswith("exploding gradients")


def test_memory_estimate_counts_what_a_run_holds():
    c = cfg.resolve("standard", [], {})
    params = 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10
    est = memory.estimate(c)["parts"]
    assert est["weights"] == params * 4
    assert est["gradients and optimizer state"] == params * 4 * 2  # gradient + SGD momentum buffer
    for name in ("adam", "adamw"):  # two moments each (AdamW was once counted as one)
        opt = memory.estimate(cfg.from_dict({"optimizer": name, "lr": 0.001}, c))["parts"]
        assert opt["gradients and optimizer state"] == params * 4 * 3, name
    for momentum, copies in ((0.9, 2), (0.0, 1)):  # RMSprop: the mean square, and with momentum its buffer
        opt = memory.estimate(cfg.from_dict({"optimizer": "rmsprop", "lr": 0.001, "momentum": momentum}, c))["parts"]
        assert opt["gradients and optimizer state"] == params * 4 * (1 + copies), momentum
    assert set(training.OPTIMIZERS) == set(cfg.CHOICES["optimizer"])  # every optimizer the config accepts
    f64 = memory.estimate(cfg.from_dict({"dtype": "float64"}, c))
    assert f64["total"] == 2 * memory.estimate(c)["total"] - (60000 + 10000) * 8  # labels stay int64
    assert est["data on the device"] == 70000 * 784 * 4 + 70000 * 8


def test_too_large_a_config_is_refused_before_allocating(capsys, tmp_path, data_dir):
    class NoTraining:
        FRAMEWORK, CHECKPOINT_EXT = "pytorch", "pt"
        setup = staticmethod(lambda config, threads: {})
        build = staticmethod(lambda config, env: pytest.fail("allocated a run that cannot fit"))

    rc = shared_cli.main(
        "pytorch",
        lambda b, c: NoTraining,
        ["--set", "hidden=100000,100000", "--out", str(tmp_path / "r"), "--data-dir", str(data_dir)],
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "needs about" in err[0] and "lower hidden=100000,100000" in err[0], err
    assert not (tmp_path / "r" / "run.json").exists()


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError."""


@pytest.mark.parametrize(
    "exc",
    [
        OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"),
        MemoryError(),
    ],
)
def test_an_out_of_memory_error_is_one_line(exc, capsys, tmp_path, data_dir):
    def explode(config, env):
        raise exc

    class Boom:
        FRAMEWORK, CHECKPOINT_EXT = "pytorch", "pt"
        setup = staticmethod(lambda config, threads: {})
        build = staticmethod(explode)

    rc = shared_cli.main(
        "pytorch", lambda b, c: Boom, ["--set", "hidden=32", "--out", str(tmp_path / "r"), "--data-dir", str(data_dir)]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("error: out of memory") and "lower batch_size=128" in err
    assert memory.is_oom(exc) and not memory.is_oom(ValueError("shapes differ"))
