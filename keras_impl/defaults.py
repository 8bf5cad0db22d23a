"""What Keras does out of the box, read live from the installed library (on the current backend):
signatures, objects and tiny numerical probes; where a value is the library's documented idiom rather
than its state, SOURCES says so. Mirror of pytorch_impl/defaults.py: same functions, same order;
compare/defaults.py sets the two side by side."""

from __future__ import annotations

import inspect

import keras
import numpy as np

from shared import plan, training
from shared.environment import matmul_error, matmul_probe

SIZES = (784, 200, 200, 10)
UNITS = 128  # the recurrent probes' state size (rnn_units' default); an LSTM's forget gate is block 2
# How each value of probe() is known (a dotted key; the most specific one applies): "read" from the
# installed library (a signature default, an attribute, its config), "measured" by running a tiny probe
# through it, or "idiom": the library's documented convention, written here (not read from its state).
# probe() adds the backend's own entries (BACKEND_SOURCES).
SOURCES = {
    "version": "read",
    "init": "measured",
    "init_names": "read",
    "conv.init": "measured",
    "conv.init_names": "read",
    "conv.padding": "read",
    "conv.data_format": "read",
    "conv.kernel_layout": "read",
    "conv.flatten_order": "measured",
    "stride": "measured",
    "slope": "measured",
    "sgd_lr": "read",
    "sgd_momentum": "read",
    "momentum_form": "measured",
    "adam_eps": "read",
    "adam_eps_step1": "measured",
    "rmsprop": "read",
    "rmsprop.steps": "measured",
    "loss": "measured",
    "loss.input": "read",
    "fit": "measured",
    "batchnorm": "measured",
    "batchnorm.momentum": "read",
    "batchnorm.eps": "read",
    "layernorm": "measured",
    "layernorm.eps": "read",
    "recurrent": "measured",
    "recurrent.gru.layout": "read",
    "recurrent.gru.bias": "read",
    "recurrent.lstm.bias": "read",
    "recurrent.gru.reset_after": "read",
    "dropout": "measured",
    "dropout.default_rate": "read",
    "dropout.masks": "idiom",
    "weight_decay": "measured",
    "weight_decay.adamw_default": "read",
    "clip": "measured",
    "clip.idiom": "idiom",
    "schedule": "measured",
    "label_smoothing": "read",
    "precision": "read",
    "precision.matmul_measured": "measured",
    "mixed_precision": "measured",
    "compilation": "read",
    "threads": "read",
}
BACKEND_SOURCES = {
    "jax": {"precision.tf32_matmul": "read + idiom", "precision.matmul_precision": "read + idiom", "threads": "idiom"}
}


def arg(fn, name):
    return inspect.signature(fn).parameters[name].default


def init_bounds() -> dict:
    """Draw the default dense layers of 784-200-200-10 and report the uniform bound each draw implies
    (sqrt(3) x the sample std), for kernels and biases."""
    keras.utils.set_random_seed(0)
    kernels, biases = [], []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        m = keras.layers.Dense(fan_out)
        m.build((None, fan_in))
        kernels.append(float(np.sqrt(3) * np.std(keras.ops.convert_to_numpy(m.kernel))))
        biases.append(float(np.sqrt(3) * np.std(keras.ops.convert_to_numpy(m.bias))))
    return {"kernel": kernels, "bias": biases}


def init_names(layer=None) -> dict:
    """The initialisers a default layer is configured with (default: a Dense layer)."""
    c = (layer or keras.layers.Dense(1)).get_config()
    return {"kernel": c["kernel_initializer"]["class_name"], "bias": c["bias_initializer"]["class_name"]}


