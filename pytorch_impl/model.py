"""The network, its loss and optimizer, and the neutral weight format, in PyTorch.
Mirror of keras_impl/model.py: same functions, same order. `ops=exact` swaps the library's layers
and optimizers for the written-out ones below (the same formulas, line for line, as in Keras)."""

from __future__ import annotations

import contextlib
import functools
import inspect

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from shared import plan, training

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def library_default(cls, name):
    """A default read from the installed library's signature (never a hard-coded copy)."""
    return inspect.signature(cls).parameters[name].default


def negative_slope(config) -> float:
    return (
        library_default(nn.LeakyReLU, "negative_slope") if config.negative_slope == "native" else config.negative_slope
    )


def _const(value, like):
    """A Python number as a tensor of `like`'s dtype (what torch does with a Python scalar anyway)."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def _compute_dtype(x):
    """The precision a written-out layer computes in: autocast's lower one where autocast is on (mixed
    precision), else the tensor's dtype."""
    on = torch.is_autocast_enabled(x.device.type)
    return torch.get_autocast_dtype(x.device.type) if on else x.dtype


class ExactDense(nn.Linear):
    """x @ kernel + bias, written out as in Keras: operands in the compute precision, products and bias
    accumulated in at least float32 and rounded once to the compute precision (what addmm and fused
    matmul-plus-bias kernels do; an unfused bfloat16 product would be rounded before the bias joins it).
    In float32 and float64 this is plain x @ kernel + bias in the tensor's dtype."""

    def forward(self, x):
        low = _compute_dtype(x)
        acc = torch.promote_types(low, torch.float32)
        up = lambda t: t.to(low).to(acc)  # the operand in the compute precision, exactly, for accumulation
        with torch.autocast(x.device.type, enabled=False):  # the casts above decide, not autocast
            return (up(x) @ up(self.weight).T + up(self.bias)).to(low)


class ExactLeakyReLU(nn.Module):
    """x if x > 0 else slope * x, with the slope in the tensor's dtype."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def forward(self, x):
        return torch.where(x > 0, x, x * _const(self.slope, x))


class ExactBatchNorm(nn.Module):
    """Batch norm written out (the same lines as in Keras): training normalises with the batch mean and
    biased variance and moves the running averages by `new` (the weight of the batch statistics,
    PyTorch's convention), the running variance taking the biased or unbiased batch variance;
    evaluation normalises with the running averages. Parameter names as nn.BatchNorm1d's. Every operand
    in the input's dtype (under mixed precision the lower one: Keras' policy casts each variable read)."""

    def __init__(self, width: int, new: float, eps: float, running_var: str):
        super().__init__()
        self.new, self.eps, self.unbiased = new, eps, running_var == "unbiased"
        self.weight, self.bias = nn.Parameter(torch.ones(width)), nn.Parameter(torch.zeros(width))
        self.register_buffer("running_mean", torch.zeros(width))
        self.register_buffer("running_var", torch.ones(width))

    def forward(self, x):
        k = lambda v: _const(v, x)
        if self.training:
            n = x.shape[0]
            mean = x.sum(0) / k(n)
            d = x - mean
            ss = (d * d).sum(0)
            var = ss / k(n)
            with torch.no_grad():
                batch_var = ss / k(n - 1) if self.unbiased else var
                self.running_mean.copy_(self.running_mean.to(x.dtype) * k(1 - self.new) + mean * k(self.new))
                self.running_var.copy_(self.running_var.to(x.dtype) * k(1 - self.new) + batch_var * k(self.new))
        else:
            d, var = x - self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
        return d / torch.sqrt(var + k(self.eps)) * self.weight.to(x.dtype) + self.bias.to(x.dtype)


class ExactLayerNorm(nn.Module):
    """Layer norm written out (the same lines as in Keras): each sample normalised over its features with
    their mean and biased variance, then scaled and offset. Parameter names as nn.LayerNorm's."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight, self.bias = nn.Parameter(torch.ones(width)), nn.Parameter(torch.zeros(width))

    def forward(self, x):
        k = lambda v: _const(v, x)
        n = x.shape[-1]
        d = x - x.sum(-1, keepdim=True) / k(n)
        var = (d * d).sum(-1, keepdim=True) / k(n)
        return d / torch.sqrt(var + k(self.eps)) * self.weight.to(x.dtype) + self.bias.to(x.dtype)


