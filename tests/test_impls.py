"""The two implementations on real data, each in its own process."""

import ast
import json
import math

import numpy as np
import pytest

from conftest import ONE_EPOCH, REPO
from helpers import metrics, predict, python, train
from shared import config as cfg
from shared import twins

TIMING = ("train_seconds", "eval_seconds", "samples_per_second")


def defs(path):
    """Public top-level functions ('name(parameters)') and classes ('class Name') in order (a _private
    helper belongs to one side only)."""
    out = []
    for n in ast.parse(path.read_text()).body:
        if isinstance(n, ast.FunctionDef) and not n.name.startswith("_"):
            out.append(f"{n.name}({', '.join(a.arg for a in n.args.args)})")
        elif isinstance(n, ast.ClassDef) and not n.name.startswith("_"):
            out.append(f"class {n.name}")
    return out


def test_packages_mirror_each_other_and_keep_the_twin_contract():
    torch_files = sorted(p.name for p in (REPO / "pytorch_impl").glob("*.py"))
    keras_files = sorted(p.name for p in (REPO / "keras_impl").glob("*.py"))
    # pipeline.py is the report's torchvision DataLoader: PyTorch-only by nature
    assert [f for f in torch_files if f != "pipeline.py"] == keras_files
    for name in twins.CONTRACT:  # names, order and parameter names (shared/twins.py)
        for pkg in ("pytorch_impl", "keras_impl"):
            assert defs(REPO / pkg / name) == twins.expected(pkg, name), f"{pkg}/{name}"
    assert set(twins.CONTRACT) == {"model.py", "train.py", "defaults.py", "cli.py"}
    for pkg, other in (("pytorch_impl", "keras_impl"), ("keras_impl", "pytorch_impl")):
        for f in (REPO / pkg).glob("*.py"):
            assert other not in imports(f), f"{f} imports {other}"


def test_the_contract_check_can_fail(tmp_path):
    """A twin with a parameter renamed, or one function moved, no longer keeps the contract."""
    src = (REPO / "keras_impl" / "model.py").read_text()
    renamed = tmp_path / "renamed.py"
    renamed.write_text(src.replace("def translate(layer, config)", "def translate(spec, config)"))
    assert defs(renamed) != twins.expected("keras_impl", "model.py")
    moved = tmp_path / "moved.py"
    moved.write_text(src.replace("def bn_eps(config)", "def _bn_eps(config)") + "\n\ndef bn_eps(config):\n    pass\n")
    assert defs(moved) != twins.expected("keras_impl", "model.py")


def imports(path):
    names = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            names |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module:
            names.add(n.module.split(".")[0])
    return names


def test_compare_imports_no_framework():
    out = python(
        "import sys, compare, compare.cli; import importlib, pkgutil\n"
        "for m in pkgutil.iter_modules(compare.__path__): importlib.import_module('compare.' + m.name)\n"
        "import shared.runner, shared.cli\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax', 'torchvision') if m in sys.modules))"
    )
    assert out.strip() == "[]"


PACKAGES = ("shared", "compare", "pytorch_impl", "keras_impl")


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports, at any depth of its code (lazy imports count too)."""
    files = {
        (f"{pkg}.{f.stem}" if f.stem != "__init__" else pkg): f
        for pkg in PACKAGES
        for f in sorted((REPO / pkg).glob("*.py"))
    }
    graph = {}
    for me, f in files.items():
        edges = set()
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.Import):
                edges |= {a.name for a in n.names}
            elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                # `from compare import report` imports the module compare.report; `from compare.report import x` compare.report
                edges |= {f"{n.module}.{a.name}" if f"{n.module}.{a.name}" in files else n.module for a in n.names}
        graph[me] = {e for e in edges if e in files and e != me}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, once each (as the path back to where it started)."""
    found, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for e in sorted(graph[m]):
            if state.get(e) == "open":
                found.append(path[path.index(e) :] + [e])
            elif e not in state:
                visit(e, path + [e])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_point_one_way():
    graph = import_graph()
    assert "compare.render" in graph["compare.report"] and "shared.atomic" in graph["shared.rundir"]  # it reads imports
    assert cycles(graph) == [], "import circles: " + "; ".join(" -> ".join(c) for c in cycles(graph))


