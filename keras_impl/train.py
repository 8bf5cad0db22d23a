"""Keras' half of the training contract that shared/runner.py drives.
Mirror of pytorch_impl/train.py: same functions, same order. The backend (KERAS_BACKEND) and
its thread/device settings are fixed by keras_impl/cli.py before Keras is imported."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import keras
import numpy as np

from keras_impl import model as M

from shared.plan import mask_feed, shared_masks
from shared.runner import RunError, epoch_totals, step_by_step

FRAMEWORK = "keras"
CHECKPOINT_EXT = "npz"


@dataclass
class State:
    config: object
    device: str
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    loss_fn: object


def setup(config, threads: int) -> dict:
    """Threads, device, determinism and TF32 flags, seed; returns the environment record."""
    backend = keras.backend.backend()
    env = {"framework_version": keras.__version__, "keras": keras.__version__, "backend": backend}
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        gpus = tf.config.list_physical_devices("GPU")
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.config.experimental.enable_tensor_float_32_execution(config.tf32)
        env.update(
            tensorflow=tf.__version__,
            device="cuda" if gpus and config.device != "cpu" else "cpu",
            device_name=gpus[0].name if gpus and config.device != "cpu" else "cpu",
            tf_threads=threads,
        )
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32
        cuda = torch.cuda.is_available()
        env.update(
            torch=torch.__version__,
            device="cuda" if cuda else "cpu",
            device_name=torch.cuda.get_device_name(0) if cuda else "cpu",
            torch_threads=torch.get_num_threads(),
            **({"device_free_bytes": torch.cuda.mem_get_info(0)[0]} if cuda else {}),
        )
    else:
        import jax

        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if config.tf32 else "highest")
        dev = jax.devices()[0]
        stats = (dev.memory_stats() or {}) if dev.platform == "gpu" else {}
        env.update(
            jax=jax.__version__,
            device="cuda" if dev.platform == "gpu" else "cpu",
            device_name=getattr(dev, "device_kind", str(dev)),
            **(
                {"device_free_bytes": stats["bytes_limit"] - stats.get("bytes_in_use", 0)}
                if "bytes_limit" in stats
                else {}
            ),
        )
    if config.device == "cuda" and env["device"] != "cuda":
        raise RunError(
            f"device=cuda was asked for, but Keras' {backend} backend sees no CUDA GPU; use --device cpu or auto"
        )
    env.update(tf32=config.tf32, deterministic=config.deterministic)
    keras.config.set_floatx(config.dtype)
    keras.config.set_dtype_policy(M.dtype_policy(config))  # every run sets it: a worker's runs share the process
    keras.utils.set_random_seed(config.seed)
    return env


def build(config, env: dict) -> State:
    net = M.build_model(config)
    spec = M.training_plan(config)
    opt = M.loss_scale_optimizer(config, M.build_optimizer(spec, net))
    loss = M.loss_fn(spec.loss)
    jit = jit_compile(config)
    # Keras' torch backend runs one step per call only (it refuses steps_per_execution > 1)
    env["steps_per_execution"] = 1 if keras.backend.backend() == "torch" else config.steps_per_execution
    net.compile(
        optimizer=opt,
        loss=loss,
        metrics=["sparse_categorical_accuracy"],
        jit_compile=jit,
        steps_per_execution=env["steps_per_execution"],
    )
    # shared dropout masks are set from the host before every step: the per-step loop, whatever host_sync says
    env["host_sync"] = "step" if shared_masks(config) else config.host_sync
    env["jit_compile"] = bool(net.jit_compile)
    env["compiled"] = bool(net.jit_compile)
    return State(config, env["device"], net, opt, loss)


def jit_compile(config):
    """How the training step is compiled: Keras compiles fit()'s whole train step (forward, loss,
    gradients, update) as one function already; this picks jit_compile (XLA) for it. compile=step is
    therefore compile=on here."""
    return {"native": "auto", "on": True, "off": False, "step": True}[config.compile]


def augment(
    images: np.ndarray, names: list[str], rotate_degrees: float, translate_fraction: float, seed: int
) -> np.ndarray:
    """augment_impl=native: Keras' preprocessing layers with their defaults (bilinear sampling, reflected
    fill, the angle as a fraction of a full turn), a batch of images per call as in a model or tf.data
    map, each layer seeded from `seed`. Raw images [n, 28, 28] in, float64 out."""
    steps = {
        "flip": lambda s: keras.layers.RandomFlip("horizontal", seed=s),
        "vflip": lambda s: keras.layers.RandomFlip("vertical", seed=s),
        "rotate": lambda s: keras.layers.RandomRotation(rotate_degrees / 360.0, seed=s),
        "translate": lambda s: keras.layers.RandomTranslation(translate_fraction, translate_fraction, seed=s),
    }
    pipe = [make(seed + i) for i, (n, make) in enumerate(steps.items()) if n in names]  # shared/augment.py's order
    out = np.empty(images.shape, np.float64)
    chunk = 2000  # images per call
    for s in range(0, len(images), chunk):
        x = keras.ops.convert_to_tensor(images[s : s + chunk, :, :, None].astype(np.float32))  # NHWC
        for layer in pipe:
            x = layer(x, training=True)
        out[s : s + chunk] = keras.ops.convert_to_numpy(x)[..., 0]
    return out


def to_device(state: State, x_train, y_train, x_test, y_test, data) -> dict:
    """The whole dataset as backend tensors on the device; batches are gathered from it by index."""
    if state.config.pipeline != "memory":
        raise RunError(f"pipeline={state.config.pipeline} exists only in PyTorch; use pipeline=memory with Keras")
    c = keras.ops.convert_to_tensor
    x = lambda a: keras.ops.cast(c(a), state.config.dtype)  # bfloat16: rounded here, on the device
    return {"x_train": x(x_train), "y_train": c(y_train), "x_test": x(x_test), "y_test": c(y_test)}


def precision(state: State, xb) -> dict:
    """What the running program computes in, read live: each layer's output dtype on a batch (Keras'
    dtype policy decides per layer), the loss's, the variables', the loss scaling's."""
    layers, x = [], xb
    for layer in state.model.layers:
        x = layer(x, training=False)
        layers.append(f"{type(layer).__name__}: {keras.backend.standardize_dtype(x.dtype)}")
    loss = state.loss_fn(keras.ops.zeros((x.shape[0],), dtype="int32"), x)
    conv = [layer.data_format for layer in state.model.layers if isinstance(layer, keras.layers.Conv2D)]
    p = {
        "layers": layers,
        "loss": keras.backend.standardize_dtype(loss.dtype),
        "weights": keras.backend.standardize_dtype(state.model.weights[0].dtype),
        "policy": keras.config.dtype_policy().name,
        **({"feature_layout": "NHWC" if conv[0] == "channels_last" else "NCHW"} if conv else {}),
    }
    if isinstance(state.optimizer, keras.optimizers.LossScaleOptimizer):
        p["loss_scale"] = {
            "initial": float(state.optimizer.initial_scale),
            "growth_interval": state.optimizer.dynamic_growth_steps,
        }
    return p