def conv_probe() -> dict:
    """A default Conv2D at the CNN's shapes (1->16, 16->32, 3x3): the initialisers and the bounds they
    draw, the padding, the data and kernel layouts, and the order Flatten gives a conv output
    (measured on a tensor that holds each element's own (channel, row, column))."""
    keras.utils.set_random_seed(0)
    convs = [keras.layers.Conv2D(16, 3), keras.layers.Conv2D(32, 3)]
    convs[0].build((None, 28, 28, 1))
    convs[1].build((None, 26, 26, 16))
    num = lambda t: keras.ops.convert_to_numpy(t)
    h, w, c = np.meshgrid(np.arange(2), np.arange(2), np.arange(2), indexing="ij")
    nhwc = keras.config.image_data_format() == "channels_last"
    x = (c * 100 + h * 10 + w) if nhwc else np.transpose(c * 100 + h * 10 + w, (2, 0, 1))
    flat = num(keras.layers.Flatten()(keras.ops.convert_to_tensor(x[None].astype("float32"))))[0, :2]
    fastest = {1: "column", 10: "row", 100: "channel"}[int(flat[1] - flat[0])]
    return {
        "init": {
            "kernel": [float(np.sqrt(3) * np.std(num(m.kernel))) for m in convs],
            "bias": [float(np.sqrt(3) * np.std(num(m.bias))) for m in convs],
        },
        "init_names": init_names(convs[0]),
        "padding": "valid (none)"
        if arg(keras.layers.Conv2D, "padding") == "valid"
        else repr(arg(keras.layers.Conv2D, "padding")),
        "data_format": "channels last (NHWC)" if nhwc else "channels first (NCHW)",
        "kernel_layout": f"[kh, kw, in, out] {tuple(convs[1].kernel.shape)}",
        "flatten_order": "row, column, channel" if fastest == "channel" else f"{fastest} fastest",
    }


def augmentation(images: np.ndarray, angle: float, shift: tuple) -> dict:
    """Keras' preprocessing layers on raw images [n, 28, 28] (0-255) with fixed parameters: rotate by
    `angle` degrees and translate by `shift` x 28 pixels (rows, columns), first with the library's
    defaults, then with bilinear sampling and a black fill (the shared augmentation's choices); flip
    left-right. The defaults that decide the pixels, read live."""
    x = keras.ops.convert_to_tensor(images[..., None].astype("float32"))  # NHWC
    turn = angle / 360  # RandomRotation's factor is a fraction of a full turn
    matched = {"fill_mode": "constant", "fill_value": 0.0, "interpolation": "bilinear"}
    rot = lambda **kw: keras.layers.RandomRotation((turn, turn), **kw)(x, training=True)
    move = lambda **kw: keras.layers.RandomTranslation((shift[0], shift[0]), (shift[1], shift[1]), **kw)(
        x, training=True
    )
    out = {
        "rotate": rot(),
        "translate": move(),
        "rotate_matched": rot(**matched),
        "translate_matched": move(**matched),
        "flip": keras.ops.flip(x, axis=2),
    }
    sig = inspect.signature(keras.layers.RandomRotation).parameters
    defaults = {
        "angle": "a fraction of a full turn (RandomRotation(factor=...))",
        "interpolation": str(sig["interpolation"].default),
        "fill": f"{sig['fill_mode'].default} (fill_value {sig['fill_value'].default})",
        "layout": f"NHWC ({keras.config.image_data_format()})",
    }
    return {**{k: np.asarray(keras.ops.convert_to_numpy(v))[..., 0] for k, v in out.items()}, "defaults": defaults}


def stride_probe() -> dict:
    """A stride-2 3x3 'same' convolution on an image holding each pixel's 1-based position, its kernel
    picking the top-left tap: the first output reads the padding (a row and column on top and left) or
    pixel 1 (none there: the odd padding row and column at the bottom and right)."""
    x = keras.ops.convert_to_tensor(np.arange(1, 28 * 28 + 1, dtype=np.float64).reshape(1, 28, 28, 1))
    conv = keras.layers.Conv2D(1, 3, strides=2, padding="same", use_bias=False, dtype="float64")
    conv.build((None, 28, 28, 1))
    kernel = np.zeros((3, 3, 1, 1))
    kernel[0, 0, 0, 0] = 1
    conv.kernel.assign(kernel)
    first = float(keras.ops.convert_to_numpy(conv(x))[0, 0, 0, 0])
    where = "on every side (top and left too)" if first == 0 else "at the bottom and right only"
    return {"padding": f"padding='same' with strides=2 pads {where}"}


def slope_probe() -> dict:
    x = keras.ops.convert_to_tensor([-1.0])
    return {
        "layer": float(-keras.ops.convert_to_numpy(keras.layers.LeakyReLU()(x))[0]),
        "functional": float(-keras.ops.convert_to_numpy(keras.activations.leaky_relu(x))[0]),
    }


