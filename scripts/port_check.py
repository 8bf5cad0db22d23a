"""The naive port against the correct one: a run's final weights loaded into the other framework as
they are (its config unchanged: each library keeps its own conventions, as a port that copies only the
weights does) and with the source library's conventions set (--correct KEY=VALUE, e.g. Keras'
stride_padding=same or ln_eps=0.001 in PyTorch); the test-set accuracy of each and how often each
predicts the source's class. --naive WHAT makes the naive port get the weights themselves wrong, as
ports do (NAIVE: a GRU's gate blocks copied in their stored order; a PyTorch LSTM's second bias left
behind), beside the correct conversion. The record goes to docs/porting/conversion-<name>.json for
docs/PORTING.md.

    .venv/bin/python scripts/port_check.py --run comparisons/X/runs/keras-seed0 --name stride \\
        --correct stride_padding=same [--data-dir DIR]
    .venv/bin/python scripts/port_check.py --run comparisons/Y/runs/pytorch-seed0 --name gru --naive gate-order"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compare.harness import last_line, subcommand  # noqa: E402
from shared import config as cfg  # noqa: E402
from shared import data as fdata  # noqa: E402
from shared import plan  # noqa: E402
from shared import rundir  # noqa: E402
from shared import weights as fweights  # noqa: E402
from shared.atomic import atomic_write  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "porting"


def _gate_swap(k: np.ndarray, b: np.ndarray) -> tuple:
    """A GRU's first two gate blocks swapped: PyTorch's stored r, z, n read as Keras' z, r, h (and back)."""
    units = k.shape[0] - plan.IMAGE
    order = np.r_[units : 2 * units, 0:units, 2 * units : k.shape[1]]
    return k[:, order], b[:, order]


# a port that gets the weights themselves wrong, as a change of each recurrent layer's neutral arrays
NAIVE = {
    "gate-order": ("gate blocks copied in their stored order", _gate_swap),
    "one-bias": ("bias_ih_l0 copied, bias_hh_l0 left behind", lambda k, b: (k, np.stack([b[0], 0 * b[1]]))),
}


def naive_weights(source: Path, out: Path, how: str) -> Path:
    layers = [NAIVE[how][1](k, b) if b.ndim == 2 else (k, b) for k, b in fweights.load(source)]
    fweights.save(out, layers, fweights.load_norms(source))
    return out


def predict(contestant: str, run: Path, weights: Path, sets: list[str], data_dir: str | None) -> np.ndarray:
    """The test-set outputs of `weights` in `contestant`'s framework under `run`'s config (plus `sets`)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outputs.npy"
        args = ["--run", str(run), "--weights", str(weights), "--out", str(out)]
        args += [a for s in sets for a in ("--set", s)] + (["--data-dir", data_dir] if data_dir else [])
        r = subprocess.run(subcommand(contestant, "predict", *args), capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"error: {contestant} predict failed: {last_line(r.stderr)}")
        return np.load(out)


def check(run: Path, correct: list[str], data_dir: str | None, naive: str | None = None) -> dict:
    rec = rundir.read_run(run)
    source = rec.meta["framework"]
    target = "pytorch" if source == "keras" else "keras"
    weights = run / "weights" / "final.npz"
    labels = fdata.load(data_dir).test_labels
    own = predict(source, run, weights, [], data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        wrong = naive_weights(weights, Path(tmp) / "naive.npz", naive) if naive else weights
        ported = {"naive": predict(target, run, wrong, [], data_dir)}
    ported["correct"] = predict(target, run, weights, correct, data_dir)
    classes = own.argmax(1)
    return {
        "run": run.name,
        "images": len(labels),
        "source": source,
        "target": target,
        "config": rec.config,
        "correct_sets": correct,
        "naive_weights": NAIVE[naive][0] if naive else None,
        "source_accuracy": float(np.mean(classes == labels)),
        "ports": {
            name: {
                "accuracy": float(np.mean(out.argmax(1) == labels)),
                "other_class_than_source": int(np.sum(out.argmax(1) != classes)),  # of the test images
                "max_abs_output_difference": float(np.max(np.abs(out - own))),
            }
            for name, out in ported.items()
        },
    }


def block(records: list[dict]) -> str:
    """The conversion records as one table (docs/PORTING.md)."""
    rows = [
        "| trained in | loaded into | conversion | test accuracy | images classed otherwise than by the source | "
        "max output difference |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        net = plan.describe(cfg.from_dict(r["config"])).split(" (")[0]
        rows.append(
            f"| {r['source']}: {net}, {r['run']} | {r['source']} | its own weights | "
            f"{100 * r['source_accuracy']:.2f}% | | |"
        )
        for name, p in r["ports"].items():
            wrong = r.get("naive_weights") or "as is (each library's own conventions)"
            how = wrong if name == "naive" else f"with {', '.join(r['correct_sets']) or 'the converted weights'}"
            rows.append(
                f"| | {r['target']} | {how} | {100 * p['accuracy']:.2f}% | {p['other_class_than_source']:,} of {r['images']:,} | "
                f"{p['max_abs_output_difference']:.2e} |"
            )
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a completed run directory (its weights/final.npz)")
    p.add_argument("--name", required=True, help="the record's name: docs/porting/conversion-<name>.json")
    p.add_argument("--correct", action="append", default=[], metavar="KEY=VALUE", help="the source's conventions")
    p.add_argument("--naive", choices=sorted(NAIVE), help="what the naive port gets wrong in the weights")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    record = check(args.run, args.correct, args.data_dir, args.naive)
    text = json.dumps(record, indent=1).encode()
    atomic_write(OUT / f"conversion-{args.name}.json", lambda f: f.write(text))
    print(block([record]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
