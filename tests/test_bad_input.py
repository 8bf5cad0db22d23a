"""A catalogue of bad input: every case exits 2 with one `error:` line that names the offending
value and what is allowed, and no traceback. In-process and before any training: the train
command gets a stand-in implementation that fails the test if a bad input ever reaches training."""

import gzip
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import env
from compare import cli as compare_cli
from shared import cli as shared_cli
from shared import rundir


class NoTraining:
    FRAMEWORK = "pytorch"
    CHECKPOINT_EXT = "pt"

    @staticmethod
    def setup(config, threads):
        return {}

    @staticmethod
    def build(config, env):
        raise AssertionError("a bad input reached training")


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """The CLIs install SIGINT/SIGTERM handlers; give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.fixture
def world(tmp_path, data_dir):
    """Files the bad inputs point at."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "not_a_run" / "notes.txt").write_text("mine")
    (tmp_path / "bad.json").write_text("{lr: 0.1")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "unknown.json").write_text('{"learning_rate": 0.1}')
    (tmp_path / "badvalue.json").write_text('{"lr": "fast"}')
    run = tmp_path / "a_run"  # a run started with lr 0.01
    rundir.write_run(
        run, {"framework": "pytorch", "backend": None, "config": {"lr": 0.01}, "environment": {}, "data": {}}
    )
    rundir.write_status(run, "running", "", 1)
    bad = tmp_path / "bad_data"  # links to the real files (a copy per case filled the disk), one damaged
    bad.mkdir()
    for f in data_dir.iterdir():
        (bad / f.name).symlink_to(f)
    (bad / "t10k-labels-idx1-ubyte.gz").unlink(missing_ok=True)
    with gzip.open(bad / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\0" * 100)
    (tmp_path / "empty_data").mkdir()
    return tmp_path


def call(kind, argv, capsys):
    try:
        if kind in ("train", "keras"):
            rc = shared_cli.main("pytorch" if kind == "train" else "keras", lambda b, c: NoTraining, argv)
        else:
            rc = compare_cli.main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capsys.readouterr().err


T = "train"
C = "cli"
CASES = [
    # (what, kind, argv; {w} is the test's folder, must-contain substrings of the error line)
    ("unknown head", T, "--set head=softmax", ["head='softmax'", "choose one of"]),
    ("empty hidden", T, "--set hidden=", ["hidden is empty"]),
    ("zero-width hidden", T, "--set hidden=200,0", ["width 0", ">= 1"]),
    ("hidden not a number", T, "--set hidden=abc", ["hidden='abc'"]),
    ("negative learning rate", T, "--set lr=-1", ["lr=-1", "must be"]),
    ("NaN learning rate", T, "--set lr=nan", ["lr=nan", "finite"]),
    ("learning rate not a number", T, "--set lr=fast", ["lr='fast'"]),
    ("momentum above 1", T, "--set momentum=1.5", ["momentum=1.5", "must be"]),
    ("batch size 0", T, "--set batch_size=0", ["batch_size=0"]),
    ("zero epochs", T, "--set epochs=0", ["epochs=0"]),
    ("unknown optimizer", T, "--set optimizer=lbfgs", ["optimizer='lbfgs'", "sgd, adam, adamw, rmsprop"]),
    ("unknown dtype", T, "--set dtype=float16", ["dtype='float16'", "float32"]),
    ("unknown config key", T, "--set learning_rate=0.1", ["learning_rate", "known keys"]),
    ("--set without =", T, "--set lr", ["'lr'", "key=value"]),
    ("unknown init", T, "--set init=he", ["init='he'", "shared"]),
    ("unknown update rule", T, "--set update_rule=adamw", ["update_rule='adamw'", "torch"]),
    ("unknown ops", T, "--set ops=fast", ["ops='fast'", "exact"]),
    ("nesterov without momentum", T, "--set nesterov=true --set momentum=0", ["nesterov=true", "momentum > 0"]),
    ("negative seed", T, "--seed -1", ["seed=-1", "between"]),
    ("negative epochs flag", T, "--epochs -3", ["epochs=-3"]),
    ("epochs not an integer", T, "--epochs three", ["--epochs", "'three'"]),
    ("unknown preset", T, "--preset huge", ["'huge'", "standard"]),
    ("missing config file", T, "--config {w}/missing.json", ["missing.json", "cannot read"]),
    ("config not JSON", T, "--config {w}/bad.json", ["not valid JSON"]),
    ("config not an object", T, "--config {w}/list.json", ["object of key: value"]),
    ("config with unknown key", T, "--config {w}/unknown.json", ["learning_rate", "known keys"]),
    ("config with a bad value", T, "--config {w}/badvalue.json", ["lr='fast'"]),
    ("unknown device", T, "--device tpu", ["--device", "'tpu'", "cpu"]),
    ("unknown flag", T, "--learning-rate 0.1", ["--learning-rate", "--help"]),
    ("negative --keep-checkpoints", T, "--keep-checkpoints -1", ["--keep-checkpoints -1", "positive"]),
    ("--out under a regular file", T, "--out {w}/a_file/run", ["a_file", "write"]),
    ("--out an existing non-run folder", T, "--out {w}/not_a_run", ["not_a_run", "not a run directory"]),
    ("--out an existing run without --resume", T, "--out {w}/a_run", ["a_run", "--resume"]),
    ("--resume with another config", T, "--out {w}/a_run --resume", ["a_run", "different config"]),
    ("--data-dir that does not exist", T, "--data-dir {w}/nowhere", ["nowhere"]),
    ("--data-dir without the files", T, "--data-dir {w}/empty_data", ["empty_data"]),
    ("--data-dir with a damaged file", T, "--data-dir {w}/bad_data", ["t10k-labels-idx1-ubyte"]),
    ("a config too large for memory", T, "--set hidden=100000,100000", ["needs about", "lower hidden=100000,100000"]),
    ("unknown host_sync", T, "--set host_sync=never", ["host_sync='never'", "epoch, step"]),
    ("steps_per_execution 0", T, "--set steps_per_execution=0", ["steps_per_execution=0", "between 1"]),
    ("unknown compile", T, "--set compile=xla", ["compile='xla'", "native, on, off"]),
    ("float8 dtype", T, "--set dtype=float8", ["dtype='float8'", "float32, float64, bfloat16"]),
    ("unknown mixed precision", T, "--set mixed_precision=fp8", ["mixed_precision='fp8'", "off, bfloat16, float16"]),
    (
        "mixed precision in float64",
        T,
        "--set mixed_precision=bfloat16 --set dtype=float64",
        ["mixed_precision=bfloat16", "dtype=float32", "dtype=float64"],
    ),
    (
        "mixed precision with pure bfloat16",
        T,
        "--set mixed_precision=float16 --set dtype=bfloat16",
        ["mixed_precision=float16", "dtype=bfloat16"],
    ),
    (
        "compiled step with features",
        T,
        "--set compile=step --set dropout=0.2 --set optimizer=adam",
        ["compile=step", "dropout, optimizer", "compile=on"],
    ),
    ("dropout rate 1", T, "--set dropout=1", ["dropout=1.0", "in [0, 1)"]),
    ("dropout not a number", T, "--set dropout=half", ["dropout='half'", "a number"]),
    ("unknown dropout_masks", T, "--set dropout=0.2 --set dropout_masks=numpy", ["dropout_masks='numpy'", "shared"]),
    ("shared masks without dropout", T, "--set dropout_masks=shared", ["dropout_masks", "dropout > 0"]),
    ("batchnorm not a boolean", T, "--set batchnorm=maybe", ["batchnorm='maybe'", "true or false"]),
    ("bn_momentum 0", T, "--set batchnorm=true --set bn_momentum=0", ["bn_momentum=0.0", "(0, 1] or native"]),
    (
        "bn_momentum not a number",
        T,
        "--set batchnorm=true --set bn_momentum=0.99x",
        ["bn_momentum='0.99x'", "or native"],
    ),
    ("bn_eps negative", T, "--set batchnorm=true --set bn_eps=-1e-5", ["bn_eps=-1e-05", "> 0 or native"]),
    ("bn keys without batchnorm", T, "--set bn_eps=1e-5", ["bn_eps has no effect", "batchnorm=true"]),
    ("ln_eps without layernorm", T, "--set ln_eps=1e-5", ["ln_eps has no effect", "layernorm=true"]),
    ("layernorm on the cnn", T, "--set model=cnn --set layernorm=true", ["model=cnn has no place for layernorm"]),
    ("downsample on the mlp", T, "--set downsample=stride", ["downsample has no effect without model=cnn"]),
    ("rnn_units on the mlp", T, "--set rnn_units=64", ["rnn_units has no effect", "model=gru or model=lstm"]),
    ("lstm_bias on the gru", T, "--set model=gru --set lstm_bias=single", ["lstm_bias has no effect", "model=lstm"]),
    ("hidden on the gru", T, "--set model=gru --set hidden=64", ["model=gru has no place for hidden", "rnn_units=128"]),
    ("rnn_units zero", T, "--set model=lstm --set rnn_units=0", ["rnn_units=0", "between 1 and 4096"]),
    (
        "stride padding with pooling",
        T,
        "--set model=cnn --set stride_padding=same",
        ["stride_padding has no effect", "downsample=stride"],
    ),
    (
        "unknown stride padding",
        T,
        "--set model=cnn --set downsample=stride --set stride_padding=valid",
        ["stride_padding", "same"],
    ),
    (
        "unknown bn_running_var",
        T,
        "--set batchnorm=true --set bn_running_var=sample",
        ["bn_running_var='sample'", "unbiased"],
    ),
    ("negative weight decay", T, "--set weight_decay=-0.1", ["weight_decay=-0.1", ">= 0"]),
    ("native weight decay without adamw", T, "--set weight_decay=native", ["weight_decay=native", "optimizer=adamw"]),
    ("decay form without decay", T, "--set weight_decay_form=coupled", ["weight_decay_form", "weight_decay > 0"]),
    (
        "unknown decay form",
        T,
        "--set weight_decay=0.1 --set weight_decay_form=l2",
        ["weight_decay_form='l2'", "decoupled"],
    ),
    (
        "coupled AdamW",
        T,
        "--set optimizer=adamw --set weight_decay=0.01 --set weight_decay_form=coupled",
        ["optimizer=adamw", "optimizer=adam with weight_decay_form=coupled"],
    ),
    ("negative clip norm", T, "--set clip_norm=-1", ["clip_norm=-1.0", ">= 0"]),
    ("clip scope without clip norm", T, "--set clip_scope=global", ["clip_scope", "clip_norm > 0"]),
    ("unknown clip scope", T, "--set clip_norm=1 --set clip_scope=layer", ["clip_scope='layer'", "per_variable"]),
    ("unknown schedule", T, "--set lr_schedule=linear", ["lr_schedule='linear'", "cosine"]),
    ("schedule unit without schedule", T, "--set lr_schedule_unit=step", ["lr_schedule_unit", "lr_schedule=cosine"]),
    (
        "step keys without the step schedule",
        T,
        "--set lr_schedule=cosine --set lr_step_gamma=0.5",
        ["has no effect without lr_schedule=step"],
    ),
    ("lr_step_epochs 0", T, "--set lr_schedule=step --set lr_step_epochs=0", ["lr_step_epochs=0", "between 1"]),
    ("label smoothing 1", T, "--set label_smoothing=1", ["label_smoothing=1.0", "in [0, 1)"]),
    (
        "label smoothing with the seed head",
        T,
        "--preset seed-report --set label_smoothing=0.1",
        ["label_smoothing", "head=logits"],
    ),
    ("cnn with MLP widths", T, "--set model=cnn --set hidden=100", ["model=cnn", "hidden", "channels=16,32"]),
    (
        "cnn with batch norm and dropout",
        T,
        "--set model=cnn --set batchnorm=true --set dropout=0.2",
        ["model=cnn", "batchnorm, dropout", "MLP only"],
    ),
    ("cnn compiled as the MLP's SGD step", T, "--set model=cnn --set compile=step", ["compile=step", "model"]),
    ("channels without the cnn", T, "--set channels=8", ["channels", "model=cnn"]),
    ("conv layout without the cnn", T, "--set conv_layout=nhwc", ["conv_layout", "model=cnn"]),
    ("unknown conv layout", T, "--set model=cnn --set conv_layout=nchw", ["conv_layout", "'nchw'", "nhwc"]),
    ("channels: five poolings", T, "--set model=cnn --set channels=8,8,8,8,8", ["channels=(8, 8, 8, 8, 8)", "1 to 4"]),
    ("channels: zero", T, "--set model=cnn --set channels=0,8", ["channels=(0, 8)", "positive"]),
    ("unknown model", T, "--set model=resnet", ["model='resnet'", "mlp, cnn"]),
    ("unknown augmentation", T, "--set augment=flip,spin", ["augment='flip+spin'", "'spin'", "flip, vflip, rotate"]),
    ("rotation out of range", T, "--set augment=rotate --set rotate_degrees=270", ["rotate_degrees=270", "(0, 180]"]),
    (
        "rotation range without rotation",
        T,
        "--set augment=flip --set rotate_degrees=20",
        ["rotate_degrees", "augment=rotate"],
    ),
    (
        "translation out of range",
        T,
        "--set augment=translate --set translate_fraction=0.9",
        ["translate_fraction=0.9", "(0, 0.5]"],
    ),
    (
        "augment with the torchvision pipeline",
        T,
        "--set augment=flip --set pipeline=torchvision",
        ["augment", "pipeline=memory"],
    ),
    ("augmentation library without augmentation", T, "--set augment_impl=native", ["augment_impl", "augment"]),
    (
        "unknown augmentation library",
        T,
        "--set augment=flip --set augment_impl=pil",
        ["augment_impl", "'pil'", "native"],
    ),
    (
        "lockstep of the libraries' own augmentations",
        C,
        "lockstep --set augment=flip --set augment_impl=native",
        ["augment_impl=native", "augment_impl=shared", "augment-diff"],
    ),
    (
        "run --with lockstep of native augmentation",
        C,
        "run --with lockstep --set augment=flip --set augment_impl=native",
        ["augment_impl=native", "lockstep"],
    ),
    ("lockstep: unknown cell", C, "lockstep --cells 'dropout alone'", ["'dropout alone'", "matched"]),
    ("unknown Keras backend", "keras", "--backend theano", ["--backend", "'theano'", "tensorflow"]),
    ("run: --seeds not a number", C, "run --seeds many", ["--seeds 'many'", "comma-separated"]),
    ("run: repeated seeds", C, "run --seeds 1,1", ["--seeds '1,1'", "distinct"]),
    ("run: unknown framework", C, "run --frameworks pytorch,mxnet", ["'mxnet'", "pytorch, keras"]),
    ("run: one contestant", C, "run --frameworks pytorch", ["at least two contestants"]),
    ("run: unknown Keras backend", C, "run --keras-backends cntk", ["'cntk'", "torch, jax"]),
    ("run: margin 0", C, "run --margin 0", ["--margin 0", "between 0 and 100"]),
    ("run: unknown --with", C, "run --with speed", ["--with 'speed'", "defaults"]),
    ("run: --lockstep-steps too small", C, "run --lockstep-steps 1", ["--lockstep-steps 1", "at least 3"]),
    ("run: bad --set", C, "run --set lr=-0.1", ["lr=-0.1"]),
    ("run: --out under a regular file", C, "run --out {w}/a_file/c --epochs 1", ["a_file", "write"]),
    ("run: --out a non-comparison folder", C, "run --out {w}/not_a_run --epochs 1", ["not_a_run", "not a comparison"]),
    ("run: unknown engine", C, "run --engine spark", ["--engine 'spark'", "local, ray"]),
    ("run: --pack without ray", C, "run --pack", ["--pack", "--engine ray"]),
    (
        "run: unreachable Ray head",
        C,
        "run --engine ray --ray-address 127.0.0.1:1 --epochs 1",
        ["127.0.0.1:1", "ray start --head"],
    ),
    ("run: malformed Ray address", C, "run --engine ray --ray-address cluster --epochs 1", ["'cluster'", "HOST:PORT"]),
    ("run: malformed --grid", C, "run --grid lr", ["--grid 'lr'", "key=v1,v2"]),
    ("ablate: unknown engine", C, "ablate --engine spark", ["--engine 'spark'", "local, ray"]),
    ("lockstep: unknown backend", C, "lockstep --backends tf", ["--backends 'tf'", "tensorflow"]),
    ("lockstep: unknown dtype", C, "lockstep --dtypes float16", ["--dtypes 'float16'", "float64, float32, bfloat16"]),
    (
        "lockstep: mixed precision in float64",
        C,
        "lockstep --set mixed_precision=bfloat16 --dtypes float64,float32",
        ["mixed_precision=bfloat16", "--dtypes float32", "float64,float32"],
    ),
    ("lockstep: one step", C, "lockstep --steps 1", ["--steps 1", "at least 3"]),
    ("lockstep: bad --set-keras", C, "lockstep --set-keras slope=0.2", ["slope", "known keys"]),
    ("ablate: unknown cell", C, "ablate --cells 'matched colour'", ["'matched colour'", "matched init"]),
    ("defaults: unknown backend", C, "defaults --backends tf", ["--backends 'tf'", "tensorflow"]),
    ("report: missing folder", C, "report {w}/nowhere", ["nowhere"]),
    ("report: not a comparison", C, "report {w}/not_a_run", ["not_a_run"]),
    ("diff: missing folders", C, "diff {w}/nowhere {w}/not_a_run", ["nowhere"]),
    ("augment-diff: shift out of range", C, "augment-diff --shift 0.9,0", ["--shift '0.9,0'", "[-0.5, 0.5]"]),
    ("augment-diff: one number for the shift", C, "augment-diff --shift 0.1", ["--shift '0.1'", "ROWS,COLUMNS"]),
    ("augment-diff: unknown backend", C, "augment-diff --backend tf", ["--backend 'tf'", "tensorflow"]),
    ("augment-diff: no images", C, "augment-diff --images 0", ["--images 0", "1 <= images <= 100"]),
    ("bench: unknown contestant", C, "bench --contestants pytorch,mxnet", ["'pytorch,mxnet'", "keras-jax"]),
    ("bench: bad batch sizes", C, "bench --batch-sizes 64,big", ["--batch-sizes '64,big'", "positive integers"]),
    ("bench: zero reps", C, "bench --reps 0", ["--reps 0", "reps >= 1"]),
    ("bench: batch larger than the data", C, "bench --batch-sizes 70000", ["batch_size=70000", "between 1 and 60000"]),
    ("--data-dir missing, --out in new folders", T, "--out {w}/new/deeper/run --data-dir {w}/nowhere", ["nowhere"]),
    ("run: --data-dir that does not exist", C, "run --out {w}/new/c --data-dir {w}/nowhere --epochs 1", ["nowhere"]),
    ("lockstep: --data-dir that does not exist", C, "lockstep --out {w}/new/ls --data-dir {w}/nowhere", ["nowhere"]),
    ("ablate: --data-dir that does not exist", C, "ablate --out {w}/new/ab --data-dir {w}/nowhere", ["nowhere"]),
    ("bench: --data-dir that does not exist", C, "bench --out {w}/new/b --data-dir {w}/nowhere", ["nowhere"]),
    ("tensorboard: not a comparison", C, "tensorboard {w}/not_a_run {w}/new/tb", ["not_a_run"]),
    ("unknown command", C, "train2", ["'train2'", "choose from"]),
    ("train without --framework", C, "train --out x", ["--framework"]),
]


@pytest.mark.parametrize("what,kind,argv,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(what, kind, argv, needles, world, data_dir, capsys, monkeypatch):
    args = [a.replace("{w}", str(world)) for a in _split(argv)]
    if kind in (T, "keras") and "--out" not in args:
        args += ["--out", str(world / "out")]
    if "--data-dir" not in args and args[0] in ("run", "lockstep", "ablate"):
        args += ["--data-dir", str(data_dir), "--offline"]
    if kind in (T, "keras") and "--data-dir" not in args:
        args += ["--data-dir", str(data_dir)]
    monkeypatch.chdir(world)
    before = tree(world)
    rc, err = call(kind, args, capsys)
    assert tree(world) == before, f"a refused command left new paths: {sorted(tree(world) - before)}"
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 2, err
    assert "Traceback" not in err
    last = lines[-1]
    assert last.startswith("error:"), err
    assert sum("error" in l for l in lines) <= 1, err
    for n in needles:
        assert n in last, f"{n!r} not in {last!r}"


def tree(root):
    """Every path under root (the test's folder is also the working directory: default outputs land there)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _split(text):
    import shlex

    return shlex.split(text)


def test_catalogue_has_forty_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 40
    assert len({(c[1], c[2]) for c in CASES}) == len(CASES)


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="a CUDA GPU is here: device=cuda is not absent")
def test_an_absent_device_is_refused_and_leaves_nothing(tmp_path):
    """The real implementations and the harness (not the stand-in): device=cuda on a machine without one."""
    runs = [
        [sys.executable, "-m", "pytorch_impl", "--device", "cuda", "--out", str(tmp_path / "new" / "run")],
        [
            sys.executable,
            "-m",
            "keras_impl",
            "--backend",
            "jax",
            "--device",
            "cuda",
            "--out",
            str(tmp_path / "new" / "run"),
        ],
        [
            sys.executable,
            "-m",
            "compare.cli",
            "run",
            "--device",
            "cuda",
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "new" / "c"),
        ],
    ]
    for cmd in runs:
        r = subprocess.run(cmd, env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
        last = [l for l in r.stderr.splitlines() if l.strip()][-1]
        assert r.returncode == 2 and last.startswith("error:") and "Traceback" not in r.stderr, r.stderr
        assert "device=cuda was asked for" in last and "no CUDA GPU" in last, last
        assert list(tmp_path.iterdir()) == [], cmd