def momentum_form() -> str:
    """Two SGD steps on w with a constant gradient 1, momentum 0.5, learning rate 1 then 0.5: the second
    step is -0.75 if the velocity holds gradients (lr applied at the update) and -1.0 if it holds steps."""
    w = keras.Variable(np.zeros(1, "float32"))
    opt = keras.optimizers.SGD(learning_rate=1.0, momentum=0.5)
    steps = []
    for lr in (1.0, 0.5):
        opt.learning_rate = lr
        before = float(keras.ops.convert_to_numpy(w)[0])
        opt.apply([keras.ops.ones((1,))], [w])
        steps.append(float(keras.ops.convert_to_numpy(w)[0]) - before)
    return (
        "velocity in gradient units: lr applied at the update"
        if abs(steps[1] + 0.75) < 1e-6
        else "velocity in step units: lr applied into the velocity"
    )


def adam_eps_probe() -> float:
    """Effective epsilon at step 1 relative to the configured one: update = lr g / (|g| + eps_eff)."""
    g, eps, lr = 1e-6, 1e-6, 1e-3
    w = keras.Variable(np.zeros(1, "float32"))
    opt = keras.optimizers.Adam(learning_rate=lr, epsilon=eps)
    opt.apply([keras.ops.convert_to_tensor([g])], [w])
    return float((lr * g / -float(keras.ops.convert_to_numpy(w)[0]) - g) / eps)


def rmsprop_probe() -> dict:
    """RMSprop's defaults (read) and two steps (measured) on w = 0 with the constant gradient
    RMSPROP_PROBE["g"], learning rate 1 then 0.5: where epsilon and the learning rate enter
    (compare/defaults.py reads the form from the steps)."""
    p = training.RMSPROP_PROBE
    w = keras.Variable(np.zeros(1, "float64"), dtype="float64")
    opt = keras.optimizers.RMSprop(learning_rate=1.0, rho=p["rho"], epsilon=p["eps"], momentum=p["momentum"])
    steps = []
    for lr in (1.0, 0.5):
        opt.learning_rate = lr
        before = float(keras.ops.convert_to_numpy(w)[0])
        opt.apply([keras.ops.convert_to_tensor(np.array([p["g"]]), dtype="float64")], [w])
        steps.append(float(keras.ops.convert_to_numpy(w)[0]) - before)
    o = keras.optimizers.RMSprop
    return {"lr": arg(o, "learning_rate"), "rho": arg(o, "rho"), "eps": arg(o, "epsilon"),
            "momentum": arg(o, "momentum"), "steps": steps}  # fmt: skip


def loss_probe() -> dict:
    """Loss when the true class has probability 0: is it clipped?"""
    loss = keras.losses.SparseCategoricalCrossentropy()
    value = loss(np.array([0]), np.array([[0.0, 1.0]], "float32"))
    p = np.array([[0.5, 0.5], [0.9, 0.1]], "float32")
    two = float(keras.ops.convert_to_numpy(loss(np.array([0, 0]), p)))
    mean = float(np.mean(-np.log(p[:, 0])))
    return {
        "reduction": f"{'batch mean' if abs(two - mean) < 1e-6 else 'not the batch mean'} ({loss.reduction})",
        "zero_prob_loss": float(keras.ops.convert_to_numpy(value)),
        "input": f"probabilities unless from_logits=True (default from_logits={arg(keras.losses.SparseCategoricalCrossentropy, 'from_logits')})",
    }


