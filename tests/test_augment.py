"""Augmentation. augment_impl=shared: one numpy augmentation (shared/augment.py), so both frameworks train on the same
pixels. Its parameters are a pure function of (seed, epoch, image index); the geometry is checked on
images whose answer is known; float64 matched lockstep agrees through it."""

import numpy as np
import pytest

from conftest import ONE_EPOCH, REPO
from helpers import metrics, train
from shared import augment
from shared import config as cfg

ALL = cfg.resolve("standard", ["augment=flip,vflip,rotate,translate", "rotate_degrees=30", "translate_fraction=0.2"])


@pytest.fixture(autouse=True)
def real_data_env(data_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def test_parameters_are_a_function_of_seed_epoch_and_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60000, 28, 28)).astype(np.uint8)
    some = np.array([59999, 3, 17, 3000])  # any subset, any order: each image gets its own parameters
    whole = augment.epoch_images(images[:4000], ALL, epoch=2)
    assert np.array_equal(augment.apply(images[some[1:]], some[1:], ALL, 2), whole[some[1:]])
    assert not np.array_equal(augment.apply(images[some], some, ALL, 3), augment.apply(images[some], some, ALL, 2))
    other = cfg.from_dict({"seed": 1}, ALL)
    assert not np.array_equal(augment.apply(images[some], some, other, 2), augment.apply(images[some], some, ALL, 2))
    p = augment.parameters(ALL, 2)
    assert 0.45 < p["flip"].mean() < 0.55 and np.abs(p["angle"]).max() <= 30 and np.abs(p["shift"]).max() <= 0.2 * 28
    flips_only = cfg.resolve("standard", ["augment=flip"])
    assert np.array_equal(augment.parameters(flips_only, 2)["flip"], p["flip"]), (
        "one augmentation does not move another's draws"
    )


def test_geometry_on_images_with_known_answers():
    x = np.zeros((1, 28, 28))
    x[0, 13, 20] = 255  # right of the centre (13.5, 13.5)
    quarter = augment.affine(x, np.deg2rad(np.array([90.0])), np.zeros((1, 2)))
    assert [tuple(p) for p in np.argwhere(quarter[0] > 50)] == [(7, 13)]  # counter-clockwise on screen: above
    shifted = augment.affine(x, np.zeros(1), np.array([[2.0, -3.0]]))
    assert [tuple(p) for p in np.argwhere(shifted[0] > 50)] == [(15, 17)] and shifted.sum() == 255
    assert np.array_equal(augment.affine(x, np.zeros(1), np.zeros((1, 2))), x)  # the identity is exact
    full = np.full((1, 28, 28), 255.0)
    assert augment.affine(full, np.zeros(1), np.array([[0.5, 0.0]]))[0, 0, 0] == 127.5  # half from outside: 0 fill
    assert augment.affine(full, np.zeros(1), np.array([[40.0, 0.0]])).max() == 0
    flip = cfg.resolve("standard", ["augment=flip"])
    img = np.arange(784, dtype=np.uint8).reshape(1, 28, 28)
    i = np.array([int(np.argmax(augment.parameters(flip, 1)["flip"]))])  # an image the coin flips
    assert np.array_equal(augment.apply(img, i, flip, 1)[0], img[0, :, ::-1])


def test_lockstep_steps_see_their_epochs_augmented_rows(data_dir):
    """lockstep augments exactly the rows each step uses, as the step's epoch augments them (the float64
    matched lockstep through the augmentation: test_porting's CNN test)."""
    from shared import data as fdata
    from shared import lockstep as trace

    d = fdata.load(data_dir)
    batches, epochs = [np.array([5, 0, 59999]), np.array([7]), np.array([5])], [1, 1, 2]
    x, y = trace.step_rows(ALL, d, batches, epochs)
    plain, _ = trace.step_rows(cfg.resolve("standard"), d, batches, epochs)
    mean, std = d.train_pixel_stats
    want = np.concatenate(
        [
            augment.apply(d.train_images[[5, 0, 59999, 7]], np.array([5, 0, 59999, 7]), ALL, 1),
            augment.apply(d.train_images[[5]], np.array([5]), ALL, 2),
        ]
    )
    assert np.array_equal(x, fdata.scale(want, ALL.scaling, mean, std, ALL.dtype))
    assert not np.array_equal(x[0], x[4]), "image 5 in epochs 1 and 2: different draws"
    assert not np.array_equal(x, plain) and list(y) == list(d.train_labels[[5, 0, 59999, 7, 5]])