def param_count(state: State) -> int:
    """Trainable parameters, counted in the built model."""
    return int(sum(np.prod(v.shape) for v in state.model.trainable_variables))


def batches(state: State, tensors: dict, index_batches):
    """(x, y) per batch in the shared order, gathered on the device."""
    for idx in index_batches:
        i = keras.ops.convert_to_tensor(idx, dtype="int32")  # (JAX under floatx=bfloat16 made int64 rows float)
        yield keras.ops.take(tensors["x_train"], i, axis=0), keras.ops.take(tensors["y_train"], i, axis=0)


def set_masks(state: State, masks) -> None:
    """The shared dropout masks of the next step (shared/plan.py), one per SharedDropout layer in order;
    a short last batch fills the first rows of the layer's batch-size variable."""
    layers = [m for m in state.model.layers if isinstance(m, M.SharedDropout)]
    for m, mask in zip(layers, masks):
        full = np.ones((m.rows, mask.shape[1]))
        full[: len(mask)] = mask
        m.mask.assign(full.astype(m.mask.dtype))


def train_step(state: State, xb, yb) -> tuple[float, int]:
    """One SGD step; returns the batch-mean loss (before the update) and the number correct."""
    logs = state.model.train_on_batch(xb, yb, return_dict=True)
    return float(logs["loss"]), int(round(float(logs["sparse_categorical_accuracy"]) * int(yb.shape[0])))


