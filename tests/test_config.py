"""Run config validation, presets, batch order and the run-directory format."""

import json

import numpy as np
import pytest

from shared import batches, config as cfg, rundir, weights


def test_presets_match_their_provenance():
    r = cfg.PRESETS["seed-report"].config()
    assert (r.layer_sizes(), r.head, r.lr, r.momentum, r.batch_size, r.scaling, r.epochs) == (
        [784, 200, 200, 10],
        "seed",
        0.001,
        0.5,
        512,
        "unit",
        300,
    )
    assert cfg.PRESETS["seed-notebook"].config().layer_sizes() == [784, 784, 784, 200, 200, 10]
    s = cfg.PRESETS["standard"].config()
    assert (s.head, s.lr, s.momentum, s.batch_size, s.scaling, s.epochs) == (
        "logits",
        0.05,
        0.9,
        128,
        "standardize",
        15,
    )


def test_json_round_trip_and_sets():
    c = cfg.resolve("standard", ["lr=0.1", "hidden=100,50", "nesterov=true"], {"epochs": 2})
    assert c.lr == 0.1 and c.hidden == (100, 50) and c.nesterov and c.epochs == 2
    assert cfg.load_json(c.to_json()) == c


@pytest.mark.parametrize(
    "sets,message",
    [
        (["lrate=0.1"], "unknown config key(s): lrate"),
        (["lr=-1"], "lr=-1.0 is out of range; it must be > 0"),
        (["lr=fast"], "lr='fast' is not a number"),
        (["head=softmax"], "head='softmax' is not allowed; choose one of seed, logits"),
        (["hidden=200,0"], "hidden layer 2 has width 0"),
        (["hidden=2.5"], "hidden='2.5' is not a comma-separated list of integers"),
        (["momentum=1"], "momentum=1.0 is out of range"),
        (["batch_size=0"], "batch_size=0 is out of range"),
        (["dtype=float16"], "dtype='float16' is not allowed"),
        (["nesterov=maybe"], "nesterov='maybe' is not true or false"),
        (["oops"], "must look like key=value"),
    ],
)
def test_bad_values_name_the_key(sets, message):
    with pytest.raises(cfg.ConfigError) as e:
        cfg.resolve("standard", sets)
    assert message in str(e.value)


def test_unknown_preset():
    with pytest.raises(cfg.ConfigError, match="unknown preset 'nope'; choose one of seed-report"):
        cfg.resolve("nope")


def test_batch_order_is_pure_and_complete():
    a = batches.epoch_batches(3, 2, 1000, 128)
    b = batches.epoch_batches(3, 2, 1000, 128)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == 8
    assert np.array_equal(np.sort(np.concatenate(a)), np.arange(1000))
    assert not np.array_equal(a[0], batches.epoch_batches(3, 3, 1000, 128)[0])  # epochs differ
    assert not np.array_equal(a[0], batches.epoch_batches(4, 2, 1000, 128)[0])  # seeds differ
    d = batches.epoch_batches(3, 2, 1000, 128, "drop")
    assert len(d) == batches.steps_per_epoch(1000, 128, "drop") == 7 and all(len(x) == 128 for x in d)
    assert np.array_equal(d[0], a[0])


def test_shared_init_shapes_and_determinism():
    c = cfg.resolve("standard")
    w = cfg.shared_init(c)
    assert [k.shape for k, _ in w] == [(784, 200), (200, 200), (200, 10)]
    assert np.array_equal(w[0][0], cfg.shared_init(c)[0][0])
    assert np.abs(w[0][0]).max() <= 1 / np.sqrt(784)


def test_weights_npz_round_trip(tmp_path):
    w = cfg.shared_init(cfg.resolve("standard"))
    weights.save(tmp_path / "w.npz", w)
    back = weights.load(tmp_path / "w.npz")
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(w, back))


def test_cnn_weights_round_trip_and_broken_chains_are_refused(tmp_path):
    """A CNN's neutral weights ([kh, kw, in, out] kernels, then the Dense on the flattened maps) load;
    kernels that do not chain are refused in one line."""
    w = cfg.shared_init(cfg.resolve("standard", ["model=cnn"], {}))
    assert [k.ndim for k, _ in w] == [4, 4, 2]
    weights.save(tmp_path / "cnn.npz", w)
    back = weights.load(tmp_path / "cnn.npz")
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(w, back))
    bad = [w[0], (w[1][0][:, :, :8], w[1][1]), w[2]]  # the second convolution takes 8 channels, not 16
    weights.save(tmp_path / "bad.npz", bad)
    with pytest.raises(ValueError, match="layer 0 .* do not chain"):
        weights.load(tmp_path / "bad.npz")


def test_run_directory_write_and_validate(tmp_path):
    c = cfg.resolve("standard")
    rundir.write_run(
        tmp_path, {"framework": "pytorch", "backend": None, "config": c.to_dict(), "environment": {}, "data": {}}
    )
    rundir.write_status(tmp_path, "running")
    row = dict(
        epoch=1,
        train_loss=0.5,
        train_acc=0.8,
        test_loss=0.4,
        test_acc=0.85,
        train_seconds=1.0,
        eval_seconds=0.1,
        samples_per_second=60000.0,
    )
    rundir.write_metrics(tmp_path, [row, {**row, "epoch": 2}])
    rec = rundir.read_run(tmp_path)
    assert rec.label == "pytorch" and [m["epoch"] for m in rec.metrics] == [1, 2]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    (tmp_path / "metrics.jsonl").write_text(json.dumps({**row, "epoch": 3}) + "\n")
    with pytest.raises(rundir.RunFormatError, match="epoch 3, expected 1"):
        rundir.read_run(tmp_path)
    (tmp_path / "status.json").write_text('{"state": "weird"}')
    with pytest.raises(rundir.RunFormatError, match="state 'weird'"):
        rundir.read_run(tmp_path)


def test_every_json_flag_prints_one_json_document(tmp_path):
    """Each command with --json prints exactly one JSON document on stdout (messages go to stderr)."""
    import argparse
    import json
    import subprocess
    import sys

    from compare import cli

    subs = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    with_json = sorted(
        name for name, p in subs.choices.items() if any("--json" in a.option_strings for a in p._actions)
    )
    assert "presets" in with_json and "defaults" in with_json
    # defaults probes every library (tests/test_why.py runs it); presets is cheap: run it whole
    r = subprocess.run([sys.executable, "-m", "compare.cli", "presets", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == set(cfg.PRESETS) and all("config" in v for v in doc.values())
