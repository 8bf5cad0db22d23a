"""What PyTorch does out of the box, read live from the installed library: signatures, objects and
tiny numerical probes; where a value is the library's documented idiom rather than its state, SOURCES
says so. Mirror of keras_impl/defaults.py: same functions, same order; compare/defaults.py sets the two
side by side."""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from shared import plan, training
from shared.environment import matmul_error, matmul_probe

SIZES = (784, 200, 200, 10)
UNITS = 128  # the recurrent probes' state size (rnn_units' default); an LSTM's forget gate is block 2
# How each value of probe() is known (a dotted key; the most specific one applies): "read" from the
# installed library (a signature default, an attribute, its source), "measured" by running a tiny probe
# through it, or "idiom": the library's documented convention, written here (not read from its state).
SOURCES = {
    "version": "read",
    "init": "measured",
    "init_names": "read",
    "conv.init": "measured",
    "conv.init_names": "read",
    "conv.padding": "read",
    "conv.data_format": "measured",
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
    "loss.input": "idiom",
    "fit": "read",
    "fit.epoch_loss": "idiom",
    "batchnorm": "measured",
    "batchnorm.momentum": "read",
    "batchnorm.eps": "read",
    "layernorm": "measured",
    "layernorm.eps": "read",
    "dropout": "measured",
    "dropout.default_rate": "read",
    "dropout.masks": "idiom",
    "weight_decay": "measured",
    "weight_decay.adamw_default": "read",
    "weight_decay.l2": "idiom",
    "clip": "measured",
    "clip.idiom": "idiom",
    "schedule": "measured",
    "label_smoothing": "read",
    "precision": "read",
    "precision.matmul_measured": "measured",
    "mixed_precision": "measured",
    "recurrent": "measured",
    "recurrent.gru.layout": "read",
    "recurrent.gru.bias": "read",
    "recurrent.lstm.bias": "read",
    "recurrent.gru.reset_after": "idiom",
    "compilation": "idiom",
    "threads": "read",
}


def arg(fn, name):
    return inspect.signature(fn).parameters[name].default


def init_bounds() -> dict:
    """Draw the default dense layers of 784-200-200-10 and report the uniform bound each draw implies
    (sqrt(3) x the sample std), for kernels and biases."""
    torch.manual_seed(0)
    kernels, biases = [], []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        m = nn.Linear(fan_in, fan_out)
        kernels.append(float(np.sqrt(3) * m.weight.detach().std()))
        biases.append(float(np.sqrt(3) * m.bias.detach().std()))
    return {"kernel": kernels, "bias": biases}


def init_names(layer=nn.Linear) -> dict:
    """The initialiser calls in a layer class's reset_parameters (nn.Linear, nn.Conv2d), read from its source."""
    import re

    calls = re.findall(r"init\.(\w+_)\(self\.(weight|bias)(.*)\)", inspect.getsource(layer.reset_parameters))
    names = {target: f"{call.rstrip('_')}({rest.lstrip(', ')})" for call, target, rest in calls}
    return {"kernel": names.get("weight", "not found"), "bias": names.get("bias", "not found")}


def conv_probe() -> dict:
    """A default nn.Conv2d at the CNN's shapes (1->16, 16->32, 3x3): the initialisers and the bounds
    they draw, the padding, the data and kernel layouts, and the order nn.Flatten gives a conv output
    (measured on a tensor that holds each element's own (channel, row, column))."""
    torch.manual_seed(0)
    convs = [nn.Conv2d(1, 16, 3), nn.Conv2d(16, 32, 3)]
    c, h, w = torch.meshgrid(torch.arange(2), torch.arange(2), torch.arange(2), indexing="ij")
    flat = nn.Flatten()((c * 100 + h * 10 + w)[None])[0, :2].tolist()  # NCHW: which index moves first
    fastest = {1: "column", 10: "row", 100: "channel"}[flat[1] - flat[0]]
    channels_at = list(nn.Conv2d(1, 2, 3)(torch.zeros(1, 1, 5, 5)).shape).index(2)  # where the 2 output maps land
    return {
        "init": {
            "kernel": [float(np.sqrt(3) * m.weight.detach().std()) for m in convs],
            "bias": [float(np.sqrt(3) * m.bias.detach().std()) for m in convs],
        },
        "init_names": init_names(nn.Conv2d),
        "padding": "valid (none)" if arg(nn.Conv2d, "padding") == 0 else repr(arg(nn.Conv2d, "padding")),
        "data_format": "channels first (NCHW)" if channels_at == 1 else "channels last (NHWC)",
        "kernel_layout": f"[out, in, kh, kw] {tuple(convs[1].weight.shape)}",
        "flatten_order": "channel, row, column" if fastest == "column" else f"{fastest} fastest",
    }


