"""The network, its loss and optimizer, and the neutral weight format, in Keras 3.
Mirror of pytorch_impl/model.py: same functions, same order. `ops=exact` swaps the library's layers
and optimizers for the written-out ones below (the same formulas, line for line, as in PyTorch)."""

from __future__ import annotations

import functools
import inspect

import keras
import numpy as np
from keras import ops

from shared import plan, training

DTYPES = {"float32": "float32", "float64": "float64", "bfloat16": "bfloat16"}


def library_default(cls, name):
    """A default read from the installed library's signature (never a hard-coded copy)."""
    return inspect.signature(cls).parameters[name].default


def negative_slope(config) -> float:
    return (
        library_default(keras.layers.LeakyReLU, "negative_slope")
        if config.negative_slope == "native"
        else config.negative_slope
    )


def _const(value, like):
    """A Python number as a tensor of `like`'s dtype, converted directly (ops.cast of a Python float
    goes through float32 on the TensorFlow backend)."""
    return ops.convert_to_tensor(value, dtype=like.dtype)


class ExactDense(keras.layers.Dense):
    """x @ kernel + bias, written out as in PyTorch: operands in the compute precision (the policy casts
    the input and the variables), products and bias accumulated in at least float32 and rounded once
    to the compute precision (TensorFlow's graph fuses a bfloat16 MatMul with its bias add that way,
    while eager ops round the product first). In float32 and float64 this is plain x @ kernel + bias
    in the tensor's dtype (einsum: Keras' torch backend computes float64 matmul in float32)."""

    def call(self, x, training=None):
        low = keras.backend.standardize_dtype(x.dtype)
        up = lambda t: ops.cast(t, "float64" if low == "float64" else "float32")
        return ops.cast(ops.add(ops.einsum("ij,jk->ik", up(x), up(self.kernel)), up(self.bias)), low)


class ExactLeakyReLU(keras.layers.Layer):
    """x if x > 0 else slope * x, with the slope in the tensor's dtype (TensorFlow's leaky_relu
    takes it as a float32 attribute)."""

    def __init__(self, slope: float, **kwargs):
        super().__init__(**kwargs)
        self.slope = slope

    def call(self, x):
        return ops.where(ops.greater(x, 0), x, ops.multiply(x, _const(self.slope, x)))


class ExactBatchNorm(keras.layers.Layer):
    """Batch norm written out (the same lines as in PyTorch): training normalises with the batch mean and
    biased variance and moves the moving averages by `new` (the weight of the batch statistics,
    PyTorch's convention), the moving variance taking the biased or unbiased batch variance;
    evaluation normalises with the moving averages. Variable names as BatchNormalization's."""

    def __init__(self, new: float, eps: float, running_var: str, **kwargs):
        super().__init__(**kwargs)
        self.new, self.eps, self.unbiased = new, eps, running_var == "unbiased"

    def build(self, shape):
        width = (shape[-1],)
        self.gamma = self.add_weight(shape=width, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=width, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=width, initializer="zeros", name="moving_mean", trainable=False)
        self.moving_variance = self.add_weight(shape=width, initializer="ones", name="moving_variance", trainable=False)

    def call(self, x, training=None):
        k = lambda v: _const(v, x)
        if training:
            n = ops.shape(x)[0]
            mean = ops.divide(ops.sum(x, axis=0), k(n))
            d = ops.subtract(x, mean)
            ss = ops.sum(ops.multiply(d, d), axis=0)
            var = ops.divide(ss, k(n))
            batch_var = ops.divide(ss, k(n - 1)) if self.unbiased else var
            self.moving_mean.assign(self.moving_mean * k(1 - self.new) + ops.stop_gradient(mean) * k(self.new))
            self.moving_variance.assign(
                self.moving_variance * k(1 - self.new) + ops.stop_gradient(batch_var) * k(self.new)
            )
        else:
            d, var = ops.subtract(x, self.moving_mean), self.moving_variance
        return ops.add(ops.multiply(ops.divide(d, ops.sqrt(ops.add(var, k(self.eps)))), self.gamma), self.beta)


