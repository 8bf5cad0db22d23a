"""The run config: one typed, validated, JSON-serialisable description of a training run,
plus the named presets. Both implementations read exactly this; nothing else sets a knob."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields

import numpy as np

from shared import augment as faugment
from shared import data as fdata
from shared import training


class ConfigError(ValueError):
    """A bad key or value; the message names the key and what is allowed."""


CHOICES = {
    "model": ("mlp", "cnn", "gru", "lstm"),
    "augment_impl": ("shared", "native"),
    "conv_layout": ("native", "nhwc"),
    "downsample": ("pool", "stride"),
    "stride_padding": ("native", "same"),
    "lstm_bias": ("native", "single"),
    "head": ("seed", "logits"),
    "optimizer": tuple(training.OPTIMIZERS),
    "scaling": ("unit", "standardize"),
    "init": ("native", "shared"),
    "dtype": ("float32", "float64", "bfloat16"),
    "mixed_precision": ("off", "bfloat16", "float16"),
    "device": ("auto", "cpu", "cuda"),
    "last_batch": ("keep", "drop"),
    "pipeline": ("memory", "torchvision"),
    "update_rule": ("native", "torch", "keras"),
    "ops": ("native", "exact"),
    "host_sync": ("epoch", "step"),
    "compile": ("native", "on", "off", "step"),
    "dropout_masks": ("native", "shared"),
    "bn_running_var": ("native", "unbiased", "biased"),
    "weight_decay_form": ("native", "coupled", "decoupled"),
    "clip_scope": ("native", "global", "per_variable"),
    "lr_schedule": ("constant", "cosine", "step"),
    "lr_schedule_unit": ("native", "epoch", "step"),
}
NATIVE = "native"  # for these numbers: each framework's own library default
NATIVE_OK = ("negative_slope", "eps", "bn_momentum", "bn_eps", "ln_eps", "weight_decay", "rho")


@dataclass(frozen=True)
class RunConfig:
    hidden: tuple = (200, 200)  # hidden layer widths; input 784 and output 10 are fixed
    model: str = "mlp"  # mlp, or cnn: 3x3 convolutions (channels), each with LeakyReLU and 2x2
    # max pooling, then one Dense to the 10 classes (shared/plan.py)
    channels: tuple = (16, 32)  # cnn only: output channels of each convolution
    conv_layout: str = "native"  # cnn only: native: each library's default memory layout (PyTorch NCHW,
    # Keras NHWC); nhwc: both NHWC (PyTorch: torch.channels_last)
    downsample: str = "pool"  # cnn only: pool: 2x2 max pooling after each convolution; stride: each
    # convolution strides 2 with 'same' padding instead (28 -> 14 -> 7), no pooling
    stride_padding: str = "native"  # downsample=stride: native: Keras 'same' (an odd padding row and column
    # go at the bottom and right), PyTorch the usual port padding=k//2 (one on every side: PyTorch
    # refuses padding='same' with a stride); same: Keras' asymmetric 'same' on both
    rnn_units: int = 128  # gru, lstm only: the recurrent layer's state size (the image read as 28 rows
    # of 28 pixels; its last state into the output Dense)
    lstm_bias: str = "native"  # lstm only: native: PyTorch's two summed biases (b_ih + b_hh, each trained),
    # Keras' one; single: one trained bias on both (PyTorch's b_hh kept at 0)
    augment: str = "none"  # none, or names joined by + (or commas): flip, vflip, rotate, translate
    augment_impl: str = "shared"  # shared: one numpy augmentation, the same pixels on both sides (shared/augment.py);
    # native: torchvision transforms v2 / Keras preprocessing layers, their defaults
    rotate_degrees: float = 10.0  # augment rotate: angle uniform in +-this
    translate_fraction: float = 0.1  # augment translate: shift uniform in +-this x 28 pixels, per axis
    negative_slope: float = 0.01  # LeakyReLU slope on both sides; "native": each library's default (0.01 / 0.3)
    head: str = "logits"  # seed: Sigmoid -> LogSoftmax -> NLL (the lab report); logits: cross-entropy
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9  # SGD and RMSprop
    nesterov: bool = False  # SGD only
    beta1: float = 0.9  # Adam only
    beta2: float = 0.999  # Adam only
    eps: float = 1e-7  # Adam and RMSprop, on both sides; "native": each library's default (1e-8 / 1e-7)
    rho: float = "native"  # RMSprop: decay of the mean square (PyTorch's alpha); native: each library's
    # default (0.99 / 0.9)
    batch_size: int = 128
    epochs: int = 15
    seed: int = 0
    scaling: str = "standardize"  # unit: x/255 (ToTensor); standardize: (x/255 - mean) / std of train
    init: str = "native"  # native: each framework's default initializer; shared: numpy draws
    dtype: str = "float32"  # of weights and computation; bfloat16: both in bfloat16 ("pure")
    mixed_precision: str = "off"  # bfloat16/float16: float32 weights, computation in the lower precision,
    # each library's machinery (torch.autocast + GradScaler / Keras dtype
    # policies + LossScaleOptimizer); needs dtype=float32
    device: str = "auto"
    last_batch: str = "keep"  # keep or drop the last partial batch of an epoch
    threads: int = 0  # intra-op threads; 0 = the number of CPU cores
    tf32: bool = False  # allow TF32 matrix math on GPUs that have it
    deterministic: bool = False  # torch.use_deterministic_algorithms / TF op determinism
    diagnostics: bool = False  # per-layer gradient and weight norms per epoch (diagnostics.jsonl)
    pipeline: str = "memory"  # memory: tensors on device; torchvision: the report's DataLoader (PyTorch)
    update_rule: str = "native"  # the optimizer's definition: native (each its own), torch or keras on both
    ops: str = "native"  # native: the libraries' layers/optimizers; exact: written out, every constant
    # in the model dtype (Keras rounds some to float32 even in float64)
    host_sync: str = "epoch"  # when the host reads the training loss: once per epoch (PyTorch: per-step
    # values stay on the device; Keras: fit()) or after every step (train_on_batch)
    steps_per_execution: int = 32  # Keras, host_sync=epoch: training steps per call into the backend (same
    # weights as 1, bit for bit; fewer returns to Python)
    compile: str = "native"  # on: torch.compile / Keras jit_compile=True (XLA); off: eager / False;
    # native: each side's default (PyTorch eager, Keras "auto"); step: the
    # whole SGD step compiled as one function (Keras: as on, fit's step is one)
    # ---- porting features (shared/plan.py describes them once; each implementation translates them).
    # All off by default: a config without them trains exactly as before.
    dropout: float = 0.0  # rate after each hidden activation (inverted dropout on both sides)
    dropout_masks: str = "native"  # native: each library's random masks; shared: numpy masks from
    # (seed, epoch, step, layer), identical on both sides
    batchnorm: bool = False  # batch norm after each hidden Dense, before its activation
    bn_momentum: float = "native"  # weight of the NEW batch statistics (PyTorch's convention; Keras gets
    # 1 - this); native: each library's default
    bn_eps: float = "native"  # added to the variance; native: each library's default
    bn_running_var: str = "native"  # which batch variance the running average takes: unbiased (n-1) or
    # biased (n); native: each library's own
    layernorm: bool = False  # layer norm after each hidden Dense (after batch norm if both), before its activation
    ln_eps: float = "native"  # added to the variance; native: each library's default
    weight_decay: float = 0.0  # decay strength; native (adamw only): each library's AdamW default
    weight_decay_form: str = "native"  # coupled: wd*w added to the gradient (L2); decoupled: w -= lr*wd*w;
    # native: each library's idiom for the optimizer
    clip_norm: float = 0.0  # gradient norm clipping threshold; 0 = off
    clip_scope: str = "native"  # global: one norm over all gradients; per_variable: each on its own;
    # native: each library's idiom (clip_grad_norm_ / clipnorm)
    lr_schedule: str = "constant"  # cosine (to 0 at the end of training) or step (x lr_step_gamma)
    lr_schedule_unit: str = "native"  # when it advances: every epoch or every step; native: each idiom
    lr_step_epochs: int = 5  # step schedule: decay every N epochs
    lr_step_gamma: float = 0.1  # step schedule: the factor
    label_smoothing: float = 0.0  # logits head: the weight of the uniform target

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"], d["channels"] = list(self.hidden), list(self.channels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def layer_sizes(self) -> list[int]:
        """The MLP's widths, input to output (model=mlp)."""
        return [fdata.PIXELS, *self.hidden, len(fdata.CLASSES)]