def augmentation(images: np.ndarray, angle: float, shift: tuple) -> dict:
    """torchvision.transforms.v2 on raw images [n, 28, 28] (0-255) with fixed parameters: rotate by `angle`
    degrees and translate by `shift` x 28 pixels (rows, columns), first with the library's defaults (as
    RandomRotation / RandomAffine use them), then with bilinear sampling and a black fill (the shared
    augmentation's choices); flip left-right. The defaults that decide the pixels, read live."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    x = torch.from_numpy(images[:, None].astype(np.float32))  # NCHW
    move = [shift[1] * 28, shift[0] * 28]  # torchvision: (x, y) = (columns, rows)
    bil = TF.InterpolationMode.BILINEAR
    out = {
        "rotate": TF.rotate(x, angle),
        "translate": TF.affine(x, 0.0, move, 1.0, [0.0]),
        "rotate_matched": TF.rotate(x, angle, interpolation=bil, fill=[0.0]),
        "translate_matched": TF.affine(x, 0.0, move, 1.0, [0.0], interpolation=bil, fill=[0.0]),
        "flip": TF.horizontal_flip(x),
    }
    sig = inspect.signature(v2.RandomRotation).parameters
    defaults = {
        "angle": "degrees (RandomRotation(degrees=...))",
        "interpolation": str(sig["interpolation"].default),
        "fill": f"constant {sig['fill'].default!r}",
        "layout": "NCHW",
    }
    return {**{k: v[:, 0].numpy() for k, v in out.items()}, "defaults": defaults}


def stride_probe() -> dict:
    """A stride-2 3x3 convolution on an image holding each pixel's 1-based position, its kernel picking the
    top-left tap: the first output reads the padding (a row and column on top and left) or pixel 1 (none
    there: the odd padding row and column at the bottom and right). PyTorch refuses padding='same' with a
    stride, so the one measured is the usual port, padding=1."""
    try:
        nn.Conv2d(1, 1, 3, stride=2, padding="same")
        same = "accepted"
    except ValueError:
        same = "refused with a stride"
    x = torch.arange(1, 28 * 28 + 1, dtype=torch.float64).reshape(1, 1, 28, 28)
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1
        first = float(conv(x)[0, 0, 0, 0])
    where = "on every side (top and left too)" if first == 0 else "at the bottom and right only"
    return {"padding": f"padding='same' {same}; the usual port padding=1 pads {where}"}


def slope_probe() -> dict:
    x = torch.tensor([-1.0])
    return {"layer": float(-nn.LeakyReLU()(x)), "functional": float(-F.leaky_relu(x))}


def momentum_form() -> str:
    """Two SGD steps on w with a constant gradient 1, momentum 0.5, learning rate 1 then 0.5: the second
    step is -0.75 if the velocity holds gradients (lr applied at the update) and -1.0 if it holds steps."""
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1.0, momentum=0.5)
    steps = []
    for lr in (1.0, 0.5):
        opt.param_groups[0]["lr"] = lr
        before = float(w.detach())
        w.grad = torch.ones(1)
        opt.step()
        steps.append(float(w.detach()) - before)
    return (
        "velocity in gradient units: lr applied at the update"
        if abs(steps[1] + 0.75) < 1e-6
        else "velocity in step units: lr applied into the velocity"
    )


def adam_eps_probe() -> float:
    """Effective epsilon at step 1 relative to the configured one: update = lr g / (|g| + eps_eff)."""
    g, eps, lr = 1e-6, 1e-6, 1e-3
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr, eps=eps)
    w.grad = torch.full((1,), g, dtype=torch.float64)
    opt.step()
    return float((lr * g / -float(w.detach()) - g) / eps)


def rmsprop_probe() -> dict:
    """RMSprop's defaults (read) and two steps (measured) on w = 0 with the constant gradient
    RMSPROP_PROBE["g"], learning rate 1 then 0.5: where epsilon and the learning rate enter
    (compare/defaults.py reads the form from the steps)."""
    p = training.RMSPROP_PROBE
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.RMSprop([w], lr=1.0, alpha=p["rho"], eps=p["eps"], momentum=p["momentum"])
    steps = []
    for lr in (1.0, 0.5):
        opt.param_groups[0]["lr"] = lr
        before = float(w.detach())
        w.grad = torch.full((1,), p["g"], dtype=torch.float64)
        opt.step()
        steps.append(float(w.detach()) - before)
    o = torch.optim.RMSprop
    return {"lr": arg(o, "lr"), "rho": arg(o, "alpha"), "eps": arg(o, "eps"), "momentum": arg(o, "momentum"),
            "steps": steps}  # fmt: skip


def loss_probe() -> dict:
    """Loss when the true class has probability 0: is it clipped?"""
    logp = torch.log(torch.tensor([[0.0, 1.0]]))
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    two = float(F.nll_loss(torch.log(p), torch.tensor([0, 0])))
    mean = float(np.mean(-np.log(p[:, 0].numpy())))
    return {
        "reduction": f"{'batch mean' if abs(two - mean) < 1e-6 else 'not the batch mean'} ({arg(F.nll_loss, 'reduction')})",
        "zero_prob_loss": float(F.nll_loss(logp, torch.tensor([0]))),
        "input": "logits (cross_entropy) or log-probabilities (nll_loss); no from_logits switch",
    }


def fit_api() -> dict:
    """PyTorch has no fit(); its DataLoader's defaults play that role."""
    from torch.utils.data import DataLoader

    return {
        "batch_size": arg(DataLoader, "batch_size"),
        "shuffle": bool(arg(DataLoader, "shuffle")),
        "last_batch": "dropped" if arg(DataLoader, "drop_last") else "kept",
        "epoch_loss": "no built-in: the loop averages (this project weights batches by size)",
    }