@pytest.mark.parametrize("who", ["pytorch", "keras"])
def test_standard_preset_reaches_85_percent_in_3_epochs(who, tmp_path):
    train(who, tmp_path / "run", "--epochs", "3")
    rows = metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["test_acc"] >= 0.85, rows[-1]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "completed"
    print(
        f"{who}: test acc after 3 epochs {rows[-1]['test_acc']:.4f}, epoch seconds "
        f"{[round(r['train_seconds'], 2) for r in rows]}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("who", ["pytorch", "keras"])
def test_cnn_reaches_85_percent_in_2_epochs_and_records_its_size(who, tmp_path):
    """The Done-when of model=cnn (issue 19): >= 85% after 2 epochs of the standard schedule, and the
    run records the parameter count of the model it built (20,490)."""
    train(who, tmp_path / "run", "--epochs", "2", "--set", "model=cnn")
    assert metrics(tmp_path / "run")[-1]["test_acc"] >= 0.85
    env = json.loads((tmp_path / "run" / "run.json").read_text())["environment"]
    assert env["parameters"] == 20490 and "CNN" in env["network"]


# Keras' seed head agrees with PyTorch's to 1e-10 in the default float64 lockstep (test_why); its bounds: -m slow
@pytest.mark.parametrize("who", ["pytorch", pytest.param("keras", marks=pytest.mark.slow)])
def test_seed_head_respects_its_bounds(who, tmp_path):
    run = tmp_path / "run"
    train(who, run, "--preset", "seed-report", "--epochs", "1")
    floor = math.log(9 + math.e) - 1
    for r in metrics(run):
        assert r["train_loss"] >= floor and r["test_loss"] >= floor
    predict(who, run, run / "weights" / "final.npz", tmp_path / "out.npy")
    logp = np.load(tmp_path / "out.npy")
    assert logp.shape == (10000, 10)
    assert np.allclose(np.exp(logp).sum(1), 1, atol=1e-5)
    assert np.exp(logp).max() <= math.e / (math.e + 9) + 1e-6
    assert np.exp(logp).min() >= 1 / (1 + 9 * math.e) - 1e-6


# the end-to-end comparison (test_compare) checks each framework's runs against the same runs made in
# processes of their own, and the resume tests (test_reliability) a killed run against a whole one
@pytest.mark.slow
@pytest.mark.parametrize("who", ["pytorch", "keras"])
def test_same_seed_same_metrics_in_two_processes(who, tmp_path, trained):
    first = trained(who, *ONE_EPOCH)
    train(who, tmp_path / "b", *ONE_EPOCH)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    assert strip(metrics(first)) == strip(metrics(tmp_path / "b"))
    a, b = np.load(first / "weights" / "final.npz"), np.load(tmp_path / "b" / "weights" / "final.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)


@pytest.mark.parametrize("who", ["pytorch", "keras"])
def test_huge_learning_rate_diverges_cleanly(who, tmp_path):
    r = train(who, tmp_path / "run", "--epochs", "2", "--set", "lr=1e12", check=False)
    assert r.returncode == 3
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "diverged"
    # Keras' fit() reads the loss once per epoch: the epoch is known, the step is not
    assert ("at epoch 1, step" if who == "pytorch" else "at epoch 1, a step") in status["message"]
    assert "learning rate" in status["message"]
    assert "diverged" in r.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "head=softmax"], "head='softmax' is not allowed"),
    ],
)  # an absent device: tests/test_bad_input.py, for both implementations and the harness
def test_bad_input_is_refused_before_training(args, message, tmp_path):
    r = train("pytorch", tmp_path / "run", *args, check=False)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_refuses_to_overwrite_a_run(trained):
    run = trained("pytorch", *ONE_EPOCH)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    r = train("pytorch", run, *ONE_EPOCH, check=False)
    assert r.returncode == 2 and "pass --resume" in r.stderr
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before, "the refused command touched the run"