def validate(c: RunConfig) -> None:
    for key, allowed in CHOICES.items():
        if getattr(c, key) not in allowed:
            raise ConfigError(f"{key}={getattr(c, key)!r} is not allowed; choose one of {', '.join(allowed)}")
    if not isinstance(c.hidden, tuple) or not all(isinstance(h, int) and not isinstance(h, bool) for h in c.hidden):
        raise ConfigError(f"hidden={c.hidden!r} must be a list of positive integers, e.g. 200,200")
    if not c.hidden:
        raise ConfigError("hidden=() has no layers; give at least one hidden width, e.g. hidden=200,200")
    for key in (
        "lr",
        "momentum",
        "beta1",
        "beta2",
        "dropout",
        "clip_norm",
        "lr_step_gamma",
        "label_smoothing",
        *NATIVE_OK,
    ):
        v = getattr(c, key)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{key}={v!r} is not a finite number")
    for i, h in enumerate(c.hidden):
        if h < 1:
            raise ConfigError(f"hidden layer {i + 1} has width {h}; every hidden width must be >= 1")
    if (
        not isinstance(c.channels, tuple)
        or not 1 <= len(c.channels) <= 4
        or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in c.channels)
    ):
        raise ConfigError(
            f"channels={c.channels!r} must be 1 to 4 positive integers (one per 28 -> 14 -> 7 -> 3 "
            f"-> 1 pooling), e.g. channels=16,32"
        )
    for key in NATIVE_OK:
        v = getattr(c, key)
        if v != NATIVE and (isinstance(v, (bool, str)) or not isinstance(v, (int, float))):
            raise ConfigError(f"{key}={v!r} is not a number or 'native'")
    num = lambda key: getattr(c, key) == NATIVE or None  # a 'native' value has no range to check
    checks = [
        ("negative_slope", num("negative_slope") or 0 <= c.negative_slope < 1, "in [0, 1) or native"),
        ("lr", 0 < c.lr, "> 0"),
        ("momentum", 0 <= c.momentum < 1, "in [0, 1)"),
        ("beta1", 0 <= c.beta1 < 1, "in [0, 1)"),
        ("beta2", 0 <= c.beta2 < 1, "in [0, 1)"),
        ("eps", num("eps") or 0 < c.eps, "> 0 or native"),
        ("rho", num("rho") or 0 <= c.rho < 1, "in [0, 1) or native"),
        ("batch_size", 1 <= c.batch_size <= 60000, "between 1 and 60000"),
        ("epochs", 1 <= c.epochs <= 100000, "between 1 and 100000"),
        ("seed", 0 <= c.seed < 2**32, "between 0 and 2**32-1"),
        ("rnn_units", 1 <= c.rnn_units <= 4096, "between 1 and 4096"),
        ("threads", 0 <= c.threads <= 1024, "between 0 (all cores) and 1024"),
        ("steps_per_execution", 1 <= c.steps_per_execution <= 60000, "between 1 and 60000"),
        ("dropout", 0 <= c.dropout < 1, "in [0, 1)"),
        ("bn_momentum", num("bn_momentum") or 0 < c.bn_momentum <= 1, "in (0, 1] or native"),
        ("bn_eps", num("bn_eps") or 0 < c.bn_eps, "> 0 or native"),
        ("ln_eps", num("ln_eps") or 0 < c.ln_eps, "> 0 or native"),
        ("weight_decay", num("weight_decay") or 0 <= c.weight_decay, ">= 0 (or native with optimizer=adamw)"),
        ("clip_norm", 0 <= c.clip_norm, ">= 0 (0 = no clipping)"),
        ("lr_step_epochs", 1 <= c.lr_step_epochs <= 100000, "between 1 and 100000"),
        ("lr_step_gamma", 0 < c.lr_step_gamma <= 1, "in (0, 1]"),
        ("label_smoothing", 0 <= c.label_smoothing < 1, "in [0, 1)"),
        ("rotate_degrees", 0 < c.rotate_degrees <= 180, "in (0, 180]"),
        ("translate_fraction", 0 < c.translate_fraction <= 0.5, "in (0, 0.5]"),
    ]
    for key, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{key}={getattr(c, key)!r} is out of range; it must be {allowed}")
    if c.nesterov and (c.optimizer != "sgd" or c.momentum == 0):
        raise ConfigError("nesterov=true needs optimizer=sgd and momentum > 0")
    _check_combinations(c)