def batchnorm_probe() -> dict:
    """One training call of a default BatchNorm1d on the batch [0, 2] (mean 1, biased variance 1,
    unbiased 2) from running (0, 1): the weight of the new batch and which variance the running one
    takes; then evaluation on [5]: which statistics normalise it."""
    bn = nn.BatchNorm1d(1).double()
    bn.train()
    bn(torch.tensor([[0.0], [2.0]], dtype=torch.float64))
    new = float(bn.running_mean[0])
    taken = (float(bn.running_var[0]) - (1 - new)) / new
    bn.eval()
    y = float(bn(torch.tensor([[5.0]], dtype=torch.float64))[0, 0])
    running = (5 - new) / np.sqrt(float(bn.running_var[0]) + bn.eps)
    return {
        "momentum": arg(nn.BatchNorm1d, "momentum"),
        "eps": arg(nn.BatchNorm1d, "eps"),
        "new_weight": new,
        "running_var": "unbiased (n-1)"
        if abs(taken - 2) < 1e-9
        else "biased (n)"
        if abs(taken - 1) < 1e-9
        else f"{taken:.3g}",
        "eval": "running statistics" if abs(y - running) < 1e-9 else "not the running statistics",
    }


def layernorm_probe() -> dict:
    """A default LayerNorm on one sample [-a, a] (mean 0, biased variance a^2, a = 0.01): its output
    a / sqrt(a^2 + eps) gives the epsilon it adds, measured."""
    a = 0.01
    ln = nn.LayerNorm(2).double()
    with torch.no_grad():
        y = float(ln(torch.tensor([[-a, a]], dtype=torch.float64))[0, 1])
    return {"eps": arg(nn.LayerNorm, "eps"), "eps_measured": a * a * (1 / (y * y) - 1)}


def _bias_max(m, kind: str) -> float:
    """The largest |bias| at init outside an LSTM's forget-gate block (reported on its own)."""
    b = torch.stack([m.bias_ih_l0.detach(), m.bias_hh_l0.detach()]).double()
    return float((torch.cat([b[:, :UNITS], b[:, 2 * UNITS :]], 1) if kind == "lstm" else b).abs().max())


