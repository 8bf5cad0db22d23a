"""The network, its loss and optimizer, and the neutral weight format, in Keras 3.
Mirror of pytorch_impl/model.py: same functions, same order. `ops=exact` swaps the library's layers
and optimizers for the written-out ones below (the same formulas, line for line, as in PyTorch)."""
from __future__ import annotations

import inspect

import keras
import numpy as np
from keras import ops

DTYPES = {"float32": "float32", "float64": "float64"}
OWN_RULE = "keras"  # this framework's own definition of the optimizer updates


def library_default(cls, name):
    """A default read from the installed library's signature (never a hard-coded copy)."""
    return inspect.signature(cls).parameters[name].default


def negative_slope(config) -> float:
    return library_default(keras.layers.LeakyReLU, "negative_slope") if config.negative_slope == "native" else config.negative_slope


def adam_eps(config) -> float:
    return library_default(keras.optimizers.Adam, "epsilon") if config.eps == "native" else config.eps


def _const(value, like):
    """A Python number as a tensor of `like`'s dtype, converted directly (ops.cast of a Python float
    goes through float32 on the TensorFlow backend)."""
    return ops.convert_to_tensor(value, dtype=like.dtype)


class ExactDense(keras.layers.Dense):
    """x @ kernel + bias in the tensor's dtype (Keras' torch backend computes float64 matmul in float32)."""

    def call(self, x, training=None):
        return ops.add(ops.einsum("ij,jk->ik", x, self.kernel), self.bias)


class ExactLeakyReLU(keras.layers.Layer):
    """x if x > 0 else slope * x, with the slope in the tensor's dtype (TensorFlow's leaky_relu
    takes it as a float32 attribute)."""

    def __init__(self, slope: float, **kwargs):
        super().__init__(**kwargs)
        self.slope = slope

    def call(self, x):
        return ops.where(ops.greater(x, 0), x, ops.multiply(x, _const(self.slope, x)))


def build_model(config) -> keras.Sequential:
    """784 -> hidden... -> 10 with LeakyReLU; the `seed` head appends Sigmoid and LogSoftmax."""
    sizes = config.layer_sizes()
    dtype = DTYPES[config.dtype]
    exact = config.ops == "exact"
    layers = [keras.Input((sizes[0],), dtype=dtype)]
    for i, fan_out in enumerate(sizes[1:]):
        # native init: glorot_uniform kernel, zero bias
        layers.append((ExactDense if exact else keras.layers.Dense)(fan_out, dtype=dtype))
        if i < len(sizes) - 2:
            slope = negative_slope(config)
            layers.append(ExactLeakyReLU(slope, dtype=dtype) if exact
                          else keras.layers.LeakyReLU(negative_slope=slope, dtype=dtype))
    if config.head == "seed":  # the lab report's head
        layers += [keras.layers.Activation("sigmoid", dtype=dtype),
                   keras.layers.Activation(keras.activations.log_softmax, dtype=dtype)]
    return keras.Sequential(layers)


def loss_fn(config):
    """Mean per-sample loss: NLL of the log-probabilities (seed) or cross-entropy on logits."""
    if config.ops == "exact":
        return MeanLoss(nll_loss if config.head == "seed" else _cross_entropy)
    return nll_loss if config.head == "seed" else keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def nll_loss(y_true, log_probs):
    """torch's F.nll_loss: minus the log-probability of the true class (per sample)."""
    y = ops.cast(ops.reshape(y_true, (-1, 1)), "int32")
    return -ops.squeeze(ops.take_along_axis(log_probs, y, axis=1), axis=1)


def _cross_entropy(y_true, logits):
    return keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)


class MeanLoss(keras.losses.Loss):
    """The batch mean of per-sample losses, not Keras' reduction (whose divide_no_nan computes in
    float32 on the torch backend, scaling float64 gradients by a float32 1/batch)."""

    def __init__(self, per_sample):
        super().__init__(reduction=None, name="mean_loss")
        self.per_sample = per_sample

    def call(self, y_true, y_pred):
        return mean(self.per_sample(y_true, y_pred))


def mean(values):
    """sum / n in the values' dtype (ops.mean computes in float32 on the torch backend)."""
    return ops.divide(ops.sum(values), _const(ops.shape(values)[0], values)) if len(ops.shape(values)) else values


class WrittenOut(keras.optimizers.Optimizer):
    """SGD (momentum, nesterov) and Adam written out in either framework's definition (`rule`):
      SGD   torch: b = mu*b + g;  w -= lr * (g + mu*b if nesterov else b)
            keras: m = mu*m - lr*g;  w += (mu*m - lr*g if nesterov else m)
      Adam  torch: w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
            keras: w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
    (m, v the usual moving averages). Every constant is converted straight to the variable's dtype."""

    def __init__(self, config, rule: str, **kwargs):
        super().__init__(learning_rate=config.lr, name="written_out", **kwargs)
        self.config, self.rule = config, rule

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.slots = [[self.add_variable_from_reference(v, name) for name in ("m", "v")] for v in variables]

    def update_step(self, g, w, learning_rate):
        c = self.config
        m, v = self.slots[self._get_variable_index(w)]
        k = lambda x: _const(x, w)
        g = ops.cast(g, w.dtype)
        if c.optimizer == "sgd":
            b = m
            if self.rule == "torch":
                self.assign(b, b * k(c.momentum) + g)
                self.assign(w, w - k(c.lr) * (g + k(c.momentum) * b if c.nesterov else b))
            else:
                self.assign(b, b * k(c.momentum) - g * k(c.lr))
                self.assign(w, w + (b * k(c.momentum) - g * k(c.lr) if c.nesterov else b))
            return
        t = ops.cast(self.iterations + 1, w.dtype)
        eps = k(adam_eps(c))
        self.assign(m, m + (g - m) * k(1 - c.beta1))
        self.assign(v, v + (g * g - v) * k(1 - c.beta2))
        bc1, bc2 = 1 - ops.power(k(c.beta1), t), 1 - ops.power(k(c.beta2), t)
        if self.rule == "torch":
            self.assign(w, w - (k(c.lr) / bc1) * m / (ops.sqrt(v) / ops.sqrt(bc2) + eps))
        else:
            self.assign(w, w - m * (k(c.lr) * ops.sqrt(bc2) / bc1) / (ops.sqrt(v) + eps))


def build_optimizer(config, model) -> keras.optimizers.Optimizer:
    """The library's optimizer (its own definition, ops=native), else the written-out one."""
    rule = OWN_RULE if config.update_rule == "native" else config.update_rule
    if config.ops == "exact" or rule != OWN_RULE:
        return WrittenOut(config, rule)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    return keras.optimizers.Adam(learning_rate=config.lr, beta_1=config.beta1, beta_2=config.beta2, epsilon=adam_eps(config))


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
