"""`fmnist-parity defaults`: what differs out of the box. Each framework (each Keras backend) reports
its own defaults in its own process (`python -m <impl> defaults`, read live from the installed
library); this module lays them side by side with the consequence and the config key that controls
it. Imports no framework."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from compare.harness import HarnessError, subcommand
from shared import data as fdata
from shared import config as cfg
from shared import plan, training
from shared.atomic import atomic_write
from shared.environment import matmul_rounding

REPO = Path(__file__).resolve().parent.parent
PROBED = ("torch", "keras", "tensorflow", "jax", "jaxlib", "numpy")  # a probe reads these libraries' defaults


def rmsprop_form(steps: list) -> str:
    """Which RMSprop definition two measured steps follow (the probe's set-up: training.RMSPROP_PROBE,
    learning rate 1 then 0.5): epsilon outside or inside the square root, the learning rate applied at
    the update or inside the momentum buffer. The four forms, computed here in float64, are far apart."""
    p = training.RMSPROP_PROBE
    g, rho, eps, mu = p["g"], p["rho"], p["eps"], p["momentum"]
    v1 = (1 - rho) * g * g
    v2 = rho * v1 + (1 - rho) * g * g
    forms = {}
    for where_eps, den in (
        ("sqrt(v) + eps", lambda v: math.sqrt(v) + eps),
        ("sqrt(v + eps)", lambda v: math.sqrt(v + eps)),
    ):
        d1, d2 = g / den(v1), g / den(v2)
        forms[f"g / ({where_eps}), lr at the update"] = [-d1, -0.5 * (mu * d1 + d2)]
        forms[f"g / ({where_eps}), lr inside the momentum"] = [-d1, -(mu * d1 + 0.5 * d2)]
    off = {f: max(abs(a - b) / abs(b) for a, b in zip(steps, s)) for f, s in forms.items()}
    best = min(off, key=off.get)
    return best if off[best] < 1e-6 else f"none of the known forms (steps {steps})"


GATE_NAMES = {"gru": ("update", "reset", "candidate"), "lstm": ("input", "forget", "cell", "output")}


def gate_order(outputs: list, kind: str) -> str:
    """Which gate each stored block of a recurrent layer is, from the one-step outputs of plan.GATE_PROBE
    (the signal on one block at a time): each gate's output, computed here in float64, is far from the
    others'."""
    p = plan.GATE_PROBE
    sig = lambda v: 1 / (1 + math.exp(-v))
    pre = lambda gate, name: p["x"] * (p["signal"] if gate == name else 0.0)  # a gate's input part
    h, r = p["h"], p["h"] * p["recurrent"]  # the state, and what the recurrent weights add to each gate
    expect = {}
    for gate in GATE_NAMES[kind]:
        if kind == "gru":
            z, reset = sig(pre(gate, "update") + r), sig(pre(gate, "reset") + r)
            expect[gate] = z * h + (1 - z) * math.tanh(pre(gate, "candidate") + reset * r)
        else:
            i, f, o = (sig(pre(gate, g) + r) for g in ("input", "forget", "output"))
            expect[gate] = o * math.tanh(f * p["c"] + i * math.tanh(pre(gate, "cell") + r))
    names = [min(expect, key=lambda g: abs(expect[g] - y)) for y in outputs]
    if any(abs(expect[n] - y) > 1e-4 for n, y in zip(names, outputs)) or len(set(names)) < len(names):
        return f"none of the gates' outputs ({_g(outputs)})"
    return ", ".join(names)


def recurrent_init(r: dict) -> str:
    kernel, recurrent, bias = r["init"]
    rec = "orthogonal" if r["orthogonal"] < 1e-4 else f"U(+-{recurrent:.4g})"
    return f"kernel U(+-{kernel:.4g}); recurrent {rec}; biases {'0' if bias == 0 else f'U(+-{bias:.4g})'}"


def _matmul_measured(m: dict) -> tuple[str, str]:
    """The measured float32 product, named (shared.environment.matmul_rounding) with its error and device."""
    return matmul_rounding(m["rel_error"]), f"relative error {m['rel_error']:.2g} on {m['device']}"


def _g(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, list):
        return ", ".join(_g(v) for v in x)
    return str(x)