def test_a_run_trains_on_the_augmented_epochs(tmp_path, trained):
    """The runner hands each epoch's augmented images over (here torchvision's own flips,
    augment_impl=native): the same run without augmentation (shared by other tests) trains differently."""
    import json

    train("pytorch", tmp_path / "flip", *ONE_EPOCH, "--set", "augment=flip", "--set", "augment_impl=native")
    flip, plain = metrics(tmp_path / "flip")[0], metrics(trained("pytorch", *ONE_EPOCH))[0]
    assert flip["test_acc"] > 0.75 and flip["train_loss"] != plain["train_loss"]
    assert json.loads((tmp_path / "flip" / "run.json").read_text())["config"]["augment_impl"] == "native"


def test_augment_diff_shows_the_libraries_defaults_and_matches_once_they_are_matched(tmp_path, data_dir):
    """torchvision and Keras with the same parameters: their defaults (nearest vs bilinear, black vs
    reflected fill) make half the pixels differ; matched, Keras equals the shared augmentation and
    torchvision is within its own sampling arithmetic. Each library in its own process."""
    import json
    import subprocess
    import sys
    from helpers import env

    out = tmp_path / "ad"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "compare.cli",
            "augment-diff",
            "--images",
            "2",
            "--angle",
            "15",
            "--shift",
            "0.1,-0.1",
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
        ],
        env=env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "augment_diff.json").read_text())
    d = s["defaults"]
    assert d["pytorch"]["interpolation"] == "nearest" and d["keras"]["interpolation"] == "bilinear"
    assert d["pytorch"]["fill"].startswith("constant") and d["keras"]["fill"].startswith("reflect")
    assert "degrees" in d["pytorch"]["angle"] and "full turn" in d["keras"]["angle"]
    rows = {x["op"]: x for x in s["rows"]}
    assert rows["flip"]["pytorch_vs_keras"] == rows["flip"]["keras_vs_shared"] == 0.0
    for op in ("rotate", "translate"):
        assert rows[op]["pixels_differ"] > 0.1 and rows[op]["matched_pytorch_vs_keras"] < 1.0, rows[op]
        assert rows[op]["matched_keras_vs_shared"] < 0.01, rows[op]  # the shared geometry is Keras' matched one
    assert (out / "augment_diff.png").stat().st_size > 1000 and "| interpolation | nearest | bilinear |" in (
        out / "augment_diff.md"
    ).read_text()


NATIVE_PROBE = """
import json, sys, numpy as np
fw = sys.argv[1]
if fw == "keras":
    import keras  # the backend comes from KERAS_BACKEND
from importlib import import_module
T = import_module(f"{fw}_impl.train")
white = np.full((64, 28, 28), 255.0)
a = T.augment(white, ["rotate"], 30.0, 0.1, 7)
b = T.augment(white, ["rotate"], 30.0, 0.1, 7)
c = T.augment(white, ["rotate"], 30.0, 0.1, 8)
ramp = np.tile(np.arange(28.0), (64, 28, 1))  # columns 0..27: a left-right flip reverses each row
f = T.augment(ramp, ["flip"], 10.0, 0.1, 7)
print(json.dumps({"same": bool(np.array_equal(a, b)), "other": bool(not np.array_equal(a, c)),
                  "corner": float(np.median(a[:, 0, 0])), "dtype": str(a.dtype), "range": [float(a.min()), float(a.max())],
                  "flipped": float(np.mean(f[:, :, 0] == 27)), "kept": float(np.mean(f[:, :, 0] == 0))}))
"""


@pytest.mark.parametrize("fw", ["pytorch", "keras"])
def test_native_augmentation_is_each_librarys_own_drawn_per_epoch_seed(fw):
    """augment_impl=native: each twin runs its library's random transforms with their defaults (a
    rotated white image keeps black corners in torchvision, reflected white ones in Keras), and draws
    from the seed it is given, so a resumed epoch redraws the same pixels."""
    import json
    import subprocess
    import sys
    from helpers import env

    r = subprocess.run(
        [sys.executable, "-c", NATIVE_PROBE, fw],
        env={**env(), "KERAS_BACKEND": "tensorflow"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    p = json.loads(r.stdout.strip().splitlines()[-1])
    assert (
        p["same"] and p["other"] and p["dtype"] == "float64" and 0 <= p["range"][0] <= p["range"][1] < 255.01
    )  # float32 sums
    assert p["corner"] == (0.0 if fw == "pytorch" else 255.0)
    assert 0.3 < p["flipped"] < 0.7 and p["flipped"] + p["kept"] == 1.0
    seeds = {augment.native_seed(cfg.from_dict({"seed": s}, ALL), e) for s in (0, 1) for e in (1, 2)}
    assert len(seeds) == 4 and augment.native_seed(ALL, 1) == augment.native_seed(ALL, 1)
