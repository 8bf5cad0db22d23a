"""PyTorch's half of the training contract that shared/runner.py drives.
Mirror of keras_impl/train.py: same functions, same order."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import numpy as np
import torch

from pytorch_impl import model as M

from shared.runner import RunError

FRAMEWORK = "pytorch"
CHECKPOINT_EXT = "pt"


@dataclass
class State:
    config: object
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: object


def setup(config, threads: int) -> dict:
    """Threads, device, determinism and TF32 flags, seed; returns the environment record."""
    torch.set_num_threads(threads)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise RunError("device=cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
    device = torch.device("cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu")
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = config.tf32
    torch.backends.cudnn.allow_tf32 = config.tf32
    torch.manual_seed(config.seed)
    from importlib.metadata import version  # torchvision's version without importing it (seconds)
    return {"framework_version": torch.__version__, "torch": torch.__version__, "torchvision": version("torchvision"),
            "device": device.type,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch_threads": torch.get_num_threads(), "tf32": config.tf32, "deterministic": config.deterministic,
            # free device memory, for the check against the config's estimate (shared/memory.py)
            **({"device_free_bytes": torch.cuda.mem_get_info(device)[0]} if device.type == "cuda" else {})}


def build(config, env: dict) -> State:
    device = torch.device(env["device"])
    net = M.build_model(config).to(device)
    return State(config, device, net, M.build_optimizer(config, net), M.loss_fn(config))


def to_device(state: State, x_train, y_train, x_test, y_test, data) -> dict:
    """The whole dataset as tensors on the device; batches are gathered from it by index."""
    t = {"x_train": torch.from_numpy(x_train).to(state.device), "y_train": torch.from_numpy(y_train).to(state.device),
         "x_test": torch.from_numpy(x_test).to(state.device), "y_test": torch.from_numpy(y_test).to(state.device)}
    if state.config.pipeline == "torchvision":
        from pytorch_impl.pipeline import torchvision_dataset
        t["dataset"] = torchvision_dataset(data, state.config)
    return t


def batches(state: State, tensors: dict, index_batches):
    """(x, y) per batch in the shared order: gathered on device, or the report's DataLoader pipeline."""
    if state.config.pipeline == "torchvision":
        from pytorch_impl.pipeline import loader
        for xb, yb in loader(tensors["dataset"], index_batches):
            yield xb.to(state.device, M.DTYPES[state.config.dtype]), yb.to(state.device)
        return
    for idx in index_batches:
        i = torch.from_numpy(idx).to(state.device)
        yield tensors["x_train"][i], tensors["y_train"][i]


def train_step(state: State, xb, yb) -> tuple[float, int]:
    """One SGD step; returns the batch-mean loss (before the update) and the number correct."""
    state.model.train()
    out = state.model(xb)
    loss = state.loss_fn(out, yb)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    return loss.item(), int((out.argmax(1) == yb).sum())


def activations(state: State, xb) -> list[np.ndarray]:
    """Each dense layer's output (its pre-activation) for a batch at the current weights (lockstep)."""
    out, x = [], xb
    with torch.no_grad():
        for m in state.model:
            x = m(x)
            if isinstance(m, torch.nn.Linear):
                out.append(x.cpu().numpy())
    return out


def gradients(state: State, xb, yb) -> list[tuple[np.ndarray, np.ndarray]]:
    """d(batch-mean loss)/d(kernel [in, out], bias) per layer at the current weights; no update (lockstep)."""
    state.model.zero_grad(set_to_none=True)
    state.loss_fn(state.model(xb), yb).backward()
    grads = [(m.weight.grad.cpu().numpy().T.copy(), m.bias.grad.cpu().numpy().copy()) for m in M.dense_layers(state.model)]
    state.model.zero_grad(set_to_none=True)
    return grads


def sync(state: State) -> None:
    if state.device.type == "cuda":
        torch.cuda.synchronize(state.device)


def evaluate(state: State, tensors: dict) -> tuple[float, float]:
    """Mean loss and accuracy on the full test set."""
    state.model.eval()
    with torch.no_grad():
        out = state.model(tensors["x_test"])
        loss = state.loss_fn(out, tensors["y_test"]).item()
        acc = (out.argmax(1) == tensors["y_test"]).sum().item() / len(out)
    sync(state)
    return loss, acc


def predict(state: State, x: np.ndarray) -> np.ndarray:
    state.model.eval()
    with torch.no_grad():
        return state.model(torch.from_numpy(x).to(state.device)).cpu().numpy()


def save_checkpoint(state: State, path, epoch: int) -> None:
    from shared.data import atomic_write
    blob = {"epoch": epoch, "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict()}
    atomic_write(path, lambda f: torch.save(blob, f))


def load_checkpoint(state: State, path) -> int:
    blob = torch.load(path, map_location=state.device, weights_only=True)
    state.model.load_state_dict(blob["model"])
    state.optimizer.load_state_dict(blob["optimizer"])
    return blob["epoch"]


def export_weights(state: State):
    return M.export_weights(state.model)


def import_weights(state: State, layers) -> None:
    M.import_weights(state.model, layers)
