"""PyTorch's half of the training contract that shared/runner.py drives.
Mirror of keras_impl/train.py: same functions, same order."""

from __future__ import annotations

import contextlib
import io
import os
import platform
from dataclasses import dataclass

import numpy as np
import torch

from pytorch_impl import model as M

from shared.plan import mask_feed
from shared.runner import RunError, epoch_totals, step_by_step

FRAMEWORK = "pytorch"
CHECKPOINT_EXT = "pt"


@dataclass
class State:
    config: object
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: object
    forward: object  # the model, or torch.compile of it (compile=on); weights and checkpoints use `model`
    scheduler: object = None  # a library LR scheduler, stepped every `unit` (epoch or step), or None
    unit: str | None = None
    step: object = None  # compile=step: the whole training step, compiled (compile_step)
    scaler: object = None  # mixed_precision=float16: the GradScaler (M.grad_scaler)
    spec: object = None  # the training specs (shared/training.py) the optimizer, loss and clipping follow


def setup(config, threads: int) -> dict:
    """Threads, device, determinism and TF32 flags, seed; returns the environment record."""
    torch.set_num_threads(threads)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise RunError("device=cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
    device = torch.device(
        "cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = config.tf32
    torch.backends.cudnn.allow_tf32 = config.tf32
    torch.manual_seed(config.seed)
    return {
        "framework_version": torch.__version__,
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "tf32": config.tf32,
        "deterministic": config.deterministic,
        # free device memory, for the check against the config's estimate (shared/memory.py)
        **({"device_free_bytes": torch.cuda.mem_get_info(device)[0]} if device.type == "cuda" else {}),
    }


def _version(package: str) -> str | None:
    """A package's version without importing it (torchvision takes seconds); None where absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def build(config, env: dict) -> State:
    device = torch.device(env["device"])
    net = M.build_model(config).to(device)
    # compile=on: Inductor kernels; on a GPU also CUDA graphs ("reduce-overhead"), which replay a
    # recorded step without per-kernel launch costs
    mode = "reduce-overhead" if device.type == "cuda" else None
    forward = torch.compile(net, mode=mode) if config.compile == "on" else net
    env["compiled"] = config.compile in ("on", "step")
    env["host_sync"] = config.host_sync  # the loop this run used (Keras' can differ from its config)
    spec = M.training_plan(config)
    opt = M.build_optimizer(spec, net)
    scheduler = M.build_scheduler(spec.schedule, opt)
    unit = spec.schedule.unit if scheduler else None
    state = State(config, device, net, opt, M.loss_fn(spec.loss), forward, scheduler, unit, spec=spec)
    if config.compile == "step":
        state.step = torch.compile(compile_step(state), mode=mode, fullgraph=True)
    state.scaler = M.grad_scaler(config, device)
    return state


def compile_step(state: State):
    """compile=step: the whole training step, forward, loss, backward and the SGD update, as one
    function for torch.compile (one graph: torch.func takes the gradients, nothing breaks it). It
    updates the parameters and the optimizer's own momentum buffers in place, as torch.optim.SGD does
    (so checkpoints are the same), and returns the batch-mean loss and the number correct, on the device."""
    net, opt = state.model, state.optimizer
    group = opt.param_groups[0]
    lr, momentum, nesterov = group["lr"], group["momentum"], group["nesterov"]
    names, params = zip(*net.named_parameters())

    def loss_of(weights, xb, yb):
        out = torch.func.functional_call(net, dict(zip(names, weights)), (xb,))
        loss = state.loss_fn(out, yb)
        return loss, (loss, out)

    def step(weights, buffers, xb, yb):
        grads, (loss, out) = torch.func.grad(loss_of, has_aux=True)(weights, xb, yb)
        with torch.no_grad():
            for w, buf, g in zip(weights, buffers, grads):  # torch.optim.SGD's update, dampening 0
                if momentum:
                    buf.mul_(momentum).add_(g)
                    g = g.add(buf, alpha=momentum) if nesterov else buf
                w.sub_(g * lr)  # (add_ with alpha=-lr lost the alpha under Inductor when g is a raw gradient)
        return loss.detach(), (out.argmax(1) == yb).sum()

    def run(xb, yb):
        # read each call: loading a checkpoint replaces the optimizer's buffers. A zero buffer's first
        # update, 0 * momentum + g, is exactly SGD's first buffer, g
        buffers = (
            [opt.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
            if momentum
            else [None] * len(params)
        )
        return step([p.detach() for p in params], buffers, xb, yb)

    return run


def augment(
    images: np.ndarray, names: list[str], rotate_degrees: float, translate_fraction: float, seed: int
) -> np.ndarray:
    """augment_impl=native: torchvision.transforms.v2 with its defaults (nearest sampling, fill 0), one
    image at a time as a Dataset's transform applies it, drawing from torch's generator seeded with
    `seed` (forked: the training's own draws stay as they were). Raw images [n, 28, 28] in, float64 out."""
    from torchvision.transforms import v2

    steps = {
        "flip": v2.RandomHorizontalFlip(),
        "vflip": v2.RandomVerticalFlip(),
        "rotate": v2.RandomRotation(rotate_degrees),
        "translate": v2.RandomAffine(degrees=0.0, translate=(translate_fraction, translate_fraction)),
    }
    pipe = v2.Compose([steps[n] for n in steps if n in names])  # shared/augment.py's order
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]  # [n, 1, 28, 28]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.stack([pipe(img) for img in x])
    return out[:, 0].numpy().astype(np.float64)


def to_device(state: State, x_train, y_train, x_test, y_test, data) -> dict:
    """The whole dataset as tensors on the device; batches are gathered from it by index."""
    x = lambda a: torch.from_numpy(a).to(state.device, M.DTYPES[state.config.dtype])  # bfloat16: rounded here
    t = {
        "x_train": x(x_train),
        "y_train": torch.from_numpy(y_train).to(state.device),
        "x_test": x(x_test),
        "y_test": torch.from_numpy(y_test).to(state.device),
    }
    if state.config.pipeline == "torchvision":
        from pytorch_impl.pipeline import torchvision_dataset

        t["dataset"] = torchvision_dataset(data, state.config)
    return t


def precision(state: State, xb) -> dict:
    """What the running program computes in, read live: each layer's output dtype on a batch (under
    autocast where mixed precision is on; evaluation mode: no dropout mask needed, nothing changes),
    the loss's, the weights', the loss scaler's."""
    name = lambda dtype: str(dtype).removeprefix("torch.")
    layers, x, layout = [], xb, None
    with torch.no_grad(), _unchanged(state, False), M.autocast(state.config, state.device):
        for m in state.model:
            x = m(x)
            layers.append(f"{type(m).__name__}: {name(x.dtype)}")
            if layout is None and x.dim() == 4 and x.shape[1] > 1:  # the first feature maps' memory order
                layout = (
                    "NCHW"
                    if x.is_contiguous()
                    else "NHWC"
                    if x.is_contiguous(memory_format=torch.channels_last)
                    else "strided"
                )
        loss = state.loss_fn(x, torch.zeros(len(x), dtype=torch.int64, device=x.device))
    p = {
        "layers": layers,
        "loss": name(loss.dtype),
        "weights": name(next(state.model.parameters()).dtype),
        **({"feature_layout": layout} if layout else {}),
    }
    if state.scaler is not None:
        p["loss_scale"] = {
            "initial": state.scaler.get_scale(),
            "growth_factor": state.scaler.get_growth_factor(),
            "backoff_factor": state.scaler.get_backoff_factor(),
            "growth_interval": state.scaler.get_growth_interval(),
        }
    return p


def param_count(state: State) -> int:
    """Trainable parameters, counted in the built model."""
    return sum(p.numel() for p in state.model.parameters() if p.requires_grad)


def batches(state: State, tensors: dict, index_batches):
    """(x, y) per batch in the shared order: gathered on device, or the report's DataLoader pipeline."""
    if state.config.pipeline == "torchvision":
        from pytorch_impl.pipeline import loader

        for xb, yb in loader(tensors["dataset"], index_batches):
            yield xb.to(state.device, M.DTYPES[state.config.dtype]), yb.to(state.device)
        return
    # one index transfer per epoch, then index_select (a row copy; x[i] goes through the slower
    # advanced-indexing kernel): same rows, same bits
    order = torch.from_numpy(np.concatenate(index_batches)).to(state.device)
    for i in torch.split(order, [len(idx) for idx in index_batches]):
        yield tensors["x_train"].index_select(0, i), tensors["y_train"].index_select(0, i)


def set_masks(state: State, masks) -> None:
    """The shared dropout masks of the next step (shared/plan.py), one per SharedDropout layer in order."""
    layers = [m for m in state.model if isinstance(m, M.SharedDropout)]
    for m, mask in zip(layers, masks):
        m.mask = torch.from_numpy(mask).to(state.device, M.DTYPES[state.config.dtype])


def _step(state: State, xb, yb):
    """One SGD step; the batch-mean loss (before the update) and the number correct, on the device."""
    state.model.train()
    if state.step is not None:
        return state.step(xb, yb)
    with M.autocast(state.config, state.device):
        out = state.forward(xb)
        loss = state.loss_fn(out, yb)
    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is None:
        loss.backward()
        M.clip_gradients(state.spec, state.model)
        state.optimizer.step()
    else:  # float16: the scaled loss's gradients, unscaled before clipping; a step with inf/nan is skipped
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(state.optimizer)
        M.clip_gradients(state.spec, state.model)
        state.scaler.step(state.optimizer)
        state.scaler.update()
    if state.unit == "step":
        state.scheduler.step()
    return loss.detach(), (out.argmax(1) == yb).sum()


def train_step(state: State, xb, yb) -> tuple[float, int]:
    """One SGD step; returns the batch-mean loss (before the update) and the number correct."""
    loss, right = _step(state, xb, yb)
    return loss.item(), int(right)


def train_epoch(state: State, tensors: dict, index_batches, tick, epoch: int) -> tuple[float, int, tuple | None]:
    """One epoch (1-based `epoch`) in the shared batch order -> (mean train loss, correct, first bad
    step or None). host_sync=epoch keeps each step's loss and count on the device and reads them all
    once at the end (no host wait per step); host_sync=step reads them after every step. Same numbers.
    Shared dropout masks are set before each step; a per-epoch scheduler steps at the end."""
    step = _step if state.config.host_sync == "epoch" else train_step
    losses, rights = step_by_step(
        lambda xb, yb: step(state, xb, yb),
        batches(state, tensors, index_batches),
        tick,
        mask_feed(state.config, epoch, index_batches, lambda m: set_masks(state, m)),
    )
    if state.config.host_sync == "epoch":
        losses, rights = M.to_numpy(torch.stack(losses)), torch.stack(rights).cpu().numpy()
    end_epoch(state)
    return epoch_totals(losses, rights, index_batches)


def end_epoch(state: State) -> None:
    """What happens between epochs: a per-epoch scheduler steps (the loop's idiom in PyTorch)."""
    if state.unit == "epoch":
        state.scheduler.step()


@contextlib.contextmanager
def _unchanged(state: State, training: bool):
    """Run the model in training or evaluation mode and leave no trace: batch-norm running statistics
    and the random generator (native dropout) are restored afterwards (lockstep, diagnostics)."""
    was = state.model.training
    saved = [(b, b.detach().clone()) for b in state.model.buffers()]
    with torch.random.fork_rng(devices=[state.device] if state.device.type == "cuda" else []):
        state.model.train(training)
        try:
            yield
        finally:
            state.model.train(was)
            with torch.no_grad():
                for b, v in saved:
                    b.copy_(v)


def activations(state: State, xb) -> list[np.ndarray]:
    """Each weighted layer's output for a batch at the current weights, as the training step computes
    it (training mode; nothing changes: lockstep); a convolution's in NHWC, the neutral layout."""
    out, x = [], xb
    with torch.no_grad(), _unchanged(state, True), M.autocast(state.config, state.device):
        for m in state.model:
            x = m(x)
            if isinstance(m, (torch.nn.Linear, torch.nn.RNNBase)):  # a recurrent layer's: its last state
                out.append(M.to_numpy(x))
            elif isinstance(m, torch.nn.Conv2d):
                out.append(M.to_numpy(x.permute(0, 2, 3, 1)))
    return out


def gradients(state: State, xb, yb, training: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """d(batch-mean loss)/d(kernel [in, out], bias) per layer at the current weights, in training mode
    (as the step computes it: lockstep) or evaluation mode (diagnostics); no update, nothing changes."""
    state.model.zero_grad(set_to_none=True)
    with _unchanged(state, training):
        with M.autocast(state.config, state.device):
            loss = state.loss_fn(state.model(xb), yb)
        loss.backward()  # outside autocast, as the training step does
    grad = lambda p: None if p.grad is None else M.to_numpy(p.grad)  # a bias kept at 0 has none
    grads = [M.neutral_arrays(m, grad) for m in M.dense_layers(state.model)]
    state.model.zero_grad(set_to_none=True)
    return grads


def sync(state: State) -> None:
    if state.device.type == "cuda":
        torch.cuda.synchronize(state.device)


def _floor_products(x, ws) -> list:
    """One step's matrix products at batch x: forward, weight gradients, input gradients except the first
    layer's; every product is returned (the CUDA graph keeps them as its outputs)."""
    acts = [x]
    for w in ws:
        acts.append(acts[-1] @ w)
    g, grads = acts[-1], []  # g stands in for d(loss)/d(output): same shape
    for i in reversed(range(len(ws))):
        grads.append(acts[i].T @ g)
        if i:
            g = g @ ws[i].T
    return grads


def floor_epoch(state: State, tensors: dict, index_batches) -> None:
    """The bench floor: only the matrix products of one training epoch, at the same shapes, dtype,
    device and threads (forward, weight gradients, input gradients except the first layer's)."""
    ws = [m.weight.detach().T.contiguous() for m in M.dense_layers(state.model)]  # [in, out]
    x = tensors["x_train"]
    with torch.no_grad():
        for idx in index_batches:
            _floor_products(x[: len(idx)], ws)
    sync(state)


def graph_floor(state: State, tensors: dict, index_batches):
    """The floor without per-kernel launch overhead, on a GPU: floor_epoch's products captured once per
    batch shape in a CUDA graph; returns an epoch of replays, one launch per step instead of a dozen
    (None without CUDA). The epoch keeps the graphs' inputs and outputs (`.static`): replays use that memory."""
    if state.device.type != "cuda":
        return None
    ws = [m.weight.detach().T.contiguous() for m in M.dense_layers(state.model)]  # [in, out]
    x = tensors["x_train"]
    lengths = [len(idx) for idx in index_batches]
    graphs, outputs = {}, {}
    with torch.no_grad():
        for n in sorted(set(lengths)):
            side = torch.cuda.Stream(state.device)  # warm-up off the capture stream, as CUDA graphs require
            side.wait_stream(torch.cuda.current_stream(state.device))
            with torch.cuda.stream(side):
                _floor_products(x[:n], ws)
            torch.cuda.current_stream(state.device).wait_stream(side)
            graphs[n] = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graphs[n]):
                outputs[n] = _floor_products(x[:n], ws)

    def epoch():
        for n in lengths:
            graphs[n].replay()
        sync(state)

    epoch.static = {"weights": ws, "x": x, "outputs": outputs}
    return epoch


def evaluate(state: State, tensors: dict) -> tuple[float, float]:
    """Mean loss and accuracy on the full test set."""
    state.model.eval()
    with torch.no_grad(), M.autocast(state.config, state.device):
        out = state.model(tensors["x_test"])
        loss = state.loss_fn(out, tensors["y_test"]).item()
        acc = (out.argmax(1) == tensors["y_test"]).sum().item() / len(out)
    sync(state)
    return loss, acc


def predict(state: State, x: np.ndarray) -> np.ndarray:
    state.model.eval()
    with torch.no_grad(), M.autocast(state.config, state.device):
        return M.to_numpy(state.model(torch.from_numpy(x).to(state.device, M.DTYPES[state.config.dtype])))


def save_checkpoint(state: State, path, epoch: int) -> None:
    from shared.atomic import atomic_write

    # the random generators too: native dropout continues with the masks an uninterrupted run would draw
    blob = {
        "epoch": epoch,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        **({"scheduler": state.scheduler.state_dict()} if state.scheduler else {}),
        **({"scaler": state.scaler.state_dict()} if state.scaler else {}),
        **({"cuda_rng": torch.cuda.get_rng_state(state.device)} if state.device.type == "cuda" else {}),
    }
    # serialised in memory first: torch.save would wrap a failing write (a full disk) in a RuntimeError
    # that hides the OS error; a plain file write raises the OSError itself, which the CLI reports
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write(path, lambda f: f.write(buf.getbuffer()))


def load_checkpoint(state: State, path) -> int:
    blob = torch.load(path, map_location=state.device, weights_only=True)
    state.model.load_state_dict(blob["model"])
    state.optimizer.load_state_dict(blob["optimizer"])
    if state.scheduler:
        state.scheduler.load_state_dict(blob["scheduler"])
    if state.scaler and "scaler" in blob:
        state.scaler.load_state_dict(blob["scaler"])
    if "rng" in blob:
        torch.set_rng_state(blob["rng"].cpu())
    if "cuda_rng" in blob and state.device.type == "cuda":
        torch.cuda.set_rng_state(blob["cuda_rng"].cpu(), state.device)
    return blob["epoch"]


def export_weights(state: State):
    return M.export_weights(state.model)


def import_weights(state: State, layers) -> None:
    M.import_weights(state.model, layers)


def export_norms(state: State) -> dict:
    return M.export_norms(state.model)


def import_norms(state: State, norms: dict) -> None:
    M.import_norms(state.model, norms)
