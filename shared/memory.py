"""How much memory a run needs, estimated from its config before anything is allocated, so a run
that plainly cannot fit is refused in one line (and an out-of-memory error that still happens is
reported the same way). Framework-free; the implementation only says how much its device has free."""

from __future__ import annotations

from shared import config as cfg
from shared import plan, training
from shared.data import PIXELS, TEST_ROWS as N_TEST, TRAIN_ROWS as N_TRAIN

ITEMSIZE = {"float32": 4, "float64": 8, "bfloat16": 2}


def estimate(config: cfg.RunConfig) -> dict:
    """Bytes, by part: weights; gradients + optimizer state (shared/training.py OPTIMIZERS); the
    activations of one training batch (pre-activation, activation and their gradients) and of the
    full-test-set evaluation (forward only); the train and test images on the device."""
    size = ITEMSIZE[config.dtype]
    params = plan.param_count(config)
    states = training.state_copies(config.optimizer, config.momentum)
    units = plan.activation_units(config)
    parts = {
        "weights": params * size,
        "gradients and optimizer state": params * size * (1 + states),
        "activations of one batch": config.batch_size * units * size * 4,
        "test-set evaluation": N_TEST * units * size * 2,
        "data on the device": (N_TRAIN + N_TEST) * PIXELS * size + (N_TRAIN + N_TEST) * 8,
    }
    return {"parts": parts, "total": sum(parts.values())}


def host_available() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def check(config: cfg.RunConfig, free: int | None, where: str) -> None:
    """Raise ConfigError if the estimate plainly exceeds what is free (None: unknown, no check)."""
    if free is None:
        return
    est = estimate(config)
    if est["total"] > free:
        biggest = max(est["parts"], key=est["parts"].get)
        raise cfg.ConfigError(
            f"this run needs about {gib(est['total'])} but {where} has {gib(free)} free (largest part: {biggest}, "
            f"{gib(est['parts'][biggest])}); lower {_widths(config)} or "
            f"batch_size={config.batch_size}" + (", or use dtype=float32" if config.dtype == "float64" else "")
        )


OOM_NAMES = ("OutOfMemoryError", "ResourceExhaustedError")


def is_oom(e: BaseException) -> bool:
    """An out-of-memory error from any of the frameworks, recognised without importing them."""
    text = str(e)
    return (
        type(e).__name__ in OOM_NAMES
        or isinstance(e, MemoryError)
        or "RESOURCE_EXHAUSTED" in text
        or "out of memory" in text.lower()
    )


def oom_message(config: cfg.RunConfig, e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return (
        f"out of memory ({first}); the estimate for this config is {gib(estimate(config)['total'])}: "
        f"lower batch_size={config.batch_size} or {_widths(config)}"
    )


def _widths(config: cfg.RunConfig) -> str:
    if config.model in plan.GATES:
        return f"rnn_units={config.rnn_units}"
    key = "channels" if config.model == "cnn" else "hidden"
    return f"{key}={','.join(map(str, getattr(config, key)))}"