class SamePadConv2d(nn.Conv2d):
    """A strided convolution padded as Keras' 'same' (and TensorFlow's): the total padding a stride needs,
    the odd row and column at the bottom and right. PyTorch refuses padding='same' with a stride."""

    def forward(self, x):
        pads = []
        for n, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1]):  # width, then height
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class LastGRU(nn.GRU):
    """nn.GRU over the rows (batch first), giving its last state, as Keras' GRU does."""

    def __init__(self, layer):
        super().__init__(layer.fan_in, layer.width, batch_first=True)

    def forward(self, x):
        return super().forward(x)[0][:, -1]


class LastLSTM(nn.LSTM):
    """nn.LSTM over the rows (batch first), giving its last state, as Keras' LSTM does. single: one
    trained bias, as in Keras (bias_hh_l0 kept at 0, not trained)."""

    def __init__(self, layer, single: bool = False):
        super().__init__(layer.fan_in, layer.width, batch_first=True)
        if single:
            with torch.no_grad():
                self.bias_hh_l0.zero_()
            self.bias_hh_l0.requires_grad_(False)

    def forward(self, x):
        return super().forward(x)[0][:, -1]


def _tanh(x):
    """tanh(x) as 2 sigmoid(2x) - 1, the same line as in Keras (whose ops.tanh on JAX returns float32)."""
    return _const(2, x) * torch.sigmoid(_const(2, x) * x) - _const(1, x)


def _rnn_parts(m, x):
    """The recurrent layer's weights and biases in the input's dtype; a zero initial state."""
    parts = (m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)
    return (*(p.to(x.dtype) for p in parts), x.new_zeros(x.shape[0], m.hidden_size))