# (what, how to read it from a probe, consequence for this network, the config key that controls it).
# A reader returns the value, or (value, detail): the value is what "differ" compares, the detail is shown
# beside it. Which probe keys a reader touches decides the row's source (the probe's own SOURCES).
ROWS = [
    (
        "dense kernel initialiser",
        lambda p: f"{p['init_names']['kernel']}; bounds {_g(p['init']['kernel'])}",
        "different starting weights for 784-200-200-10 (bounds per layer): early epochs differ",
        "init (shared: same draws)",
    ),
    (
        "dense bias initialiser",
        lambda p: f"{p['init_names']['bias']}; bounds {_g(p['init']['bias'])}",
        "non-zero vs zero starting biases",
        "init (shared: same draws)",
    ),
    (
        "conv kernel initialiser (model=cnn)",
        lambda p: f"{p['conv']['init_names']['kernel']}; bounds {_g(p['conv']['init']['kernel'])}",
        "different starting kernels for the CNN's 1->16 and 16->32 convolutions",
        "init (shared: same draws)",
    ),
    (
        "conv bias initialiser (model=cnn)",
        lambda p: f"{p['conv']['init_names']['bias']}; bounds {_g(p['conv']['init']['bias'])}",
        "non-zero vs zero starting biases",
        "init (shared: same draws)",
    ),
    (
        "conv padding",
        lambda p: p["conv"]["padding"],
        "an unset padding shrinks every feature map (28 -> 26) on both sides",
        "channels (model=cnn; 'same' on both)",
    ),
    (
        "image data format",
        lambda p: p["conv"]["data_format"],
        "images, feature maps and kernels are laid out differently: ported weights need transposes",
        "channels (model=cnn; neutral weights are NHWC)",
    ),
    (
        "conv kernel layout",
        lambda p: p["conv"]["kernel_layout"],
        "a kernel copied across without a transpose is wrong",
        "channels (model=cnn; neutral [kh, kw, in, out])",
    ),
    (
        "Flatten order of a conv output (measured)",
        lambda p: p["conv"]["flatten_order"],
        "the Dense after Flatten sees the features in another order: ported weights compute another function",
        "channels (model=cnn; PyTorch's translation flattens as Keras)",
    ),
    (
        "strided 'same' convolution padding (measured)",
        lambda p: p["stride"]["padding"],
        "the usual port of Keras' 'same' shifts every feature map of a strided convolution by one pixel",
        "stride_padding (model=cnn, downsample=stride)",
    ),
    (
        "GRU gate order in the stored weights (measured)",
        lambda p: gate_order(p["recurrent"]["gru"]["outputs"], "gru"),
        "weights copied across without reordering the gate blocks swap the update and reset gates: the port "
        "trains and predicts, worse (the silent bug; docs/PORTING.md)",
        "model=gru (neutral weights: Keras' order; each twin converts)",
    ),
    (
        "LSTM gate order in the stored weights (measured)",
        lambda p: gate_order(p["recurrent"]["lstm"]["outputs"], "lstm"),
        "the same order on both sides: only the layout needs converting",
        "model=lstm",
    ),
    (
        "recurrent weight layout (GRU)",
        lambda p: p["recurrent"]["gru"]["layout"],
        "a kernel copied without a transpose is wrong",
        "model=gru, model=lstm (neutral [in + units, gates x units])",
    ),
    (
        "recurrent bias layout (GRU; LSTM)",
        lambda p: f"{p['recurrent']['gru']['bias']}; {p['recurrent']['lstm']['bias']}",
        "PyTorch's LSTM sums two biases, each with the full gradient: under SGD their sum moves twice as fast",
        "lstm_bias (model=lstm; single: one trained bias on both)",
    ),
    (
        "recurrent initialisers (GRU at 28 inputs, 128 units; measured)",
        lambda p: recurrent_init(p["recurrent"]["gru"]),
        "different starting weights for the recurrent models",
        "init (shared: same draws)",
    ),
    (
        "LSTM forget-gate bias at init (measured mean)",
        lambda p: _g(round(p["recurrent"]["lstm"]["forget_bias"], 3)),
        "Keras' LSTM starts with its forget gate open (unit_forget_bias), PyTorch's near 0.5",
        "init (shared: same draws)",
    ),
    (
        "GRU reset gate applied",
        lambda p: tuple(p["recurrent"]["gru"]["reset_after"].rstrip(")").split(" the recurrent product (")),
        "reset_after=False (the older formulation, applied before the product) is another cell, which PyTorch does not have",
        "model=gru (Keras' reset_after=True)",
    ),
    (
        "LeakyReLU slope (layer)",
        lambda p: _g(p["slope"]["layer"]),
        "a different activation: a newcomer's port trains another function",
        "negative_slope (native: each default)",
    ),
    (
        "LeakyReLU slope (function)",
        lambda p: _g(p["slope"]["functional"]),
        "the functional and layer forms can disagree within one library",
        "negative_slope",
    ),
    ("SGD learning rate", lambda p: _g(p["sgd_lr"]), "an unset learning rate differs by 10x", "lr (always explicit)"),
    ("SGD momentum", lambda p: _g(p["sgd_momentum"]), "none by default on either side", "momentum (always explicit)"),
    (
        "momentum update form",
        lambda p: p["momentum_form"],
        "identical for a constant learning rate, different after a learning-rate change",
        "update_rule",
    ),
    ("Adam epsilon", lambda p: _g(p["adam_eps"]), "matters where sqrt(v) is tiny", "eps (native: each default)"),
    (
        "Adam epsilon placement (effective/configured at step 1)",
        lambda p: _g(p["adam_eps_step1"]),
        "Keras adds epsilon before the bias correction: 1/sqrt(1-beta2^t) larger early on",
        "update_rule",
    ),
    (
        "RMSprop learning rate",
        lambda p: _g(p["rmsprop"]["lr"]),
        "an unset learning rate differs by 10x",
        "lr (always explicit)",
    ),
    (
        "RMSprop rho (PyTorch: alpha)",
        lambda p: _g(p["rmsprop"]["rho"]),
        "the mean square forgets 10x slower in PyTorch: steps stay larger for longer early on",
        "rho (native: each default)",
    ),
    (
        "RMSprop epsilon",
        lambda p: _g(p["rmsprop"]["eps"]),
        "matters where sqrt(v) is tiny",
        "eps (native: each default)",
    ),
    (
        "RMSprop update form (measured)",
        lambda p: rmsprop_form(p["rmsprop"]["steps"]),
        "epsilon inside the square root damps small gradients far more; with momentum and a schedule the "
        "learning rate enters the buffer at different times",
        "update_rule",
    ),
    (
        "loss reduction",
        lambda p: p["loss"]["reduction"].split(" (")[0],
        "the batch mean on both sides (a tiny probe)",
        "not needed",
    ),
    (
        "loss input",
        lambda p: p["loss"]["input"],
        "a Keras loss on logits without from_logits=True treats them as probabilities",
        "head (from_logits=True in logits)",
    ),
    (
        "loss when the true class has probability 0",
        lambda p: _g(p["loss"]["zero_prob_loss"]),
        "Keras clips probabilities to [1e-7, 1-1e-7]: finite where PyTorch gives inf",
        "head (logits avoids it)",
    ),
    (
        "fit / DataLoader batch size",
        lambda p: _g(p["fit"]["batch_size"]),
        "an unset batch size differs (this project always sets it)",
        "batch_size",
    ),
    (
        "fit / DataLoader shuffling",
        lambda p: _g(p["fit"]["shuffle"]),
        "different data order per epoch (this project uses one shared order)",
        "not used (shared batch order)",
    ),
    ("last partial batch", lambda p: p["fit"]["last_batch"], "the same number of steps per epoch", "last_batch"),
    (
        "per-epoch training loss",
        lambda p: p["fit"]["epoch_loss"],
        "curves of the last partial batch weigh differently",
        "not controlled (this project: weighted by size)",
    ),
    (
        "BatchNorm momentum (each library's meaning)",
        lambda p: _g(p["batchnorm"]["momentum"]),
        "PyTorch's momentum weighs the new batch, Keras' the old average: a number ported as is means the opposite",
        "bn_momentum (PyTorch's convention; Keras gets 1 - it)",
    ),
    (
        "BatchNorm: weight of the new batch in the running mean (measured)",
        lambda p: _g(p["batchnorm"]["new_weight"]),
        "running statistics move 10x faster on one side: evaluation-mode accuracy differs while they settle",
        "bn_momentum",
    ),
    (
        "BatchNorm epsilon",
        lambda p: _g(p["batchnorm"]["eps"]),
        "added to the variance before the square root: matters where a unit's variance is small",
        "bn_eps",
    ),
    (
        "BatchNorm running variance takes (measured)",
        lambda p: p["batchnorm"]["running_var"],
        "evaluation divides by a variance n/(n-1) larger on one side",
        "bn_running_var",
    ),
    (
        "BatchNorm in evaluation mode (measured)",
        lambda p: p["batchnorm"]["eval"],
        "the same on both sides",
        "not needed",
    ),
    (
        "LayerNorm epsilon",
        lambda p: _g(p["layernorm"]["eps"]),
        "added to each sample's variance before the square root: with Keras' 1e-3, features of small spread "
        "are normalised less",
        "ln_eps",
    ),
    (
        "LayerNorm: epsilon added to the variance (measured)",
        lambda p: f"{p['layernorm']['eps_measured']:.3g}",
        "the same as the signature's default, or the layer adds another",
        "ln_eps",
    ),
    (
        "Dropout default rate",
        lambda p: _g(p["dropout"]["default_rate"]),
        "a port that relies on PyTorch's default has no Keras equivalent to copy",
        "dropout (always explicit)",
    ),
    (
        "Dropout: a kept unit at rate 0.5 in training (measured)",
        lambda p: _g(p["dropout"]["kept_value"]),
        "both scale at training time (inverted dropout): evaluation is the identity on both",
        "not needed",
    ),
    (
        "Dropout masks come from",
        lambda p: p["dropout"]["masks"],
        "different random masks: two runs can never agree step by step",
        "dropout_masks (shared: the same numpy masks)",
    ),
    (
        "Adam(weight_decay=...) is (measured)",
        lambda p: p["weight_decay"]["adam"],
        "coupled decay is scaled down by Adam's normalisation, decoupled is not: the same number regularises very "
        "differently",
        "weight_decay_form",
    ),
    (
        "AdamW default weight_decay",
        lambda p: _g(p["weight_decay"]["adamw_default"]),
        "an unset decay differs 2.5x",
        "weight_decay (native: each library's default)",
    ),
    (
        "L2 penalty idiom",
        lambda p: p["weight_decay"]["l2"],
        "Keras' coupled form is a loss term: its training loss includes the penalty",
        "weight_decay_form=coupled",
    ),
    ("gradient clipping idiom", lambda p: p["clip"]["idiom"], "see the next two rows", "clip_norm"),
    (
        "the idiom clips (measured)",
        lambda p: p["clip"]["scope"],
        "per-variable clipping lets every layer keep a norm up to the threshold: a larger total step",
        "clip_scope",
    ),
    (
        "clipping: added to the norm (measured)",
        lambda p: _g(p["clip"]["added_to_norm"]),
        "one side divides by the norm plus this constant, clipped or not: tiny, visible in float64 lockstep",
        "ops=exact (c / max(norm, c) on both)",
    ),
    (
        "a learning-rate schedule advances (measured)",
        lambda p: p["schedule"],
        "a cosine over 15 epochs decays per epoch on one side and per step on the other",
        "lr_schedule_unit",
    ),
    (
        "label smoothing with class-index labels",
        lambda p: p["label_smoothing"],
        "a Keras port must one-hot encode the labels (same formula, different arithmetic)",
        "label_smoothing",
    ),
    ("default float dtype", lambda p: p["precision"]["floatx"], "both float32", "dtype"),
    (
        "TF32 matmul on GPUs",
        lambda p: _g(p["precision"]["tf32_matmul"]),
        "float32 matmuls at a 10-bit mantissa on Ampere+ GPUs when on",
        "tf32",
    ),
    (
        "float32 matmul precision",
        lambda p: (p["precision"]["matmul_precision"]["value"], p["precision"]["matmul_precision"]["detail"]),
        "what float32 products may round to on a GPU",
        "tf32",
    ),
    (
        "float32 matmul on the run's device (measured against float64)",
        lambda p: _matmul_measured(p["precision"]["matmul_measured"]),
        "the product's relative error: about 4e-7 in full float32, 3e-4 in TF32, 2e-3 in bfloat16 "
        "(the measure command shows what it does to training)",
        "tf32",
    ),
    (
        "mixed bfloat16: matmul / activation / log-softmax / loss dtype (measured)",
        lambda p: " / ".join(p["mixed_precision"][k] for k in ("matmul", "activation", "log_softmax", "loss")),
        "which operations the lower precision reaches: autocast chooses per operation (CPU: log-softmax stays low), "
        "a Keras policy per layer; the loss is float32 on both",
        "mixed_precision",
    ),
    (
        "mixed precision: the weights live in",
        lambda p: p["mixed_precision"]["variables"],
        "float32 master weights on both sides: updates smaller than bfloat16's spacing are kept",
        "mixed_precision",
    ),
    (
        "float16 loss scaling: initial scale",
        lambda p: _g(p["mixed_precision"]["loss_scale"]["initial"]),
        "the first float16 steps scale the loss differently until overflows bring the scales together",
        "mixed_precision=float16",
    ),
    (
        "float16 loss scaling: growth interval, growth, back-off (measured)",
        lambda p: ", ".join(
            _g(p["mixed_precision"]["loss_scale"][k]) for k in ("growth_interval", "growth", "backoff")
        ),
        "how the scale follows overflows",
        "mixed_precision=float16",
    ),
    (
        "compilation",
        lambda p: (p["compilation"]["value"], p["compilation"]["detail"]),
        "XLA fuses ops and changes rounding (and speed)",
        "not controlled",
    ),
    (
        "intra-op threads",
        lambda p: _g(p["threads"]) + (" (library picks)" if p["threads"] == 0 else ""),
        "thread counts change summation order and speed",
        "threads",
    ),
]