def recurrent_probe() -> dict:
    """nn.GRU and nn.LSTM: per stored gate block, the one-step output of plan.GATE_PROBE (which gate each
    block is, measured); the weight layouts; the default initialisers' bounds (sqrt(3) x the sample std)
    at 28 inputs and 128 units, whether the recurrent kernel is orthogonal, the LSTM's forget-gate bias."""
    p, out = plan.GATE_PROBE, {}
    full = lambda v: torch.full((1, 1, 1), v, dtype=torch.float64)
    bound = lambda t: float(np.sqrt(3) * t.detach().std())
    for kind, cls in (("gru", nn.GRU), ("lstm", nn.LSTM)):
        m, outputs = cls(1, 1).double(), []
        state = full(p["h"]) if kind == "gru" else (full(p["h"]), full(p["c"]))
        for block in range(plan.GATES[kind]):
            with torch.no_grad():
                for w, v in (
                    (m.weight_ih_l0, 0.0),
                    (m.weight_hh_l0, p["recurrent"]),
                    (m.bias_ih_l0, 0.0),
                    (m.bias_hh_l0, 0.0),
                ):
                    w.fill_(v)
                m.weight_ih_l0[block, 0] = p["signal"]
                outputs.append(float(m(full(p["x"]), state)[0]))
        torch.manual_seed(0)
        d = cls(28, UNITS)
        rec = d.weight_hh_l0.detach().double().T  # [units, gates x units], the neutral layout
        b = d.bias_ih_l0.detach() + d.bias_hh_l0.detach()
        out[kind] = {
            "outputs": outputs,
            "layout": f"weight_ih_l0 {list(d.weight_ih_l0.shape)}, weight_hh_l0 {list(d.weight_hh_l0.shape)}",
            "bias": f"bias_ih_l0 {list(d.bias_ih_l0.shape)} + bias_hh_l0 {list(d.bias_hh_l0.shape)}, both trained",
            "init": [bound(d.weight_ih_l0), bound(d.weight_hh_l0), _bias_max(d, kind)],
            "orthogonal": float((rec @ rec.T - torch.eye(UNITS, dtype=torch.float64)).abs().max()),
            "forget_bias": float(b[UNITS : 2 * UNITS].mean()) if kind == "lstm" else None,
        }
    out["gru"]["reset_after"] = "after the recurrent product (nn.GRU's only form)"  # r * (h W_hn + b_hn)
    return out


def dropout_probe() -> dict:
    """The default rate, and what training mode does to the kept units of a vector of ones."""
    d = nn.Dropout(0.5)
    d.train()
    torch.manual_seed(0)
    kept = d(torch.ones(1000))
    kept = kept[kept != 0]
    return {
        "default_rate": arg(nn.Dropout, "p"),
        "kept_value": float(kept[0]),
        "masks": "torch's global generator (torch.manual_seed), per device",
    }


def weight_decay_probe() -> dict:
    """Adam(weight_decay=0.1), lr 0.01, one step on w=1 with a zero gradient: a step of ~lr means the
    decay went through Adam's normalisation (coupled: wd*w added to the gradient), lr*wd*w = 0.001
    that it was subtracted from the weight (decoupled)."""
    w = torch.ones(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.01, weight_decay=0.1)
    w.grad = torch.zeros(1, dtype=torch.float64)
    opt.step()
    step = 1 - float(w.detach())
    return {
        "adam": "coupled: wd*w added to the gradient" if step > 0.005 else "decoupled: w -= lr*wd*w",
        "adamw_default": arg(torch.optim.AdamW, "weight_decay"),
        "l2": "no layer penalty: weight_decay= in the optimizer",
    }