class ExactGRU(LastGRU):
    """The GRU cell written out (the same lines as in Keras; PyTorch's gate order r, z, n): per row,
    gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh; r, z = sigmoid(gi + gh); n = tanh(gi_n + r * gh_n);
    h = z * h + (1 - z) * n (tanh as _tanh)."""

    def forward(self, x):
        w_ih, w_hh, b_ih, b_hh, h = _rnn_parts(self, x)
        one = _const(1, x)
        for t in range(x.shape[1]):
            (ir, iz, i_n), (hr, hz, hn) = (x[:, t] @ w_ih.T + b_ih).chunk(3, 1), (h @ w_hh.T + b_hh).chunk(3, 1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            h = z * h + (one - z) * _tanh(i_n + r * hn)
        return h


class ExactLSTM(LastLSTM):
    """The LSTM cell written out (the same lines as in Keras; gate order i, f, g, o on both sides): per
    row, z = x W_ih^T + h W_hh^T + (b_ih + b_hh); c = f * c + i * tanh(g); h = o * tanh(c), i, f, o
    sigmoids."""

    def forward(self, x):
        w_ih, w_hh, b_ih, b_hh, h = _rnn_parts(self, x)
        c = torch.zeros_like(h)
        for t in range(x.shape[1]):
            i, f, g, o = (x[:, t] @ w_ih.T + h @ w_hh.T + (b_ih + b_hh)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * _tanh(g)
            h = torch.sigmoid(o) * _tanh(c)
        return h


class SharedDropout(nn.Module):
    """Dropout with masks given from outside (shared/plan.py draws them; set_masks puts them here):
    x * mask in training, x in evaluation. The mask already holds keep / (1 - rate)."""

    def __init__(self):
        super().__init__()
        self.mask = None

    def forward(self, x):
        return x * self.mask[: x.shape[0]].to(x.dtype) if self.training else x


class FlattenNHWC(nn.Module):
    """Flatten in (row, column, channel) order, the neutral layout's (Keras' Flatten of NHWC): PyTorch's
    own nn.Flatten of NCHW would order the Dense kernel's rows channel first (a classic porting bug:
    the same weights then give a different network)."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1)


OWN_BN_VAR = "unbiased"  # nn.BatchNorm1d's running variance takes the unbiased batch variance


def idioms() -> training.Idioms:
    """PyTorch's own training choices where a config says native, as data (shared/training.py applies them)."""
    opt = torch.optim
    return training.Idioms(
        rule="torch",  # torch.optim's own update definitions
        # what optimizer(weight_decay=...) does: added to the gradient, except AdamW's
        decay_form={"sgd": "coupled", "adam": "coupled", "adamw": "decoupled", "rmsprop": "coupled"},
        clip_scope="global",  # torch.nn.utils.clip_grad_norm_ clips all gradients jointly
        schedule_unit="epoch",  # a scheduler advances when the loop calls scheduler.step(): once per epoch
        eps={
            k: library_default(cls, "eps")
            for k, cls in (("adam", opt.Adam), ("adamw", opt.AdamW), ("rmsprop", opt.RMSprop))
        },
        adamw_decay=library_default(opt.AdamW, "weight_decay"),
        rho=library_default(opt.RMSprop, "alpha"),
    )


def training_plan(config) -> training.Training:
    """The training specs of `config` with PyTorch's own choices where it says native."""
    return training.resolve(config, idioms())


def bn_new_weight(config) -> float:
    """The weight of the new batch statistics in the running averages (BatchNorm1d's momentum)."""
    return library_default(nn.BatchNorm1d, "momentum") if config.bn_momentum == "native" else config.bn_momentum


def bn_eps(config) -> float:
    return library_default(nn.BatchNorm1d, "eps") if config.bn_eps == "native" else config.bn_eps


def stride_padding(config) -> str:
    """How a strided convolution pads: native is the usual port, padding=k//2 on every side."""
    return "symmetric" if config.stride_padding == "native" else config.stride_padding


def _conv(layer, config):
    """NCHW; the library's convolution in the tensor's dtype under ops=exact too."""
    if layer.stride == 1:
        return nn.Conv2d(layer.fan_in, layer.width, layer.kernel, padding="same")
    if stride_padding(config) == "same":
        return SamePadConv2d(layer.fan_in, layer.width, layer.kernel, stride=layer.stride)
    return nn.Conv2d(layer.fan_in, layer.width, layer.kernel, stride=layer.stride, padding=layer.kernel // 2)


def ln_eps(config) -> float:
    return library_default(nn.LayerNorm, "eps") if config.ln_eps == "native" else config.ln_eps


def lstm_single(config) -> bool:
    """Whether the LSTM has one trained bias (Keras' form) rather than PyTorch's own two."""
    return config.lstm_bias == "single"


def _recurrent(layer, config):
    exact = config.ops == "exact"
    if layer.kind == "gru":
        return (ExactGRU if exact else LastGRU)(layer)
    return (ExactLSTM if exact else LastLSTM)(layer, lstm_single(config))


def _batchnorm(layer, config):
    running_var = OWN_BN_VAR if config.bn_running_var == "native" else config.bn_running_var
    if config.ops == "exact" or running_var != OWN_BN_VAR:
        return ExactBatchNorm(layer.width, bn_new_weight(config), bn_eps(config), running_var)
    return nn.BatchNorm1d(layer.width, eps=bn_eps(config), momentum=bn_new_weight(config))


def _leaky_relu(layer, config):
    slope = negative_slope(config)
    return ExactLeakyReLU(slope) if config.ops == "exact" else nn.LeakyReLU(negative_slope=slope)


# Every layer kind of the plan (plan.KINDS) -> its PyTorch module (a test checks the keys are exactly those)
LAYERS = {
    # native init: kaiming_uniform(a=sqrt(5)), U(+-1/sqrt(fan_in)) bias
    "dense": lambda l, c: (ExactDense if c.ops == "exact" else nn.Linear)(l.fan_in, l.width),
    "conv": _conv,
    "batchnorm": _batchnorm,
    "layernorm": lambda l, c: (
        ExactLayerNorm(l.width, ln_eps(c)) if c.ops == "exact" else nn.LayerNorm(l.width, eps=ln_eps(c))
    ),
    "leaky_relu": _leaky_relu,
    "dropout": lambda l, c: SharedDropout() if plan.shared_masks(c) else nn.Dropout(c.dropout),
    "maxpool": lambda l, c: nn.MaxPool2d(plan.POOL),
    "reshape": lambda l, c: nn.Unflatten(1, (1, plan.IMAGE, plan.IMAGE)),  # the flat pixels as NCHW images
    "rows": lambda l, c: nn.Unflatten(1, (plan.IMAGE, plan.IMAGE)),  # 28 rows of 28 pixels, batch first
    # native init: every weight and both biases U(+-1/sqrt(units))
    "gru": _recurrent,
    "lstm": _recurrent,
    "flatten": lambda l, c: FlattenNHWC(),
    "sigmoid": lambda l, c: nn.Sigmoid(),  # the lab report's head
    "log_softmax": lambda l, c: nn.LogSoftmax(dim=1),
}


def translate(layer, config) -> nn.Module:
    """One layer of the framework-free plan (shared/plan.py) as a PyTorch module."""
    if layer.kind not in LAYERS:
        raise ValueError(f"no PyTorch translation for layer kind {layer.kind!r} (plan.KINDS: {', '.join(plan.KINDS)})")
    return LAYERS[layer.kind](layer, config)


def build_model(config) -> nn.Sequential:
    """The plan's layers in order: 784 -> hidden... -> 10 (see shared/plan.py). conv_layout=nhwc keeps the
    convolution weights, and through them the feature maps, in torch.channels_last (NHWC) memory: the
    same numbers in another order, where PyTorch's CPU max pooling is several times faster than in NCHW."""
    net = nn.Sequential(*(translate(layer, config) for layer in plan.network(config))).to(DTYPES[config.dtype])
    return net.to(memory_format=torch.channels_last) if config.conv_layout == "nhwc" else net


# The loss of each head (training.HEADS): (the library's, the per-sample one written out for ops=exact)
LOSSES = {
    "seed": (lambda s: nll_loss, lambda s: nll_loss),
    # label smoothing: F.cross_entropy's own argument, on class indices
    "logits": (
        lambda s: functools.partial(F.cross_entropy, label_smoothing=s.smoothing) if s.smoothing else F.cross_entropy,
        lambda s: functools.partial(_cross_entropy, smoothing=s.smoothing),
    ),
}


def loss_fn(s: training.Loss):
    """Mean per-sample loss: NLL of the log-probabilities (seed) or cross-entropy on logits."""
    library, written = LOSSES[s.head]
    return MeanLoss(written(s), DTYPES[s.dtype]) if s.exact else library(s)


def autocast(config, device: torch.device):
    """mixed_precision: torch.autocast, PyTorch's per-operation choice of precision (matmuls in the lower
    one; softmax, log-softmax and the losses kept in float32); off: no change."""
    if config.mixed_precision == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, config.mixed_precision))


def grad_scaler(config, device: torch.device):
    """mixed_precision=float16: torch.amp.GradScaler with its own defaults (dynamic loss scaling, which
    float16's narrow range needs); bfloat16 has float32's range and needs none."""
    return torch.amp.GradScaler(device.type) if config.mixed_precision == "float16" else None


def nll_loss(log_probs, target, reduction="mean"):
    """The lab report's loss: minus the log-probability of the true class (F.nll_loss)."""
    return F.nll_loss(log_probs, target, reduction=reduction)


def _cross_entropy(logits, target, smoothing=0.0):
    """Per sample; smoothing s written out as (1 - s) * nll + s/K * sum_k(-log p_k), as in Keras."""
    if not smoothing:
        return F.cross_entropy(logits, target, reduction="none")
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, target[:, None])[:, 0]
    return nll * _const(1 - smoothing, logp) + (-logp).sum(1) * _const(smoothing / logp.shape[1], logp)