def test_torchvision_pipeline_gives_identical_batches():
    out = python("""
import numpy as np, torch
from shared import config as cfg, data as fdata, batches
from pytorch_impl import train as T
for scaling in ("unit", "standardize"):
    c = cfg.resolve("standard", [f"scaling={scaling}", "pipeline=torchvision"])
    d = fdata.load()
    m, s = fdata.pixel_stats(d.train_images)
    state = T.build(c, T.setup(c, 2))
    t = T.to_device(state, fdata.scale(d.train_images, c.scaling, m, s, c.dtype), d.train_labels.astype(np.int64),
                    fdata.scale(d.test_images, c.scaling, m, s, c.dtype), d.test_labels.astype(np.int64), d)
    idx = batches.epoch_batches(c.seed, 1, 60000, c.batch_size)[:20] + batches.epoch_batches(c.seed, 1, 60000, c.batch_size)[-1:]
    tv = list(T.batches(state, t, idx))
    state.config = cfg.resolve("standard", [f"scaling={scaling}"])
    mem = list(T.batches(state, t, idx))
    assert len(tv) == len(mem) == 21
    for (a, ya), (b, yb) in zip(tv, mem):
        assert a.dtype == b.dtype and torch.equal(a, b) and torch.equal(ya, yb)
print("ok")
""")
    assert out.strip() == "ok"


def test_cnn_in_channels_last_memory_is_the_same_function():
    """conv_layout=nhwc: the same weights give the same outputs and gradients (float64, to rounding) with
    the feature maps in NHWC memory, and the run records the layout it read from the feature maps."""
    out = python("""
import numpy as np, torch
from shared import config as cfg
from pytorch_impl import train as T
states = {}
for layout in ("native", "nhwc"):
    c = cfg.resolve("standard", ["model=cnn", "dtype=float64", f"conv_layout={layout}"])
    torch.manual_seed(0)
    states[layout] = T.build(c, T.setup(c, 1))
x = torch.rand(64, 784, dtype=torch.float64); y = torch.randint(0, 10, (64,))
a, b = states["native"], states["nhwc"]
assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
for s in (a, b):
    s.model.zero_grad(); s.loss_fn(s.model(x), y).backward()
fa, fb = a.model(x), b.model(x)
ga, gb = [p.grad for p in a.model.parameters()], [p.grad for p in b.model.parameters()]
assert b.model[4].weight.is_contiguous(memory_format=torch.channels_last) and not b.model[4].weight.is_contiguous()
print(float((fa - fb).abs().max()), max(float((p - q).abs().max()) for p, q in zip(ga, gb)),
      T.precision(a, x[:2])["feature_layout"], T.precision(b, x[:2])["feature_layout"])
""")
    forward, grads, native, nhwc = out.split()
    assert float(forward) < 1e-12 and float(grads) < 1e-12 and (native, nhwc) == ("NCHW", "NHWC")


@pytest.mark.slow  # the libraries' own loaders over our files: a data check, opt-in for the default run's time
def test_torchvision_and_keras_loaders_match_ours(tmp_path):
    """torchvision.datasets.FashionMNIST and keras.datasets.fashion_mnist.load_data() over the same
    files (laid out where each expects them, no download) return our arrays exactly."""
    import shutil
    from conftest import real_data_dir
    from shared import data as fdata

    ours = fdata.load(real_data_dir())
    np.savez(tmp_path / "ours.npz", a=ours.train_images, b=ours.train_labels, c=ours.test_images, d=ours.test_labels)
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"  # torchvision reads the extracted files
    raw.mkdir(parents=True)
    for name in fdata.KEYS:
        (raw / name).write_bytes(fdata.read_idx_bytes(real_data_dir() / f"{name}.gz"))
    python(f"""
import numpy as np, torchvision
o = np.load(r"{tmp_path / "ours.npz"}")
tr = torchvision.datasets.FashionMNIST(r"{tmp_path / "tv"}", train=True, download=False)
te = torchvision.datasets.FashionMNIST(r"{tmp_path / "tv"}", train=False, download=False)
assert np.array_equal(tr.data.numpy(), o["a"]) and np.array_equal(tr.targets.numpy(), o["b"])
assert np.array_equal(te.data.numpy(), o["c"]) and np.array_equal(te.targets.numpy(), o["d"])
""")
    kh = tmp_path / "kh"
    shutil.copytree(real_data_dir(), kh / "datasets" / "fashion-mnist")
    python(f"""
import os
os.environ["KERAS_HOME"] = r"{kh}"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
o = np.load(r"{tmp_path / "ours.npz"}")
(a, b), (c, d) = keras.datasets.fashion_mnist.load_data()
for x, y in ((a, "a"), (b, "b"), (c, "c"), (d, "d")):
    assert np.array_equal(x, o[y]), y
""")