def fit_api() -> dict:
    """Model.fit on 100 samples for one epoch with a learning rate of 0 (every batch sees the same
    weights), a layer recording what it is fed: batch sizes, shuffling, how the epoch loss averages."""
    x = np.arange(100, dtype="float32")[:, None] * np.ones((1, 3), "float32") / 100
    y = np.arange(100) % 2
    fed = []

    class Record(keras.layers.Layer):
        def call(self, v):
            try:
                fed.append(np.array(keras.ops.convert_to_numpy(v))[:, 0])
            except Exception:  # the symbolic build pass (KerasTensor / JAX tracer) has no values
                pass
            return v

    def fit(**kw):
        keras.utils.set_random_seed(0)
        fed.clear()
        model = keras.Sequential([keras.Input((3,)), Record(), keras.layers.Dense(2)])
        model.compile(
            optimizer=keras.optimizers.SGD(0.0),
            run_eagerly=True,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        hist = model.fit(x, y, epochs=1, verbose=0, **kw)
        return model, hist.history["loss"][0], [len(b) for b in fed], fed[0]

    _, _, sizes, first = fit()
    model, got, plain_sizes, _ = fit(shuffle=False)
    per_sample = keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True))
    starts = np.cumsum([0] + plain_sizes[:-1])
    unweighted = float(np.mean([per_sample[a : a + n].mean() for a, n in zip(starts, plain_sizes)]))
    weighted = float(per_sample.mean())
    return {
        "batch_size": sizes[0],
        "shuffle": bool(np.any(first != x[: len(first), 0])),
        "last_batch": "kept" if sum(sizes) == 100 and sizes[-1] != sizes[0] else "dropped",
        "epoch_loss": "batch losses weighted by batch size"
        if abs(got - weighted) < abs(got - unweighted)
        else "plain mean of batch losses",
    }


def batchnorm_probe() -> dict:
    """One training call of a default BatchNormalization on the batch [0, 2] (mean 1, biased variance 1,
    unbiased 2) from moving (0, 1): the weight of the new batch and which variance the moving one
    takes; then evaluation on [5]: which statistics normalise it."""
    bn = keras.layers.BatchNormalization(dtype="float64")
    bn.build((None, 1))
    bn(keras.ops.convert_to_tensor([[0.0], [2.0]], dtype="float64"), training=True)
    new = float(keras.ops.convert_to_numpy(bn.moving_mean)[0])
    moving_var = float(keras.ops.convert_to_numpy(bn.moving_variance)[0])
    taken = (moving_var - (1 - new)) / new
    y = float(
        keras.ops.convert_to_numpy(bn(keras.ops.convert_to_tensor([[5.0]], dtype="float64"), training=False))[0, 0]
    )
    running = (5 - new) / np.sqrt(moving_var + bn.epsilon)
    return {
        "momentum": arg(keras.layers.BatchNormalization, "momentum"),
        "eps": arg(keras.layers.BatchNormalization, "epsilon"),
        "new_weight": new,
        "running_var": "unbiased (n-1)"
        if abs(taken - 2) < 1e-6
        else "biased (n)"
        if abs(taken - 1) < 1e-6
        else f"{taken:.3g}",
        "eval": "running statistics" if abs(y - running) < 1e-6 else "not the running statistics",
    }


def layernorm_probe() -> dict:
    """A default LayerNormalization on one sample [-a, a] (mean 0, biased variance a^2, a = 0.01): its
    output a / sqrt(a^2 + eps) gives the epsilon it adds, measured."""
    a = 0.01
    ln = keras.layers.LayerNormalization(dtype="float64")
    y = float(keras.ops.convert_to_numpy(ln(keras.ops.convert_to_tensor([[-a, a]], dtype="float64")))[0, 1])
    return {"eps": arg(keras.layers.LayerNormalization, "epsilon"), "eps_measured": a * a * (1 / (y * y) - 1)}


def _bias_max(b: np.ndarray, kind: str) -> float:
    """The largest |bias| at init outside an LSTM's forget-gate block (reported on its own)."""
    b = np.asarray(b, dtype=np.float64).reshape(-1, b.shape[-1])
    return float(np.abs(np.delete(b, np.s_[UNITS : 2 * UNITS], axis=1) if kind == "lstm" else b).max())