class ExactLayerNorm(keras.layers.Layer):
    """Layer norm written out (the same lines as in PyTorch): each sample normalised over its features
    with their mean and biased variance, then scaled and offset. Variable names as LayerNormalization's."""

    def __init__(self, eps: float, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps

    def build(self, shape):
        width = (shape[-1],)
        self.gamma = self.add_weight(shape=width, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=width, initializer="zeros", name="beta")

    def call(self, x):
        k = lambda v: _const(v, x)
        n = ops.shape(x)[-1]
        d = ops.subtract(x, ops.divide(ops.sum(x, axis=-1, keepdims=True), k(n)))
        var = ops.divide(ops.sum(ops.multiply(d, d), axis=-1, keepdims=True), k(n))
        return ops.add(ops.multiply(ops.divide(d, ops.sqrt(ops.add(var, k(self.eps)))), self.gamma), self.beta)


def _tanh(x):
    """tanh(x) as 2 sigmoid(2x) - 1, the same line as in PyTorch: Keras' ops.tanh on the JAX backend
    returns float32 for a float64 input."""
    return ops.subtract(ops.multiply(_const(2, x), ops.sigmoid(ops.multiply(_const(2, x), x))), _const(1, x))


def _mm(a, b):
    """a @ b in the operands' dtype (ops.matmul on the torch backend computes float64 in float32)."""
    return ops.einsum("ij,jk->ik", a, b)


def _rnn_parts(m, x):
    """The recurrent layer's kernel, recurrent kernel and bias in the input's dtype; a zero initial state."""
    parts = (m.cell.kernel, m.cell.recurrent_kernel, m.cell.bias)
    return (*(ops.cast(p, x.dtype) for p in parts), ops.zeros((ops.shape(x)[0], m.units), dtype=x.dtype))


class ExactGRU(keras.layers.GRU):
    """The GRU cell written out (the same lines as in PyTorch; Keras' gate order z, r, h): per row,
    gi = x kernel + b_in, gh = h recurrent_kernel + b_rec; z, r = sigmoid(gi + gh);
    hh = tanh(gi_h + r * gh_h); h = z * h + (1 - z) * hh."""

    def call(self, sequences, initial_state=None, mask=None, training=False):
        kernel, recurrent, bias, h = _rnn_parts(self, sequences)
        one = _const(1, sequences)
        for t in range(sequences.shape[1]):
            iz, ir, ih = ops.split(ops.add(_mm(sequences[:, t], kernel), bias[0]), 3, axis=1)
            hz, hr, hh = ops.split(ops.add(_mm(h, recurrent), bias[1]), 3, axis=1)
            z, r = ops.sigmoid(ops.add(iz, hz)), ops.sigmoid(ops.add(ir, hr))
            h = ops.add(ops.multiply(z, h), ops.multiply(ops.subtract(one, z), _tanh(ops.add(ih, ops.multiply(r, hh)))))
        return h


class ExactLSTM(keras.layers.LSTM):
    """The LSTM cell written out (the same lines as in PyTorch; gate order i, f, c, o on both sides): per
    row, z = x kernel + h recurrent_kernel + bias; c = f * c + i * tanh(c_); h = o * tanh(c), i, f, o
    sigmoids."""

    def call(self, sequences, initial_state=None, mask=None, training=False):
        kernel, recurrent, bias, h = _rnn_parts(self, sequences)
        c = ops.zeros_like(h)
        for t in range(sequences.shape[1]):
            z = ops.add(ops.add(_mm(sequences[:, t], kernel), _mm(h, recurrent)), bias)
            i, f, g, o = ops.split(z, 4, axis=1)
            c = ops.add(ops.multiply(ops.sigmoid(f), c), ops.multiply(ops.sigmoid(i), _tanh(g)))
            h = ops.multiply(ops.sigmoid(o), _tanh(c))
        return h


class SharedDropout(keras.layers.Layer):
    """Dropout with masks given from outside (shared/plan.py draws them; set_masks assigns them to
    this layer's variable before each step): x * mask in training, x in evaluation. The mask already
    holds keep / (1 - rate); its rows are the batch size (a short last batch uses the first rows)."""

    def __init__(self, rows: int, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows

    def build(self, shape):
        self.mask = self.add_weight(shape=(self.rows, shape[-1]), initializer="ones", name="mask", trainable=False)

    def call(self, x, training=None):
        return ops.multiply(x, self.mask[: ops.shape(x)[0]]) if training else x


class FlattenNHWC(keras.layers.Flatten):
    """Flatten in (row, column, channel) order, the neutral layout's: Keras' own Flatten of NHWC
    (channels_last) feature maps already gives it."""


OWN_BN_VAR = "biased"  # BatchNormalization's moving variance takes the biased batch variance


def idioms() -> training.Idioms:
    """Keras' own training choices where a config says native, as data (shared/training.py applies them)."""
    opt = keras.optimizers
    return training.Idioms(
        rule="keras",  # keras.optimizers' own update definitions
        # what optimizer(weight_decay=...) does: w -= lr*wd*w before the update, for every optimizer
        decay_form={"sgd": "decoupled", "adam": "decoupled", "adamw": "decoupled", "rmsprop": "decoupled"},
        clip_scope="per_variable",  # an optimizer's clipnorm clips each variable's gradient on its own
        schedule_unit="step",  # a LearningRateSchedule is called with the optimizer's step count
        eps={
            k: library_default(cls, "epsilon")
            for k, cls in (("adam", opt.Adam), ("adamw", opt.AdamW), ("rmsprop", opt.RMSprop))
        },
        adamw_decay=library_default(opt.AdamW, "weight_decay"),
        rho=library_default(opt.RMSprop, "rho"),
    )


def training_plan(config) -> training.Training:
    """The training specs of `config` with Keras' own choices where it says native."""
    return training.resolve(config, idioms())


def bn_new_weight(config) -> float:
    """The weight of the new batch statistics in the moving averages: 1 - BatchNormalization's momentum."""
    return (
        1 - library_default(keras.layers.BatchNormalization, "momentum")
        if config.bn_momentum == "native"
        else config.bn_momentum
    )


def bn_eps(config) -> float:
    return library_default(keras.layers.BatchNormalization, "epsilon") if config.bn_eps == "native" else config.bn_eps


def ln_eps(config) -> float:
    return library_default(keras.layers.LayerNormalization, "epsilon") if config.ln_eps == "native" else config.ln_eps


def _layernorm(layer, config, dtype, l2):
    if config.ops == "exact":
        return ExactLayerNorm(ln_eps(config), dtype=dtype)
    return keras.layers.LayerNormalization(
        epsilon=ln_eps(config), dtype=dtype, gamma_regularizer=l2(), beta_regularizer=l2()
    )


def _recurrent(layer, config, dtype, l2):
    exact = config.ops == "exact"
    cls = {"gru": (keras.layers.GRU, ExactGRU), "lstm": (keras.layers.LSTM, ExactLSTM)}[layer.kind][exact]
    return cls(layer.width, dtype=dtype, kernel_regularizer=l2(), recurrent_regularizer=l2(), bias_regularizer=l2())


def _batchnorm(layer, config, dtype, l2):
    running_var = OWN_BN_VAR if config.bn_running_var == "native" else config.bn_running_var
    if config.ops == "exact" or running_var != OWN_BN_VAR:
        return ExactBatchNorm(bn_new_weight(config), bn_eps(config), running_var, dtype=dtype)
    momentum = (
        library_default(keras.layers.BatchNormalization, "momentum")
        if config.bn_momentum == "native"
        else 1 - config.bn_momentum
    )
    return keras.layers.BatchNormalization(
        momentum=momentum, epsilon=bn_eps(config), dtype=dtype, gamma_regularizer=l2(), beta_regularizer=l2()
    )


def _leaky_relu(layer, config, dtype, l2):
    slope = negative_slope(config)
    exact = config.ops == "exact"
    return ExactLeakyReLU(slope, dtype=dtype) if exact else keras.layers.LeakyReLU(negative_slope=slope, dtype=dtype)


def _dropout(layer, config, dtype, l2):
    if plan.shared_masks(config):
        return SharedDropout(config.batch_size, dtype=dtype)
    return keras.layers.Dropout(config.dropout, dtype=dtype)


# Every layer kind of the plan (plan.KINDS) -> its Keras layer (a test checks the keys are exactly those);
# dtype: the layer's dtype policy; l2(): the coupled-decay regularizer, or None
LAYERS = {
    # native init: glorot_uniform kernel, zero bias
    "dense": lambda l, c, dtype, l2: (ExactDense if c.ops == "exact" else keras.layers.Dense)(
        l.width, dtype=dtype, kernel_regularizer=l2(), bias_regularizer=l2()
    ),
    # NHWC, 'same' padding (with a stride, the odd row and column at the bottom and right: stride_padding's
    # both values); the library's convolution in the tensor's dtype under ops=exact too
    "conv": lambda l, c, dtype, l2: keras.layers.Conv2D(
        l.width, l.kernel, strides=l.stride, padding="same", dtype=dtype, kernel_regularizer=l2(), bias_regularizer=l2()
    ),
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "leaky_relu": _leaky_relu,
    "dropout": _dropout,
    "maxpool": lambda l, c, dtype, l2: keras.layers.MaxPooling2D(plan.POOL, dtype=dtype),
    # the flat pixels as NHWC images
    "reshape": lambda l, c, dtype, l2: keras.layers.Reshape((plan.IMAGE, plan.IMAGE, 1), dtype=dtype),
    "rows": lambda l, c, dtype, l2: keras.layers.Reshape((plan.IMAGE, plan.IMAGE), dtype=dtype),  # 28 rows of 28
    # native init: glorot_uniform kernel, orthogonal recurrent kernel, zero bias (an LSTM's forget gate: 1,
    # unit_forget_bias); the GRU's reset_after=True, PyTorch's cell
    "gru": _recurrent,
    "lstm": _recurrent,
    "flatten": lambda l, c, dtype, l2: FlattenNHWC(dtype=dtype),  # (row, column, channel): the neutral order
    "sigmoid": lambda l, c, dtype, l2: keras.layers.Activation("sigmoid", dtype=dtype),  # the lab report's head
    "log_softmax": lambda l, c, dtype, l2: keras.layers.Activation(keras.activations.log_softmax, dtype=dtype),
}


def translate(layer, config):
    """One layer of the framework-free plan (shared/plan.py) as a Keras layer."""
    if layer.kind not in LAYERS:
        raise ValueError(f"no Keras translation for layer kind {layer.kind!r} (plan.KINDS: {', '.join(plan.KINDS)})")
    dtype = dtype_policy(
        config
    )  # a dtype policy: the run's dtype, or mixed_* (float32 variables, lower-precision compute)
    # coupled decay with the library's optimizer: Keras' idiom is an L2 penalty l*sum(w^2) in the loss,
    # gradient 2*l*w, so l = wd/2 (and the reported training loss includes the penalty)
    t = training_plan(config)
    coupled = not t.optimizer.written_out and t.decay.form == "coupled"
    l2 = (lambda: keras.regularizers.L2(t.decay.value / 2)) if coupled else (lambda: None)
    return LAYERS[layer.kind](layer, config, dtype, l2)


def build_model(config) -> keras.Sequential:
    """The plan's layers in order: 784 -> hidden... -> 10 (see shared/plan.py). conv_layout: Keras'
    convolutions compute in NHWC (image_data_format channels_last) either way."""
    return keras.Sequential(
        [
            keras.Input((plan.PIXELS,), dtype=DTYPES[config.dtype]),
            *(translate(layer, config) for layer in plan.network(config)),
        ]
    )


def _one_hot_smoothed(s):
    """Label smoothing: only the one-hot CategoricalCrossentropy has it, so the labels are one-hot encoded."""
    cce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=s.smoothing)
    return lambda y_true, logits: cce(
        ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), plan.CLASSES, dtype=logits.dtype), logits
    )


