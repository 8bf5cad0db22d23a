"""Framework-free parts of a run's environment record, and start-up hygiene."""

from __future__ import annotations

import contextlib
import os
import platform
import sys

import numpy as np


def quiet_frameworks() -> None:
    """Silence TensorFlow/XLA start-up noise; must run before they are imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def silenced_stderr():
    """Point file descriptor 2 at /dev/null for the block (C++ libraries write there directly);
    Python exceptions still propagate and print once it is restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_environment(threads: int) -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "hostname": platform.node(),
        "argv0": os.path.basename(sys.argv[0]),
    }


def resolve_threads(threads: int) -> int:
    return (
        threads
        if threads > 0
        else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    )


def matmul_probe() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One float32 product at the network's first-layer shape, and its float64 reference from the same
    float32 inputs: each twin multiplies (a, b) on its device and reports the relative error, which
    tells what the library's float32 products round to there (TF32 and bfloat16 show; the flags may not)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 784)).astype(np.float32)
    b = rng.standard_normal((784, 200)).astype(np.float32)
    return a, b, a.astype(np.float64) @ b.astype(np.float64)


def matmul_error(c: np.ndarray, reference: np.ndarray) -> float:
    """Relative error of a product against the reference (Frobenius norms)."""
    c = np.asarray(c, dtype=np.float64)
    return float(np.linalg.norm(c - reference) / np.linalg.norm(reference))


# Relative error of matmul_probe's product by what the inputs are rounded to (measured on rounded copies):
# full float32 (24-bit mantissa) 3.6e-7; 16 bits (three bfloat16 passes, XLA's 'high') 9.2e-6;
# TF32 (11 bits) 2.9e-4; bfloat16 (8 bits) 2.4e-3. The bounds sit between them.
MATMUL_ROUNDING = (
    (2e-6, "full float32"),
    (1e-4, "between TF32 and float32"),
    (1e-3, "TF32 (10-bit mantissa)"),
    (float("inf"), "bfloat16 or lower"),
)


def matmul_rounding(rel_error: float) -> str:
    """What a measured float32 product rounded to, named from its relative error."""
    return next(name for bound, name in MATMUL_ROUNDING if rel_error < bound)