def recurrent_probe() -> dict:
    """keras.layers.GRU and LSTM: per stored gate block, the one-step output of plan.GATE_PROBE (which gate
    each block is, measured); the weight layouts; the default initialisers' bounds (sqrt(3) x the sample
    std) at 28 inputs and 128 units, whether the recurrent kernel is orthogonal, the LSTM's forget-gate
    bias; the GRU's reset_after."""
    p, out = plan.GATE_PROBE, {}
    full = lambda v: keras.ops.convert_to_tensor(np.full((1, 1), v), dtype="float64")
    cells = {"gru": keras.layers.GRUCell, "lstm": keras.layers.LSTMCell}
    for kind, cls in (("gru", keras.layers.GRU), ("lstm", keras.layers.LSTM)):
        m, outputs = cells[kind](1, dtype="float64"), []  # one step of the layer's cell
        m.build((1, 1))
        state = [full(p["h"])] if kind == "gru" else [full(p["h"]), full(p["c"])]
        for block in range(plan.GATES[kind]):
            kernel = np.zeros(m.kernel.shape)
            kernel[0, block] = p["signal"]
            m.kernel.assign(kernel)
            m.recurrent_kernel.assign(np.full(m.recurrent_kernel.shape, p["recurrent"]))
            m.bias.assign(np.zeros(m.bias.shape))
            outputs.append(float(keras.ops.convert_to_numpy(m(full(p["x"]), state)[0])[0, 0]))
        keras.utils.set_random_seed(0)
        d = cls(UNITS)
        d.build((None, 28, 28))
        k, r, b = (keras.ops.convert_to_numpy(v) for v in (d.cell.kernel, d.cell.recurrent_kernel, d.cell.bias))
        out[kind] = {
            "outputs": outputs,
            "layout": f"kernel {list(k.shape)}, recurrent_kernel {list(r.shape)}",
            "bias": f"bias {list(b.shape)}" + (" (input row, recurrent row)" if b.ndim == 2 else ", one"),
            "init": [float(np.sqrt(3) * k.std()), float(np.sqrt(3) * r.std()), _bias_max(b, kind)],
            "orthogonal": float(np.abs(r.astype(np.float64) @ r.T.astype(np.float64) - np.eye(UNITS)).max()),
            "forget_bias": float(b[UNITS : 2 * UNITS].mean()) if kind == "lstm" else None,
        }
    after = arg(keras.layers.GRU, "reset_after")
    out["gru"]["reset_after"] = f"{'after' if after else 'before'} the recurrent product (reset_after={after})"
    return out


def dropout_probe() -> dict:
    """The default rate, and what training mode does to the kept units of a vector of ones."""
    rate = inspect.signature(keras.layers.Dropout).parameters["rate"].default
    keras.utils.set_random_seed(0)
    kept = keras.ops.convert_to_numpy(keras.layers.Dropout(0.5)(keras.ops.ones((1000,)), training=True))
    return {
        "default_rate": "none (a required argument)" if rate is inspect.Parameter.empty else rate,
        "kept_value": float(kept[kept != 0][0]),
        "masks": f"Keras' SeedGenerator (keras.utils.set_random_seed) on {keras.backend.backend()}",
    }


def weight_decay_probe() -> dict:
    """Adam(weight_decay=0.1), lr 0.01, one step on w=1 with a zero gradient: a step of ~lr means the
    decay went through Adam's normalisation (coupled: wd*w added to the gradient), lr*wd*w = 0.001
    that it was subtracted from the weight (decoupled)."""
    w = keras.Variable(np.ones(1), dtype="float64")
    opt = keras.optimizers.Adam(learning_rate=0.01, weight_decay=0.1)
    opt.apply([keras.ops.zeros((1,), dtype="float64")], [w])
    step = 1 - float(keras.ops.convert_to_numpy(w)[0])
    l2 = float(keras.ops.convert_to_numpy(keras.regularizers.L2(0.5)(keras.ops.convert_to_tensor([1.0, 2.0]))))
    return {
        "adam": "coupled: wd*w added to the gradient" if step > 0.005 else "decoupled: w -= lr*wd*w",
        "adamw_default": arg(keras.optimizers.AdamW, "weight_decay"),
        "l2": "L2(l) adds l*sum(w^2) to the loss (gradient 2*l*w)"
        if abs(l2 - 2.5) < 1e-6
        else f"L2(0.5)([1, 2]) = {l2}",
    }


