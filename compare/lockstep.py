"""`fmnist-parity lockstep`: are PyTorch and Keras computing the same function?

Both sides start from the same weights (init=shared) and train K steps on the same batches, each in
its own process (shared/lockstep.py records every step). This module sets the traces side by side:
per-step loss, per-layer weight differences, pre-activations whose sign differs in one run only, and
the first batch's layer outputs and gradients at identical weights. It then finds the cause:
  - each side's layer outputs are recomputed in numpy from its own previous layer, exactly and under
    float32 hypotheses (slope rounded to float32, matmul in float32), so the first layer that departs
    from the exact math is named, with the hypothesis that reproduces it;
  - the first updates are inverted to the learning rate and momentum (SGD) or effective epsilon (Adam)
    each side actually applied;
  - the same comparison is repeated with the differences switched off one at a time (cells).
The verdict is read against a measured noise floor: PyTorch against itself with every initial weight
moved one unit in the last place (the size of one rounding). The comparison of two traces and the
hypotheses live in compare/causes.py. Imports no framework.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from compare.causes import (
    FLOOR_FACTOR,
    MATCHED_TOL,
    REFERENCE,
    compact,
    divergence,
    explain,
    floor_ratio,
    forward_hypotheses,
    slope_value,
    step1_gradients,
    tol,
    verdict,
    where_first,
)
from compare.harness import HarnessError, keras_label, last_line, subcommand
from compare.render import render_md as md
from shared import config as cfg
from shared import lockstep as trace_format
from shared import training
from shared.atomic import atomic_write

# name -> (config overrides, what stays different between the two sides); "definitions" are the
# optimizer's update rule and every porting feature each library defines its own way (shared/training.py)
CELLS = {
    "native": (
        {"ops": "native", "update_rule": "native"},
        "the libraries as shipped (layers, loss, optimizer classes)",
    ),
    "exact ops": ({"ops": "exact"}, "only the definitions (each framework's own, written out exactly)"),
    "same definition": ({"update_rule": "torch"}, "only the libraries' layer and loss arithmetic"),
    "matched": (
        {"ops": "exact", "update_rule": "torch"},
        "nothing: same definitions, every constant in the model dtype",
    ),
}
DEFINITIONS = ("same definition", "matched")  # the cells that also match the porting features


def canonical(label: str, c: cfg.RunConfig) -> cfg.RunConfig:
    """On the PyTorch side, native means PyTorch's own update rule and idioms: spelled out, one trace
    serves both spellings (e.g. the matched cell and 'batch-norm running variance alone')."""
    if label != REFERENCE:
        return c
    over = {**training.pytorch_canonical(c), **({"update_rule": "torch"} if c.update_rule == "native" else {})}
    return cfg.from_dict(over, c) if over else c


def cell_overrides(cell: str, config: cfg.RunConfig) -> dict:
    over = dict(CELLS[cell][0])
    return {**over, **training.matched(config)} if cell in DEFINITIONS else over


def alone_cells(config: cfg.RunConfig) -> dict[str, dict]:
    """'<difference> alone' -> matched, except that one difference as each library has it: which
    difference makes the two depart, and where (the update rule, the arithmetic, each porting feature)."""
    matched = cell_overrides("matched", config)
    native = {
        "update rule": {"update_rule": "native"},
        "library arithmetic": {"ops": "native"},
        **{name: {k: getattr(config, k) for k in over} for name, over in training.differences(config).items()},
    }
    return {f"{name} alone": {**matched, **over} for name, over in native.items()}


# ---------------------------------------------------------------- running the sides


def run_sides(
    label: str, jobs: list[tuple[cfg.RunConfig, Path, int | None]], steps: int, every: int, data_dir: str
) -> None:
    """Traces of one side, (config, out, perturbation seed or None) each, one after another in one
    process: they share its start-up (most of a short trace's cost). The configs share
    cfg.PROCESS_KEYS."""
    for _, out, _ in jobs:
        out.mkdir(parents=True, exist_ok=True)
    spec = jobs[0][1] / "jobs.json"
    spec.write_text(json.dumps([{"config": c.to_dict(), "out": str(o), "perturb": p} for c, o, p in jobs]))
    cmd = subcommand(
        label, "lockstep", "--jobs", str(spec), "--steps", str(steps), "--every", str(every), "--data-dir", data_dir
    )
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise HarnessError(f"lockstep side {label} failed (exit {r.returncode}): {last_line(r.stderr)}")


def run_side(
    label: str, config: cfg.RunConfig, out: Path, steps: int, every: int, data_dir: str, perturb: int | None = None
) -> Path:
    """One trace in its own process."""
    run_sides(label, [(config, out, perturb)], steps, every, data_dir)
    return out


# ---------------------------------------------------------------- comparing two traces


# ---------------------------------------------------------------- finding the cause


def first_batch(config: cfg.RunConfig, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    from shared import batches, data

    d = data.load(data_dir)
    x, _ = d.scaled(config.scaling, "float64")
    idx = batches.epoch_batches(config.seed, 1, len(x), config.batch_size, config.last_batch)[0]
    return x[idx], d.train_labels[idx].astype(np.int64)


# ---------------------------------------------------------------- the whole comparison


def _load(path: Path) -> dict:
    meta, arrays = trace_format.load(path)
    arrays["_meta"] = meta
    return arrays


class Traces:
    """Each side's traces, run once and kept: a cell shares a trace with any other cell that asks for the
    same (side, config, perturbation)."""

    def __init__(self, work: Path, steps: int, every: int, data_dir: str, log=print):
        self.work, self.steps, self.every, self.data_dir, self.log = work, steps, every, data_dir, log
        self.cache = {}

    def fetch(self, sides) -> None:
        """Run the sides not yet traced: each side's traces in one process (start-up is most of a short
        trace's cost), side by side on the cores; a trace does not depend on what ran before it in its
        process or what runs beside it (tests/test_porting.py)."""
        todo = {}  # key -> (label, config, perturb), each side once
        for label, c, perturb in sides:
            c = canonical(label, c)
            key = (label, c.to_json(), perturb)
            if key not in self.cache:
                todo.setdefault(key, (label, c, perturb))
        if not todo:
            return
        for label, c, perturb in todo.values():
            self.log(
                f"lockstep {c.dtype}: {label}"
                + (" (perturbed by 1 ulp)" if perturb is not None else "")
                + f", ops={c.ops}, update_rule={c.update_rule}"
            )
        # one process per side and process settings, split further where cores would sit idle
        dirs = {k: self.work / f"{len(self.cache) + i:02d}-{k[0]}" for i, k in enumerate(todo)}
        groups = {}
        for k, (label, c, perturb) in todo.items():
            groups.setdefault((label, *cfg.process_settings(c)), []).append((c, dirs[k], perturb))
        cores = os.cpu_count() or 1
        n = max(1, cores // len(groups))
        chunks = [(key[0], jobs[i::n]) for key, jobs in groups.items() for i in range(min(n, len(jobs)))]
        with ThreadPoolExecutor(min(len(chunks), cores)) as pool:
            list(pool.map(lambda ch: run_sides(ch[0], ch[1], self.steps, self.every, self.data_dir), chunks))
        self.cache.update((key, _load(dirs[key])) for key in todo)

    def side(self, label: str, c: cfg.RunConfig, perturb: int | None = None) -> dict:
        self.fetch([(label, c, perturb)])
        return self.cache[(label, canonical(label, c).to_json(), perturb)]


def cell_configs(base: cfg.RunConfig, cell: str, alone: dict, keras_sets: list[str] | None):
    """(Keras side's config, PyTorch side's config) of one cell; --keras-set applies to the Keras side only."""
    c = cfg.from_dict(alone[cell] if cell in alone else cell_overrides(cell, base), base)
    return (cfg.from_dict(cfg.parse_sets(keras_sets), c) if keras_sets else c), c


def _pair(cell: str, label: str, a: dict, b: dict, ck: cfg.RunConfig, x: np.ndarray, floor: dict, entry: dict) -> dict:
    """One cell of one backend: how far the two traces part, where first, why, and the verdict."""
    dt, unit = entry["dtype"], entry["unit"]
    div = divergence(a, b)
    ratio = floor_ratio(div, floor)
    meaning = CELLS[cell][1] if cell in CELLS else f"only {cell[: -len(' alone')]}, as each library has it"
    matched = next((p for p in entry["pairs"] if p["a"] == label and p["cell"] == "matched"), None)
    noise = dict(zip(matched["snap_steps"], matched["max_rel"])) if matched else {}
    pair = {
        "cell": cell,
        "meaning": meaning,
        "a": label,
        "b": REFERENCE,
        **compact(div),
        "floor_ratio": ratio,
        "where": where_first(a, b, div, unit, noise),
        "explanation": explain(label, a, b, ck, x, div),
        "forward": {s: forward_hypotheses(t, x, float(slope_value(t)), unit) for s, t in ((REFERENCE, b), (label, a))},
        "precision": {s: t["_meta"].get("precision", {}) for s, t in ((REFERENCE, b), (label, a))},
        "step1_gradients": step1_gradients(a, b),
    }
    pair["verdict"] = verdict(pair, dt)
    return pair


def _entry(dt: str, config: cfg.RunConfig, labels, cells, alone, keras_sets, traces: Traces, data_dir, log) -> tuple:
    """One dtype: the noise floor, then every backend's cells; the attributing cells only where the
    native pair shows a real difference. Returns (entry, the config it ran)."""
    attribute = ("exact ops", "same definition", *alone)
    base = cfg.from_dict({"dtype": dt, "init": "shared"}, config)
    x, _ = first_batch(base, data_dir)

    def both(label, cell):  # the two sides of one cell: (who, config) each
        return list(zip((label, REFERENCE), cell_configs(base, cell, alone, keras_sets)))

    # up front: every cell that runs whatever the native pair shows (all of them without a native cell)
    upfront = [(REFERENCE, base, 1), (REFERENCE, base, None)]
    for label in labels:
        for cell in cells:
            if cell not in attribute or "native" not in cells:
                upfront += [(who, c, None) for who, c in both(label, cell)]
    traces.fetch(upfront)
    floor = divergence(traces.side(REFERENCE, base, perturb=1), traces.side(REFERENCE, base))  # the noise floor
    name = precision_name(base)
    entry = {"dtype": dt, "unit": cfg.compute_dtype(base), "name": name, "floor": compact(floor), "pairs": []}
    for label in labels:
        real = True
        for cell in cells:
            if cell in attribute and not real:
                continue  # nothing to attribute
            ck, c = cell_configs(base, cell, alone, keras_sets)
            pair = _pair(cell, label, traces.side(label, ck), traces.side(REFERENCE, c), ck, x, floor, entry)
            if cell == "native":
                real = pair["verdict"].startswith("real")
                if real:  # the attributing cells of this backend, together
                    traces.fetch(
                        [(who, c, None) for cell2 in cells if cell2 in attribute for who, c in both(label, cell2)]
                    )
            log(
                f"  {name} {cell}: {label} vs {REFERENCE}: final max rel {pair['final_max_rel']:.2e}, rel L2 "
                f"{pair['final_rel_l2']:.2e} (floor {floor['final_rel_l2']:.2e}): {pair['verdict']}"
            )
            entry["pairs"].append(pair)
    return entry, base


def lockstep(
    config: cfg.RunConfig,
    backends: list[str],
    dtypes: list[str],
    steps: int,
    every: int,
    out: Path,
    data_dir: str,
    keras_sets: list[str] | None = None,
    keep_traces: bool = False,
    cells: list[str] | None = None,
    log=print,
) -> dict:
    """Run every (dtype, cell, backend) pair and the noise floors; write lockstep.json/.md/.png into `out`.
    The cells that attribute a difference ('exact ops', 'same definition') run only where the native
    pair shows a real difference."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "traces" if keep_traces else Path(tempfile.mkdtemp(prefix=".lockstep-", dir=out))
    labels = [keras_label(b) for b in backends]
    alone = alone_cells(config) if training.differences(config) else {}
    cells = cells or [*CELLS, *alone]  # by default: the four cells, then each difference alone
    summary = {
        "steps": steps,
        "every": every,
        "backends": labels,
        "dtypes": dtypes,
        "config": {"preset_config": config.to_dict()},
        "keras_sets": keras_sets or [],
        "floor_factor": FLOOR_FACTOR,
        "matched_tol": MATCHED_TOL,
        "results": [],
    }
    traces = Traces(work, steps, every, data_dir, log)
    try:
        for dt in dtypes:
            entry, base = _entry(dt, config, labels, cells, alone, keras_sets, traces, data_dir, log)
            summary["config"][dt] = base.to_dict()
            summary["results"].append(entry)
    finally:
        if not keep_traces:
            shutil.rmtree(work, ignore_errors=True)
    summary["findings"] = findings(summary)
    atomic_write(out / "lockstep.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    plot(summary, out / "lockstep.png")
    atomic_write(out / "lockstep.md", lambda f: f.write(render_md(summary).encode()))
    return summary


def precision_name(c: cfg.RunConfig) -> str:
    """How a lockstep entry is named: its dtype, or 'mixed bfloat16' (float32 weights)."""
    return f"mixed {c.mixed_precision}" if c.mixed_precision != "off" else c.dtype


def findings(summary: dict) -> list[str]:
    """Per (dtype, backend): the verdict, and which switch removes a real difference."""
    out = []
    for e in summary["results"]:
        by = {}
        for p in e["pairs"]:
            by.setdefault(p["a"], {})[p["cell"]] = p
        for label, cells in by.items():
            n = cells.get("native")
            line = (
                f"{e['name']}, {label} vs {REFERENCE}: final max relative weight difference "
                + ", ".join(f"{c} {p['final_max_rel']:.1e}" for c, p in cells.items())
                + "."
            )
            causes = [(c[: -len(" alone")], p) for c, p in cells.items() if c.endswith(" alone")]
            # the definitions the 'same definition' cell matches: the update rule, and each feature the
            # config leaves to each library; which of them parts the two, each alone (arithmetic is no definition)
            parting = [name for name, p in causes if name != "library arithmetic" and p["verdict"].startswith("real")]
            if n and n["verdict"].startswith("real"):
                level = tol(e["unit"])
                gone = {c: cells[c]["final_max_rel"] <= level for c in ("exact ops", "same definition") if c in cells}
                if gone.get("exact ops") and not gone.get("same definition"):
                    line += (
                        " The libraries' own arithmetic is the cause: with exact ops (each framework keeping its own "
                        "update definition) they agree; matching only the definitions does not help."
                    )
                elif gone.get("same definition") and not gone.get("exact ops"):
                    what = "update definitions" if not causes else "definitions (the update rule and the features)"
                    line += (
                        f" The {what} are the cause: with the same definitions they agree; "
                        "exact arithmetic alone does not help"
                        + (f"; each alone, these part the two: {', '.join(parting)}" if parting else "")
                        + "."
                    )
                elif gone.get("exact ops") and gone.get("same definition"):
                    line += " Either switch alone removes it."
                elif len(gone) == 2:
                    line += " Only both switches together remove it (arithmetic and definitions both differ)."
            elif n:
                line += f" Native: {n['verdict']}."
            out.append(line)
            if e["unit"] in ("bfloat16", "float16") and "native" in cells and "matched" in cells:
                out.append(
                    f"{e['name']}, {label}: below float32 a single rounding grows to the floor's size within "
                    f"the epoch, so how early the two part tells more: "
                    + "; ".join(f"{c} {_parted(cells[c])}" for c in ("native", "matched"))
                    + "."
                )
            if causes:
                out.append(
                    f"{e['name']}, {label}: each difference alone, everything else matched: "
                    + "; ".join(_cause(name, p) for name, p in causes)
                    + "."
                )
    return out


def _parted(p: dict) -> str:
    """When and where a pair first parts by more than rounding, and how far apart it is then."""
    w = p.get("where") or {}
    if "where" not in w:
        return "never parts by more than rounding"
    return f"from step {w['step']}, in {w['where']} ({w['rel']:.1e} relative)"


def _cause(name: str, p: dict) -> str:
    w = p.get("where") or {}
    if not w or "where" not in w:
        return f"{name}: {'no effect' if not p['verdict'].startswith('real') else 'parts them'} ({p['verdict']})"
    loss = f", the loss from step {w['loss_step']}" if w.get("loss_step") else ""
    return (
        f"{name}: first at step {w['step']} in {w['where']} ({w['rel']:.1e} relative){loss}; "
        f"after {p['steps']} steps {p['final_max_rel']:.1e}, {p['verdict']}"
    )


# ---------------------------------------------------------------- output


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(summary["results"])
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 4.2), squeeze=False)
    for ax, e in zip(axes[0], summary["results"]):
        f = e["floor"]
        ax.plot(
            f["snap_steps"], np.maximum(f["rel_l2"], 1e-18), color="gray", lw=2, label="noise floor (pytorch, 1 ulp)"
        )
        for p in e["pairs"]:
            if p["cell"] not in ("native", "matched"):
                continue
            style = "-" if p["cell"] == "native" else "--"
            (line,) = ax.plot(p["snap_steps"], np.maximum(p["rel_l2"], 1e-18), style, label=f"{p['a']} ({p['cell']})")
            flips = [i + 1 for i, c in enumerate(p["flips"]) if c]
            if flips:
                ys = np.interp(flips, p["snap_steps"], np.maximum(p["rel_l2"], 1e-18))
                ax.plot(flips, ys, "|", color=line.get_color(), ms=8)
        ax.set_yscale("log")
        ax.set(
            xlabel="step",
            ylabel="relative L2 distance of all weights",
            title=f"{e['name']}: divergence from pytorch (| = a sign flip in one run only)",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=90))
    plt.close(fig)