class MeanLoss:
    """The batch mean of per-sample losses, written out as on the Keras side: computed in at least
    float32 and rounded once to the run's dtype (a bfloat16 run's loss, and the gradient it sends back,
    would otherwise be rounded the way each library's loss kernel happens to round)."""

    def __init__(self, per_sample, dtype):
        self.per_sample, self.dtype = per_sample, dtype

    def __call__(self, out, target):
        out = out.to(torch.promote_types(self.dtype, torch.float32))
        per_sample = (
            self.per_sample(out, target, reduction="none")
            if self.per_sample is nll_loss
            else self.per_sample(out, target)
        )
        return mean(per_sample).to(self.dtype)


def mean(values):
    """sum / n in the values' dtype, written out as on the Keras side."""
    return values.sum() / _const(values.shape[0], values) if values.ndim else values


def clip_exact(grads, norm_max: float, scope: str):
    """g * c / max(norm, c), the norm over all gradients (global) or per tensor: written out as in Keras."""
    c = _const(norm_max, grads[0])
    if scope == "global":
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        return [g * (c / torch.maximum(norm, c)) for g in grads]
    return [g * (c / torch.maximum(torch.sqrt((g * g).sum()), c)) for g in grads]


# The written-out updates, one per (update family, rule): put(x, value) writes a state in place; m, v
# the optimizer's two state tensors per weight; t the step (1-based) and lr as tensors; k(x) a Python
# number in the weight's dtype. The same lines as keras_impl/model.py's.


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
    return 1 - torch.pow(k(o.beta1), t), 1 - torch.pow(k(o.beta2), t)


