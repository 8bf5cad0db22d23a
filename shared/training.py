"""The training half of the plan: frozen, framework-free specs of the optimizer, weight decay, clipping,
learning-rate schedule and loss, made once from a config (`resolve`). Where the config leaves a choice
to each library ("native"), the library's own choice comes from its twin's `idioms()` (declared as
data, read live from the installed library where it can be): one resolver applies them, so neither
twin reads a raw feature key. Each twin translates the specs through tables keyed by kind
(pytorch_impl/model.py, keras_impl/model.py): one plan, two translators.

Also here: the exact learning rate of every step (what ops=exact applies on both sides) and the
feature table: which key turns each porting feature on, and how a matched cell makes the two sides
the same (config validation, `ablate`, `lockstep` and the defaults table all read it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shared.batches import steps_per_epoch as _steps
from shared.data import TRAIN_ROWS

# Every optimizer the config accepts -> the update family its written-out version takes (AdamW is Adam
# with decoupled decay) and its state tensors per weight (memory estimates). Each twin's tables cover
# exactly these keys (a test checks).
OPTIMIZERS = {
    "sgd": ("sgd", lambda momentum: int(momentum > 0)),  # the momentum buffer
    "adam": ("adam", lambda momentum: 2),  # first and second moments
    "adamw": ("adam", lambda momentum: 2),
    "rmsprop": ("rmsprop", lambda momentum: 1 + int(momentum > 0)),  # mean square, momentum buffer
}
# the defaults probe's RMSprop set-up, the same on both sides (each twin's defaults.rmsprop_probe; a tiny
# gradient, so that epsilon matters next to sqrt(v)); compare/defaults.py reads the form from the steps
RMSPROP_PROBE = {"g": 1e-3, "rho": 0.9, "eps": 1e-6, "momentum": 0.5}
RULES = ("torch", "keras")  # whose update definitions: each library ships its own (update_rule)
SCHEDULES = ("constant", "cosine", "step")
HEADS = ("seed", "logits")


@dataclass(frozen=True)
class Idioms:
    """A library's own choices, where a config says native: declared by each twin (`idioms()`)."""

    rule: str  # whose update definitions the library's optimizers implement
    decay_form: dict  # optimizer -> what optimizer(weight_decay=...) does: coupled | decoupled
    clip_scope: str  # what the library's clipping idiom clips: global | per_variable
    schedule_unit: str  # when a library schedule advances: epoch | step
    eps: dict  # optimizer -> its default epsilon (Adam, AdamW, RMSprop)
    adamw_decay: float  # AdamW's default weight_decay
    rho: float  # RMSprop's default decay of the mean square (PyTorch: alpha)


@dataclass(frozen=True)
class Optimizer:
    kind: str  # a key of OPTIMIZERS
    rule: str  # the update's definition: torch | keras
    written_out: bool  # ops=exact, or a rule this library does not ship: the twin's WrittenOut
    lr: float
    momentum: float  # sgd, rmsprop
    nesterov: bool  # sgd
    beta1: float  # adam, adamw
    beta2: float
    eps: float  # adam, adamw, rmsprop
    rho: float  # rmsprop

    @property
    def family(self) -> str:
        return OPTIMIZERS[self.kind][0]


@dataclass(frozen=True)
class Decay:
    value: float  # 0: none
    form: str | None  # coupled: g += wd*w (L2); decoupled: w -= lr*wd*w; None without decay


@dataclass(frozen=True)
class Clip:
    norm: float  # 0: none
    scope: str | None  # global: one norm over all gradients; per_variable: each on its own


@dataclass(frozen=True)
class Schedule:
    kind: str  # one of SCHEDULES
    unit: str | None  # epoch | step: when the library's schedule advances; None for constant
    lr: float
    length: int  # cosine: the horizon in `unit`
    every: int  # step: the period in `unit`
    gamma: float  # step: the factor
    steps_per_epoch: int
    epochs: int
    exact: bool  # ops=exact: the twins' WrittenOut applies `lr_table` itself (no library schedule)


@dataclass(frozen=True)
class Loss:
    head: str  # seed: NLL of log-probabilities; logits: cross-entropy on logits
    smoothing: float  # logits: the weight of the uniform target
    exact: bool  # ops=exact: the written-out batch mean
    dtype: str  # the run's dtype (the written-out mean is rounded to it once)


@dataclass(frozen=True)
class Training:
    optimizer: Optimizer
    decay: Decay
    clip: Clip
    schedule: Schedule
    loss: Loss


def _own(value, mine):
    """A choice's value on this side: `mine` (the library's idiom) where the config says native."""
    return mine if value == "native" else value