def blocks(summary: dict) -> list[tuple]:
    """The lockstep section, in the report's block structure (compare/report.py renders it)."""
    b = [("h2", "Lockstep: are they computing the same function?")]
    b.append(
        (
            "p",
            f"Both sides start from the same weights (init=shared) and train {summary['steps']} steps on the "
            f"same batches; weights are compared every {summary['every']} steps. The noise floor is PyTorch "
            f"against itself with every initial weight moved one unit in the last place (one rounding). "
            f"Within {summary['floor_factor']:g}x the floor at every compared step reads as float noise "
            f"(the ratio shown is the widest); float64 with everything "
            f"matched must agree to {summary['matched_tol']:g}. Cells switch the differences off: "
            + "; ".join(f"{k}: {v[1]}" for k, v in CELLS.items())
            + ".",
        )
    )
    rows = []
    for e in summary["results"]:
        for p in e["pairs"]:
            rows.append(
                [
                    e["name"],
                    p["a"],
                    p["cell"],
                    f"{p['final_max_rel']:.2e}",
                    f"{p['final_rel_l2']:.2e}",
                    f"{e['floor']['final_rel_l2']:.2e}",
                    p["first_flip_step"] or "none",
                    p["verdict"],
                ]
            )
    b.append(
        (
            "table",
            [
                "precision",
                "vs pytorch",
                "cell",
                "max rel diff (end)",
                "rel L2 (end)",
                "floor rel L2",
                "first sign flip",
                "verdict",
            ],
            rows,
        )
    )
    b.append(("img", "lockstep/lockstep.png", "Weight divergence per step, log scale"))
    b.append(("p", "What differs and why:"))
    for line in summary["findings"]:
        b.append(("p", line))
    for e in summary["results"]:
        for p in e["pairs"]:
            if p["cell"] == "native":
                b.append(("p", f"{e['name']}, {p['a']} (native): " + " ".join(p["explanation"])))
    for e in summary["results"]:
        if e["unit"] != e["dtype"] or e["unit"] not in ("float32", "float64"):  # below float32: what ran in what
            b += precision_blocks(e)
    return b