def compute_dtype(c: RunConfig) -> str:
    """The precision a run's layers compute in: mixed precision's lower one, else the dtype."""
    return c.mixed_precision if c.mixed_precision != "off" else c.dtype


# settings a process fixes once (threads, precision flags, JAX's float64 switch): runs and traces that
# share them can share a process, and its start-up
PROCESS_KEYS = ("dtype", "mixed_precision", "device", "threads", "deterministic", "tf32")


def process_settings(c: RunConfig) -> tuple:
    """The values of PROCESS_KEYS: configs with equal settings can share a process."""
    return tuple(getattr(c, k) for k in PROCESS_KEYS)


DEFAULTS_OF = {}  # filled below: the dataclass defaults, to tell a key that was set from one left alone


def _check_combinations(c: RunConfig) -> None:
    """Keys that only mean something together with another: refuse them alone, saying what to add."""
    d = DEFAULTS_OF
    get = lambda key: getattr(c, key)
    # the choice keys of shared/training.py's table: set (or native, for NATIVE_NEEDS) without their switch
    needs = [(get(k) != d[k], on(get), k, text) for k, (_, on, text) in training.NEEDS.items()]
    needs += [(get(k) == NATIVE, on(get), f"{k}=native", text) for k, (_, on, text) in training.NATIVE_NEEDS.items()]
    augment = faugment.names(c)
    bad = [a for a in augment if a not in faugment.NAMES]
    if bad or (not augment and c.augment != "none") or len(set(augment)) < len(augment):
        what = f"{', '.join(map(repr, bad))} is not an augmentation" if bad else "names none or one twice"
        raise ConfigError(
            f"augment={c.augment!r} {what}; give none or names from {', '.join(faugment.NAMES)} "
            f"joined by + or commas (e.g. augment=flip,rotate)"
        )
    needs += [
        (c.augment_impl != d["augment_impl"], bool(augment), "augment_impl", "augment, e.g. --set augment=flip"),
        (c.rotate_degrees != d["rotate_degrees"], "rotate" in augment, "rotate_degrees", "augment=rotate"),
        (
            c.translate_fraction != d["translate_fraction"],
            "translate" in augment,
            "translate_fraction",
            "augment=translate",
        ),
        (
            bool(augment) and c.pipeline != "memory",
            False,
            "augment",
            "pipeline=memory (the torchvision pipeline has no augmentation here)",
        ),
    ]
    for used, ok, key, need in needs:
        if used and not ok:
            raise ConfigError(f"{key} has no effect without {need}")
    if c.model != "mlp":  # what the CNN's and the recurrent plans have no place for (shared/plan.py)
        mlp_only = [
            k
            for k, v in (
                ("hidden", c.hidden != d["hidden"]),
                ("batchnorm", c.batchnorm),
                ("layernorm", c.layernorm),
                ("dropout", c.dropout > 0),
                ("pipeline=torchvision", c.pipeline != "memory"),
            )
            if v
        ]
        if mlp_only:
            widths = "channels=16,32" if c.model == "cnn" else f"rnn_units={d['rnn_units']}"
            raise ConfigError(
                f"model={c.model} has no place for {', '.join(mlp_only)} (MLP only): unset "
                f"{'it' if len(mlp_only) == 1 else 'them'}; the {c.model.upper()}'s widths are {widths}"
            )
    cnn_keys = [k for k in ("channels", "conv_layout", "downsample") if getattr(c, k) != d[k]]
    if c.model != "cnn" and cnn_keys:
        raise ConfigError(f"{cnn_keys[0]} has no effect without model=cnn (model={c.model})")
    if c.model not in ("gru", "lstm") and c.rnn_units != d["rnn_units"]:
        raise ConfigError(f"rnn_units has no effect without model=gru or model=lstm (model={c.model})")
    if c.mixed_precision != "off" and c.dtype != "float32":
        raise ConfigError(
            f"mixed_precision={c.mixed_precision} keeps float32 weights and computes in "
            f"{c.mixed_precision}: use it with dtype=float32 (the default), not dtype={c.dtype}"
        )
    if c.compile == "step":  # the compiled step writes SGD out (pytorch_impl.train.compile_step): plain SGD only
        extra = [
            k
            for k in ("batchnorm", "layernorm", "dropout", "weight_decay", "clip_norm", "label_smoothing")
            if getattr(c, k)
        ]
        extra += [
            k
            for k, plain in (("optimizer", "sgd"), ("lr_schedule", "constant"), ("ops", "native"), ("model", "mlp"))
            if getattr(c, k) != plain
        ]
        if extra:
            raise ConfigError(f"compile=step compiles plain SGD steps: unset {', '.join(extra)} or use compile=on")
    if c.optimizer == "adamw" and c.weight_decay_form == "coupled":
        raise ConfigError(
            "optimizer=adamw is Adam with decoupled weight decay; for coupled L2 decay use "
            "optimizer=adam with weight_decay_form=coupled"
        )