# The loss of each head (training.HEADS): (the library's, the per-sample one written out for ops=exact)
LOSSES = {
    "seed": (lambda s: nll_loss, lambda s: nll_loss),
    "logits": (
        lambda s: _one_hot_smoothed(s) if s.smoothing else keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        lambda s: functools.partial(_cross_entropy, smoothing=s.smoothing),
    ),
}


def loss_fn(s: training.Loss):
    """Mean per-sample loss: NLL of the log-probabilities (seed) or cross-entropy on logits."""
    library, written = LOSSES[s.head]
    return MeanLoss(written(s)) if s.exact else library(s)


def dtype_policy(config) -> str:
    """The Keras dtype policy: mixed_bfloat16/mixed_float16 keep float32 variables and compute each
    layer in the lower precision (Keras' per-layer choice, where PyTorch's autocast chooses per
    operation); otherwise the run's dtype for both."""
    return f"mixed_{config.mixed_precision}" if config.mixed_precision != "off" else config.dtype


def loss_scale_optimizer(config, optimizer):
    """mixed_precision=float16: the optimizer wrapped in Keras' LossScaleOptimizer with its own defaults
    (what compile() does by itself under mixed_float16, made explicit); bfloat16 needs none."""
    return keras.optimizers.LossScaleOptimizer(optimizer) if config.mixed_precision == "float16" else optimizer


