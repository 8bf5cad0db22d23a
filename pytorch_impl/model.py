"""The network, its loss and optimizer, and the neutral weight format, in PyTorch.
Mirror of keras_impl/model.py: same functions, same order."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_model(config) -> nn.Sequential:
    """784 -> hidden... -> 10 with LeakyReLU; the `seed` head appends Sigmoid and LogSoftmax."""
    sizes = config.layer_sizes()
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))  # native init: kaiming_uniform(a=sqrt(5)), U(+-1/sqrt(fan_in)) bias
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(negative_slope=config.negative_slope))
    if config.head == "seed":
        layers += [nn.Sigmoid(), nn.LogSoftmax(dim=1)]  # the lab report's head
    return nn.Sequential(*layers).to(DTYPES[config.dtype])


def loss_fn(config):
    """Mean per-sample loss: NLL of the log-probabilities (seed) or cross-entropy on logits."""
    return nll_loss if config.head == "seed" else F.cross_entropy


def nll_loss(log_probs, target):
    """The lab report's loss: minus the log-probability of the true class (F.nll_loss)."""
    return F.nll_loss(log_probs, target)


def build_optimizer(config, model) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    return torch.optim.Adam(model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)


def dense_layers(model) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


def export_weights(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(kernel [in, out], bias)] per layer: nn.Linear stores weight as [out, in], so transpose."""
    return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy()) for m in dense_layers(model)]


def import_weights(model, layers) -> None:
    dense = dense_layers(model)
    if len(dense) != len(layers):
        raise ValueError(f"the weights have {len(layers)} layers, the model {len(dense)}")
    with torch.no_grad():
        for i, (m, (kernel, bias)) in enumerate(zip(dense, layers)):
            if tuple(kernel.shape) != (m.in_features, m.out_features):
                raise ValueError(f"layer {i}: kernel {tuple(kernel.shape)} does not fit Linear({m.in_features}, {m.out_features})")
            m.weight.copy_(torch.as_tensor(np.ascontiguousarray(kernel.T), dtype=m.weight.dtype))
            m.bias.copy_(torch.as_tensor(bias, dtype=m.bias.dtype))