# The command that measures each difference's effect on this network (None: nothing to measure, the
# project always sets it, or the table itself is the measurement). tests/test_why.py parses every one.
ABLATE, LOCKSTEP = "fmnist-parity ablate", "fmnist-parity lockstep --dtypes float64"
ADAM = "--set optimizer=adam --set lr=0.001"
RMSPROP = "--set optimizer=rmsprop --set lr=0.001 --set momentum=0"
MEASURE = {
    "dense kernel initialiser": f'{ABLATE} --cells "matched init"',
    "dense bias initialiser": f'{ABLATE} --cells "matched init"',
    "conv kernel initialiser (model=cnn)": f'{ABLATE} --set model=cnn --cells "matched init"',
    "conv bias initialiser (model=cnn)": f'{ABLATE} --set model=cnn --cells "matched init"',
    "Flatten order of a conv output (measured)": f'{LOCKSTEP} --set model=cnn --cells "native,matched"',
    "strided 'same' convolution padding (measured)": f'{LOCKSTEP} --set model=cnn --set downsample=stride --cells "native,strided-conv padding alone,matched"',
    "recurrent weight layout (GRU)": f'{LOCKSTEP} --set model=gru --cells "native,matched"',
    "recurrent bias layout (GRU; LSTM)": f'{LOCKSTEP} --set model=lstm --cells "native,LSTM bias alone,matched"',
    "recurrent initialisers (GRU at 28 inputs, 128 units; measured)": f'{ABLATE} --set model=gru --cells "matched init"',
    "LSTM forget-gate bias at init (measured mean)": f'{ABLATE} --set model=lstm --cells "matched init"',
    "LeakyReLU slope (layer)": f'{ABLATE} --cells "matched LeakyReLU slope"',
    "LeakyReLU slope (function)": "fmnist-parity defaults",
    "momentum update form": f'{LOCKSTEP} --set lr_schedule=step --set lr_step_epochs=1 --steps 600 --cells "native,same definition"',
    "Adam epsilon": f'{ABLATE} {ADAM} --cells "matched Adam epsilon"',
    "Adam epsilon placement (effective/configured at step 1)": f'{LOCKSTEP} {ADAM} --cells "exact ops,matched"',
    "RMSprop rho (PyTorch: alpha)": f'{ABLATE} {RMSPROP} --cells "matched RMSprop rho"',
    "RMSprop epsilon": f'{ABLATE} {RMSPROP} --set eps=native --cells "matched RMSprop epsilon"',
    "RMSprop update form (measured)": f'{LOCKSTEP} {RMSPROP} --set rho=0.99 --cells "native,exact ops,same definition,matched"',
    "loss input": "fmnist-parity defaults",
    "loss when the true class has probability 0": "fmnist-parity defaults",
    "BatchNorm momentum (each library's meaning)": f'{ABLATE} --preset porting --cells "matched batch-norm momentum and epsilon"',
    "BatchNorm: weight of the new batch in the running mean (measured)": f'{ABLATE} --preset porting --cells "matched batch-norm momentum and epsilon"',
    "BatchNorm epsilon": f'{LOCKSTEP} --preset porting --cells "batch-norm momentum and epsilon alone"',
    "BatchNorm running variance takes (measured)": f'{LOCKSTEP} --preset porting --cells "batch-norm running variance alone"',
    "LayerNorm epsilon": f'{LOCKSTEP} --set layernorm=true --cells "layer-norm epsilon alone"',
    "LayerNorm: epsilon added to the variance (measured)": f'{ABLATE} --set layernorm=true --cells "matched layer-norm epsilon"',
    "Dropout masks come from": f'{ABLATE} --preset porting --cells "matched dropout masks"',
    "Adam(weight_decay=...) is (measured)": f'{ABLATE} {ADAM} --set weight_decay=1e-4 --cells "matched weight-decay form"',
    "AdamW default weight_decay": f'{ABLATE} --preset porting --cells "matched AdamW default decay"',
    "L2 penalty idiom": f'{LOCKSTEP} --set weight_decay=1e-4 --set weight_decay_form=coupled --cells "native,exact ops,matched"',
    "gradient clipping idiom": f'{ABLATE} --preset porting --cells "matched clipping scope"',
    "the idiom clips (measured)": f'{ABLATE} --preset porting --cells "matched clipping scope"',
    "clipping: added to the norm (measured)": f'{LOCKSTEP} --preset porting --cells "library arithmetic alone"',
    "a learning-rate schedule advances (measured)": f'{ABLATE} --preset porting --cells "matched schedule unit"',
    "label smoothing with class-index labels": f'{LOCKSTEP} --preset porting --cells "library arithmetic alone"',
    "mixed bfloat16: matmul / activation / log-softmax / loss dtype (measured)": "fmnist-parity run --set mixed_precision=bfloat16",
    "mixed precision: the weights live in": "fmnist-parity run --set mixed_precision=bfloat16",
    "float16 loss scaling: initial scale": "fmnist-parity run --set mixed_precision=float16",
    "float16 loss scaling: growth interval, growth, back-off (measured)": "fmnist-parity run --set mixed_precision=float16",
    "TF32 matmul on GPUs": "fmnist-parity run --device cuda --set tf32=true",
    "float32 matmul precision": "fmnist-parity run --device cuda --set tf32=true",
    "float32 matmul on the run's device (measured against float64)": "fmnist-parity lockstep --device cuda "
    "--dtypes float32 --steps 50 --cells matched --set tf32=true",
    "compilation": "fmnist-parity bench",
    "intra-op threads": "fmnist-parity bench --set threads=1",
}