def resolve(config, idioms: Idioms) -> Training:
    """The training specs of `config` on the side whose idioms are given: every native choice resolved."""
    exact = config.ops == "exact"
    rule = _own(config.update_rule, idioms.rule)
    eps = idioms.eps.get(config.optimizer, 0.0) if config.eps == "native" else config.eps
    rho = idioms.rho if config.rho == "native" else config.rho
    opt = Optimizer(
        config.optimizer, rule, exact or rule != idioms.rule, config.lr, config.momentum, config.nesterov,
        config.beta1, config.beta2, eps, rho,
    )  # fmt: skip
    wd = idioms.adamw_decay if config.weight_decay == "native" else config.weight_decay
    decay = Decay(wd, _own(config.weight_decay_form, idioms.decay_form[config.optimizer])) if wd else Decay(0.0, None)
    clip = Clip(config.clip_norm, _own(config.clip_scope, idioms.clip_scope)) if config.clip_norm else Clip(0.0, None)
    unit = None if config.lr_schedule == "constant" else _own(config.lr_schedule_unit, idioms.schedule_unit)
    loss = Loss(config.head, config.label_smoothing, exact, config.dtype)
    return Training(opt, decay, clip, schedule(config, unit), loss)


def schedule(config, unit: str | None) -> Schedule:
    """The config's learning-rate schedule counted in `unit` (epoch or step)."""
    spe = steps_per_epoch(config)
    per = spe if unit == "step" else 1
    return Schedule(
        config.lr_schedule, unit, config.lr, config.epochs * per, config.lr_step_epochs * per, config.lr_step_gamma,
        spe, config.epochs, config.ops == "exact" and config.lr_schedule != "constant",
    )  # fmt: skip


def state_copies(optimizer: str, momentum: float) -> int:
    """Optimizer state per weight, in copies of the weights (memory estimates)."""
    return OPTIMIZERS[optimizer][1](momentum)


# ---------------------------------------------------------------- learning-rate schedules


def steps_per_epoch(config) -> int:
    return _steps(TRAIN_ROWS, config.batch_size, config.last_batch)