def nll_loss(y_true, log_probs):
    """torch's F.nll_loss: minus the log-probability of the true class (per sample)."""
    y = ops.cast(ops.reshape(y_true, (-1, 1)), "int32")
    return -ops.squeeze(ops.take_along_axis(log_probs, y, axis=1), axis=1)


def _cross_entropy(y_true, logits, smoothing=0.0):
    """Per sample; smoothing s written out as (1 - s) * nll + s/K * sum_k(-log p_k), as in PyTorch."""
    if not smoothing:
        return keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
    logp = ops.log_softmax(logits, axis=1)
    nll = nll_loss(y_true, logp)
    return ops.add(
        ops.multiply(nll, _const(1 - smoothing, logp)),
        ops.multiply(ops.sum(ops.negative(logp), axis=1), _const(smoothing / ops.shape(logp)[1], logp)),
    )


class MeanLoss(keras.losses.Loss):
    """The batch mean of per-sample losses, not Keras' reduction (whose divide_no_nan computes in
    float32 on the torch backend, scaling float64 gradients by a float32 1/batch); computed in at least
    float32 and rounded once to the loss's dtype, as on the PyTorch side (Keras has already cast the
    outputs to it: floatx, so float32 under a mixed policy)."""

    def __init__(self, per_sample):
        super().__init__(reduction=None, name="mean_loss")
        self.per_sample = per_sample

    def call(self, y_true, y_pred):
        low = keras.backend.standardize_dtype(y_pred.dtype)
        y_pred = ops.cast(y_pred, "float64" if low == "float64" else "float32")
        return ops.cast(mean(self.per_sample(y_true, y_pred)), low)


