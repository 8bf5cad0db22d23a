"""The training half of the plan (shared/training.py): specs made once from a config with each library's
native choices resolved from its twin's idioms(); both twins translate them through tables keyed by
kind, cover exactly the plan's kinds and read no raw training key; RMSprop, the design's proof, in both
frameworks to 1e-10 in float64 when matched."""

import ast

import pytest

from conftest import REPO
from compare import ablate, causes, lockstep
from shared import config as cfg
from shared import training

# the config keys the training specs resolve: the twins read them only through the specs
TRAINING_KEYS = (
    "optimizer", "lr", "momentum", "nesterov", "beta1", "beta2", "eps", "rho", "update_rule", "weight_decay",
    "weight_decay_form", "clip_norm", "clip_scope", "lr_schedule", "lr_schedule_unit", "lr_step_epochs",
    "lr_step_gamma", "label_smoothing", "head",
)  # fmt: skip


def raw_reads(path):
    """(line, key) of every `<name>.<training key>` read in a file (a spec's fields are read as spec.x.y)."""
    out = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Attribute) and n.attr in TRAINING_KEYS and isinstance(n.value, ast.Name):
            if n.value.id in ("config", "c", "cfg"):
                out.append((n.lineno, n.attr))
        if isinstance(n, ast.Attribute) and n.attr in TRAINING_KEYS and isinstance(n.value, ast.Attribute):
            if n.value.attr == "config":  # state.config.x
                out.append((n.lineno, n.attr))
    return out


def test_the_twins_read_no_raw_training_key():
    for pkg in ("pytorch_impl", "keras_impl"):
        for name in ("model.py", "train.py"):
            assert raw_reads(REPO / pkg / name) == [], f"{pkg}/{name}: read through shared/training.py's specs"
    planted = "def f(config):\n    return config.clip_scope\n"  # the check can fail
    (REPO / "tests" / "_planted_tmp.py").write_text(planted)
    try:
        assert raw_reads(REPO / "tests" / "_planted_tmp.py") == [(2, "clip_scope")]
    finally:
        (REPO / "tests" / "_planted_tmp.py").unlink()


def idioms_stub(**over):
    base = dict(
        rule="torch", decay_form={k: "coupled" for k in training.OPTIMIZERS}, clip_scope="global",
        schedule_unit="epoch", eps={"adam": 1e-8, "adamw": 1e-8, "rmsprop": 1e-8}, adamw_decay=0.01, rho=0.99,
    )  # fmt: skip
    return training.Idioms(**{**base, **over})


def test_the_resolver_applies_a_sides_idioms_only_where_the_config_says_native():
    c = cfg.resolve("standard", ["optimizer=rmsprop", "lr=0.001", "eps=native", "weight_decay=1e-4", "clip_norm=1"])
    mine = training.resolve(c, idioms_stub())
    other = training.resolve(c, idioms_stub(rule="keras", rho=0.9, eps={"rmsprop": 1e-7}, clip_scope="per_variable",
                                            decay_form={"rmsprop": "decoupled"}))  # fmt: skip
    assert (mine.optimizer.rho, mine.optimizer.eps, mine.clip.scope, mine.decay.form) == (
        0.99,
        1e-8,
        "global",
        "coupled",
    )
    assert (other.optimizer.rho, other.optimizer.eps, other.clip.scope, other.decay.form) == (
        0.9, 1e-7, "per_variable", "decoupled",
    )  # fmt: skip
    assert not mine.optimizer.written_out and other.optimizer.rule == "keras"
    spelled = cfg.from_dict({"rho": 0.5, "eps": 1e-3, "clip_scope": "global", "update_rule": "torch"}, c)
    both = [training.resolve(spelled, i) for i in (idioms_stub(), idioms_stub(rule="keras", rho=0.9))]
    assert both[0].optimizer.rho == both[1].optimizer.rho == 0.5 and both[1].optimizer.written_out
    assert training.differences(c) == {
        "weight-decay form": {"weight_decay_form": "coupled"},
        "clipping scope": {"clip_scope": "global"},
        "RMSprop rho": {"rho": 0.99},
    }


def test_rmsprop_keys_are_refused_without_rmsprop():
    with pytest.raises(cfg.ConfigError, match="rho has no effect without optimizer=rmsprop"):
        cfg.resolve("standard", ["rho=0.9"])
    with pytest.raises(cfg.ConfigError, match="rho="):
        cfg.resolve("standard", ["optimizer=rmsprop", "rho=1.5"])


def test_rmsprop_ablation_and_lockstep_cells_name_its_differences():
    c = cfg.resolve("standard", ["optimizer=rmsprop", "lr=0.001", "eps=native"])
    cells = ablate.cells(c)
    assert cells["matched RMSprop rho"]["rho"] == 0.99 and cells["matched RMSprop epsilon"]["eps"] == 1e-7
    assert {"rho": 0.99}.items() <= cells["all matched"].items()
    assert "RMSprop rho alone" in lockstep.alone_cells(c)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["torch", "keras"])
def test_rmsprop_matched_float64_agrees_to_1e10(rule, tmp_path, data_dir, monkeypatch):
    """RMSprop with momentum, coupled decay, global clipping and a step schedule, in either definition
    written out on both sides: PyTorch and Keras to 1e-10 after the steps."""
    monkeypatch.setenv("FMNIST_DATA_DIR", str(data_dir))
    base = ["optimizer=rmsprop", "lr=0.001", "momentum=0.9", "weight_decay=5e-4", "clip_norm=1", "lr_schedule=step",
            "lr_step_epochs=1", "hidden=32,16", "threads=1", "batch_size=2600", "epochs=2"]  # fmt: skip
    native = cfg.resolve("standard", base)
    c = cfg.resolve("standard", [*base, "dtype=float64", "init=shared", "ops=exact", f"update_rule={rule}",
                                 *(f"{k}={v}" for k, v in training.matched(native).items())])  # fmt: skip
    assert training.differences(c) == {}
    steps = training.steps_per_epoch(c) + 2  # over the epoch boundary, where the step schedule decays
    traces = {who: lockstep._load(lockstep.run_side(who, c, tmp_path / who, steps, steps, str(data_dir)))
              for who in ("pytorch", "keras")}  # fmt: skip
    d = causes.divergence(traces["keras"], traces["pytorch"])
    assert d["steps"] == steps and d["final_max_rel"] <= causes.MATCHED_TOL, d["final_max_rel"]
    print(rule, "RMSprop matched float64:", d["final_max_rel"])