def test_weights_round_trip_pytorch_to_keras_and_back(tmp_path, trained):
    run = trained("pytorch", *ONE_EPOCH)
    w = run / "weights" / "final.npz"
    predict("pytorch", run, w, tmp_path / "torch.npy")
    predict("keras", run, w, tmp_path / "keras.npy", export=tmp_path / "from_keras.npz")
    predict("pytorch", run, tmp_path / "from_keras.npz", tmp_path / "back.npy")
    t, k, back = (np.load(tmp_path / f) for f in ("torch.npy", "keras.npy", "back.npy"))
    assert np.abs(t - k).max() < 1e-4  # float32, two frameworks' matmul kernels
    assert np.array_equal(t.argmax(1), k.argmax(1)) or (t.argmax(1) != k.argmax(1)).mean() < 1e-3
    assert np.array_equal(t, back), "the weights survive the round trip exactly"
    predict("pytorch", run, w, tmp_path / "f64.npy", sets=["dtype=float64"])  # the run's config, one key changed
    f64 = np.load(tmp_path / "f64.npy")
    assert f64.dtype == np.float64 and 0 < np.abs(f64 - t).max() < 1e-4


def test_the_port_check_table_reads_its_records():
    import port_check

    record = {
        "run": "keras-seed0",
        "images": 10000,
        "source": "keras",
        "target": "pytorch",
        "config": cfg.resolve("standard", ["model=cnn", "downsample=stride"]).to_dict(),
        "correct_sets": ["stride_padding=same"],
        "source_accuracy": 0.8793,
        "ports": {
            "naive": {"accuracy": 0.1208, "other_class_than_source": 8754, "max_abs_output_difference": 22.0},
            "correct": {"accuracy": 0.8793, "other_class_than_source": 0, "max_abs_output_difference": 1.2e-5},
        },
    }
    text = port_check.block([record])
    assert "| keras: CNN conv16/2-conv32/2-dense10, keras-seed0 | keras | its own weights | 87.93% |" in text
    assert "| | pytorch | as is (each library's own conventions) | 12.08% | 8,754 of 10,000 | 2.20e+01 |" in text
    assert "| | pytorch | with stride_padding=same | 87.93% | 0 of 10,000 | 1.20e-05 |" in text

    # the naive gate-order port swaps a GRU's first two gate blocks (PyTorch r, z, n read as Keras z, r, h)
    layers = cfg.shared_init(cfg.resolve("standard", ["model=gru", "rnn_units=4"]))
    (k, b), (k2, b2) = layers[0], port_check._gate_swap(*layers[0])
    assert np.array_equal(k2[:, :4], k[:, 4:8]) and np.array_equal(b2[:, 4:8], b[:, :4])
    assert np.array_equal(k2[:, 8:], k[:, 8:]) and all(map(np.array_equal, port_check._gate_swap(k2, b2), (k, b)))


# float64 from shared weights in PyTorch and Keras-TF is what the default float64 lockstep tests train;
# here the other two backends by default, all four with -m slow
@pytest.mark.parametrize(
    "who",
    [
        pytest.param("pytorch", marks=pytest.mark.slow),
        pytest.param("keras", marks=pytest.mark.slow),
        "keras-jax",
        "keras-torch",
    ],
)
def test_float64_and_every_keras_backend(who, tmp_path):
    run = tmp_path / "run"
    train(
        who,
        run,
        "--epochs",
        "1",
        "--set",
        "dtype=float64",
        "--set",
        "init=shared",
        "--set",
        "hidden=64,64",
        "--set",
        "batch_size=500",
    )  # 120 steps: 83% here
    meta = json.loads((run / "run.json").read_text())
    assert meta["config"]["dtype"] == "float64" and meta["environment"]["tf32"] is False
    if who.startswith("keras"):
        assert meta["backend"] == meta["environment"]["backend"] == {"keras": "tensorflow"}.get(who, who[6:])
    final = np.load(run / "weights" / "final.npz")
    assert final["kernel_0"].dtype == np.float64
    init = np.load(run / "weights" / "initial.npz")
    from shared import config as cfg

    assert np.array_equal(init["kernel_0"], cfg.shared_init(cfg.resolve("standard", ["hidden=64,64"]))[0][0]), (
        "shared init loaded exactly"
    )
    assert metrics(run)[0]["test_acc"] > 0.8