def mean(values):
    """sum / n in the values' dtype (ops.mean computes in float32 on the torch backend)."""
    return ops.divide(ops.sum(values), _const(ops.shape(values)[0], values)) if len(ops.shape(values)) else values


def clip_exact(grads, norm_max: float, scope: str):
    """g * c / max(norm, c), the norm over all gradients (global) or per tensor: written out as in PyTorch."""
    c = _const(norm_max, grads[0])
    sq = lambda g: ops.sum(ops.multiply(g, g))
    # max(norm, c) as a where: ops.maximum of two 0-d float64 tensors is float32 on the torch backend
    big = lambda norm: ops.where(ops.greater(norm, c), norm, c)
    if scope == "global":
        norm = ops.sqrt(functools.reduce(ops.add, [sq(g) for g in grads]))
        return [ops.multiply(g, ops.divide(c, big(norm))) for g in grads]
    return [ops.multiply(g, ops.divide(c, big(ops.sqrt(sq(g))))) for g in grads]


# The written-out updates, one per (update family, rule): put(x, value) writes a state in place; m, v
# the optimizer's two state tensors per weight; t the step (1-based) and lr as tensors; k(x) a Python
# number in the weight's dtype. The same lines as pytorch_impl/model.py's.


def _sgd_torch(put, w, g, m, v, t, lr, o, k):  # b = mu*b + g;  w -= lr * (g + mu*b if nesterov else b)
    put(m, m * k(o.momentum) + g)
    put(w, w - lr * (g + k(o.momentum) * m if o.nesterov else m))


def _sgd_keras(put, w, g, m, v, t, lr, o, k):  # m = mu*m - lr*g;  w += (mu*m - lr*g if nesterov else m)
    put(m, m * k(o.momentum) - g * lr)
    put(w, w + (m * k(o.momentum) - g * lr if o.nesterov else m))