def _adam_torch(put, w, g, m, v, t, lr, o, k):  # w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
    bc1, bc2 = _adam_moments(put, g, m, v, t, o, k)
    put(w, w - (lr / bc1) * m / (v.sqrt() / bc2.sqrt() + k(o.eps)))


def _adam_keras(put, w, g, m, v, t, lr, o, k):  # w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
    bc1, bc2 = _adam_moments(put, g, m, v, t, o, k)
    put(w, w - m * (lr * bc2.sqrt() / bc1) / (v.sqrt() + k(o.eps)))


def _rmsprop_torch(
    put, w, g, m, v, t, lr, o, k
):  # v = rho*v + (1-rho)*g^2; d = g/(sqrt(v) + eps); b = mu*b + d; w -= lr*b
    put(v, v * k(o.rho) + g * g * k(1 - o.rho))
    d = g / (v.sqrt() + k(o.eps))
    if o.momentum:
        put(m, m * k(o.momentum) + d)
    put(w, w - lr * (m if o.momentum else d))


def _rmsprop_keras(
    put, w, g, m, v, t, lr, o, k
):  # v = rho*v + (1-rho)*g^2; d = lr*g/sqrt(v + eps); b = mu*b + d; w -= b
    put(v, v * k(o.rho) + g * g * k(1 - o.rho))
    d = lr * g / (v + k(o.eps)).sqrt()
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


class WrittenOut(torch.optim.Optimizer):
    """Every optimizer of shared/training.py written out in either framework's definition (UPDATES, by
    the spec's family and rule). Before the update, in this order: gradients clipped (clip_exact), then
    weight decay, coupled (g += wd*w) or decoupled (w -= lr*wd*w; AdamW). The learning rate is the exact
    schedule's (training.lr_table) under ops=exact, else the scheduler's. Every constant is a Python
    float, applied in the tensor's dtype."""

    def __init__(self, params, t: training.Training):
        super().__init__(params, {"lr": t.optimizer.lr})
        self.spec = t
        self.table = training.lr_table(t.schedule) if t.schedule.exact else None
        self.update = UPDATES[(t.optimizer.family, t.optimizer.rule)]

    @torch.no_grad()
    def step(self):
        t, put = self.spec, lambda x, value: x.copy_(value)
        for group in self.param_groups:
            params = [w for w in group["params"] if w.grad is not None]
            grads = [w.grad.to(w.dtype) for w in params]
            if t.clip.norm:
                grads = clip_exact(grads, t.clip.norm, t.clip.scope)
            for w, g in zip(params, grads):
                if not self.state[w]:
                    self.state[w].update(t=0, m=torch.zeros_like(w), v=torch.zeros_like(w))
                s = self.state[w]
                k = lambda x: _const(x, w)
                s["t"] += 1
                lr = k(float(self.table[min(s["t"], len(self.table)) - 1]) if self.table is not None else group["lr"])
                if t.decay.form == "coupled":
                    g = g + w * k(t.decay.value)
                elif t.decay.form == "decoupled":
                    put(w, w - w * (lr * k(t.decay.value)))
                self.update(put, w, g, s["m"], s["v"], k(s["t"]), lr, t.optimizer, k)


