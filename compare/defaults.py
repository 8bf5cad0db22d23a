"""`fmnist-parity defaults`: what differs out of the box. Each framework (each Keras backend) reports
its own defaults in its own process (`python -m <impl> defaults`, read live from the installed
library); this module lays them side by side with the consequence and the config key that controls
it. Imports no framework."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from compare.harness import HarnessError, subcommand
from shared.atomic import atomic_write


def _g(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, list):
        return ", ".join(_g(v) for v in x)
    return str(x)


# (what, how to read it from a probe, consequence for this network, the config key that controls it)
ROWS = [
    ("dense kernel initialiser", lambda p: f"{p['init_names']['kernel']}; bounds {_g(p['init']['kernel'])}",
     "different starting weights for 784-200-200-10 (bounds per layer): early epochs differ", "init (shared: same draws)"),
    ("dense bias initialiser", lambda p: f"{p['init_names']['bias']}; bounds {_g(p['init']['bias'])}",
     "non-zero vs zero starting biases", "init (shared: same draws)"),
    ("LeakyReLU slope (layer)", lambda p: _g(p["slope"]["layer"]),
     "a different activation: a newcomer's port trains another function", "negative_slope (native: each default)"),
    ("LeakyReLU slope (function)", lambda p: _g(p["slope"]["functional"]),
     "the functional and layer forms can disagree within one library", "negative_slope"),
    ("SGD learning rate", lambda p: _g(p["sgd_lr"]), "an unset learning rate differs by 10x", "lr (always explicit)"),
    ("SGD momentum", lambda p: _g(p["sgd_momentum"]), "none by default on either side", "momentum (always explicit)"),
    ("momentum update form", lambda p: p["momentum_form"],
     "identical for a constant learning rate, different after a learning-rate change", "update_rule"),
    ("Adam epsilon", lambda p: _g(p["adam_eps"]), "matters where sqrt(v) is tiny", "eps (native: each default)"),
    ("Adam epsilon placement (effective/configured at step 1)", lambda p: _g(p["adam_eps_step1"]),
     "Keras adds epsilon before the bias correction: 1/sqrt(1-beta2^t) larger early on", "update_rule"),
    ("loss reduction", lambda p: p["loss"]["reduction"].split(" (")[0], "the batch mean on both sides (a tiny probe)",
     "not needed"),
    ("loss input", lambda p: p["loss"]["input"],
     "a Keras loss on logits without from_logits=True treats them as probabilities", "head (from_logits=True in logits)"),
    ("loss when the true class has probability 0", lambda p: _g(p["loss"]["zero_prob_loss"]),
     "Keras clips probabilities to [1e-7, 1-1e-7]: finite where PyTorch gives inf", "head (logits avoids it)"),
    ("fit / DataLoader batch size", lambda p: _g(p["fit"]["batch_size"]),
     "an unset batch size differs (this project always sets it)", "batch_size"),
    ("fit / DataLoader shuffling", lambda p: _g(p["fit"]["shuffle"]),
     "different data order per epoch (this project uses one shared order)", "not used (shared batch order)"),
    ("last partial batch", lambda p: p["fit"]["last_batch"], "the same number of steps per epoch", "last_batch"),
    ("per-epoch training loss", lambda p: p["fit"]["epoch_loss"],
     "curves of the last partial batch weigh differently", "not controlled (this project: weighted by size)"),
    ("BatchNorm momentum (each library's meaning)", lambda p: _g(p["batchnorm"]["momentum"]),
     "PyTorch's momentum weighs the new batch, Keras' the old average: a number ported as is means the opposite",
     "bn_momentum (PyTorch's convention; Keras gets 1 - it)"),
    ("BatchNorm: weight of the new batch in the running mean (measured)", lambda p: _g(p["batchnorm"]["new_weight"]),
     "running statistics move 10x faster on one side: evaluation-mode accuracy differs while they settle", "bn_momentum"),
    ("BatchNorm epsilon", lambda p: _g(p["batchnorm"]["eps"]),
     "added to the variance before the square root: matters where a unit's variance is small", "bn_eps"),
    ("BatchNorm running variance takes (measured)", lambda p: p["batchnorm"]["running_var"],
     "evaluation divides by a variance n/(n-1) larger on one side", "bn_running_var"),
    ("BatchNorm in evaluation mode (measured)", lambda p: p["batchnorm"]["eval"], "the same on both sides",
     "not needed"),
    ("Dropout default rate", lambda p: _g(p["dropout"]["default_rate"]),
     "a port that relies on PyTorch's default has no Keras equivalent to copy", "dropout (always explicit)"),
    ("Dropout: a kept unit at rate 0.5 in training (measured)", lambda p: _g(p["dropout"]["kept_value"]),
     "both scale at training time (inverted dropout): evaluation is the identity on both", "not needed"),
    ("Dropout masks come from", lambda p: p["dropout"]["masks"],
     "different random masks: two runs can never agree step by step", "dropout_masks (shared: the same numpy masks)"),
    ("Adam(weight_decay=...) is (measured)", lambda p: p["weight_decay"]["adam"],
     "coupled decay is scaled down by Adam's normalisation, decoupled is not: the same number regularises very "
     "differently", "weight_decay_form"),
    ("AdamW default weight_decay", lambda p: _g(p["weight_decay"]["adamw_default"]),
     "an unset decay differs 2.5x", "weight_decay (native: each library's default)"),
    ("L2 penalty idiom", lambda p: p["weight_decay"]["l2"],
     "Keras' coupled form is a loss term: its training loss includes the penalty", "weight_decay_form=coupled"),
    ("gradient clipping idiom", lambda p: p["clip"]["idiom"], "see the next two rows", "clip_norm"),
    ("the idiom clips (measured)", lambda p: p["clip"]["scope"],
     "per-variable clipping lets every layer keep a norm up to the threshold: a larger total step",
     "clip_scope"),
    ("clipping: added to the norm (measured)", lambda p: _g(p["clip"]["added_to_norm"]),
     "one side divides by the norm plus this constant, clipped or not: tiny, visible in float64 lockstep",
     "ops=exact (c / max(norm, c) on both)"),
    ("a learning-rate schedule advances (measured)", lambda p: p["schedule"],
     "a cosine over 15 epochs decays per epoch on one side and per step on the other", "lr_schedule_unit"),
    ("label smoothing with class-index labels", lambda p: p["label_smoothing"],
     "a Keras port must one-hot encode the labels (same formula, different arithmetic)", "label_smoothing"),
    ("default float dtype", lambda p: p["precision"]["floatx"], "both float32", "dtype"),
    ("TF32 matmul on GPUs", lambda p: _g(p["precision"]["tf32_matmul"]),
     "float32 matmuls at a 10-bit mantissa on Ampere+ GPUs when on", "tf32"),
    ("float32 matmul precision", lambda p: p["precision"]["matmul_precision"], "as above", "tf32"),
    ("compilation", lambda p: p["compilation"], "XLA fuses ops and changes rounding (and speed)", "not controlled"),
    ("intra-op threads", lambda p: _g(p["threads"]) + (" (library picks)" if p["threads"] == 0 else ""),
     "thread counts change summation order and speed", "threads"),
]


def probe(label: str) -> dict:
    r = subprocess.run(subcommand(label, "defaults"), capture_output=True, text=True)
    if r.returncode != 0:
        raise HarnessError(f"defaults probe of {label} failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def table(probes: dict[str, dict]) -> dict:
    """probes: label -> probe dict (pytorch first). Returns {"labels", "versions", "rows"}."""
    labels = list(probes)
    rows = []
    for what, read, consequence, key in ROWS:
        values = [read(probes[l]) for l in labels]
        rows.append({"what": what, "values": dict(zip(labels, values)), "differ": len(set(values)) > 1,
                     "consequence": consequence, "config_key": key})
    return {"labels": labels, "versions": {l: probes[l]["version"] for l in labels}, "rows": rows}


def defaults(labels: list[str], out: Path | None = None, log=print) -> dict:
    probes = {}
    for l in labels:
        log(f"defaults: probing {l}")
        probes[l] = probe(l)
    t = table(probes)
    if out:
        atomic_write(Path(out) / "defaults.json", lambda f: f.write(json.dumps(t, indent=1).encode()))
    return t


def blocks(t: dict) -> list[tuple]:
    b = [("h2", "Defaults: what differs out of the box")]
    b.append(("p", "Read live from the installed libraries (" + "; ".join(f"{l}: {v}" for l, v in t["versions"].items())
                   + "). Bounds are sqrt(3) x the std of a fresh draw for 784-200-200-10."))
    b.append(("table", ["default", *t["labels"], "differ", "consequence", "controlled by"],
              [[r["what"], *(r["values"][l] for l in t["labels"]), "yes" if r["differ"] else "no",
                r["consequence"], r["config_key"]] for r in t["rows"]]))
    return b


def terminal(t: dict) -> str:
    lines = []
    for r in t["rows"]:
        mark = "DIFFERS" if r["differ"] else "same"
        lines.append(f"{r['what']} [{mark}]  -> {r['config_key']}")
        for l in t["labels"]:
            lines.append(f"    {l:12s} {r['values'][l]}")
        if r["differ"]:
            lines.append(f"    consequence: {r['consequence']}")
    return "\n".join(lines)