def _adam_moments(put, g, m, v, t, o, k):
    """m, v moved towards g and g^2; the bias corrections 1 - b1^t and 1 - b2^t."""
    put(m, m + (g - m) * k(1 - o.beta1))
    put(v, v + (g * g - v) * k(1 - o.beta2))
    return 1 - ops.power(k(o.beta1), t), 1 - ops.power(k(o.beta2), t)


def _adam_torch(put, w, g, m, v, t, lr, o, k):  # w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
    bc1, bc2 = _adam_moments(put, g, m, v, t, o, k)
    put(w, w - (lr / bc1) * m / (ops.sqrt(v) / ops.sqrt(bc2) + k(o.eps)))


def _adam_keras(put, w, g, m, v, t, lr, o, k):  # w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
    bc1, bc2 = _adam_moments(put, g, m, v, t, o, k)
    put(w, w - m * (lr * ops.sqrt(bc2) / bc1) / (ops.sqrt(v) + k(o.eps)))


def _rmsprop_torch(
    put, w, g, m, v, t, lr, o, k
):  # v = rho*v + (1-rho)*g^2; d = g/(sqrt(v) + eps); b = mu*b + d; w -= lr*b
    put(v, v * k(o.rho) + g * g * k(1 - o.rho))
    d = g / (ops.sqrt(v) + k(o.eps))
    if o.momentum:
        put(m, m * k(o.momentum) + d)
    put(w, w - lr * (m if o.momentum else d))


def _rmsprop_keras(
    put, w, g, m, v, t, lr, o, k
):  # v = rho*v + (1-rho)*g^2; d = lr*g/sqrt(v + eps); b = mu*b + d; w -= b
    put(v, v * k(o.rho) + g * g * k(1 - o.rho))
    d = lr * g / ops.sqrt(v + k(o.eps))
    if o.momentum:
        put(m, m * k(o.momentum) + d)
    put(w, w - (m if o.momentum else d))


UPDATES = {
    ("sgd", "torch"): _sgd_torch,
    ("sgd", "keras"): _sgd_keras,
    ("adam", "torch"): _adam_torch,
    ("adam", "keras"): _adam_keras,
    ("rmsprop", "torch"): _rmsprop_torch,
    ("rmsprop", "keras"): _rmsprop_keras,
}


class WrittenOut(keras.optimizers.Optimizer):
    """Every optimizer of shared/training.py written out in either framework's definition (UPDATES, by
    the spec's family and rule). Before the update, in this order: gradients clipped (clip_exact), then
    weight decay, coupled (g += wd*w) or decoupled (w -= lr*wd*w; AdamW). The learning rate is the exact
    schedule's (training.lr_table) under ops=exact, else the schedule's. Every constant is converted
    straight to the variable's dtype."""

    def __init__(self, t: training.Training, learning_rate=None, **kwargs):
        lr = t.optimizer.lr if learning_rate is None else learning_rate
        super().__init__(learning_rate=lr, name="written_out", **kwargs)
        self.spec = t
        self.table = training.lr_table(t.schedule) if t.schedule.exact else None
        self.update = UPDATES[(t.optimizer.family, t.optimizer.rule)]

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.slots = [[self.add_variable_from_reference(v, name) for name in ("m", "v")] for v in variables]

    def _clip_gradients(self, grads):
        c = self.spec.clip
        return clip_exact(grads, c.norm, c.scope) if c.norm else grads

    def _lr(self, w, learning_rate):
        if self.table is not None:
            step = ops.minimum(self.iterations, len(self.table) - 1)
            return ops.take(ops.convert_to_tensor(self.table, dtype=w.dtype), step)
        if self.spec.schedule.kind != "constant":
            return ops.cast(learning_rate, w.dtype)  # the library schedule's value
        return _const(self.spec.optimizer.lr, w)

    def update_step(self, g, w, learning_rate):
        t = self.spec
        m, v = self.slots[self._get_variable_index(w)]
        k = lambda x: _const(x, w)
        lr = self._lr(w, learning_rate)
        g = ops.cast(g, w.dtype)
        if t.decay.form == "coupled":
            g = g + w * k(t.decay.value)
        elif t.decay.form == "decoupled":
            self.assign(w, w - w * (lr * k(t.decay.value)))
        self.update(self.assign, w, g, m, v, ops.cast(self.iterations + 1, w.dtype), lr, t.optimizer, k)