def probe(label: str, device: str = "auto") -> dict:
    r = subprocess.run(subcommand(label, "defaults", "--device", device), capture_output=True, text=True)
    if r.returncode != 0:
        raise HarnessError(f"defaults probe of {label} failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def cache_key(label: str, device: str = "auto") -> str:
    """What a probe's result depends on: the installed libraries' versions (read without importing
    them) and the probes' own code."""
    h = hashlib.sha256(label.encode())
    for dist in PROBED:
        try:
            h.update(f"|{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"|{dist}=absent".encode())
    for impl in ("pytorch_impl", "keras_impl"):
        h.update((REPO / impl / "defaults.py").read_bytes())
    # the measured float32 product runs on the device asked for, a GPU when one is visible: a probe made
    # elsewhere is not reused
    h.update(f"|{device}|gpu={os.path.exists('/dev/nvidiactl')},{os.environ.get('CUDA_VISIBLE_DEVICES')}".encode())
    return h.hexdigest()[:16]


def cache_path(label: str, device: str = "auto") -> Path:
    return fdata.cache_dir() / "defaults" / f"{label}-{cache_key(label, device)}.json"


def cached_probe(label: str, fresh: bool = False, device: str = "auto") -> dict:
    """probe(label, device), from the project cache when these library versions were probed before."""
    path = cache_path(label, device)
    if not fresh:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    p = probe(label, device)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(json.dumps(p, default=str).encode()))
    except OSError:
        pass  # an unwritable cache costs the next run a probe, nothing more
    return p


class _Touched(dict):
    """A probe dict that records the dotted keys a reader touches (to name the row's source)."""

    def __init__(self, d: dict, seen: set, prefix: str = ""):
        super().__init__(d)
        self.seen, self.prefix = seen, prefix

    def __getitem__(self, k):
        v, path = super().__getitem__(k), f"{self.prefix}{k}"
        if isinstance(v, dict):
            return _Touched(v, self.seen, path + ".")
        self.seen.add(path)
        return v


def source_of(probe: dict, paths: set) -> str:
    """How a probe knows the values at these dotted keys: its SOURCES entry for the most specific prefix."""
    sources, kinds = probe.get("sources", {}), set()
    for path in paths:
        parts = path.split(".")
        kinds.add(
            next(
                (sources[".".join(parts[:i])] for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in sources),
                "not stated",
            )
        )
    return " + ".join(sorted(kinds))


def read_row(read, probe: dict) -> tuple:
    """(value compared, value shown, source) of one row for one library."""
    seen: set = set()
    v = read(_Touched(probe, seen))
    value, shown = (v[0], f"{v[0]} ({v[1]})") if isinstance(v, tuple) else (v, v)
    return value, shown, source_of(probe, seen)


def table(probes: dict[str, dict]) -> dict:
    """probes: label -> probe dict (pytorch first). Returns {"labels", "versions", "rows"}; each row's
    "differ" compares the libraries' values (not the details shown beside them), and "source" says per
    library how the value is known."""
    labels = list(probes)
    rows = []
    for what, read, consequence, key in ROWS:
        got = {l: read_row(read, probes[l]) for l in labels}
        rows.append(
            {
                "what": what,
                "values": {l: g[1] for l, g in got.items()},
                "differ": len({str(g[0]) for g in got.values()}) > 1,
                "source": {l: g[2] for l, g in got.items()},
                "consequence": consequence,
                "config_key": key,
                "measure": MEASURE.get(what),
            }
        )
    return {"labels": labels, "versions": {l: probes[l]["version"] for l in labels}, "rows": rows}


def source_text(row: dict) -> str:
    """One source for the row if every library's is the same, else each library's."""
    kinds = set(row["source"].values())
    return kinds.pop() if len(kinds) == 1 else "; ".join(f"{l}: {k}" for l, k in row["source"].items())


def defaults(
    labels: list[str], out: Path | None = None, log=print, fresh: bool = False, full: bool = True, device: str = "auto"
) -> dict:
    """The table for these contestants (probed side by side, or from the cache), measured on `device`
    (a run's: auto is the GPU where there is one); `full`: the report shows every row, not only those that
    differ (`run --with defaults`, `fmnist-parity defaults`)."""
    todo = [l for l in labels if fresh or not cache_path(l, device).exists()]
    if todo:
        log(f"defaults: probing {', '.join(todo)} (once per set of library versions)")
    with ThreadPoolExecutor(len(labels)) as pool:
        probes = dict(zip(labels, pool.map(lambda l: cached_probe(l, fresh, device), labels)))
    t = {**table(probes), "full": full}
    if out:
        atomic_write(Path(out) / "defaults.json", lambda f: f.write(json.dumps(t, indent=1).encode()))
    return t


def differ_blocks(t: dict, config: dict) -> list[tuple]:
    """The report's first "why" section: the defaults that differ between these contestants and that
    this run acts on (left to each library, or set on both), with the command that measures each
    effect; the differences this run does not use, folded (HTML) or named in one line (Markdown)."""
    head = ["default", *t["labels"], "source", "controlled by", "in this run", "measure its effect"]
    differ = [r for r in t["rows"] if r["differ"]]
    here = {r["what"]: in_this_run(r, config) for r in differ}
    row = lambda r: [
        r["what"],
        *(r["values"][l] for l in t["labels"]),
        source_text(r),
        r["config_key"],
        here[r["what"]],
        r.get("measure") or "-",
    ]
    unused = [r for r in differ if here[r["what"]].split(" ")[0] in ("-", "not")]
    used = sorted(
        (r for r in differ if r not in unused), key=lambda r: here[r["what"]] != "each library's own"
    )  # left to each library first
    b = [("h2", "What differs out of the box")]
    b.append(
        (
            "p",
            f"{len(differ)} of the {len(t['rows'])} defaults read from the installed libraries ("
            + "; ".join(f"{l}: {v}" for l, v in t["versions"].items())
            + f") differ between these contestants; this run acts on {len(used)} of them (first those it leaves "
            'to each library). "In this run": what this comparison\'s config does about it; the last '
            "column measures its effect on this network.",
        )
    )
    b.append(("table", head, [row(r) for r in used]))
    if unused:
        b.append(
            (
                "details",
                f"{len(unused)} more differences this run does not use",
                [("table", head, [row(r) for r in unused])],
                f"{len(unused)} more differences this run does not use: "
                + ", ".join(r["what"] for r in unused)
                + " (all rows: defaults.json here, or `fmnist-parity defaults`).",
            )
        )
    return b


# a difference that only exists when a feature is on: key -> (its switch, whether a config turns it on):
# shared/training.py's table of the choice keys, and the keys that are their own switch here
NEEDS = {
    **{k: (switch, on) for k, (switch, on, _) in {**training.NEEDS, **training.NATIVE_NEEDS}.items()},
    "eps": ("optimizer", lambda get: get("optimizer") in ("adam", "adamw", "rmsprop")),
    "clip_norm": ("clip_norm", lambda get: get("clip_norm") > 0),
    "label_smoothing": ("label_smoothing", lambda get: get("label_smoothing") > 0),
    "mixed_precision": ("mixed_precision", lambda get: get("mixed_precision") != "off"),
    "channels": ("model", lambda get: get("model") == "cnn"),
}


def in_this_run(row: dict, config: dict) -> str:
    """What this comparison's config does about a difference: unused, left to each library, or set."""
    key = row["config_key"].split(" ")[0]
    if key not in config:
        return "-"
    get = lambda k: config.get(k, cfg.DEFAULTS_OF.get(k))  # a record from before a key existed: its default
    if key in NEEDS and not NEEDS[key][1](get):
        switch = NEEDS[key][0]
        return f"not used ({switch}={json.dumps(config.get(switch)).strip(chr(34))})"
    v = config[key]
    return "each library's own" if v == "native" else f"{key}={json.dumps(v).strip(chr(34))} on both"


def blocks(t: dict, folded: bool = False) -> list[tuple]:
    """The full defaults table (`fmnist-parity defaults`); folded: inside a report, as a closed section."""
    b = [("h2", "Defaults: what differs out of the box")]
    b.append(
        (
            "p",
            "From the installed libraries ("
            + "; ".join(f"{l}: {v}" for l, v in t["versions"].items())
            + "). Source: *read* from the library (a signature default, an attribute), *measured* by a tiny "
            "probe through it, or *idiom*: the library's documented convention, written here. Bounds are "
            "sqrt(3) x the std of a fresh draw for 784-200-200-10.",
        )
    )
    b.append(
        (
            "table",
            ["default", *t["labels"], "source", "differ", "consequence", "controlled by"],
            [
                [
                    r["what"],
                    *(r["values"][l] for l in t["labels"]),
                    source_text(r),
                    "yes" if r["differ"] else "no",
                    r["consequence"],
                    r["config_key"],
                ]
                for r in t["rows"]
            ],
        )
    )
    if folded:
        return [
            (
                "details",
                f"All {len(t['rows'])} defaults, read from the installed libraries",
                b[1:],
                f"All {len(t['rows'])} defaults: defaults.json in this folder, or `fmnist-parity defaults`.",
            )
        ]
    return b


def terminal(t: dict) -> str:
    lines = []
    for r in t["rows"]:
        mark = "DIFFERS" if r["differ"] else "same"
        lines.append(f"{r['what']} [{mark}; {source_text(r)}]  -> {r['config_key']}")
        for l in t["labels"]:
            lines.append(f"    {l:12s} {r['values'][l]}")
        if r["differ"]:
            lines.append(f"    consequence: {r['consequence']}")
            if r.get("measure"):
                lines.append(f"    measure its effect: {r['measure']}")
    return "\n".join(lines)
