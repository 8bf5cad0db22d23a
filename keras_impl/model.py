"""The network, its loss and optimizer, and the neutral weight format, in Keras 3.
Mirror of pytorch_impl/model.py: same functions, same order."""
from __future__ import annotations

import keras
import numpy as np

DTYPES = {"float32": "float32", "float64": "float64"}


def build_model(config) -> keras.Sequential:
    """784 -> hidden... -> 10 with LeakyReLU; the `seed` head appends Sigmoid and LogSoftmax."""
    sizes = config.layer_sizes()
    dtype = DTYPES[config.dtype]
    layers = [keras.Input((sizes[0],), dtype=dtype)]
    for i, fan_out in enumerate(sizes[1:]):
        layers.append(keras.layers.Dense(fan_out, dtype=dtype))  # native init: glorot_uniform kernel, zero bias
        if i < len(sizes) - 2:
            layers.append(keras.layers.LeakyReLU(negative_slope=config.negative_slope, dtype=dtype))
    if config.head == "seed":  # the lab report's head
        layers += [keras.layers.Activation("sigmoid", dtype=dtype),
                   keras.layers.Activation(keras.activations.log_softmax, dtype=dtype)]
    return keras.Sequential(layers)


def loss_fn(config):
    """Mean per-sample loss: NLL of the log-probabilities (seed) or cross-entropy on logits."""
    return nll_loss if config.head == "seed" else keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def nll_loss(y_true, log_probs):
    """torch's F.nll_loss: minus the log-probability of the true class."""
    y = keras.ops.cast(keras.ops.reshape(y_true, (-1, 1)), "int32")
    return -keras.ops.squeeze(keras.ops.take_along_axis(log_probs, y, axis=1), axis=1)


def build_optimizer(config, model) -> keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    return keras.optimizers.Adam(learning_rate=config.lr, beta_1=config.beta1, beta_2=config.beta2, epsilon=config.eps)


def dense_layers(model) -> list:
    return [m for m in model.layers if isinstance(m, keras.layers.Dense)]


def export_weights(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(kernel [in, out], bias)] per layer: a Dense kernel is already [in, out]."""
    return [(np.array(m.kernel), np.array(m.bias)) for m in dense_layers(model)]


def import_weights(model, layers) -> None:
    dense = dense_layers(model)
    if len(dense) != len(layers):
        raise ValueError(f"the weights have {len(layers)} layers, the model {len(dense)}")
    for i, (m, (kernel, bias)) in enumerate(zip(dense, layers)):
        if tuple(kernel.shape) != tuple(m.kernel.shape):
            raise ValueError(f"layer {i}: kernel {tuple(kernel.shape)} does not fit Dense kernel {tuple(m.kernel.shape)}")
        m.kernel.assign(np.asarray(kernel, dtype=m.kernel.dtype))
        m.bias.assign(np.asarray(bias, dtype=m.bias.dtype))
