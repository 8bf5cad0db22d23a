"""The `train` command line both implementations share (`python -m pytorch_impl` / `keras_impl`,
and `fmnist-parity train --framework ...`). Framework-free: the implementation is passed in."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

from shared import config as cfg
from shared import data as fdata
from shared import rundir
from shared.atomic import atomic_write
from shared.parsing import Parser
from shared.runner import RunError

RESUME_ENV = "FMNIST_PARITY_COMMAND"  # the user's own command line, for the resume hint


class Stopped(BaseException):
    """SIGTERM (or SIGINT) received: unwind, leaving the last complete epoch as it is."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGINT into Stopped, so `finally` blocks and status updates run."""
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, _raise_stopped)


def parser(framework: str) -> argparse.ArgumentParser:
    p = Parser(
        prog=f"python -m {framework}_impl",
        description=f"Train the Fashion-MNIST MLP with {framework} into a run directory "
        f"(config, environment, per-epoch metrics, status, checkpoints).",
        epilog="Exit codes: 0 completed, 1 failed, 2 bad input (config, data, flags), 3 diverged.",
    )
    p.add_argument("--preset", default="standard", help=f"named config ({', '.join(cfg.PRESETS)}); default standard")
    p.add_argument("--config", type=Path, help="a JSON config file (instead of --preset)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set lr=0.01 --set hidden=100,100 (repeatable)",
    )
    p.add_argument("--epochs", type=int, help="shorthand for --set epochs=N")
    p.add_argument("--seed", type=int, help="shorthand for --set seed=N")
    p.add_argument("--device", choices=cfg.CHOICES["device"], help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument("--data-dir", help="directory holding the four Fashion-MNIST files (or FMNIST_DATA_DIR)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        default=0,
        metavar="N",
        help="keep only the last N per-epoch checkpoints (default 0: keep all)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    if framework == "keras":
        p.add_argument(
            "--backend",
            choices=("tensorflow", "torch", "jax"),
            default="tensorflow",
            help="Keras 3 backend (default tensorflow)",
        )
    return p


def resolve_config(args) -> cfg.RunConfig:
    overrides = {"epochs": args.epochs, "seed": args.seed, "device": args.device}
    if args.config:
        try:
            base = cfg.load_json(args.config.read_text())
        except OSError as e:
            raise cfg.ConfigError(f"{args.config}: cannot read config file ({e.strerror})") from None
        return cfg.from_dict(
            {**cfg.parse_sets(args.set), **{k: v for k, v in overrides.items() if v is not None}}, base
        )
    return cfg.resolve(args.preset, args.set, overrides)


def _lockstep_main(framework, load_impl, argv):
    from shared.lockstep import main as lockstep_main

    return lockstep_main(framework, load_impl, argv)


def _bench_main(framework, load_impl, argv):
    from shared.bench import main as bench_main

    return bench_main(framework, load_impl, argv)


# the twin's other commands: `python -m <impl> <command> ...`; anything else is a training run
COMMANDS = {
    "predict": lambda f, load, argv: predict_main(f, load, argv),
    "defaults": lambda f, load, argv: defaults_main(f, load, argv),
    "lockstep": _lockstep_main,
    "bench": _bench_main,
    "serve": lambda f, load, argv: serve_main(f, load),
    "augment": lambda f, load, argv: augment_main(f, load, argv),
}


def main(framework: str, load_impl, argv=None) -> int:
    """Parse, then import the framework (load_impl) only once the input is known to be good."""
    t_start = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](framework, load_impl, argv[1:])
    args = parser(framework).parse_args(argv)
    backend = getattr(args, "backend", None)
    stop_on_signals()
    config = None
    created = rundir.first_missing(args.out)  # a refusal or a crash removes what this command created
    try:
        if args.keep_checkpoints < 0:
            raise cfg.ConfigError(f"--keep-checkpoints {args.keep_checkpoints}: give 0 (keep all) or a positive count")
        config = resolve_config(args)
        impl = load_impl(backend, config)
        from shared.runner import run

        return run(
            impl, config, args.out, args.data_dir, args.resume, args.quiet, backend, args.keep_checkpoints, t_start
        )
    except (cfg.ConfigError, fdata.DataError, RunError, rundir.RunFormatError) as e:
        return _ended(args.out, created, f"error: {e}", str(e), 2)
    except (Stopped, KeyboardInterrupt) as e:
        return _interrupted(e.signum if isinstance(e, Stopped) else signal.SIGINT, args, framework, argv)
    except OSError as e:  # an --out that cannot be created or written, a full disk
        epochs = _epochs_kept(args.out)
        if epochs is None:  # nothing of this run was written: another place is the fix
            hint = "choose a location you can write to"
        else:  # the run's checkpoints and records up to the last full epoch are kept
            hint = (
                f"nothing written before is lost (epochs done: {epochs}); free space or fix the permission, "
                f"then resume with: {_resume_command(args, framework, argv)}"
            )
        line = f"error: {e.filename or args.out}: {e.strerror or e}; {hint}"
        return _ended(args.out, created, line, f"{type(e).__name__}: {e}", 2)
    except Exception as e:  # anything else: record it, keep the traceback for the user
        from shared import memory

        if memory.is_oom(e):  # the estimate let it through, the device did not: one line all the same
            msg = memory.oom_message(config, e) if config else f"out of memory: {e}"
            return _ended(args.out, created, f"error: {msg}", msg, 1)
        traceback.print_exc()
        return _ended(args.out, created, None, f"{type(e).__name__}: {e}", 1)


def _ended(out: Path, created: Path | None, line: str | None, message: str, code: int) -> int:
    """A run that ended in error: say it in one line (or after the traceback), mark a started run
    failed, remove what a run that never started created."""
    if line:
        print(line, file=sys.stderr)
    _mark_failed(out, message)
    rundir.remove_unstarted(created)
    return code


def _resume_command(args, framework: str, argv: list[str]) -> str:
    """The command the user typed, with --resume (fmnist-parity train ... sets RESUME_ENV before it
    becomes this process; otherwise the module's own)."""
    typed = os.environ.get(RESUME_ENV) or shlex.join(["python", "-m", f"{framework}_impl", *argv])
    return typed + ("" if args.resume else " --resume")


def _interrupted(signum: int, args, framework: str, argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the status write
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    name = signal.Signals(signum).name
    epoch = _mark_interrupted(args.out, name)
    after = f" after epoch {epoch}" if epoch is not None else ""
    print(f"interrupted by {name}{after}; resume with: {_resume_command(args, framework, argv)}", file=sys.stderr)
    return 128 + signum


SERVED = "\x1efmnist-parity-served"  # ends a served run's output: SERVED <exit code>


def serve_main(framework: str, load_impl) -> int:
    """`python -m <impl> serve`: train runs one after another in this one process, each given as a
    line of JSON on stdin (the train command's arguments, {"argv": [...]}); after each, a line
    `SERVED <exit code>` on stdout. The harness's runs of one contestant share its start-up (imports,
    framework initialisation); each run sets its seeds and builds its model afresh, as in its own
    process (tests/test_compare.py checks the numbers). Exits at the end of stdin, or with 128 + the
    signal number once a signal stopped a run (its run directory says interrupted)."""
    stop_on_signals()
    try:
        for line in sys.stdin:
            rc = main(framework, load_impl, json.loads(line)["argv"])
            rundir.release_all()  # the run is finished: the next writer may be another process
            sys.stderr.flush()  # its last lines before the marker (one pipe for both)
            print(f"{SERVED} {rc}", flush=True)
            if rc > 128:
                return rc
    except (Stopped, KeyboardInterrupt) as e:  # between runs
        return 128 + (e.signum if isinstance(e, Stopped) else signal.SIGINT)
    return 0


def predict_main(framework: str, load_impl, argv) -> int:
    """`python -m <impl> predict`: load neutral weights into this framework's model for a run's
    config, save its test-set outputs (.npy) and optionally re-export the weights (.npz)."""
    p = Parser(
        prog=f"python -m {framework}_impl predict",
        description="Test-set outputs of neutral .npz weights loaded into this framework.",
    )
    p.add_argument("--run", type=Path, required=True, help="run directory whose config to use")
    p.add_argument("--weights", type=Path, required=True, help="neutral weights .npz (kernels [in, out])")
    p.add_argument("--out", type=Path, required=True, help="where to save the outputs (.npy)")
    p.add_argument("--export", type=Path, help="also write the weights back out from this framework (.npz)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the run's config, e.g. stride_padding=same to load Keras-trained weights "
        "into PyTorch with Keras' padding (repeatable)",
    )
    p.add_argument("--data-dir")
    if framework == "keras":
        p.add_argument("--backend", choices=("tensorflow", "torch", "jax"), default="tensorflow")
    args = p.parse_args(argv)
    import numpy as np
    from shared import weights
    from shared.environment import resolve_threads

    try:
        config = cfg.from_dict(cfg.parse_sets(args.set), cfg.from_dict(rundir.read_run(args.run).config))
        impl = load_impl(getattr(args, "backend", None), config)
        state = impl.build(config, impl.setup(config, resolve_threads(config.threads)))
        impl.import_weights(state, weights.load(args.weights))
        impl.import_norms(state, weights.load_norms(args.weights))
        data = fdata.load(args.data_dir)
        outputs = impl.predict(state, data.scaled(config.scaling, config.dtype)[1])
    except (cfg.ConfigError, fdata.DataError, RunError, rundir.RunFormatError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write(args.out, lambda f: np.save(f, outputs))
    if args.export:
        weights.save(args.export, impl.export_weights(state), impl.export_norms(state))
    return 0


def defaults_main(framework: str, load_impl, argv) -> int:
    """`python -m <impl> defaults`: the library's out-of-the-box settings as JSON (see <impl>/defaults.py)."""
    import importlib
    import json

    p = Parser(
        prog=f"python -m {framework}_impl defaults",
        description="Print this framework's defaults, read live from the installed library, as JSON.",
    )
    if framework == "keras":
        p.add_argument("--backend", choices=("tensorflow", "torch", "jax"), default="tensorflow")
    p.add_argument(
        "--device", choices=cfg.CHOICES["device"], default="auto", help="where the measured float32 product runs"
    )
    args = p.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before any framework loads: no GPU for this probe
    # the probes are tiny and run side by side: no library may claim the GPU's memory up front
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    load_impl(getattr(args, "backend", None), cfg.RunConfig(device=args.device))  # the backend before Keras loads
    probe = importlib.import_module(f"{framework}_impl.defaults").probe()
    print(json.dumps(probe, default=str))
    return 0


def augment_main(framework: str, load_impl, argv) -> int:
    """`python -m <impl> augment`: the library's own augmentations of the given images with fixed
    parameters (<impl>/defaults.py: augmentation), for compare/augment_diff.py."""
    import importlib
    import json
    import numpy as np
    from shared.atomic import atomic_write

    p = Parser(
        prog=f"python -m {framework}_impl augment",
        description="Rotate, translate and flip images with this library's augmentation (its defaults, then matched).",
    )
    p.add_argument("--images", type=Path, required=True, help=".npz with `images` [n, 28, 28], 0-255")
    p.add_argument("--angle", type=float, required=True, help="degrees, counter-clockwise")
    p.add_argument("--shift", type=float, nargs=2, required=True, metavar=("ROWS", "COLUMNS"), help="fractions of 28")
    p.add_argument("--out", type=Path, required=True, help=".npz of the results (and OUT.json: the defaults)")
    if framework == "keras":
        p.add_argument("--backend", choices=("tensorflow", "torch", "jax"), default="tensorflow")
    args = p.parse_args(argv)
    load_impl(getattr(args, "backend", None), cfg.RunConfig(device="cpu"))
    with np.load(args.images) as z:
        images = z["images"]
    out = importlib.import_module(f"{framework}_impl.defaults").augmentation(images, args.angle, tuple(args.shift))
    defaults = out.pop("defaults")
    atomic_write(args.out, lambda f: np.savez(f, **out))
    atomic_write(args.out.with_suffix(".json"), lambda f: f.write(json.dumps(defaults).encode()))
    return 0


def _epochs_kept(out: Path) -> int | None:
    """Epochs this run directory holds (a run that had started: --resume continues it), else None."""
    try:
        if (out / "run.json").exists() and (out / "status.json").exists():
            return len(rundir.read_run(out).metrics)
    except Exception:
        pass
    return None


def _mark_interrupted(out: Path, signame: str) -> int | None:
    """status.json says interrupted at the last complete epoch (its checkpoint and metrics are kept)."""
    try:
        if rundir.holds_lock(out) and (epoch := _epochs_kept(out)) is not None:
            rundir.write_status(
                out, "interrupted", f"stopped by {signame}; --resume continues after epoch {epoch}", epoch
            )
            return epoch
    except Exception:
        pass
    return None


def _mark_failed(out: Path, message: str) -> None:
    try:
        if rundir.holds_lock(out) and (out / "status.json").exists():  # never another live writer's run
            status = rundir._read_json(out / "status.json")
            rundir.write_status(out, "failed", message, status.get("epoch", 0))
    except Exception:
        pass