FIELD_TYPES = {f.name: f.type for f in fields(RunConfig)}
DEFAULTS_OF.update({f.name: f.default for f in fields(RunConfig)})


def _coerce(key: str, value):
    """Turn a JSON value or a --set string into the field's type, or say what was expected."""
    kind = FIELD_TYPES[key]
    if key in NATIVE_OK and value == NATIVE:
        return NATIVE
    if isinstance(value, str) and not value.strip() and kind != "str":
        raise ConfigError(f"{key} is empty; give a value (an unset shell variable?)")
    if key == "augment" and isinstance(value, str):  # one canonical spelling: names joined by +
        value = "+".join(v.strip() for v in value.replace(",", "+").split("+")) if value.strip() != "none" else "none"
    try:
        if kind == "tuple":
            items = value.replace("[", "").replace("]", "").split(",") if isinstance(value, str) else value
            return tuple(_int(v) for v in items)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int":
            return _int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        expected = {
            "tuple": "a comma-separated list of integers",
            "bool": "true or false",
            "int": "an integer",
            "float": "a number" + (" or native" if key in NATIVE_OK else ""),
            "str": "a string",
        }[kind]
        raise ConfigError(f"{key}={value!r} is not {expected}") from None


def _int(v) -> int:
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError
    return int(str(v).strip()) if isinstance(v, str) else int(v)


