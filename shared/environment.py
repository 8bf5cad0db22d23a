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
