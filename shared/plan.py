"""One framework-free description of the network and of the training features, as plain data; each
implementation translates it into its own library (pytorch_impl/model.py, keras_impl/model.py: one
plan, two translators). The written-out pieces both translations share live here too: the learning
rate of every step and the shared dropout masks, computed in numpy (float64).

The network (model=mlp): Dense, then (batchnorm) BatchNorm, then LeakyReLU, then (dropout) Dropout,
per hidden layer; the output Dense; the seed head appends Sigmoid and LogSoftmax.
The CNN (model=cnn): the flat 784 pixels as a 28x28 image with one channel; per entry of `channels`
a 3x3 convolution ('same' padding, stride 1) with that many outputs, LeakyReLU, 2x2 max pooling;
then flatten in (row, column, channel) order and the output Dense; the same heads. Layouts are
Keras' (NHWC images, [kh, kw, in, out] kernels): the neutral weight format's; PyTorch's translation
computes in NCHW and flattens in this order, so the Dense kernel is the same matrix on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shared.batches import steps_per_epoch as _steps

TRAIN_ROWS = 60000
# the config keys of the porting features (shared/config.py documents them)
FEATURE_KEYS = (
    "batchnorm",
    "bn_momentum",
    "bn_eps",
    "bn_running_var",
    "dropout",
    "dropout_masks",
    "weight_decay",
    "weight_decay_form",
    "clip_norm",
    "clip_scope",
    "lr_schedule",
    "lr_schedule_unit",
    "lr_step_epochs",
    "lr_step_gamma",
    "label_smoothing",
)  # the official training set (shared/data.py checks every file's shape)


IMAGE = 28  # Fashion-MNIST images are 28 x 28, one channel
CONV_KERNEL = 3  # the CNN's convolutions: 3x3, 'same' padding, stride 1
POOL = 2  # then 2x2 max pooling, stride 2 (28 -> 14 -> 7 -> 3 -> 1)


# Every layer kind the plan emits; each twin's translate handles exactly these and refuses any other.
KINDS = (
    "dense",
    "conv",
    "batchnorm",
    "leaky_relu",
    "dropout",
    "maxpool",
    "reshape",
    "flatten",
    "sigmoid",
    "log_softmax",
)


@dataclass(frozen=True)
class Layer:
    kind: str  # one of KINDS
    width: int = 0  # dense: outputs; conv: output channels; batchnorm, dropout: features; flatten: features
    fan_in: int = 0  # dense: inputs; conv: input channels
    index: int = 0  # dense, conv: weighted layer i (0-based, output layer last); batchnorm, dropout: hidden layer i
    kernel: int = 0  # conv: kernel size


def network(config) -> list[Layer]:
    if config.model == "cnn":
        return cnn(config)
    sizes = config.layer_sizes()
    out = []
    for i, (fan_in, width) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append(Layer("dense", width, fan_in, i))
        if i < len(sizes) - 2:
            if config.batchnorm:
                out.append(Layer("batchnorm", width, index=i))
            out.append(Layer("leaky_relu", width, index=i))
            if config.dropout > 0:
                out.append(Layer("dropout", width, index=i))
    if config.head == "seed":
        out += [Layer("sigmoid"), Layer("log_softmax")]
    return out


def cnn(config) -> list[Layer]:
    out, side, fan_in = [Layer("reshape")], IMAGE, 1
    for i, ch in enumerate(config.channels):
        out += [Layer("conv", ch, fan_in, i, CONV_KERNEL), Layer("leaky_relu", index=i), Layer("maxpool")]
        side, fan_in = side // POOL, ch
    out += [Layer("flatten", side * side * fan_in), Layer("dense", 10, side * side * fan_in, len(config.channels))]
    return out + ([Layer("sigmoid"), Layer("log_softmax")] if config.head == "seed" else [])


def weight_shapes(config) -> list[tuple[tuple, int]]:
    """(kernel shape, fan_in) of each weighted layer in order, in the neutral layout: dense [in, out],
    convolution [kh, kw, in, out]; each has a bias of the kernel's last size."""
    return [
        ((l.kernel, l.kernel, l.fan_in, l.width), l.fan_in * l.kernel * l.kernel)
        if l.kind == "conv"
        else ((l.fan_in, l.width), l.fan_in)
        for l in network(config)
        if l.kind in ("dense", "conv")
    ]


def param_count(config) -> int:
    """Trainable parameters (kernels and biases; batch norm's scale and offset too)."""
    n = sum(math.prod(k) + k[-1] for k, _ in weight_shapes(config))
    return n + sum(2 * l.width for l in network(config) if l.kind == "batchnorm")