# The library's schedule of each kind (training.SCHEDULES), stepped by train.py every spec.unit
SCHEDULES = {
    "constant": lambda s, opt: None,
    "cosine": lambda s, opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.length),
    "step": lambda s, opt: torch.optim.lr_scheduler.StepLR(opt, step_size=s.every, gamma=s.gamma),
}


def build_scheduler(s: training.Schedule, optimizer):
    """The library scheduler that train.py steps every `s.unit`, or None: a constant rate, or ops=exact
    (whose WrittenOut optimizer applies the exact table itself)."""
    return None if s.exact else SCHEDULES[s.kind](s, optimizer)


def _coupled(t) -> float:
    """The weight_decay argument of a PyTorch optimizer whose own decay is coupled (SGD, Adam, RMSprop)."""
    return t.decay.value if t.decay.form == "coupled" else 0.0


def _decoupled(opt, t):
    """Decoupled decay for an optimizer with no class of its own: w -= lr*wd*w before its step (AdamW's form)."""
    if t.decay.form == "decoupled":
        opt.register_step_pre_hook(lambda o, args, kwargs: _decay(o, t.decay.value))
    return opt


def _adam(t, params):  # Adam's weight_decay is coupled, AdamW's decoupled
    o = t.optimizer
    cls = torch.optim.AdamW if t.decay.form == "decoupled" else torch.optim.Adam
    return cls(params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=t.decay.value)


# The library's optimizer of each kind (training.OPTIMIZERS), its own definition (ops=native)
OPTIMIZERS = {
    "sgd": lambda t, params: _decoupled(
        torch.optim.SGD(params, lr=t.optimizer.lr, momentum=t.optimizer.momentum, nesterov=t.optimizer.nesterov,
                        weight_decay=_coupled(t)), t),
    "adam": _adam,
    "adamw": _adam,
    "rmsprop": lambda t, params: _decoupled(
        torch.optim.RMSprop(params, lr=t.optimizer.lr, alpha=t.optimizer.rho, eps=t.optimizer.eps,
                            momentum=t.optimizer.momentum, weight_decay=_coupled(t)), t),
}  # fmt: skip


def build_optimizer(t: training.Training, model) -> torch.optim.Optimizer:
    """The library's optimizer (its own definition, ops=native), else the written-out one."""
    if t.optimizer.written_out:
        return WrittenOut(model.parameters(), t)
    return OPTIMIZERS[t.optimizer.kind](t, model.parameters())


@torch.no_grad()
def _decay(opt, wd: float) -> None:
    for group in opt.param_groups:
        for w in group["params"]:
            w.mul_(1 - group["lr"] * wd)


# The library's clipping of each scope, between backward() and step()
CLIPS = {
    "global": lambda model, norm: torch.nn.utils.clip_grad_norm_(model.parameters(), norm),
    "per_variable": lambda model, norm: [torch.nn.utils.clip_grad_norm_([w], norm) for w in model.parameters()],
}


def clip_gradients(t: training.Training, model) -> None:
    """The library's clipping between backward() and step() (the WrittenOut optimizer clips itself)."""
    if t.clip.norm and not t.optimizer.written_out:
        CLIPS[t.clip.scope](model, t.clip.norm)


def dense_layers(model) -> list:
    """The weighted layers (dense, convolution, recurrent), in the plan's order."""
    return [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d, nn.RNNBase))]


# the PyTorch gate block at each position of the neutral (Keras) order: the GRU's r, z, n -> z, r, h
# (a swap, so the same permutation converts back); the LSTM's i, f, g, o are Keras' order already
GATE_ORDER = {"GRU": (1, 0, 2), "LSTM": (0, 1, 2, 3)}


def _gates(a: np.ndarray, order) -> np.ndarray:
    """The gate blocks of the last axis in `order`."""
    blocks = np.split(a, len(order), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1)


def to_neutral(m, kernel: np.ndarray) -> np.ndarray:
    """A layer's kernel (or its gradient) in the neutral layout: nn.Linear stores [out, in] -> [in, out];
    nn.Conv2d [out, in, kh, kw] -> [kh, kw, in, out]."""
    return kernel.T.copy() if isinstance(m, nn.Linear) else kernel.transpose(2, 3, 1, 0).copy()


