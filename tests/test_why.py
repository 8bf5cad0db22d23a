"""Why the frameworks differ: lockstep, the live defaults table, ablation (real data, short runs)."""

import json
import shlex
import os
import stat
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import REPO
from helpers import defaults_probe
from compare import ablate, causes, cli, defaults, lockstep
from shared import config as cfg
from shared.atomic import atomic_write

STEPS = 30


@pytest.fixture(autouse=True)
def real_data_env(data_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def matched_divergence(tmp_path, data_dir, label, *sets):
    c = cfg.resolve(
        "standard",
        ["dtype=float64", "init=shared", "ops=exact", "update_rule=torch", "hidden=64,64", "threads=1", *sets],
    )
    with ThreadPoolExecutor(2) as pool:  # the two sides at once, as lockstep runs them
        a, b = pool.map(
            lambda who: lockstep._load(lockstep.run_side(who, c, tmp_path / who, STEPS, 10, str(data_dir))),
            (label, "pytorch"),
        )
    return causes.divergence(a, b)


# SGD with the logits head is also the all-features test's (test_porting), the seed head the CNN's:
# two of the four run by default, all four with -m slow
@pytest.mark.parametrize(
    "sets",
    [
        pytest.param(("optimizer=sgd", "head=logits"), marks=pytest.mark.slow),
        ("optimizer=sgd", "head=seed", "nesterov=true"),
        ("optimizer=adam", "lr=0.001", "head=logits"),
        pytest.param(("optimizer=adam", "lr=0.001", "head=seed"), marks=pytest.mark.slow),
    ],
    ids=["sgd-logits", "sgd-nesterov-seed", "adam-logits", "adam-seed"],
)
def test_matched_float64_lockstep_agrees(tmp_path, data_dir, sets):
    d = matched_divergence(tmp_path, data_dir, "keras", *sets)
    assert d["steps"] == STEPS and d["snap_steps"][-1] == STEPS
    assert d["final_max_rel"] <= causes.MATCHED_TOL, d["final_max_rel"]
    assert max(d["loss_rel"]) <= 1e-12


def test_lockstep_finds_the_float32_constants_in_keras_tensorflow(tmp_path, data_dir):
    """Native float64 (standard preset): the cause is found, named and shown to vanish when matched."""
    s = lockstep.lockstep(
        cfg.resolve("standard"),
        ["tensorflow"],
        ["float64"],
        12,
        4,
        tmp_path / "ls",
        str(data_dir),
        cells=["native", "matched"],
        log=lambda m: None,
    )
    native, matched = s["results"][0]["pairs"]
    assert native["cell"] == "native" and native["verdict"].startswith("real difference")
    assert matched["verdict"].startswith("agree") and matched["final_max_rel"] <= causes.MATCHED_TOL
    text = " ".join(native["explanation"])
    # TensorFlow's leaky_relu takes the slope as a float32 attribute: layer 2's input is where it shows
    assert "dense layer 2" in text and "slope rounded to float32 reproduces it" in text
    # keras.optimizers.SGD casts the Python momentum through float32: seen at step 2
    assert "the gap between 0.9 and its float32 rounding" in text
    layer2 = native["forward"]["keras"][1]
    assert layer2["hypotheses"]["exact"] > 1e-11 > layer2["hypotheses"]["slope rounded to float32"]
    assert native["forward"]["pytorch"][1]["best"] == "exact"
    assert (tmp_path / "ls" / "lockstep.png").stat().st_size > 0 and "Lockstep" in (
        tmp_path / "ls" / "lockstep.md"
    ).read_text()
    assert not list((tmp_path / "ls").glob(".lockstep-*")), "traces are removed unless --keep-traces"


@pytest.mark.slow
def test_lockstep_catches_a_deliberate_slope_mismatch(tmp_path, data_dir):
    s = lockstep.lockstep(
        cfg.resolve("standard"),
        ["tensorflow"],
        ["float64"],
        8,
        4,
        tmp_path / "ls",
        str(data_dir),
        keras_sets=["negative_slope=0.02"],
        cells=["matched"],
        log=lambda m: None,
    )
    pair = s["results"][0]["pairs"][0]
    assert pair["verdict"].startswith("real difference")
    assert "The LeakyReLU slopes differ: keras uses 0.02, pytorch 0.01" in " ".join(pair["explanation"])


@pytest.mark.slow
def test_lockstep_shows_adams_epsilon_placement(tmp_path, data_dir):
    base = cfg.resolve("standard", ["optimizer=adam", "lr=0.001", "eps=1e-4"])
    s = lockstep.lockstep(
        base,
        ["tensorflow"],
        ["float64"],
        6,
        3,
        tmp_path / "ls",
        str(data_dir),
        cells=["exact ops", "matched"],
        log=lambda m: None,
    )  # without native: exact ops always runs
    pairs = {p["cell"]: p for p in s["results"][0]["pairs"]}
    assert pairs["matched"]["final_max_rel"] <= causes.MATCHED_TOL
    # each framework's own definition, computed exactly, still differs: the definition is the cause
    assert pairs["exact ops"]["verdict"].startswith("real difference")
    text = " ".join(pairs["exact ops"]["explanation"])
    assert "effective epsilon" in text and "Keras adds epsilon to sqrt(v) before the bias correction" in text
    ratio = float(text.split("their ratio ")[1].split(" ")[0])
    assert ratio == pytest.approx(1 / np.sqrt(1 - 0.999), rel=0.05)


def test_one_ulp_perturbation_is_one_rounding():
    layers = cfg.shared_init(cfg.resolve("standard", ["hidden=5"]))
    for dtype in ("float32", "float64"):
        moved = lockstep_perturb(layers, dtype)
        for (k0, _), (k1, _) in zip(layers, moved):
            k0 = k0.astype(dtype)
            ulps = np.abs(k1.astype(dtype) - k0) / np.spacing(np.abs(k0))
            assert np.all((ulps > 0.49) & (ulps <= 1.01))


def lockstep_perturb(layers, dtype):
    from shared.lockstep import perturb

    return perturb(layers, dtype, 1)


def test_defaults_table_follows_the_installed_library(native_defaults):
    torch_probe, keras_probe = native_defaults("pytorch"), native_defaults("keras")
    plain = defaults.table({"pytorch": torch_probe, "keras": keras_probe})
    rows = {r["what"]: r for r in plain["rows"]}
    # RMSprop: its defaults read, its update form measured from the probe's steps
    rms = (torch_probe["rmsprop"], keras_probe["rmsprop"])
    assert [(r["rho"], r["eps"]) for r in rms] == [(0.99, 1e-8), (0.9, 1e-7)]
    assert defaults.rmsprop_form(rms[0]["steps"]) == "g / (sqrt(v) + eps), lr at the update"
    assert defaults.rmsprop_form(rms[1]["steps"]) == "g / (sqrt(v + eps)), lr inside the momentum"
    assert defaults.rmsprop_form([1.0, 2.0]).startswith("none of the known forms")  # the reading can fail
    # layer norm's epsilon, read and measured; where a strided 'same' convolution pads, measured
    assert [(p["layernorm"]["eps"], round(p["layernorm"]["eps_measured"], 12)) for p in (torch_probe, keras_probe)] == [
        (1e-5, 1e-5),
        (1e-3, 1e-3),
    ]
    # the recurrent layers: which stored block is which gate, measured; Keras' forget-gate bias starts at 1
    gru, lstm = (
        rows["GRU gate order in the stored weights (measured)"],
        rows["LSTM gate order in the stored weights (measured)"],
    )
    assert gru["values"] == {"pytorch": "reset, update, candidate", "keras": "update, reset, candidate"}
    assert lstm["values"] == {"pytorch": "input, forget, cell, output", "keras": "input, forget, cell, output"}
    assert defaults.gate_order([0.1, 0.2, 0.3], "gru").startswith("none of the gates")  # the reading can fail
    assert [p["recurrent"]["lstm"]["forget_bias"] for p in (torch_probe, keras_probe)][1] == 1.0
    assert abs(torch_probe["recurrent"]["lstm"]["forget_bias"]) < 0.05
    assert keras_probe["recurrent"]["gru"]["orthogonal"] < 1e-4 < torch_probe["recurrent"]["gru"]["orthogonal"]
    assert "pads on every side" in torch_probe["stride"]["padding"] and "refused" in torch_probe["stride"]["padding"]
    assert "at the bottom and right only" in keras_probe["stride"]["padding"]
    assert rows["LeakyReLU slope (layer)"]["values"] == {"pytorch": "0.01", "keras": "0.3"}
    assert rows["LeakyReLU slope (layer)"]["differ"] and rows["Adam epsilon"]["differ"]
    assert rows["Adam epsilon placement (effective/configured at step 1)"]["values"]["keras"] == "31.62"
    assert rows["momentum update form"]["differ"] and rows["default float dtype"]["differ"] is False
    # a float32 product on the device each would train on, measured against float64: full float32 on a CPU
    matmul = rows["float32 matmul on the run's device (measured against float64)"]
    assert all(v.startswith("full float32 (relative error") for v in matmul["values"].values()), matmul
    assert set(matmul["source"].values()) == {"measured"}
    # mixed precision, measured: float32 weights and loss on both; each loss scaler backs off by half
    mixed = rows["mixed bfloat16: matmul / activation / log-softmax / loss dtype (measured)"]["values"]
    assert all(v.startswith("bfloat16") and v.endswith("float32") for v in mixed.values()), mixed
    assert set(rows["mixed precision: the weights live in"]["values"].values()) == {"float32"}
    assert all(
        v.endswith(", 0.5")
        for v in rows["float16 loss scaling: growth interval, growth, back-off (measured)"]["values"].values()
    )
    # change what the probes see: Keras' LeakyReLU default and Adam epsilon default
    patched = defaults_probe(
        "keras",
        "import keras\n"
        "keras.layers.LeakyReLU.__init__.__defaults__ = (0.01,)\n"
        "d = list(keras.optimizers.Adam.__init__.__defaults__); d[3] = 1e-8\n"
        "keras.optimizers.Adam.__init__.__defaults__ = tuple(d)\n",
    )
    rows = {r["what"]: r for r in defaults.table({"pytorch": torch_probe, "keras": patched})["rows"]}
    assert (
        rows["LeakyReLU slope (layer)"]["values"]["keras"] == "0.01" and not rows["LeakyReLU slope (layer)"]["differ"]
    )
    assert rows["Adam epsilon"]["values"]["keras"] == "1e-08" and not rows["Adam epsilon"]["differ"]


def test_every_measure_command_parses_and_names_real_cells():
    """The report tells users which command measures each difference: each must run as written."""
    parser = cli.build_parser()
    assert set(defaults.MEASURE) <= {row[0] for row in defaults.ROWS}
    for what, command in defaults.MEASURE.items():
        argv = shlex.split(command)
        assert argv[0] == "fmnist-parity", command
        args = parser.parse_args(argv[1:])
        if args.func in (cli.cmd_ablate, cli.cmd_lockstep):
            config = cfg.resolve(args.preset, args.set, {})  # refuses combinations that do nothing
            known = (
                ablate.cells(config)
                if args.func is cli.cmd_ablate
                else {**lockstep.CELLS, **lockstep.alone_cells(config)}
            )
            assert {c.strip() for c in args.cells.split(",")} <= set(known), (what, command, list(known))


def test_defaults_probe_is_cached_per_library_versions(monkeypatch, tmp_path):
    monkeypatch.setenv("FMNIST_PARITY_CACHE", str(tmp_path))  # not the cache the real probes of other tests fill
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    calls = []
    monkeypatch.setattr(defaults, "probe", lambda label, device: calls.append(label) or {"probed": len(calls)})
    assert defaults.cached_probe("pytorch") == {"probed": 1}
    assert defaults.cached_probe("pytorch") == {"probed": 1} and calls == ["pytorch"]  # read back, not probed
    assert defaults.cached_probe("pytorch", fresh=True) == {"probed": 2}
    real = defaults.metadata.version
    monkeypatch.setattr(defaults.metadata, "version", lambda d: "9.9" if d == "keras" else real(d))
    assert defaults.cached_probe("pytorch") == {"probed": 3}  # another Keras: probed again
    assert defaults.cached_probe("pytorch") == {"probed": 3}
    assert defaults.cached_probe("pytorch", device="cpu") == {"probed": 4}  # the measured rows ran elsewhere
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert defaults.cached_probe("pytorch") == {"probed": 5}  # another GPU visible: probed again


def test_ablation_cells_and_paired_effects(tmp_path, data_dir):
    config = cfg.resolve("standard", ["epochs=1", "hidden=32"])  # a small net: the cells and statistics are the point
    plan = ablate.cells(config)
    assert list(plan) == ["native", "matched init", "matched LeakyReLU slope", "matched update rule", "all matched"]
    assert plan["native"]["negative_slope"] == "native" and plan["all matched"]["negative_slope"] == 0.01
    assert "Adam epsilon" not in " ".join(plan) and "matched Adam epsilon" in ablate.cells(
        cfg.resolve("standard", ["optimizer=adam"])
    )
    logs = []
    s = ablate.ablate(
        config,
        [0, 1],
        ["pytorch", "keras"],
        tmp_path / "ab",
        str(data_dir),
        0.01,
        only=["matched LeakyReLU slope"],
        log=logs.append,
    )
    assert [r["cell"] for r in s["rows"]] == ["native", "matched LeakyReLU slope"]
    row = s["rows"][1]
    assert row["accuracy"]["pytorch"]["n"] == 2 and row["accuracy"]["keras"]["n"] == 2
    eff = row["effects"]["gap keras - pytorch"]
    # the effect on the gap is the mean per-seed change of the gap, checked by hand
    native = s["rows"][0]
    gap_change = np.mean(np.array(row["gaps"]["keras"]["values"]) - np.array(native["gaps"]["keras"]["values"]))
    assert eff["diff"] == pytest.approx(gap_change) and eff["ci"][0] <= eff["diff"] <= eff["ci"][1]
    # native Keras trains with its 0.3 slope, matched with 0.01: the runs record it
    runs = json.loads((tmp_path / "ab" / "cells" / "native" / "runs" / "keras-seed0" / "run.json").read_text())
    assert runs["config"]["negative_slope"] == "native"
    assert (tmp_path / "ab" / "ablation.png").exists() and "Ablation" in (tmp_path / "ab" / "ablation.md").read_text()
    # a second call resumes: nothing is trained again
    logs.clear()
    ablate.ablate(
        config,
        [0, 1],
        ["pytorch", "keras"],
        tmp_path / "ab",
        str(data_dir),
        0.01,
        only=["matched LeakyReLU slope"],
        log=logs.append,
    )
    assert sum("already finished" in m for m in logs) == 8 and not any("starting" in m for m in logs)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic_write(tmp_path / "f.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == mode