class _Tick(keras.callbacks.Callback):
    def __init__(self, tick, steps: int):
        super().__init__()
        self.tick, self.steps = tick, steps

    def on_train_batch_end(self, batch, logs=None):
        self.tick(self.steps)  # called once per execution of steps_per_execution steps


def train_epoch(state: State, tensors: dict, index_batches, tick, epoch: int) -> tuple[float, int, tuple | None]:
    """One epoch (1-based `epoch`) in the shared batch order -> (mean train loss, correct, first bad
    step or None). host_sync=epoch is Keras' own fit() over the epoch's rows in that order
    (steps_per_execution steps per call, the loss read once; Keras averages it in float32 on the
    device, and a non-finite loss is known by epoch, not step); host_sync=step calls train_on_batch
    per batch, as do shared dropout masks (set from the host before each step). A schedule advances
    with the optimizer's step count, inside the step."""
    if state.config.host_sync == "step" or shared_masks(state.config):
        losses, rights = step_by_step(
            lambda xb, yb: train_step(state, xb, yb),
            batches(state, tensors, index_batches),
            tick,
            mask_feed(state.config, epoch, index_batches, lambda m: set_masks(state, m)),
        )
        end_epoch(state)
        return epoch_totals(losses, rights, index_batches)
    order = keras.ops.convert_to_tensor(
        np.concatenate(index_batches), dtype="int32"
    )  # (JAX under floatx=bfloat16 made int64 rows float)
    x, y = keras.ops.take(tensors["x_train"], order, axis=0), keras.ops.take(tensors["y_train"], order, axis=0)
    logs = state.model.fit(
        x,
        y,
        batch_size=state.config.batch_size,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[_Tick(tick, state.model.steps_per_execution)],
    ).history
    loss, seen = float(logs["loss"][-1]), len(order)
    correct = int(round(float(logs["sparse_categorical_accuracy"][-1]) * seen))
    end_epoch(state)
    return (loss, correct, None) if np.isfinite(loss) else (np.nan, 0, (None, loss))


def end_epoch(state: State) -> None:
    """What happens between epochs: nothing (a schedule counts the optimizer's steps, inside the step)."""


def activations(state: State, xb) -> list[np.ndarray]:
    """Each weighted layer's output for a batch at the current weights, as the training step computes it
    (training mode; nothing changes: the non-trainable variables, moving statistics and the dropout
    seed state, are restored: lockstep)."""
    saved = [(v, keras.ops.copy(v.value)) for v in state.model.non_trainable_variables]
    out, x = [], xb
    for layer in state.model.layers:
        x = layer(x, training=True)
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D, *M.RECURRENT)):  # a convolution's in NHWC
            out.append(M.to_numpy(x))
    for v, value in saved:
        v.assign(value)
    return out