def precision_blocks(e: dict) -> list[tuple]:
    """Per layer, the dtype each side's output came out in (precision(), read from each running program),
    natively and in the matched cell: where the two libraries cast differently."""
    out = []
    for p in e["pairs"]:
        if p["cell"] not in ("native", "matched") or not all(p["precision"].values()):
            continue
        ref, other = p["precision"][REFERENCE], p["precision"][p["a"]]
        layers = lambda q: [l.split(": ")[1] for l in q["layers"]] + [q["loss"], q["weights"]]
        names = [
            f"layer {i + 1} ({a.split(': ')[0]} / {b.split(': ')[0]})"
            for i, (a, b) in enumerate(zip(ref["layers"], other["layers"]))
        ] + ["loss", "weights"]
        rows = [[n, x, y, "" if x == y else "differs"] for n, x, y in zip(names, layers(ref), layers(other))]
        out.append(
            (
                "p",
                f"{e['name']}, {p['cell']}: the dtype each layer's output came out in, read from the running programs",
            )
        )
        out.append(("table", ["layer (pytorch / " + p["a"] + ")", REFERENCE, p["a"], ""], rows))
    return out


def render_md(summary: dict) -> str:
    return md(blocks(summary), {"lockstep/lockstep.png"}).replace("lockstep/lockstep.png", "lockstep.png")