def from_dict(d: dict, base: RunConfig | None = None) -> RunConfig:
    unknown = sorted(set(d) - set(FIELD_TYPES))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(FIELD_TYPES)}")
    values = (base or RunConfig()).to_dict()
    values.update({k: _coerce(k, v) for k, v in d.items()})
    values["hidden"], values["channels"] = tuple(values["hidden"]), tuple(values["channels"])
    return RunConfig(**values)


def parse_sets(items: list[str]) -> dict:
    """['lr=0.1', 'hidden=100,100'] -> {'lr': '0.1', 'hidden': '100,100'}."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} must look like key=value, e.g. --set lr=0.01")
        out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    name: str
    values: dict
    provenance: str

    def config(self) -> RunConfig:
        return from_dict(self.values)


PRESETS = {
    p.name: p
    for p in [
        Preset(
            "seed-report",
            dict(
                hidden=(200, 200),
                head="seed",
                optimizer="sgd",
                lr=0.001,
                momentum=0.5,
                batch_size=512,
                scaling="unit",
                epochs=300,
                seed=1,
            ),
            "The lab report's model fcNet 784-200-200-10 (LeakyReLU, Sigmoid + LogSoftmax head, nll_loss) "
            "with its code's schedule: SGD lr 0.001 momentum 0.5, batch 512, ToTensor (x/255), "
            "torch.manual_seed(1), 300 epochs.",
        ),
        Preset(
            "seed-notebook",
            dict(
                hidden=(784, 784, 200, 200),
                head="seed",
                optimizer="sgd",
                lr=0.001,
                momentum=0.5,
                batch_size=512,
                scaling="unit",
                epochs=300,
                seed=1,
            ),
            "What the report's notebook actually trains: 784-784-784-200-200-10 with the same head and "
            "schedule (it logged 10% test accuracy until epoch 56, peak 37.78% at epoch 159).",
        ),
        Preset(
            "standard",
            dict(
                hidden=(200, 200),
                head="logits",
                optimizer="sgd",
                lr=0.05,
                momentum=0.9,
                batch_size=128,
                scaling="standardize",
                epochs=15,
                seed=0,
            ),
            "The same 784-200-200-10 LeakyReLU MLP with a plain logits + cross-entropy head, SGD lr 0.05 "
            "momentum 0.9, batch 128, standardized inputs, 15 epochs (a plain PyTorch loop reached "
            "88.3-88.8% test accuracy after 9-12 epochs).",
        ),
        Preset(
            "porting",
            dict(
                hidden=(200, 200),
                head="logits",
                optimizer="adamw",
                lr=0.001,
                batch_size=128,
                scaling="standardize",
                epochs=15,
                seed=0,
                batchnorm=True,
                dropout=0.2,
                weight_decay="native",
                clip_norm=1.0,
                lr_schedule="cosine",
                label_smoothing=0.1,
            ),
            "The standard network with what a port most often gets wrong, all on, each library's own idiom: "
            "batch norm after each hidden Dense, dropout 0.2 after each activation, AdamW (lr 0.001) with "
            "each library's default decay, gradient clipping at norm 1, a cosine schedule over the 15 "
            "epochs, label smoothing 0.1. `fmnist-parity ablate --preset porting` matches them one by one.",
        ),
    ]
}


def resolve(preset: str = "standard", sets: list[str] | None = None, overrides: dict | None = None) -> RunConfig:
    """Preset, then --set items, then explicit overrides (e.g. --epochs)."""
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} (see `fmnist-parity presets`)"
        )
    values = dict(PRESETS[preset].values)
    values.update(parse_sets(sets or []))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(values)


def load_json(text: str) -> RunConfig:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError("config JSON must be an object of key: value pairs")
    return from_dict(d)


# ---------------------------------------------------------------- shared initial weights


def shared_init(config: RunConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Initial (kernel, bias) per weighted layer in the neutral layout (plan.weight_shapes), drawn once
    in numpy from the seed, float64, in the plan's order. Distribution: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for kernel and bias (fan_in of a convolution: in x kh x kw; of a recurrent layer: its units), the
    same bounds as PyTorch's default nn.Linear / nn.Conv2d / nn.GRU / nn.LSTM init, but the same draws
    on both sides."""
    from shared import plan

    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, 0x1A17])))
    layers = []
    for kernel, bias, fan_in in plan.weight_shapes(config):
        bound = 1.0 / np.sqrt(fan_in)
        layers.append((rng.uniform(-bound, bound, kernel), rng.uniform(-bound, bound, bias)))
    if config.model == "lstm":  # one bias (Keras'): the recurrent row starts at 0, so both sides start alike
        layers[0][1][1] = 0.0
    return layers