class _PerEpoch(keras.optimizers.schedules.LearningRateSchedule):
    """A library schedule counted in epochs: called with the step count, it passes step // steps."""

    def __init__(self, inner, steps: int):
        self.inner, self.steps = inner, steps

    def __call__(self, step):
        return self.inner(ops.floor_divide(step, self.steps))

    def get_config(self):
        return {"inner": keras.optimizers.schedules.serialize(self.inner), "steps": self.steps}


# The library's schedule of each kind (training.SCHEDULES), counted in optimizer steps
SCHEDULES = {
    "constant": lambda s: s.lr,
    "cosine": lambda s: keras.optimizers.schedules.CosineDecay(s.lr, decay_steps=s.length),
    "step": lambda s: keras.optimizers.schedules.ExponentialDecay(
        s.lr, decay_steps=s.every, decay_rate=s.gamma, staircase=True
    ),
}


def learning_rate(s: training.Schedule):
    """The learning rate for the optimizer: a number (constant, or ops=exact, whose WrittenOut applies the
    exact table itself), or the library's schedule, counted in optimizer steps, or in epochs (_PerEpoch)."""
    if s.exact or s.kind == "constant":
        return s.lr
    inner = SCHEDULES[s.kind](s)
    return inner if s.unit == "step" else _PerEpoch(inner, s.steps_per_epoch)


def _extra(t) -> dict:
    """What every Keras optimizer takes: decoupled weight decay (its own form), clipping by norm per
    variable (clipnorm) or jointly (global_clipnorm). Coupled decay is the layers' L2 penalty (translate)."""
    extra = {"weight_decay": t.decay.value} if t.decay.form == "decoupled" else {}
    if t.clip.norm:
        extra["clipnorm" if t.clip.scope == "per_variable" else "global_clipnorm"] = t.clip.norm
    return extra


def _adam(t, lr):
    o, opt = t.optimizer, keras.optimizers
    extra = _extra(t) if t.optimizer.kind == "adam" else {"weight_decay": t.decay.value, **_extra(t)}
    cls = opt.AdamW if o.kind == "adamw" else opt.Adam
    return cls(learning_rate=lr, beta_1=o.beta1, beta_2=o.beta2, epsilon=o.eps, **extra)


# The library's optimizer of each kind (training.OPTIMIZERS), its own definition (ops=native)
OPTIMIZERS = {
    "sgd": lambda t, lr: keras.optimizers.SGD(
        learning_rate=lr, momentum=t.optimizer.momentum, nesterov=t.optimizer.nesterov, **_extra(t)
    ),
    "adam": _adam,
    "adamw": _adam,
    "rmsprop": lambda t, lr: keras.optimizers.RMSprop(
        learning_rate=lr, rho=t.optimizer.rho, momentum=t.optimizer.momentum, epsilon=t.optimizer.eps, **_extra(t)
    ),
}


def build_optimizer(t: training.Training, model) -> keras.optimizers.Optimizer:
    """The library's optimizer (its own definition, ops=native), else the written-out one."""
    lr = learning_rate(t.schedule)
    if t.optimizer.written_out:
        return WrittenOut(t, learning_rate=lr)
    return OPTIMIZERS[t.optimizer.kind](t, lr)


def clip_gradients(t: training.Training, model) -> None:
    """Nothing to do between the gradients and the update: Keras clips inside the optimizer (clipnorm /
    global_clipnorm, or WrittenOut._clip_gradients), PyTorch's loop calls clip_grad_norm_ itself."""


RECURRENT = (keras.layers.GRU, keras.layers.LSTM)


def dense_layers(model) -> list:
    """The weighted layers (dense, convolution, recurrent), in the plan's order."""
    return [m for m in model.layers if isinstance(m, (keras.layers.Dense, keras.layers.Conv2D, *RECURRENT))]


def to_neutral(m, kernel: np.ndarray) -> np.ndarray:
    """A layer's kernel (or its gradient) in the neutral layout: Keras' own (Dense [in, out], Conv2D
    [kh, kw, in, out])."""
    return np.asarray(kernel)