def lr_at(s: Schedule, t: int) -> float:
    """The exact learning rate at t (0-based, in the schedule's unit): cosine from lr to 0 over the
    training, or lr times gamma ** (number of periods passed)."""
    if s.kind == "constant":
        return s.lr
    if s.kind == "cosine":
        return s.lr * (1 + math.cos(math.pi * t / s.length)) / 2
    return s.lr * s.gamma ** (t // s.every)


def lr_table(s: Schedule) -> np.ndarray:
    """The learning rate of every training step (0-based), float64: what ops=exact applies on both sides."""
    steps = np.arange(s.epochs * s.steps_per_epoch)
    return np.array([lr_at(s, int(t) if s.unit == "step" else int(t) // s.steps_per_epoch) for t in steps])


# ---------------------------------------------------------------- the feature table


@dataclass(frozen=True)
class Feature:
    """A porting feature whose choices each library makes its own way."""

    name: str  # its name in ablate's and lockstep's cells
    keys: tuple  # the choice keys that leave it to each library ("native")
    differs: object  # config -> whether the libraries' idioms differ for this config (keys left native)
    match: dict  # key -> the value a matched cell gives both sides (PyTorch's convention)


FEATURES = (
    Feature(
        "batch-norm momentum and epsilon", ("bn_momentum", "bn_eps"), lambda c: c.batchnorm,
        {"bn_momentum": 0.1, "bn_eps": 1e-5},
    ),
    Feature("batch-norm running variance", ("bn_running_var",), lambda c: c.batchnorm, {"bn_running_var": "unbiased"}),
    Feature("layer-norm epsilon", ("ln_eps",), lambda c: c.layernorm, {"ln_eps": 1e-5}),
    # PyTorch refuses padding='same' with a stride: its usual port pads symmetrically (Keras' 'same' is matched)
    Feature(
        "strided-conv padding", ("stride_padding",), lambda c: c.model == "cnn" and c.downsample == "stride",
        {"stride_padding": "same"},
    ),
    # PyTorch's LSTM sums two trained biases (each gets the full gradient); Keras' has one (matched: one)
    Feature("LSTM bias", ("lstm_bias",), lambda c: c.model == "lstm", {"lstm_bias": "single"}),
    Feature("dropout masks", ("dropout_masks",), lambda c: c.dropout > 0, {"dropout_masks": "shared"}),
    Feature("AdamW default decay", ("weight_decay",), lambda c: c.optimizer == "adamw", {"weight_decay": 0.01}),
    # AdamW's decay is decoupled on both sides; SGD, Adam and RMSprop's differ (coupled in PyTorch)
    Feature(
        "weight-decay form", ("weight_decay_form",), lambda c: c.weight_decay != 0 and c.optimizer != "adamw",
        {"weight_decay_form": "coupled"},
    ),
    Feature("clipping scope", ("clip_scope",), lambda c: c.clip_norm > 0, {"clip_scope": "global"}),
    Feature("schedule unit", ("lr_schedule_unit",), lambda c: c.lr_schedule != "constant", {"lr_schedule_unit": "epoch"}),
    Feature("RMSprop rho", ("rho",), lambda c: c.optimizer == "rmsprop", {"rho": 0.99}),
)  # fmt: skip

# Which key switches each choice key on: key -> (the switch, whether a config turns it on (`get(key)`
# reads a value), what to write). Config validation refuses a choice set without its switch; the
# defaults table says "not used" where the switch is off. weight_decay=native alone needs AdamW (only
# AdamW has a library default decay): NATIVE_NEEDS.
NEEDS = {
    "bn_momentum": ("batchnorm", lambda get: get("batchnorm"), "batchnorm=true"),
    "bn_eps": ("batchnorm", lambda get: get("batchnorm"), "batchnorm=true"),
    "bn_running_var": ("batchnorm", lambda get: get("batchnorm"), "batchnorm=true"),
    "ln_eps": ("layernorm", lambda get: get("layernorm"), "layernorm=true"),
    "stride_padding": ("downsample", lambda get: get("model") == "cnn" and get("downsample") == "stride", "model=cnn with downsample=stride"),
    "lstm_bias": ("model", lambda get: get("model") == "lstm", "model=lstm"),
    "dropout_masks": ("dropout", lambda get: get("dropout") > 0, "dropout > 0, e.g. --set dropout=0.2"),
    "weight_decay_form": ("weight_decay", lambda get: get("weight_decay") != 0, "weight_decay > 0, e.g. --set weight_decay=5e-4"),
    "clip_scope": ("clip_norm", lambda get: get("clip_norm") > 0, "clip_norm > 0, e.g. --set clip_norm=1"),
    "lr_schedule_unit": ("lr_schedule", lambda get: get("lr_schedule") != "constant", "lr_schedule=cosine or step"),
    "lr_step_epochs": ("lr_schedule", lambda get: get("lr_schedule") == "step", "lr_schedule=step"),
    "lr_step_gamma": ("lr_schedule", lambda get: get("lr_schedule") == "step", "lr_schedule=step"),
    "rho": ("optimizer", lambda get: get("optimizer") == "rmsprop", "optimizer=rmsprop"),
    "label_smoothing": ("head", lambda get: get("head") == "logits", "head=logits (the seed head's nll_loss has no smoothing in PyTorch)"),
}  # fmt: skip
NATIVE_NEEDS = {
    "weight_decay": ("optimizer", lambda get: get("optimizer") == "adamw", "optimizer=adamw (only AdamW has a library default decay); give a number"),
}  # fmt: skip

# the config keys of the porting features (shared/config.py documents them)
FEATURE_KEYS = (
    "batchnorm", "bn_momentum", "bn_eps", "bn_running_var", "layernorm", "ln_eps", "dropout", "dropout_masks", "weight_decay",
    "weight_decay_form", "clip_norm", "clip_scope", "lr_schedule", "lr_schedule_unit", "lr_step_epochs",
    "lr_step_gamma", "label_smoothing", "rho", "downsample", "stride_padding",
    "lstm_bias",
)  # fmt: skip

# The keys whose matched value above is PyTorch's own idiom (each twin's idioms(); a test checks): on the
# PyTorch side, native and the matched value compute the same thing.
PYTORCH_IDIOMS = ("bn_running_var", "clip_scope", "lr_schedule_unit", "weight_decay_form")


def differences(config) -> dict[str, dict]:
    """The porting features on which the two libraries' idioms differ for this config -> the overrides
    that make each the same on both sides (only the keys the config leaves native)."""
    out = {}
    for f in FEATURES:
        over = {k: f.match[k] for k in f.keys if getattr(config, k) == "native"}
        if f.differs(config) and over:
            out[f.name] = over
    return out


def pytorch_canonical(config) -> dict:
    """The overrides that spell this config's PyTorch-side native choices explicitly (same computation)."""
    return {k: v for over in differences(config).values() for k, v in over.items() if k in PYTORCH_IDIOMS}


def matched(config) -> dict:
    """All of differences' overrides together."""
    return {k: v for over in differences(config).values() for k, v in over.items()}