def clip_probe() -> dict:
    """The clipping idiom (clip_grad_norm_) on two gradients [3, 0] and [0, 4] with max norm 1: jointly
    (global norm 5: [0.6, 0]) or each on its own ([1, 0]); and on [2] with max norm 1 in float64, what
    is added to the norm (c / (norm + e) -> e)."""
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])
    torch.nn.utils.clip_grad_norm_([a, b], 1.0)
    c = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    c.grad = torch.tensor([2.0], dtype=torch.float64)
    torch.nn.utils.clip_grad_norm_([c], 1.0)
    return {
        "idiom": "torch.nn.utils.clip_grad_norm_(parameters, max_norm)",
        "scope": "global (one norm over all)" if abs(float(a.grad[0]) - 0.6) < 1e-6 else "per variable",
        "added_to_norm": 2.0 / float(c.grad[0]) - 2.0,
    }


def schedule_probe() -> str:
    """StepLR(step_size=1, gamma=0.5) on SGD: three optimizer steps without scheduler.step()."""
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        w.grad = torch.ones(1)
        opt.step()
    moved = opt.param_groups[0]["lr"] != 1.0
    del sched
    return "every optimizer step" if moved else "when the loop calls scheduler.step() (usually once per epoch)"


def label_smoothing_probe() -> str:
    has = "label_smoothing" in inspect.signature(nn.CrossEntropyLoss).parameters
    return "CrossEntropyLoss(label_smoothing=...) on class indices" if has else "not available"


MATMUL = {"highest": "full float32", "high": "TF32 allowed", "medium": "bfloat16 allowed"}  # the documented meanings


def precision() -> dict:
    """matmul_precision: a value comparable across libraries (what float32 products may round to) and
    the setting it comes from."""
    p = torch.get_float32_matmul_precision()
    return {
        "floatx": str(torch.get_default_dtype()).replace("torch.", ""),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_conv": bool(torch.backends.cudnn.allow_tf32),
        "matmul_precision": {"value": MATMUL.get(p, p), "detail": f"torch.get_float32_matmul_precision() = {p!r}"},
        "matmul_measured": matmul_measured(),
    }


def matmul_measured() -> dict:
    """A float32 product on the device a run would pick (CUDA when present), against float64."""
    a, b, reference = matmul_probe()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    c = torch.from_numpy(a).to(device) @ torch.from_numpy(b).to(device)
    return {"rel_error": matmul_error(c.cpu().numpy(), reference), "device": device}


def mixed_precision_probe() -> dict:
    """torch.autocast (bfloat16, CPU) and GradScaler, measured: the dtype each operation of this network
    comes out in, where the weights stay, the scaler's start, growth interval and the factor an
    overflowing step multiplies it by."""
    x, w = torch.ones(4, 3), nn.Linear(3, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = w(x)
        out = {
            "matmul": h.dtype,
            "activation": F.leaky_relu(h).dtype,
            "log_softmax": F.log_softmax(h, 1).dtype,
            "loss": F.cross_entropy(h, torch.zeros(4, dtype=torch.int64)).dtype,
        }
    out = {k: str(v).replace("torch.", "") for k, v in out.items()}
    out["variables"] = str(w.weight.dtype).replace("torch.", "")
    scaler, opt = torch.amp.GradScaler("cpu"), torch.optim.SGD(w.parameters(), lr=0.1)
    start = scaler.get_scale()
    scaler.scale(w(x).sum() * float("inf")).backward()  # an overflowing step: skipped, the scale backs off
    scaler.step(opt)
    scaler.update()
    out["loss_scale"] = {
        "initial": start,
        "growth_interval": scaler.get_growth_interval(),
        "backoff": scaler.get_scale() / start,
        "growth": scaler.get_growth_factor(),
    }
    return out


def compilation() -> dict:
    return {"value": "eager", "detail": "torch.compile is opt-in"}


def threads() -> int:
    return torch.get_num_threads()


def probe() -> dict:
    """Every default in one dict (keys shared with keras_impl/defaults.py)."""
    return {
        "version": torch.__version__,
        "init": init_bounds(),
        "init_names": init_names(),
        "conv": conv_probe(),
        "stride": stride_probe(),
        "slope": slope_probe(),
        "sgd_lr": arg(torch.optim.SGD, "lr"),
        "sgd_momentum": arg(torch.optim.SGD, "momentum"),
        "momentum_form": momentum_form(),
        "adam_eps": arg(torch.optim.Adam, "eps"),
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
        "sources": SOURCES,
    }