def clip_probe() -> dict:
    """The clipping idiom (an optimizer's clipnorm) on two gradients [3, 0] and [0, 4] with max norm 1,
    SGD at learning rate 1: jointly (global norm 5: a step of [0.6, 0]) or each on its own ([1, 0]); and
    on [2] with max norm 1 in float64, what is added to the norm (c / (norm + e) -> e)."""
    a, b = keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(2, "float32"))
    keras.optimizers.SGD(learning_rate=1.0, clipnorm=1.0).apply(
        [keras.ops.convert_to_tensor([3.0, 0.0]), keras.ops.convert_to_tensor([0.0, 4.0])], [a, b]
    )
    c = keras.Variable(np.zeros(1), dtype="float64")
    keras.optimizers.SGD(learning_rate=1.0, clipnorm=1.0).apply(
        [keras.ops.convert_to_tensor([2.0], dtype="float64")], [c]
    )
    step = -float(keras.ops.convert_to_numpy(a)[0])
    return {
        "idiom": "optimizer(clipnorm=...)",
        "scope": "global (one norm over all)" if abs(step - 0.6) < 1e-6 else "per variable",
        "added_to_norm": 2.0 / -float(keras.ops.convert_to_numpy(c)[0]) - 2.0,
    }


def schedule_probe() -> str:
    """ExponentialDecay(1, decay_steps=1, decay_rate=0.5, staircase=True) on SGD: three optimizer steps."""
    w = keras.Variable(np.zeros(1, "float32"))
    sched = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5, staircase=True)
    opt = keras.optimizers.SGD(learning_rate=sched)
    for _ in range(3):
        opt.apply([keras.ops.ones((1,))], [w])
    moved = float(keras.ops.convert_to_numpy(opt.learning_rate)) != 1.0
    return "every optimizer step" if moved else "when the loop calls scheduler.step() (usually once per epoch)"


def label_smoothing_probe() -> str:
    sparse = "label_smoothing" in inspect.signature(keras.losses.SparseCategoricalCrossentropy).parameters
    return (
        "SparseCategoricalCrossentropy(label_smoothing=...) on class indices"
        if sparse
        else "only CategoricalCrossentropy(label_smoothing=...): one-hot labels"
    )


# what a backend's float32 matmul setting lets products round to (the libraries' documented meanings)
MATMUL = {
    "highest": "full float32",
    "high": "TF32 allowed",
    "medium": "bfloat16 allowed",
    "float32": "full float32",
    None: "TF32 allowed",
    "default": "TF32 allowed",
    "tensorfloat32": "TF32 allowed",
    "bfloat16": "bfloat16 allowed",
    True: "TF32 allowed",
    False: "full float32",
}


def precision() -> dict:
    """matmul_precision: a value comparable across libraries (what float32 products may round to) and
    the setting it comes from (for JAX, the setting is read and its meaning on a GPU is XLA's documented one)."""
    backend = keras.backend.backend()
    out = {"floatx": keras.config.floatx()}
    if backend == "tensorflow":
        import tensorflow as tf

        flag = bool(tf.config.experimental.tensor_float_32_execution_enabled())
        out.update(
            tf32_matmul=flag,
            tf32_conv=flag,
            matmul_precision={
                "value": MATMUL[flag],
                "detail": f"tf.config.experimental.tensor_float_32_execution_enabled() = {flag}",
            },
        )
    elif backend == "torch":
        import torch

        p = torch.get_float32_matmul_precision()
        out.update(
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
            tf32_conv=bool(torch.backends.cudnn.allow_tf32),
            matmul_precision={"value": MATMUL.get(p, p), "detail": f"torch.get_float32_matmul_precision() = {p!r}"},
        )
    else:
        import jax

        p = jax.config.jax_default_matmul_precision
        out.update(
            tf32_matmul=MATMUL.get(p) == "TF32 allowed",
            tf32_conv=None,
            matmul_precision={
                "value": MATMUL.get(p, str(p)),
                "detail": f"jax_default_matmul_precision = {p!r}; XLA's default on GPUs",
            },
        )
    out["matmul_measured"] = matmul_measured()
    return out


def matmul_measured() -> dict:
    """A float32 product on the backend's default device (where a run's tensors go), against float64."""
    a, b, reference = matmul_probe()
    c = keras.ops.matmul(keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b))
    backend = keras.backend.backend()
    if backend == "jax":
        device = next(iter(c.devices())).platform
    elif backend == "torch":
        device = c.device.type
    else:
        device = "gpu" if "GPU" in c.device.upper() else "cpu"
    device = "cuda" if device == "gpu" else device  # named as PyTorch and the config name it
    return {"rel_error": matmul_error(keras.ops.convert_to_numpy(c), reference), "device": device}


