"""The network, its loss and optimizer, and the neutral weight format, in PyTorch.
Mirror of keras_impl/model.py: same functions, same order. `ops=exact` swaps the library's layers
and optimizers for the written-out ones below (the same formulas, line for line, as in Keras)."""
from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "float64": torch.float64}
OWN_RULE = "torch"  # this framework's own definition of the optimizer updates


def library_default(cls, name):
    """A default read from the installed library's signature (never a hard-coded copy)."""
    return inspect.signature(cls).parameters[name].default


def negative_slope(config) -> float:
    return library_default(nn.LeakyReLU, "negative_slope") if config.negative_slope == "native" else config.negative_slope


def adam_eps(config) -> float:
    return library_default(torch.optim.Adam, "eps") if config.eps == "native" else config.eps


def _const(value, like):
    """A Python number as a tensor of `like`'s dtype (what torch does with a Python scalar anyway)."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


class ExactDense(nn.Linear):
    """x @ kernel + bias in the tensor's dtype (what nn.Linear already does; written out as in Keras)."""

    def forward(self, x):
        return x @ self.weight.T + self.bias


class ExactLeakyReLU(nn.Module):
    """x if x > 0 else slope * x, with the slope in the tensor's dtype."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def forward(self, x):
        return torch.where(x > 0, x, x * _const(self.slope, x))


def build_model(config) -> nn.Sequential:
    """784 -> hidden... -> 10 with LeakyReLU; the `seed` head appends Sigmoid and LogSoftmax."""
    sizes = config.layer_sizes()
    exact = config.ops == "exact"
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        # native init: kaiming_uniform(a=sqrt(5)), U(+-1/sqrt(fan_in)) bias
        layers.append(ExactDense(fan_in, fan_out) if exact else nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            slope = negative_slope(config)
            layers.append(ExactLeakyReLU(slope) if exact else nn.LeakyReLU(negative_slope=slope))
    if config.head == "seed":
        layers += [nn.Sigmoid(), nn.LogSoftmax(dim=1)]  # the lab report's head
    return nn.Sequential(*layers).to(DTYPES[config.dtype])


def loss_fn(config):
    """Mean per-sample loss: NLL of the log-probabilities (seed) or cross-entropy on logits."""
    if config.ops == "exact":
        return MeanLoss(nll_loss if config.head == "seed" else _cross_entropy)
    return nll_loss if config.head == "seed" else F.cross_entropy


def nll_loss(log_probs, target, reduction="mean"):
    """The lab report's loss: minus the log-probability of the true class (F.nll_loss)."""
    return F.nll_loss(log_probs, target, reduction=reduction)


def _cross_entropy(logits, target):
    return F.cross_entropy(logits, target, reduction="none")


class MeanLoss:
    """The batch mean of per-sample losses, written out as on the Keras side."""

    def __init__(self, per_sample):
        self.per_sample = per_sample

    def __call__(self, out, target):
        per_sample = self.per_sample(out, target, reduction="none") if self.per_sample is nll_loss else self.per_sample(out, target)
        return mean(per_sample)


def mean(values):
    """sum / n in the values' dtype, written out as on the Keras side."""
    return values.sum() / _const(values.shape[0], values) if values.ndim else values


class WrittenOut(torch.optim.Optimizer):
    """SGD (momentum, nesterov) and Adam written out in either framework's definition (`rule`):
      SGD   torch: b = mu*b + g;  w -= lr * (g + mu*b if nesterov else b)
            keras: m = mu*m - lr*g;  w += (mu*m - lr*g if nesterov else m)
      Adam  torch: w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
            keras: w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
    (m, v the usual moving averages). Every constant is a Python float, applied in the tensor's dtype."""

    def __init__(self, params, config, rule: str):
        super().__init__(params, {"lr": config.lr})
        self.config, self.rule = config, rule

    @torch.no_grad()
    def step(self):
        c = self.config
        for group in self.param_groups:
            for w in group["params"]:
                if not self.state[w]:
                    self.state[w].update(t=0, m=torch.zeros_like(w), v=torch.zeros_like(w))
                s = self.state[w]
                m, v = s["m"], s["v"]
                k = lambda x: _const(x, w)
                g = w.grad.to(w.dtype)
                if c.optimizer == "sgd":
                    b = m
                    if self.rule == "torch":
                        b.copy_(b * k(c.momentum) + g)
                        w.copy_(w - k(c.lr) * (g + k(c.momentum) * b if c.nesterov else b))
                    else:
                        b.copy_(b * k(c.momentum) - g * k(c.lr))
                        w.copy_(w + (b * k(c.momentum) - g * k(c.lr) if c.nesterov else b))
                    continue
                s["t"] += 1
                t = k(s["t"])
                eps = k(adam_eps(c))
                m.copy_(m + (g - m) * k(1 - c.beta1))
                v.copy_(v + (g * g - v) * k(1 - c.beta2))
                bc1, bc2 = 1 - torch.pow(k(c.beta1), t), 1 - torch.pow(k(c.beta2), t)
                if self.rule == "torch":
                    w.copy_(w - (k(c.lr) / bc1) * m / (v.sqrt() / bc2.sqrt() + eps))
                else:
                    w.copy_(w - m * (k(c.lr) * bc2.sqrt() / bc1) / (v.sqrt() + eps))


def build_optimizer(config, model) -> torch.optim.Optimizer:
    """The library's optimizer (its own definition, ops=native), else the written-out one."""
    rule = OWN_RULE if config.update_rule == "native" else config.update_rule
    if config.ops == "exact" or rule != OWN_RULE:
        return WrittenOut(model.parameters(), config, rule)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    return torch.optim.Adam(model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), eps=adam_eps(config))


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
