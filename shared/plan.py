"""One framework-free description of the network, as plain data; each implementation translates it
into its own library (pytorch_impl/model.py, keras_impl/model.py: one plan, two translators). The
training half (optimizer, decay, clipping, schedule, loss) is shared/training.py. The written-out
pieces both translations share live here too: the shared dropout masks, drawn in numpy (float64).

The network (model=mlp): Dense, then (batchnorm) BatchNorm, then (layernorm) LayerNorm over the
layer's features, then LeakyReLU, then (dropout) Dropout, per hidden layer; the output Dense; the seed head appends Sigmoid and LogSoftmax.
The CNN (model=cnn): the flat 784 pixels as a 28x28 image with one channel; per entry of `channels`
a 3x3 convolution ('same' padding, stride 1) with that many outputs, LeakyReLU, 2x2 max pooling
(downsample=stride: the convolution strides 2 instead, 'same' padding, and no pooling); then flatten in (row, column, channel) order and the output Dense; the same heads. Layouts are
Keras' (NHWC images, [kh, kw, in, out] kernels): the neutral weight format's; PyTorch's translation
computes in NCHW and flattens in this order, so the Dense kernel is the same matrix on both sides.
The recurrent models (model=gru, model=lstm): the flat 784 pixels as 28 rows of 28 pixels, read top to
bottom by one GRU or LSTM layer of rnn_units; its last state into the output Dense; the same heads.
The GRU is Keras' reset_after=True cell, which is PyTorch's (the reset gate applied after the recurrent
product). Layout and gate order are Keras' (the neutral weight format's, shared/weights.py): kernels
[in, gates x units] with gates GRU z, r, h and LSTM i, f, c, o; PyTorch stores [gates x units, in] with
the GRU's gates r, z, n (its LSTM's are Keras' order), and each twin converts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from shared import data as fdata

IMAGE = fdata.SIDE  # Fashion-MNIST images are 28 x 28, one channel
CLASSES = len(fdata.CLASSES)
PIXELS = fdata.PIXELS
CONV_KERNEL = 3  # the CNN's convolutions: 3x3, 'same' padding, stride 1
POOL = 2  # then 2x2 max pooling, stride 2 (28 -> 14 -> 7 -> 3 -> 1)
GATES = {"gru": 3, "lstm": 4}  # the blocks of a recurrent layer's kernels and bias, one per gate
# The gate-order probe (each twin's defaults.recurrent_probe; compare/defaults.py reads it): a one-unit
# cell, input x, state h (an LSTM's cell state c), every recurrent weight `recurrent`, biases 0, and
# `signal` on the input weight of one stored gate block at a time: each gate moves the output its own way.
GATE_PROBE = {"x": 1.0, "h": 1.0, "c": 2.0, "recurrent": 1.0, "signal": -10.0}


# Every layer kind the plan emits; each twin's translate handles exactly these and refuses any other.
KINDS = (
    "dense",
    "conv",
    "batchnorm",
    "layernorm",
    "leaky_relu",
    "dropout",
    "maxpool",
    "reshape",
    "rows",
    "gru",
    "lstm",
    "flatten",
    "sigmoid",
    "log_softmax",
)


@dataclass(frozen=True)
class Layer:
    kind: str  # one of KINDS
    width: int = 0  # dense: outputs; conv: output channels; gru, lstm: state size; norms, dropout, flatten: features
    fan_in: int = 0  # dense: inputs; conv: input channels; gru, lstm: inputs per time step
    index: int = 0  # weighted layers: i (0-based, output layer last); norms, dropout: hidden layer i
    kernel: int = 0  # conv: kernel size
    stride: int = 1  # conv: its stride (2 with downsample=stride; each twin pads it as stride_padding says)


def network(config) -> list[Layer]:
    if config.model == "cnn":
        return cnn(config)
    if config.model in GATES:
        return recurrent(config)
    sizes = config.layer_sizes()
    out = []
    for i, (fan_in, width) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append(Layer("dense", width, fan_in, i))
        if i < len(sizes) - 2:
            if config.batchnorm:
                out.append(Layer("batchnorm", width, index=i))
            if config.layernorm:
                out.append(Layer("layernorm", width, index=i))
            out.append(Layer("leaky_relu", width, index=i))
            if config.dropout > 0:
                out.append(Layer("dropout", width, index=i))
    if config.head == "seed":
        out += [Layer("sigmoid"), Layer("log_softmax")]
    return out


def cnn(config) -> list[Layer]:
    out, side, fan_in = [Layer("reshape")], IMAGE, 1
    stride = config.downsample == "stride"
    for i, ch in enumerate(config.channels):
        out += [Layer("conv", ch, fan_in, i, CONV_KERNEL, 2 if stride else 1), Layer("leaky_relu", index=i)]
        out += [] if stride else [Layer("maxpool")]
        side, fan_in = (-(-side // 2) if stride else side // POOL), ch  # 'same' with stride 2: ceil(side / 2)
    out += [Layer("flatten", side * side * fan_in), Layer("dense", CLASSES, side * side * fan_in, len(config.channels))]
    return out + ([Layer("sigmoid"), Layer("log_softmax")] if config.head == "seed" else [])


def recurrent(config) -> list[Layer]:
    rows = [Layer("rows"), Layer(config.model, config.rnn_units, IMAGE, 0)]
    out = rows + [Layer("dense", CLASSES, config.rnn_units, 1)]
    return out + ([Layer("sigmoid"), Layer("log_softmax")] if config.head == "seed" else [])


def weight_shapes(config) -> list[tuple[tuple, tuple, int]]:
    """(kernel shape, bias shape, fan_in) of each weighted layer in order, in the neutral layout: dense
    [in, out], convolution [kh, kw, in, out], each with an [out] bias; a recurrent layer's input kernel
    above its recurrent kernel, [in + units, gates x units], and its input bias above its recurrent
    bias, [2, gates x units] (fan_in: the units, PyTorch's bound 1/sqrt(units))."""
    out = []
    for l in network(config):
        if l.kind == "conv":
            out.append(((l.kernel, l.kernel, l.fan_in, l.width), (l.width,), l.fan_in * l.kernel * l.kernel))
        elif l.kind in GATES:
            g = GATES[l.kind] * l.width
            out.append(((l.fan_in + l.width, g), (2, g), l.width))
        elif l.kind == "dense":
            out.append(((l.fan_in, l.width), (l.width,), l.fan_in))
    return out


def param_count(config) -> int:
    """Trainable parameters (kernels and biases; batch and layer norm's scale and offset too; an LSTM's
    one bias where it has one: Keras')."""
    n = sum(math.prod(k) + math.prod(b) for k, b, _ in weight_shapes(config))
    n -= config.rnn_units * GATES["lstm"] if config.model == "lstm" and config.lstm_bias == "single" else 0
    return n + sum(2 * l.width for l in network(config) if l.kind in ("batchnorm", "layernorm"))


def activation_units(config) -> int:
    """Values per image that the layers output (memory estimates): each weighted layer's output and
    each pooling's, or the MLP's hidden and output widths."""
    if config.model in GATES:  # each row's gates and state, for the backward pass through time
        return IMAGE * (GATES[config.model] + 1) * config.rnn_units + CLASSES
    if config.model != "cnn":
        return sum(config.layer_sizes()[1:])
    side, units = IMAGE, 0
    for ch in config.channels:
        if config.downsample == "stride":
            side = -(-side // 2)
            units += side * side * ch
        else:
            units += side * side * ch + (side // POOL) ** 2 * ch
            side //= POOL
    return units + CLASSES


def describe(config) -> str:
    """The network in a few words: '784-200-200-10 MLP' or 'CNN conv16-pool-conv32-pool-dense10'."""
    if config.model == "cnn":
        down = "/2" if config.downsample == "stride" else "-pool"
        return (
            "CNN "
            + "-".join(f"conv{c}{down}" for c in config.channels)
            + f"-dense10 ({param_count(config):,} parameters)"
        )
    if config.model in GATES:
        n = param_count(config)
        two = config.model == "lstm" and config.lstm_bias == "native"  # Keras' LSTM has one bias
        one = param_count(replace(config, lstm_bias="single")) if two else n
        count = f"{n:,} parameters" + (f"; Keras' one bias: {one:,}" if two else "")
        return f"{config.model.upper()} {config.rnn_units} over 28 rows-dense10 ({count})"
    norm = " with layer norm" if config.layernorm else ""
    return f"{'-'.join(map(str, config.layer_sizes()))} MLP{norm} ({param_count(config):,} parameters)"


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