def from_neutral(m, kernel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(kernel.T if isinstance(m, nn.Linear) else kernel.transpose(3, 2, 0, 1))


def neutral_arrays(m, read) -> tuple[np.ndarray, np.ndarray]:
    """A weighted layer's (kernel, bias) in the neutral layout, `read(parameter)` giving each part as
    numpy (its value or its gradient; None: zeros). A recurrent layer's [gates x units, in] and
    [gates x units, units] kernels become one [in + units, gates x units], its two biases [2, gates x
    units], the gate blocks in Keras' order."""
    if not isinstance(m, nn.RNNBase):
        return to_neutral(m, read(m.weight)), read(m.bias).copy()
    parts = (m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)
    w_ih, w_hh, b_ih, b_hh = (a if (a := read(p)) is not None else np.zeros(tuple(p.shape)) for p in parts)
    order = GATE_ORDER[m.mode]
    return _gates(np.concatenate([w_ih, w_hh], axis=1).T, order), _gates(np.stack([b_ih, b_hh]), order)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as numpy; bfloat16 (which numpy lacks) as float32, exactly."""
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def export_weights(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(kernel, bias)] per weighted layer in the neutral layout (neutral_arrays)."""
    return [neutral_arrays(m, to_numpy) for m in dense_layers(model)]


def _recurrent_parts(m, kernel, bias) -> list:
    """A neutral recurrent (kernel, bias) as the layer's four tensors (one trained bias: both rows in
    bias_ih_l0)."""
    order = GATE_ORDER[m.mode]
    k, b = _gates(kernel, order).T, _gates(bias, order)
    if not m.bias_hh_l0.requires_grad:
        b = np.stack([b[0] + b[1], np.zeros_like(b[1])])
    return [k[:, : m.input_size], k[:, m.input_size :], b[0], b[1]]


def import_weights(model, layers) -> None:
    dense = dense_layers(model)
    if len(dense) != len(layers):
        raise ValueError(f"the weights have {len(layers)} layers, the model {len(dense)}")
    with torch.no_grad():
        for i, (m, (kernel, bias)) in enumerate(zip(dense, layers)):
            want = neutral_arrays(m, lambda p: np.empty(tuple(p.shape)))
            if (tuple(kernel.shape), tuple(bias.shape)) != (want[0].shape, want[1].shape):
                raise ValueError(
                    f"layer {i}: kernel {tuple(kernel.shape)} and bias {tuple(bias.shape)} do not fit "
                    f"{type(m).__name__} (neutral {want[0].shape} and {want[1].shape})"
                )
            if isinstance(m, nn.RNNBase):
                tensors, arrays = (
                    (m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0),
                    _recurrent_parts(m, kernel, bias),
                )
            else:
                tensors, arrays = (m.weight, m.bias), (from_neutral(m, kernel), bias)
            for t, a in zip(tensors, arrays):
                t.copy_(torch.as_tensor(np.ascontiguousarray(a), dtype=t.dtype))


# each kind of normalisation layer (weights.NORMS) -> (its modules, its state in weights.NORMS' order)
NORMS = {
    "bn": ((nn.BatchNorm1d, ExactBatchNorm), lambda m: (m.weight, m.bias, m.running_mean, m.running_var)),
    "ln": ((nn.LayerNorm, ExactLayerNorm), lambda m: (m.weight, m.bias)),
}


def norm_layers(model, kind: str) -> list:
    return [m for m in model if isinstance(m, NORMS[kind][0])]


def export_norms(model) -> dict:
    """{kind: [state tensors per layer]}: batch norm's gamma, beta, running mean and variance; layer norm's
    gamma and beta."""
    return {
        kind: [tuple(to_numpy(t).copy() for t in parts(m)) for m in norm_layers(model, kind)]
        for kind, (_, parts) in NORMS.items()
    }


def import_norms(model, norms: dict) -> None:
    for kind, (_, parts) in NORMS.items():
        found, given = norm_layers(model, kind), norms.get(kind, [])
        if len(found) != len(given):
            raise ValueError(f"the weights have {len(given)} {kind} layers, the model {len(found)}")
        with torch.no_grad():
            for m, arrays in zip(found, given):
                for t, a in zip(parts(m), arrays):
                    t.copy_(torch.as_tensor(a, dtype=t.dtype))