def from_neutral(m, kernel: np.ndarray) -> np.ndarray:
    return np.asarray(kernel)


def neutral_arrays(m, read) -> tuple[np.ndarray, np.ndarray]:
    """A weighted layer's (kernel, bias) in the neutral layout, `read(variable)` giving each part as numpy
    (its value or its gradient). Keras' layout is the neutral one: a recurrent layer's kernel above its
    recurrent kernel; the GRU's (2, gates x units) bias as it is, the LSTM's one bias above a row of 0."""
    if not isinstance(m, RECURRENT):
        return to_neutral(m, read(m.kernel)), read(m.bias)
    kernel = np.concatenate([read(m.cell.kernel), read(m.cell.recurrent_kernel)])
    bias = read(m.cell.bias)
    return kernel, (np.stack([bias, np.zeros_like(bias)]) if bias.ndim == 1 else bias)


def to_numpy(t) -> np.ndarray:
    """A tensor or variable as numpy; bfloat16 (numpy's only through ml_dtypes) as float32, exactly."""
    if keras.backend.standardize_dtype(t.dtype) == "bfloat16":
        t = ops.cast(t, "float32")  # on the device: TensorFlow cannot hand a bfloat16 tensor to numpy
    return np.asarray(keras.ops.convert_to_numpy(t))


def export_weights(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(kernel, bias)] per weighted layer: Keras' kernels are already in the neutral layout (Dense
    [in, out], Conv2D [kh, kw, in, out])."""
    return [neutral_arrays(m, to_numpy) for m in dense_layers(model)]


def import_weights(model, layers) -> None:
    dense = dense_layers(model)
    if len(dense) != len(layers):
        raise ValueError(f"the weights have {len(layers)} layers, the model {len(dense)}")
    for i, (m, (kernel, bias)) in enumerate(zip(dense, layers)):
        want = neutral_arrays(m, lambda v: np.empty(tuple(v.shape)))
        if (tuple(kernel.shape), tuple(bias.shape)) != (want[0].shape, want[1].shape):
            raise ValueError(
                f"layer {i}: kernel {tuple(kernel.shape)} and bias {tuple(bias.shape)} do not fit "
                f"{type(m).__name__} (neutral {want[0].shape} and {want[1].shape})"
            )
        if isinstance(m, RECURRENT):  # the LSTM's one bias takes the sum of the two rows
            rows = m.cell.kernel.shape[0]
            one_bias = len(m.cell.bias.shape) == 1
            pairs = ((m.cell.kernel, kernel[:rows]), (m.cell.recurrent_kernel, kernel[rows:]),
                     (m.cell.bias, bias[0] + bias[1] if one_bias else bias))  # fmt: skip
        else:
            pairs = ((m.kernel, from_neutral(m, kernel)), (m.bias, bias))
        for v, a in pairs:
            v.assign(np.asarray(a, dtype=v.dtype))


# each kind of normalisation layer (weights.NORMS) -> (its layers, its state in weights.NORMS' order)
NORMS = {
    "bn": (
        (keras.layers.BatchNormalization, ExactBatchNorm),
        lambda m: (m.gamma, m.beta, m.moving_mean, m.moving_variance),
    ),
    "ln": ((keras.layers.LayerNormalization, ExactLayerNorm), lambda m: (m.gamma, m.beta)),
}


def norm_layers(model, kind: str) -> list:
    return [m for m in model.layers if isinstance(m, NORMS[kind][0])]


def export_norms(model) -> dict:
    """{kind: [state arrays per layer]}: batch norm's gamma, beta, moving mean and variance; layer norm's
    gamma and beta."""
    return {
        kind: [tuple(to_numpy(v) for v in parts(m)) for m in norm_layers(model, kind)]
        for kind, (_, parts) in NORMS.items()
    }


def import_norms(model, norms: dict) -> None:
    for kind, (_, parts) in NORMS.items():
        found, given = norm_layers(model, kind), norms.get(kind, [])
        if len(found) != len(given):
            raise ValueError(f"the weights have {len(given)} {kind} layers, the model {len(found)}")
        for m, arrays in zip(found, given):
            for v, a in zip(parts(m), arrays):
                v.assign(np.asarray(a, dtype=v.dtype))