def gradients(state: State, xb, yb, training: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """d(batch-mean loss)/d(kernel [in, out], bias) per layer at the current weights, in training mode
    (as the step computes it: lockstep) or evaluation mode (diagnostics); no update, nothing changes
    (stateless_call returns the new moving statistics instead of assigning them). Keras has no
    backend-neutral gradient call, so each backend's own autodiff runs the same loss."""
    fixed = [v.value for v in state.model.non_trainable_variables]

    def loss_of(values):
        out, _ = state.model.stateless_call(values, fixed, xb, training=training)
        return M.mean(state.loss_fn(yb, out))

    values = [v.value for v in state.model.trainable_variables]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        values = [tf.identity(v) for v in values]
        with tf.GradientTape() as tape:
            tape.watch(values)
            loss = loss_of(values)
        grads = tape.gradient(loss, values)
    elif backend == "torch":
        import torch

        values = [v.detach().clone().requires_grad_(True) for v in values]
        grads = torch.autograd.grad(loss_of(values), values)
    else:
        import jax

        grads = jax.grad(loss_of)(values)
    grads = [M.to_numpy(g) for g in grads]
    at = {id(v): i for i, v in enumerate(state.model.trainable_variables)}
    return [M.neutral_arrays(m, lambda v: grads[at[id(v)]]) for m in M.dense_layers(state.model)]


def sync(state: State) -> None:
    pass  # train_on_batch returns host values, which already waited for the device


@functools.lru_cache(maxsize=None)
def _floor_step(backend: str):
    """The matrix products of one step, compiled the backend's way (tf.function / jax.jit) so the
    floor carries no per-op dispatch; every product is returned, so none is optimised away."""
    ops = keras.ops

    def step(x, ws):
        acts = [x]
        for w in ws:
            acts.append(ops.matmul(acts[-1], w))
        g, grads = acts[-1], []  # g stands in for d(loss)/d(output): same shape
        for i in reversed(range(len(ws))):
            grads.append(ops.matmul(ops.transpose(acts[i]), g))
            if i:
                g = ops.matmul(g, ops.transpose(ws[i]))
        return grads

    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(step, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(step)
    return step


def floor_epoch(state: State, tensors: dict, index_batches) -> None:
    """The bench floor: only the matrix products of one training epoch, at the same shapes, dtype,
    device and threads (forward, weight gradients, input gradients except the first layer's)."""
    step = _floor_step(keras.backend.backend())
    ws = [keras.ops.convert_to_tensor(layer.kernel) for layer in M.dense_layers(state.model)]  # [in, out]
    x = tensors["x_train"]
    for idx in index_batches:
        grads = step(x[: len(idx)], ws)
    keras.ops.convert_to_numpy(grads[-1])  # wait for the device


def graph_floor(state: State, tensors: dict, index_batches):
    """PyTorch's twin captures the floor in a CUDA graph; Keras has no graph capture of its own to offer
    (on JAX and TensorFlow floor_epoch's step is already one compiled program; on torch it runs eagerly)."""
    return None


def evaluate(state: State, tensors: dict) -> tuple[float, float]:
    """Mean loss and accuracy on the full test set."""
    out = state.model.predict_on_batch(tensors["x_test"])
    y = keras.ops.convert_to_numpy(tensors["y_test"])
    loss = float(np.mean(M.to_numpy(state.loss_fn(y, out))))
    out = M.to_numpy(out)
    return loss, float(np.mean(np.argmax(out, axis=1) == y))


def predict(state: State, x: np.ndarray) -> np.ndarray:
    return M.to_numpy(state.model.predict_on_batch(keras.ops.cast(x, state.config.dtype)))


def save_checkpoint(state: State, path, epoch: int) -> None:
    from shared.atomic import atomic_write

    arrays = {"epoch": np.array(epoch)}
    # model.variables: the weights and the dropout seed generators' state (native dropout continues
    # with the masks an uninterrupted run would draw)
    arrays.update({f"model_{i}": np.array(v) for i, v in enumerate(state.model.variables)})
    arrays.update({f"optimizer_{i}": np.array(v) for i, v in enumerate(state.optimizer.variables)})
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(state: State, path) -> int:
    if not state.optimizer.built:
        state.optimizer.build(state.model.trainable_variables)
    with np.load(path) as z:
        for i, v in enumerate(state.model.variables):
            v.assign(z[f"model_{i}"])
        for i, v in enumerate(state.optimizer.variables):
            v.assign(z[f"optimizer_{i}"])
        return int(z["epoch"])


def export_weights(state: State):
    return M.export_weights(state.model)


def import_weights(state: State, layers) -> None:
    M.import_weights(state.model, layers)


def export_norms(state: State) -> dict:
    return M.export_norms(state.model)


def import_norms(state: State, norms: dict) -> None:
    M.import_norms(state.model, norms)
