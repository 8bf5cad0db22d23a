"""`fmnist-parity augment-diff`: the same test images through both libraries' augmentations with the
same parameters (a rotation, a translation, a flip), each library in its own process, beside the
shared numpy augmentation (shared/augment.py): the pixel differences, a picture, and the defaults
behind them. Each library runs twice: with its own defaults (what a port gets) and matched (bilinear
sampling, black fill), so what is left after matching is the libraries' sampling arithmetic, not their
defaults. Imports no framework."""

from __future__ import annotations

import json
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from compare.harness import HarnessError, keras_label, last_line, subcommand
from compare.render import render_md
from shared import augment
from shared.atomic import atomic_write

OPS = ("rotate", "translate", "flip")


def run_side(label: str, images: Path, angle: float, shift: tuple, out: Path) -> tuple[dict, dict]:
    cmd = subcommand(
        label,
        "augment",
        "--images",
        str(images),
        "--angle",
        repr(angle),
        "--shift",
        repr(shift[0]),
        repr(shift[1]),
        "--out",
        str(out),
    )
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise HarnessError(f"augment-diff side {label} failed (exit {r.returncode}): {last_line(r.stderr)}")
    with np.load(out) as z:
        return {k: z[k].astype(np.float64) for k in z.files}, json.loads(out.with_suffix(".json").read_text())


def shared_versions(images: np.ndarray, angle: float, shift: tuple) -> dict:
    """The shared augmentation with the same parameters (bilinear, black fill)."""
    n, x = len(images), images.astype(np.float64)
    return {
        "rotate": augment.affine(x, np.full(n, np.deg2rad(angle)), np.zeros((n, 2))),
        "translate": augment.affine(x, np.zeros(n), np.tile(np.array(shift) * augment.SIDE, (n, 1))),
        "flip": x[:, :, ::-1],
    }


def mean_abs(a, b) -> float:
    return float(np.mean(np.abs(a - b)))


def share_apart(a, b) -> float:
    """The share of pixels more than 0.5 apart (0-255 scale)."""
    return float(np.mean(np.abs(a - b) > 0.5))


def augment_diff(images: np.ndarray, angle: float, shift: tuple, backend: str, out: Path, log=print) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    keras = keras_label(backend)
    with tempfile.TemporaryDirectory(dir=out, prefix=".augment-") as tmp:
        src = Path(tmp) / "images.npz"
        np.savez(src, images=images)
        log(
            f"augment-diff: {len(images)} images through pytorch (torchvision) and {keras}, rotate {angle} degrees, "
            f"shift {shift[0]}, {shift[1]} of the image"
        )
        with ThreadPoolExecutor(2) as pool:
            (t, t_def), (k, k_def) = pool.map(
                lambda who: run_side(who, src, angle, shift, Path(tmp) / f"{who}.npz"), ("pytorch", keras)
            )
    ref = shared_versions(images, angle, shift)
    rows = []
    for op in OPS:
        row = {
            "op": op,
            "pytorch_vs_keras": mean_abs(t[op], k[op]),
            "pytorch_vs_shared": mean_abs(t[op], ref[op]),
            "keras_vs_shared": mean_abs(k[op], ref[op]),
            "pixels_differ": share_apart(t[op], k[op]),
        }
        if f"{op}_matched" in t:
            m = f"{op}_matched"
            row.update(
                matched_pytorch_vs_keras=mean_abs(t[m], k[m]),
                matched_pytorch_vs_shared=mean_abs(t[m], ref[op]),
                matched_keras_vs_shared=mean_abs(k[m], ref[op]),
                matched_pixels_differ=share_apart(t[m], k[m]),
            )
        rows.append(row)
    summary = {
        "images": len(images),
        "angle_degrees": angle,
        "shift": list(shift),
        "keras": keras,
        "defaults": {"pytorch": t_def, keras: k_def},
        "rows": rows,
    }
    atomic_write(out / "augment_diff.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    plot(images, t, k, ref, keras, angle, shift, out / "augment_diff.png")
    atomic_write(out / "augment_diff.md", lambda f: f.write(render_md(blocks(summary), {"augment_diff.png"}).encode()))
    return summary


def blocks(s: dict) -> list[tuple]:
    keras = s["keras"]
    b = [
        ("h2", "Augmentation, side by side"),
        (
            "p",
            f"{s['images']} test images, rotated {s['angle_degrees']:g} degrees counter-clockwise, shifted by "
            f"{s['shift'][0]:g} (rows) and {s['shift'][1]:g} (columns) of the image, flipped left-right: by "
            f"torchvision (PyTorch), by Keras' preprocessing layers ({keras}) and by the shared numpy "
            f"augmentation. Mean absolute pixel difference on the 0-255 scale; 'pixels differ': the share of "
            f"pixels more than 0.5 apart. 'Matched': both libraries with bilinear sampling and a black fill.",
        ),
        (
            "table",
            ["default", "pytorch (torchvision)", keras],
            [[k, s["defaults"]["pytorch"][k], s["defaults"][keras][k]] for k in s["defaults"]["pytorch"]],
        ),
        (
            "table",
            [
                "op",
                "pytorch vs keras",
                "pixels differ",
                "pytorch vs shared",
                "keras vs shared",
                "matched: pytorch vs keras",
                "matched: pixels differ",
                "matched: vs shared (pytorch / keras)",
            ],
            [
                [
                    r["op"],
                    f"{r['pytorch_vs_keras']:.2f}",
                    f"{100 * r['pixels_differ']:.1f}%",
                    f"{r['pytorch_vs_shared']:.2f}",
                    f"{r['keras_vs_shared']:.2f}",
                    *(
                        [
                            f"{r['matched_pytorch_vs_keras']:.2f}",
                            f"{100 * r['matched_pixels_differ']:.1f}%",
                            f"{r['matched_pytorch_vs_shared']:.2f} / {r['matched_keras_vs_shared']:.2f}",
                        ]
                        if "matched_pytorch_vs_keras" in r
                        else ["-", "-", "-"]
                    ),
                ]
                for r in s["rows"]
            ],
        ),
        ("img", "augment_diff.png", "original, shared, torchvision, Keras, |torchvision - Keras|"),
    ]
    return b


def plot(images, t, k, ref, keras, angle, shift, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(3, len(images))
    cols = [
        ("original", lambda op, i: images[i]),
        ("shared (numpy)", lambda op, i: ref[op][i]),
        ("torchvision, defaults", lambda op, i: t[op][i]),
        (f"{keras}, defaults", lambda op, i: k[op][i]),
        ("|difference|", lambda op, i: np.abs(t[op][i] - k[op][i])),
    ]
    fig, axes = plt.subplots(n * 2, len(cols), figsize=(2.1 * len(cols), 2.2 * n * 2), squeeze=False)
    for r, (op, i) in enumerate((op, i) for i in range(n) for op in ("rotate", "translate")):
        for c, (title, get) in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(get(op, i), cmap="gray" if c < 4 else "magma", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{op} #{i}", fontsize=8)
    fig.suptitle(f"rotate {angle:g} degrees, shift {shift[0]:g}, {shift[1]:g}", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=90))
    plt.close(fig)