def activation_units(config) -> int:
    """Values per image that the layers output (memory estimates): each weighted layer's output and
    each pooling's, or the MLP's hidden and output widths."""
    if config.model != "cnn":
        return sum(config.layer_sizes()[1:])
    side, units = IMAGE, 0
    for ch in config.channels:
        units += side * side * ch + (side // POOL) ** 2 * ch
        side //= POOL
    return units + 10


def describe(config) -> str:
    """The network in a few words: '784-200-200-10 MLP' or 'CNN conv16-pool-conv32-pool-dense10'."""
    if config.model == "cnn":
        return (
            "CNN "
            + "-".join(f"conv{c}-pool" for c in config.channels)
            + f"-dense10 ({param_count(config):,} parameters)"
        )
    return f"{'-'.join(map(str, config.layer_sizes()))} MLP ({param_count(config):,} parameters)"


def own(config, key: str, mine: str) -> str:
    """A choice key's value on this side: `mine` (the library's idiom) where the config says native."""
    value = getattr(config, key)
    return mine if value == "native" else value


# ---------------------------------------------------------------- learning-rate schedules


def steps_per_epoch(config) -> int:
    return _steps(TRAIN_ROWS, config.batch_size, config.last_batch)


def schedule_length(config, unit: str) -> int:
    """The schedule's horizon in its unit: all epochs, or all steps of training."""
    return config.epochs * (steps_per_epoch(config) if unit == "step" else 1)


def step_every(config, unit: str) -> int:
    """The step schedule's period in its unit: lr_step_epochs epochs, counted in epochs or in steps."""
    return config.lr_step_epochs * (steps_per_epoch(config) if unit == "step" else 1)


def lr_at(config, t: int, unit: str) -> float:
    """The exact learning rate at t (0-based, in `unit`): cosine from lr to 0 over the training, or lr
    times lr_step_gamma ** (number of lr_step_epochs passed)."""
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        return config.lr * (1 + math.cos(math.pi * t / schedule_length(config, unit))) / 2
    return config.lr * config.lr_step_gamma ** (t // step_every(config, unit))


def lr_table(config, unit: str) -> np.ndarray:
    """The learning rate of every training step (0-based), float64: what ops=exact applies on both sides."""
    spe = steps_per_epoch(config)
    steps = np.arange(config.epochs * spe)
    return np.array([lr_at(config, int(s) if unit == "step" else int(s) // spe, unit) for s in steps])


# ---------------------------------------------------------------- shared dropout masks


def dropout_masks(config, epoch: int, step: int, rows: int) -> list[np.ndarray]:
    """One mask per dropout layer for 1-based (epoch, step): keep / (1 - rate), float64 [rows, width],
    drawn in numpy from (seed, epoch, step, layer), so both frameworks drop the same units."""
    out = []
    for layer in network(config):
        if layer.kind == "dropout":
            rng = np.random.Generator(
                np.random.PCG64(np.random.SeedSequence([config.seed, epoch, step, layer.index, 0xD0]))
            )
            keep = rng.random((rows, layer.width)) >= config.dropout
            out.append(keep / (1.0 - config.dropout))
    return out


def shared_masks(config) -> bool:
    return config.dropout > 0 and config.dropout_masks == "shared"


def mask_feed(config, epoch: int, index_batches, set_masks):
    """The `before` hook of shared/runner.step_by_step that hands step i its shared dropout masks
    (`set_masks(masks)`, the implementation's), or None where masks are not shared: the default loop
    stays as it was."""
    if not shared_masks(config):
        return None
    return lambda i: set_masks(dropout_masks(config, epoch, i, len(index_batches[i - 1])))


# ---------------------------------------------------------------- what differs, and how to match it

# The value a matched cell uses where the config leaves a choice to each library ("native"): PyTorch's
# convention, stated once here (lockstep and ablate both use it); the defaults table reads the real ones.
MATCH = {
    "bn_momentum": 0.1,
    "bn_eps": 1e-5,
    "bn_running_var": "unbiased",
    "clip_scope": "global",
    "lr_schedule_unit": "epoch",
    "dropout_masks": "shared",
    "weight_decay": 0.01,
}


def feature_differences(config) -> dict[str, dict]:
    """The porting features on which the two libraries' idioms differ for this config -> the overrides
    that make each the same on both sides (only those the config leaves native)."""
    out = {}
    if config.batchnorm:
        conv = {k: MATCH[k] for k in ("bn_momentum", "bn_eps") if getattr(config, k) == "native"}
        if conv:
            out["batch-norm momentum and epsilon"] = conv
        if config.bn_running_var == "native":
            out["batch-norm running variance"] = {"bn_running_var": MATCH["bn_running_var"]}
    if config.dropout > 0 and config.dropout_masks == "native":
        out["dropout masks"] = {"dropout_masks": "shared"}
    if config.weight_decay == "native":
        out["AdamW default decay"] = {"weight_decay": MATCH["weight_decay"]}
    if (
        config.weight_decay and config.weight_decay_form == "native" and config.optimizer != "adamw"
    ):  # AdamW: decoupled on both
        out["weight-decay form"] = {"weight_decay_form": "decoupled" if config.optimizer == "adamw" else "coupled"}
    if config.clip_norm and config.clip_scope == "native":
        out["clipping scope"] = {"clip_scope": MATCH["clip_scope"]}
    if config.lr_schedule != "constant" and config.lr_schedule_unit == "native":
        out["schedule unit"] = {"lr_schedule_unit": MATCH["lr_schedule_unit"]}
    return out


# The choice keys whose matched value above is PyTorch's own idiom (pytorch_impl/model.py OWN_*; a
# test checks): on the PyTorch side, native and the matched value compute the same thing.
PYTORCH_IDIOMS = ("bn_running_var", "clip_scope", "lr_schedule_unit", "weight_decay_form")


def pytorch_canonical(config) -> dict:
    """The overrides that spell this config's PyTorch-side native choices explicitly (same computation)."""
    return {k: v for over in feature_differences(config).values() for k, v in over.items() if k in PYTORCH_IDIOMS}


def features_matched(config) -> dict:
    """All of feature_differences' overrides together."""
    return {k: v for over in feature_differences(config).values() for k, v in over.items()}