# Keras below float32 by default: mixed float16 on JAX (Keras' own policy and LossScaleOptimizer, whatever the
# backend); TensorFlow's and the pure bfloat16 run with -m slow: TensorFlow's float16 products are slow on a
# CPU (the test took 163 s on a 2-core VM, on JAX 15 s)
@pytest.mark.parametrize(
    "who,setting",
    [
        ("pytorch", "dtype=bfloat16"),
        pytest.param("keras", "dtype=bfloat16", marks=pytest.mark.slow),
        ("pytorch", "mixed_precision=float16"),
        ("keras-jax", "mixed_precision=float16"),
        pytest.param("keras", "mixed_precision=float16", marks=pytest.mark.slow),
    ],
)
def test_below_float32_trains_and_records_what_it_computed_in(who, setting, tmp_path):
    """Pure bfloat16 (weights and computation) and mixed float16 (float32 weights, float16 layers, loss
    scaling), each library's own machinery; the run records the dtype each layer, the loss and the
    weights had in the running program, and the loss scaler's start."""
    run = tmp_path / "run"
    train(who, run, "--epochs", "1", "--set", "hidden=64,64", "--set", "threads=1", "--set", setting)
    assert metrics(run)[-1]["test_acc"] > 0.75
    p = json.loads((run / "run.json").read_text())["environment"]["precision"]
    dense = [l for l in p["layers"] if l.split(":")[0] in ("Linear", "Dense")]
    low = setting.split("=")[1]
    assert len(dense) == 3 and all(l.endswith(low) for l in dense), p
    if setting.startswith("dtype"):
        assert p["weights"] == p["loss"] == "bfloat16" and "loss_scale" not in p
    else:  # float32 weights; the loss in float32 (autocast's list / Keras' loss); dynamic loss scaling
        assert p["weights"] == p["loss"] == "float32"
        scale = p["loss_scale"]["initial"]
        assert scale > 1 and np.log2(scale) == int(np.log2(scale)) and p["loss_scale"]["growth_interval"] > 0


TRANSLATE = """
import json
from dataclasses import replace
from shared import config as cfg, plan
from {impl} import model
configs = [cfg.resolve("standard", ["batchnorm=true", "layernorm=true", "dropout=0.2", "head=seed"], {{}}), cfg.resolve("standard", ["model=cnn"], {{}}),
           cfg.resolve("standard", ["model=gru"], {{}}), cfg.resolve("standard", ["model=lstm"], {{}})]
layers = {{l.kind: (l, c) for c in configs for l in plan.network(c)}}
built = {{kind: type(model.translate(l, c)).__name__ for kind, (l, c) in layers.items()}}
try:
    model.translate(replace(next(iter(layers.values()))[0], kind="nonsense"), configs[0])
    refused = ""
except ValueError as e:
    refused = str(e)
tables = {{"layers": sorted(model.LAYERS), "optimizers": sorted(model.OPTIMIZERS), "schedules": sorted(model.SCHEDULES),
          "losses": sorted(model.LOSSES), "updates": sorted(map(list, model.UPDATES))}}
print(json.dumps({{"kinds": sorted(layers), "built": built, "refused": refused, "tables": tables}}))
"""


@pytest.mark.parametrize("impl", ["pytorch_impl", "keras_impl"])
def test_translate_covers_exactly_the_plans_kinds_and_refuses_others(impl):
    """Every kind the plan emits has a translation; an unknown kind is an error, never a silent LogSoftmax."""
    from shared import plan, training

    out = json.loads(python(TRANSLATE.format(impl=impl)).strip().splitlines()[-1])
    assert out["kinds"] == sorted(plan.KINDS)
    assert set(out["built"]) == set(plan.KINDS) and "LogSoftmax" not in (out["built"]["sigmoid"], out["built"]["dense"])
    assert "'nonsense'" in out["refused"] and "plan.KINDS" in out["refused"]
    # and the training half: each twin's tables cover exactly the specs' kinds (shared/training.py)
    got = out["tables"]
    assert got["layers"] == sorted(plan.KINDS)
    assert got["optimizers"] == sorted(training.OPTIMIZERS) == sorted(cfg.CHOICES["optimizer"])
    assert got["schedules"] == sorted(training.SCHEDULES) == sorted(cfg.CHOICES["lr_schedule"])
    assert got["losses"] == sorted(training.HEADS) == sorted(cfg.CHOICES["head"])
    families = {f for f, _ in training.OPTIMIZERS.values()}
    assert got["updates"] == sorted([f, r] for f in families for r in training.RULES)