def mixed_precision_probe() -> dict:
    """The mixed_bfloat16 dtype policy and LossScaleOptimizer, measured: the dtype each layer of this
    network comes out in, where the variables live, the optimizer's start, growth interval and the
    factor an overflowing step multiplies the scale by."""
    x = keras.ops.ones((4, 3))
    dense = keras.layers.Dense(10, dtype="mixed_bfloat16")
    h = dense(x)
    d = keras.backend.standardize_dtype
    out = {
        "matmul": d(h.dtype),
        "activation": d(keras.layers.LeakyReLU(dtype="mixed_bfloat16")(h).dtype),
        "log_softmax": d(keras.layers.Activation(keras.activations.log_softmax, dtype="mixed_bfloat16")(h).dtype),
        "loss": d(
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)(keras.ops.zeros((4,), dtype="int32"), h).dtype
        ),
        "variables": d(dense.kernel.dtype),
    }

    def scale_after(grad, **kw):
        """The loss scale after one step with this gradient (JAX applies it statelessly only)."""
        opt, v = (
            keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), **kw),
            keras.Variable(np.ones(3, "float32")),
        )
        opt.build([v])
        start, g = (
            float(keras.ops.convert_to_numpy(opt.dynamic_scale)),
            keras.ops.convert_to_tensor(np.full(3, grad, "float32")),
        )
        if keras.backend.backend() == "jax":
            _, after = opt.stateless_apply([x.value for x in opt.variables], [g], [v.value])
            scale = after[[x.path for x in opt.variables].index(opt.dynamic_scale.path)]
        else:
            opt.apply([g], [v])
            scale = opt.dynamic_scale
        return start, float(np.asarray(keras.ops.convert_to_numpy(scale)).ravel()[0]), opt.dynamic_growth_steps

    start, backed_off, interval = scale_after(np.inf)  # an overflowing step: skipped, the scale backs off
    grown = scale_after(1.0, dynamic_growth_steps=1)[1]  # the growth factor is fixed in the class: measured
    out["loss_scale"] = {
        "initial": start,
        "growth_interval": interval,
        "backoff": backed_off / start,
        "growth": grown / start,
    }
    return out


def compilation() -> dict:
    jit = arg(keras.Model.compile, "jit_compile")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return {
        "value": "compiled (XLA)" if model.jit_compile else "eager",
        "detail": f"compile(jit_compile={jit!r}) -> XLA {'on' if model.jit_compile else 'off'} on {keras.backend.backend()}",
    }


def threads() -> int:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.threading.get_intra_op_parallelism_threads()  # 0: TensorFlow picks (all cores)
    if backend == "torch":
        import torch

        return torch.get_num_threads()
    return 0  # XLA's CPU client sizes its own pool


def probe() -> dict:
    """Every default in one dict (keys shared with pytorch_impl/defaults.py)."""
    return {
        "version": f"keras {keras.__version__} ({keras.backend.backend()})",
        "init": init_bounds(),
        "init_names": init_names(),
        "conv": conv_probe(),
        "stride": stride_probe(),
        "slope": slope_probe(),
        "sgd_lr": arg(keras.optimizers.SGD, "learning_rate"),
        "sgd_momentum": arg(keras.optimizers.SGD, "momentum"),
        "momentum_form": momentum_form(),
        "adam_eps": arg(keras.optimizers.Adam, "epsilon"),
        "adam_eps_step1": adam_eps_probe(),
        "rmsprop": rmsprop_probe(),
        "loss": loss_probe(),
        "fit": fit_api(),
        "batchnorm": batchnorm_probe(),
        "layernorm": layernorm_probe(),
        "recurrent": recurrent_probe(),
        "dropout": dropout_probe(),
        "weight_decay": weight_decay_probe(),
        "clip": clip_probe(),
        "schedule": schedule_probe(),
        "label_smoothing": label_smoothing_probe(),
        "precision": precision(),
        "mixed_precision": mixed_precision_probe(),
        "compilation": compilation(),
        "threads": threads(),
        "sources": {**SOURCES, **BACKEND_SOURCES.get(keras.backend.backend(), {})},
    }
