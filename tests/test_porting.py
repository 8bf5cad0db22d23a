"""The porting features (batch norm, dropout, weight decay, clipping, schedules, AdamW, label smoothing):
one framework-free plan, two translations that agree to 1e-10 in float64 when everything is matched,
and causes named one at a time when not."""

import json

import numpy as np
import pytest

import compare
from conftest import REPO
from helpers import python
from compare import ablate, causes, lockstep
from shared import config as cfg
from shared import plan, training, weights

ALL = [
    "batchnorm=true",
    "layernorm=true",
    "dropout=0.2",
    "weight_decay=5e-4",
    "clip_norm=1",
    "lr_schedule=cosine",
    "label_smoothing=0.1",
]
SMALL = ["hidden=32,16", "threads=1"]


@pytest.fixture(autouse=True)
def real_data_env(data_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def test_the_plan_lists_the_layers_in_order():
    kinds = lambda *sets: [l.kind for l in plan.network(cfg.resolve("standard", list(sets)))]
    assert kinds() == ["dense", "leaky_relu", "dense", "leaky_relu", "dense"]
    assert kinds("model=cnn", "downsample=stride", "channels=4") == [
        "reshape",
        "conv",
        "leaky_relu",
        "flatten",
        "dense",
    ]
    assert kinds("batchnorm=true", "layernorm=true", "dropout=0.5", "hidden=7", "head=seed") == [
        "dense",
        "batchnorm",
        "layernorm",
        "leaky_relu",
        "dropout",
        "dense",
        "sigmoid",
        "log_softmax",
    ]
    assert [
        l.width for l in plan.network(cfg.resolve("standard", ["hidden=7,5", "dropout=0.1"])) if l.kind == "dropout"
    ] == [7, 5]


def test_the_cnn_plan_and_its_parameters():
    """model=cnn: conv+LeakyReLU+pool per channels entry, flatten, Dense; neutral kernel shapes and the
    parameter count as written out by hand (3x3 kernels, 'same' padding, 28 -> 14 -> 7)."""
    c = cfg.resolve("standard", ["model=cnn", "head=seed"])
    assert [l.kind for l in plan.network(c)] == [
        "reshape",
        "conv",
        "leaky_relu",
        "maxpool",
        "conv",
        "leaky_relu",
        "maxpool",
        "flatten",
        "dense",
        "sigmoid",
        "log_softmax",
    ]
    assert [k for k, _, _ in plan.weight_shapes(c)] == [(3, 3, 1, 16), (3, 3, 16, 32), (7 * 7 * 32, 10)]
    assert plan.param_count(c) == (9 * 16 + 16) + (9 * 16 * 32 + 32) + (7 * 7 * 32 * 10 + 10) == 20490
    assert [a.shape for a in cfg.shared_init(c)[1]] == [(3, 3, 16, 32), (32,)]
    assert plan.param_count(cfg.resolve("standard")) == 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10


def test_cnn_float64_matched_agrees_through_the_neutral_layouts(tmp_path, data_dir):
    """The same neutral weights into both CNNs (NCHW in PyTorch, NHWC in Keras), on the same augmented
    images (augment_impl=shared): the outputs, gradients and weights after the steps agree to 1e-10 in
    float64, which holds only if kernels are transposed, PyTorch flattens its feature maps in Keras'
    (row, column, channel) order and both sides train on the same pixels."""
    c = cfg.resolve(
        "standard",
        [
            "model=cnn",
            "channels=4,8",
            "threads=1",
            "batch_size=64",
            "dtype=float64",
            "init=shared",
            "ops=exact",
            "update_rule=torch",
            "head=seed",
            "augment=flip,rotate,translate",
        ],
    )
    t = {
        who: lockstep._load(lockstep.run_side(who, c, tmp_path / who, 3, 1, str(data_dir)))
        for who in ("pytorch", "keras")
    }
    assert t["pytorch"]["act_0"].shape == t["keras"]["act_0"].shape == (64, 28, 28, 4)  # NHWC on both
    assert t["pytorch"]["w_0_0_k"].shape == (3, 3, 1, 4)
    d = causes.divergence(t["keras"], t["pytorch"])
    assert d["steps"] == 3 and d["final_max_rel"] <= causes.MATCHED_TOL, d["final_max_rel"]
    assert max(causes.step1_gradients(t["keras"], t["pytorch"])) < 1e-12
    assert d["final_max_rel"] > 0 or not np.array_equal(t["pytorch"]["w_3_0_k"], t["pytorch"]["w_0_0_k"])  # it trained


STRIDED = ["model=cnn", "channels=4,8", "downsample=stride", "threads=1", "batch_size=64", "dtype=float64"]
STRIDED += ["init=shared", "ops=exact", "update_rule=torch"]


def test_strided_cnn_matched_agrees(tmp_path, data_dir):
    """downsample=stride: with Keras' asymmetric 'same' padding on both sides the strided CNN agrees to
    1e-10 in float64."""
    matched = cfg.resolve("standard", [*STRIDED, "stride_padding=same"])
    assert [l.stride for l in plan.network(matched) if l.kind == "conv"] == [2, 2]
    assert "maxpool" not in [l.kind for l in plan.network(matched)]
    assert [k for k, _, _ in plan.weight_shapes(matched)][-1] == (7 * 7 * 8, 10)  # 28 -> 14 -> 7
    t = {
        who: lockstep._load(lockstep.run_side(who, matched, tmp_path / who, 2, 1, str(data_dir)))
        for who in ("pytorch", "keras")
    }
    assert t["pytorch"]["act_0"].shape == t["keras"]["act_0"].shape == (64, 14, 14, 4)
    d = causes.divergence(t["keras"], t["pytorch"])
    assert d["final_max_rel"] <= causes.MATCHED_TOL, d["final_max_rel"]


@pytest.mark.slow
def test_the_usual_port_of_a_strided_same_convolution_reads_other_pixels(tmp_path, data_dir):
    """PyTorch's usual port (padding=1, stride_padding=native) reads every window one pixel up and left of
    Keras' 'same' (stride_padding=same on the PyTorch side): its first feature map differs from step 1 at
    identical weights, inside the image and not only at its edge."""
    port, same = (cfg.resolve("standard", [*STRIDED, f"stride_padding={v}"]) for v in ("native", "same"))
    p, s = (
        lockstep._load(lockstep.run_side("pytorch", c, tmp_path / c.stride_padding, 2, 1, str(data_dir)))
        for c in (port, same)
    )
    assert causes._rel(p["act_0"], s["act_0"]) > 1e-2
    assert causes._rel(p["act_0"][:, 1:, 1:], s["act_0"][:, 1:, 1:]) > 1e-2


def test_the_recurrent_plans_and_their_neutral_weights(tmp_path):
    """model=gru/lstm: 28 rows into one recurrent layer, its last state into the output Dense; the neutral
    weights stack the input kernel above the recurrent one, [in + units, gates x units], with a [2, ...]
    bias; the parameter counts are nn.GRU's and nn.LSTM's (two biases) or Keras' LSTM's (one)."""
    gru, lstm = (cfg.resolve("standard", [f"model={m}", "head=seed"]) for m in ("gru", "lstm"))
    assert [l.kind for l in plan.network(gru)] == ["rows", "gru", "dense", "sigmoid", "log_softmax"]
    assert [(k, b) for k, b, _ in plan.weight_shapes(gru)] == [((28 + 128, 384), (2, 384)), ((128, 10), (10,))]
    assert plan.param_count(gru) == 3 * 128 * (28 + 128) + 2 * 384 + 1290
    single = cfg.resolve("standard", ["model=lstm", "lstm_bias=single"])
    assert plan.param_count(lstm) - plan.param_count(single) == 4 * 128
    layers = cfg.shared_init(lstm)
    assert np.all(layers[0][1][1] == 0) and np.all(layers[0][1][0] != 0)  # one bias: the recurrent row at 0
    weights.save(tmp_path / "w.npz", layers)
    back = weights.load(tmp_path / "w.npz")
    assert all(np.array_equal(a, b) for (ka, ba), (kb, bb) in zip(layers, back) for a, b in ((ka, kb), (ba, bb)))
    k, b = layers[0]
    with pytest.raises(ValueError, match="do not chain"):  # a GRU-sized kernel under an LSTM's bias
        weights.save(tmp_path / "bad.npz", [(k[:, :384], b), layers[1]])
        weights.load(tmp_path / "bad.npz")


RECURRENT = ["rnn_units=16", "threads=1", "batch_size=64", "dtype=float64", "init=shared", "ops=exact"]
RECURRENT += ["update_rule=torch"]
ALIKE = {"gru": [], "lstm": ["lstm_bias=single"]}  # everything matched


def test_recurrent_models_matched_agree_and_pytorchs_two_lstm_biases_move_twice(tmp_path, data_dir):
    """Float64, everything matched: the GRU and the LSTM (one trained bias) agree to 1e-10 between the
    twins, from the first recurrent output (the gate blocks converted right) to the weights after the
    steps. PyTorch's own LSTM (lstm_bias=native) trains two biases that both get the full gradient: its
    effective bias moves twice Keras' in the first SGD step."""
    c = {m: cfg.resolve("standard", [f"model={m}", *RECURRENT, *extra]) for m, extra in ALIKE.items()}
    c["two"] = cfg.resolve("standard", ["model=lstm", *RECURRENT])  # PyTorch's own LSTM biases
    for who, models in (("pytorch", ["gru", "lstm", "two"]), ("keras", ["gru", "lstm"])):  # one process each
        lockstep.run_sides(who, [(c[m], tmp_path / m / who, None) for m in models], 2, 1, str(data_dir))
    t = {
        (m, who): lockstep._load(tmp_path / m / who)
        for m in c
        for who in ("pytorch", "keras")
        if m != "two" or who == "pytorch"
    }
    for model in ALIKE:
        assert t[model, "pytorch"]["act_0"].shape == (64, 16)
        assert causes._rel(t[model, "pytorch"]["act_0"], t[model, "keras"]["act_0"]) < 1e-13
        assert max(causes.step1_gradients(t[model, "keras"], t[model, "pytorch"])) < 1e-12
        d = causes.divergence(t[model, "keras"], t[model, "pytorch"])
        assert d["steps"] == 2 and d["final_max_rel"] <= causes.MATCHED_TOL, (model, d["final_max_rel"])
    two, one = t["two", "pytorch"], t["lstm", "keras"]
    moved = lambda tr: tr["w_1_0_b"].sum(0) - tr["w_0_0_b"].sum(0)  # the effective bias' first step
    assert np.array_equal(two["grad_0_b"][0], two["grad_0_b"][1]) and np.all(one["grad_0_b"][1] == 0)
    np.testing.assert_allclose(moved(two), 2 * moved(one), rtol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["keras-torch", "keras-jax"])
def test_recurrent_models_matched_agree_on_the_other_keras_backends(backend, tmp_path, data_dir):
    """The written-out cells stay in float64 on Keras' torch and JAX backends too (einsum, and tanh through
    sigmoid: their ops.matmul / ops.tanh return float32 there)."""
    c = {m: cfg.resolve("standard", [f"model={m}", *RECURRENT, *extra]) for m, extra in ALIKE.items()}
    for who in ("pytorch", backend):
        lockstep.run_sides(who, [(c[m], tmp_path / m / who, None) for m in c], 2, 1, str(data_dir))
    for m in c:
        k, p = (lockstep._load(tmp_path / m / who) for who in (backend, "pytorch"))
        assert causes._rel(k["act_0"], p["act_0"]) < 1e-13
        assert causes.divergence(k, p)["final_max_rel"] <= causes.MATCHED_TOL


def test_a_chaotic_floor_does_not_hide_a_difference_from_step_1():
    """Where training is chaotic (one rounding grows to O(1) within the run, as the LSTM's does at the
    standard schedule), the last snapshot alone would call any pair float noise: the pair is read against
    the floor at every compared step."""
    steps = [0, 1, 20, 200, 469]
    floor = {"snap_steps": steps, "rel_l2": [1.7e-16, 1.7e-16, 1.8e-16, 2e-2, 1.6e-1]}
    parts = {"snap_steps": steps, "rel_l2": [0.0, 7.7e-5, 2.8e-2, 1.5e-1, 2.7e-1], "final_max_rel": 0.85}
    alike = {"snap_steps": steps, "rel_l2": [0.0, 4.5e-18, 3.8e-17, 3e-2, 2.8e-1], "final_max_rel": 0.99}
    assert causes.floor_ratio(parts, floor) > 1e10 and causes.verdict(
        {**parts, "floor_ratio": causes.floor_ratio(parts, floor)}, "float64"
    ).startswith("real")
    r = causes.floor_ratio(alike, floor)
    assert r < causes.FLOOR_FACTOR and "float noise" in causes.verdict({**alike, "floor_ratio": r}, "float64")


def test_exact_schedules_step_in_their_unit():
    c = cfg.resolve("standard", ["lr_schedule=cosine", "epochs=3"])
    spe = training.steps_per_epoch(c)
    per_epoch, per_step = (training.lr_table(training.schedule(c, unit)) for unit in ("epoch", "step"))
    assert len(per_epoch) == len(per_step) == 3 * spe
    assert per_epoch[0] == per_step[0] == c.lr
    assert np.all(per_epoch[:spe] == c.lr) and per_epoch[spe] == pytest.approx(c.lr * (1 + np.cos(np.pi / 3)) / 2)
    assert per_step[1] < c.lr and np.all(np.diff(per_step) < 0)  # falls every step
    s = cfg.resolve("standard", ["lr_schedule=step", "lr_step_epochs=2", "lr_step_gamma=0.5", "epochs=5"])
    for unit in ("epoch", "step"):  # the same staircase, whichever unit counts it
        t = training.lr_table(training.schedule(s, unit))
        assert t[2 * spe - 1] == s.lr and t[2 * spe] == s.lr * 0.5 and t[4 * spe] == s.lr * 0.25


def test_shared_dropout_masks_are_a_pure_function_of_seed_epoch_step_layer():
    c = cfg.resolve("standard", ["dropout=0.25", "dropout_masks=shared", "hidden=300,200"])
    a, b = plan.dropout_masks(c, 2, 7, 128), plan.dropout_masks(c, 2, 7, 128)
    assert [m.shape for m in a] == [(128, 300), (128, 200)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert set(np.unique(a[0])) == {0.0, 1 / 0.75} and abs(np.mean(a[0] == 0) - 0.25) < 0.02
    for other in (plan.dropout_masks(c, 3, 7, 128), plan.dropout_masks(c, 2, 8, 128)):
        assert not np.array_equal(a[0], other[0])
    assert not np.array_equal(a[0][:, :200], a[1])  # each layer draws its own


@pytest.mark.parametrize("backends", [("keras",), pytest.param(("keras-jax", "keras-torch"), marks=pytest.mark.slow)])
def test_matched_float64_with_every_feature_agrees_on_every_keras_backend(backends, tmp_path, data_dir):
    """Batch norm (training and evaluation), layer norm, shared dropout masks, coupled decay, global clipping, a
    cosine schedule and label smoothing: PyTorch and each Keras backend to 1e-10 after the steps.
    (Keras' torch backend computes float64 matmul, mean, the loss reduction and a maximum of two 0-d
    tensors in float32; the exact ops avoid them; those two backends: -m slow.) Resuming with these features: test_reliability's chaos."""
    c = cfg.resolve(
        "standard",
        [
            *ALL,
            *SMALL,
            "batch_size=2600",
            "dtype=float64",
            "init=shared",
            "ops=exact",
            "update_rule=torch",
            *(f"{k}={v}" for k, v in training.matched(cfg.resolve("standard", ALL)).items()),
        ],
    )
    assert training.differences(c) == {}  # nothing left to each library
    steps = (
        training.steps_per_epoch(c) + 2
    )  # over an epoch boundary (24 steps of 2600, the last short): the per-epoch schedule steps
    traces = {
        who: lockstep._load(lockstep.run_side(who, c, tmp_path / who, steps, steps, str(data_dir)))
        for who in ("pytorch", *backends)
    }
    ref = traces.pop("pytorch")
    assert any(k.startswith(f"bn_{steps}_") for k in ref), "the batch-norm state is compared too"
    for who, t in traces.items():
        d = causes.divergence(t, ref)
        assert d["steps"] == steps and d["final_max_rel"] <= causes.MATCHED_TOL, (who, d["final_max_rel"])
        assert {p["part"] for p in d["per_layer"][-1]} >= {
            "kernel",
            "bias",
            "bn gamma",
            "bn mean",
            "bn var",
            "ln gamma",
        }


@pytest.mark.parametrize(
    "precision", ["mixed_precision=bfloat16", pytest.param("dtype=bfloat16", marks=pytest.mark.slow)]
)
def test_below_float32_matched_casts_the_same_operations(tmp_path, data_dir, precision):
    """Below float32 the floor is one unit of the compute precision, each side's layer dtypes are read
    from its running program, and matched mode casts the same operations on both sides: the written-out
    dense rounds once from float32 accumulation and the loss computes in float32 on both, so the step-1
    gradients agree within the precision's rounding (before: Keras' loss gradient was rounded to
    bfloat16 by its own kernel, 3e-2 apart; PyTorch's bias promoted the sum to float32)."""
    c = cfg.resolve("standard", [precision, *SMALL])
    mixed = c.mixed_precision != "off"
    s = lockstep.lockstep(
        c,
        ["tensorflow"],
        ["float32" if mixed else "bfloat16"],
        3,
        1,
        tmp_path / "ls",
        str(data_dir),
        cells=["native", "matched"],
        log=lambda m: None,
    )
    e = s["results"][0]
    assert (e["name"], e["unit"]) == (("mixed bfloat16", "bfloat16") if mixed else ("bfloat16", "bfloat16"))
    assert 2**-11 < e["floor"]["rel_l2"][0] < 2**-7  # one bfloat16 unit per weight, not one of float32 (~6e-8)
    pairs = {p["cell"]: p for p in e["pairs"]}
    ref = pairs["native"]["precision"]["pytorch"]
    assert ref["layers"][0] == "Linear: bfloat16" and ref["weights"] == ("float32" if mixed else "bfloat16")
    matched = pairs["matched"]["precision"]
    assert matched["pytorch"]["layers"][0] == "ExactDense: bfloat16"
    assert [l.split(": ")[1] for l in matched["pytorch"]["layers"]] == [
        l.split(": ")[1] for l in matched["keras"]["layers"]
    ]
    assert matched["pytorch"]["loss"] == matched["keras"]["loss"] == ("float32" if mixed else "bfloat16")
    assert max(pairs["matched"]["step1_gradients"]) < 2 * causes.eps("bfloat16"), pairs["matched"]["step1_gradients"]
    assert "precision" in lockstep.render_md(s) and "ExactDense" in lockstep.render_md(s)


def test_a_trace_does_not_depend_on_what_its_process_traced_before(tmp_path, data_dir):
    """lockstep traces each side's cells in one process: a process's second trace (native dropout
    masks from the library's generator, batch norm, a perturbed start) equals the same trace alone."""
    c = cfg.resolve("standard", ["dropout=0.2", "batchnorm=true", *SMALL, "batch_size=2600", "init=shared"])
    before = cfg.from_dict({"lr": 0.2, "seed": 3}, c)
    lockstep.run_sides("keras", [(before, tmp_path / "first", None), (c, tmp_path / "second", 1)], 4, 2, str(data_dir))
    second, alone = (
        lockstep._load(d)
        for d in (tmp_path / "second", lockstep.run_side("keras", c, tmp_path / "alone", 4, 2, str(data_dir), 1))
    )
    first = lockstep._load(tmp_path / "first")
    assert second.keys() == alone.keys() and not np.array_equal(first["loss"], second["loss"])
    assert all(np.array_equal(second[k], alone[k]) for k in second if k != "_meta")


def test_native_causes_are_named_one_at_a_time(tmp_path, data_dir):
    """Everything matched but one difference: the step and the place where it first shows are named."""
    c = cfg.resolve("standard", ["dropout=0.2", "batchnorm=true", *SMALL])
    cells = ["dropout masks alone", "batch-norm running variance alone"]
    s = lockstep.lockstep(
        c, ["tensorflow"], ["float64"], 4, 2, tmp_path / "ls", str(data_dir), cells=cells, log=lambda m: None
    )
    pairs = {p["cell"]: p for p in s["results"][0]["pairs"]}
    masks, var = pairs["dropout masks alone"], pairs["batch-norm running variance alone"]
    assert masks["verdict"].startswith("real") and masks["where"]["step"] == 1
    assert masks["where"]["where"].startswith("dense layer 2's output")  # the first layer fed by a dropout
    # biased vs unbiased running variance: training is unaffected, the running variance parts after step 1
    assert var["where"]["where"] == "batch norm 1 var after step 1" and var["where"]["loss_step"] is None
    text = " ".join(s["findings"])
    assert "dropout masks: first at step 1 in dense layer 2's output" in text
    assert "batch-norm running variance: first at step 1 in batch norm 1 var after step 1" in text


def test_pytorch_idioms_are_what_pytorch_impl_does():
    """lockstep spells PyTorch's native choices out (training.PYTORCH_IDIOMS) to share traces: they must be
    the PyTorch translation's own (its idioms() and its batch norm)."""
    c = cfg.resolve("porting", ["optimizer=sgd", "weight_decay=1e-4", "lr_schedule_unit=native"])
    spelled = training.pytorch_canonical(c)
    assert set(spelled) == set(training.PYTORCH_IDIOMS)
    own = json.loads(
        python(
            "import json\nfrom pytorch_impl import model as M\n"
            "i = M.idioms()\n"
            "print(json.dumps({'bn_running_var': M.OWN_BN_VAR, 'clip_scope': i.clip_scope, "
            "'lr_schedule_unit': i.schedule_unit, 'weight_decay_form': i.decay_form['sgd']}))"
        )
    )
    assert spelled == own
    assert lockstep.canonical("pytorch", c).to_dict() == cfg.from_dict({**spelled, "update_rule": "torch"}, c).to_dict()
    assert lockstep.canonical("keras", c) is c


def test_ablation_cells_follow_the_features():
    plain = ablate.cells(cfg.resolve("standard"))
    assert not any("dropout" in name for name in plain)
    porting = ablate.cells(cfg.resolve("porting"))
    for name in (
        "matched dropout masks",
        "matched batch-norm momentum and epsilon",
        "matched batch-norm running variance",
        "matched clipping scope",
        "matched schedule unit",
        "matched AdamW default decay",
        "matched Adam epsilon",
    ):
        assert name in porting, name
    assert "matched weight-decay form" not in porting  # AdamW is decoupled in both libraries
    assert porting["all matched"]["dropout_masks"] == "shared" and porting["native"].get("dropout_masks") is None
    sgd = ablate.cells(cfg.resolve("standard", ["weight_decay=1e-4"]))
    assert sgd["matched weight-decay form"]["weight_decay_form"] == "coupled"


def test_neutral_weights_carry_the_normalisation_layers(tmp_path):
    layers = cfg.shared_init(cfg.resolve("standard", ["hidden=5,4"]))
    norms = {
        "bn": [tuple(np.full(w, v) for v in (1.5, 0.5, 0.1, 2.0)) for w in (5, 4)],
        "ln": [tuple(np.full(w, v) for v in (0.7, -0.2)) for w in (5, 4)],
    }
    weights.save(tmp_path / "weights" / "final.npz", layers, norms)
    back = weights.load_norms(tmp_path / "weights" / "final.npz")
    for kind in ("bn", "ln"):
        assert len(back[kind]) == 2
        assert all(np.array_equal(a, b) for x, y in zip(norms[kind], back[kind]) for a, b in zip(x, y))
    got = compare.load_weights(tmp_path)
    assert set(got) == {f"{k}_{i}" for k in ("kernel", "bias") for i in range(3)} | {
        f"{kind}_{j}_{p}" for kind in ("bn", "ln") for j in range(2) for p in weights.NORMS[kind]
    }
    weights.save(tmp_path / "plain.npz", layers)
    assert weights.load_norms(tmp_path / "plain.npz") == {"bn": [], "ln": []}


def test_findings_name_the_definition_that_parts_the_two_not_the_update_rule():
    """When the 'same definition' cell removes a difference and the config leaves features to each library,
    the cause is the definitions as a whole and, each alone, the feature that parts the two: never 'the
    update definitions' when the update rule alone has no effect."""

    def pair(cell, rel, real):
        where = {"step": 1, "where": "conv layer 1's output", "rel": rel} if real else {}
        verdict = "real difference (1e+15x the floor)" if real else "agree (max relative difference 3e-15 <= 1e-10)"
        return {"a": "keras", "cell": cell, "final_max_rel": rel, "verdict": verdict, "where": where, "steps": 30}

    cells = [("native", 1.1, True), ("exact ops", 1.1, True), ("same definition", 4e-15, False)]
    cells += [
        ("matched", 3e-15, False),
        ("update rule alone", 3e-15, False),
        ("library arithmetic alone", 4e-15, False),
    ]
    cells += [("strided-conv padding alone", 1.1, True)]
    summary = {"results": [{"name": "float64", "unit": "float64", "pairs": [pair(*c) for c in cells]}]}
    text = " ".join(lockstep.findings(summary))
    assert "The definitions (the update rule and the features) are the cause" in text
    assert "each alone, these part the two: strided-conv padding." in text and "update definitions" not in text
    plain = {"results": [{"name": "float64", "unit": "float64", "pairs": [pair(*c) for c in cells[:4]]}]}
    assert "The update definitions are the cause" in " ".join(lockstep.findings(plain))
