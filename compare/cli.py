"""`fmnist-parity`: one entry point, subcommands. Imports no framework at module level:
framework work runs in `python -m pytorch_impl` / `python -m keras_impl` processes."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from shared import config as cfg
from shared import training
from shared import data as fdata
from shared.cli import RESUME_ENV, Stopped, stop_on_signals
from shared.parsing import Parser
from shared.environment import quiet_frameworks
from shared import rundir
from shared.rundir import RunFormatError
from compare import engines, harness
from compare.harness import HarnessError
from compare.bench import CONTESTANTS as BENCH_CONTESTANTS, PRECISION as BENCH_PRECISION

EPILOG = """\
Data: every command that reads data accepts --data-dir DIR (or FMNIST_DATA_DIR=DIR);
without it the files are looked for in the project cache, Debian's dataset-fashion-mnist
package, a torchvision root and the Keras cache, and downloaded if none has them
(--offline or FMNIST_OFFLINE=1 forbids that)."""


def _eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


_CLAIMED: list[Path] = []  # what this command may create; a refusal (exit 2) removes it again


def _claim(path) -> Path:
    """An output path this command is about to write: remember what writing it would create."""
    _CLAIMED.append(rundir.first_missing(Path(path)))
    return Path(path)


def cmd_data(args) -> int:
    d = fdata.load(args.data_dir, offline=args.offline, log=_eprint, progress=sys.stderr.isatty())
    print(f"Fashion-MNIST from {d.source}")
    print(f"  directory: {d.directory}")
    print("  verified sha256 of the decompressed IDX files:")
    for name, digest in d.sha256.items():
        print(f"    {name:26s} {digest}")
    print(f"  train: {len(d.train_labels)} images, test: {len(d.test_labels)} images, 28x28 uint8")
    import numpy as np

    tr, te = np.bincount(d.train_labels, minlength=10), np.bincount(d.test_labels, minlength=10)
    print(f"  {'class':<14s}{'train':>7s}{'test':>7s}")
    for i, name in enumerate(fdata.CLASSES):
        print(f"  {i} {name:<12s}{tr[i]:>7d}{te[i]:>7d}")
    for split, images in (("train", d.train_images), ("test", d.test_images)):
        mean, std = fdata.pixel_stats(images)
        print(f"  {split} pixels /255: mean {mean:.4f}, std {std:.4f}")
    return 0


def cmd_presets(args) -> int:
    """Each preset in one line, its provenance and (--json: one JSON document instead) its config."""
    out = {}
    for name, p in cfg.PRESETS.items():
        c = p.config()
        opt = f"{c.optimizer} lr {c.lr}" + (f" momentum {c.momentum}" if c.optimizer == "sgd" else "")
        extras = [k for k in training.FEATURE_KEYS if getattr(c, k) != cfg.DEFAULTS_OF[k]]
        summary = (
            f"{' - '.join(map(str, c.layer_sizes()))}, head {c.head}, {opt}, batch {c.batch_size}, "
            f"{c.scaling} inputs, {c.epochs} epochs, seed {c.seed}" + "".join(f", {k} {getattr(c, k)}" for k in extras)
        )
        out[name] = {"summary": summary, "provenance": p.provenance, "config": c.to_dict()}
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for name, p in out.items():
        print(f"{name}\n  {p['summary']}\n  provenance: {p['provenance']}")
    return 0


def cmd_train(args, rest) -> int:
    """Become the implementation's own CLI (exec: no wrapper left behind, so a kill or SIGTERM sent to
    this process reaches the trainer itself and no orphan trains on)."""
    module = {"pytorch": "pytorch_impl", "keras": "keras_impl"}[args.framework]
    os.environ[RESUME_ENV] = shlex.join(["fmnist-parity", *sys.argv[1:]])  # the command its resume hint names
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *rest])


def cmd_run(args) -> int:
    """The main job: every contestant x seed in turn (each contestant in a worker process of its own), then the report."""
    import shlex
    import time
    from pathlib import Path
    from compare import harness, report

    t0 = time.perf_counter()
    config = cfg.resolve(args.preset, args.set, {"epochs": args.epochs, "device": args.device})
    seeds = harness.parse_seeds(args.seeds, args.seed)
    analyses = _list(args.with_, WHY, "--with") if args.with_ else []  # refuse a bad flag before hours of training
    if args.lockstep_steps is not None and args.lockstep_steps < 3:
        raise HarnessError(f"--lockstep-steps {args.lockstep_steps}: need at least 3")
    if "lockstep" in analyses:
        _check_lockstep(config)
    labels = harness.contestants(
        [f.strip() for f in args.frameworks.split(",") if f.strip()],
        [b.strip() for b in (args.keras_backends or "").split(",") if b.strip()],
    )
    _check_margin(args.margin)
    engine = _engine_args(args)
    if args.grid:
        if args.with_:
            raise HarnessError("--with and --grid together are not supported; run the analyses on one cell")
        return run_sweep(args, config, seeds, labels, engine, t0)
    data = fdata.load(args.data_dir, offline=args.offline, log=_eprint, progress=sys.stderr.isatty())
    _eprint(f"data: {data.source} (verified)")
    out = _claim(args.out or f"comparisons/{args.preset}")
    reproduce = (
        "fmnist-parity " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "fmnist-parity run"
    )
    jobs = harness.plan(
        out,
        config,
        seeds,
        labels,
        {
            "margin": args.margin / 100,
            "target_acc": args.target_acc,
            "reproduce": reproduce,
            "engine": engine["engine"],
            "packed": engine["pack"],
        },
    )
    _eprint(
        f"comparing {', '.join(labels)} on preset {args.preset} ({config.epochs} epochs) with seeds "
        f"{seeds}: {len(jobs)} runs into {out}"
    )
    engines.run_jobs([(j, config) for j in jobs], str(Path(data.directory).resolve()), _eprint, **engine)
    why_sections(
        args.with_,
        config,
        seeds,
        labels,
        out,
        str(Path(data.directory).resolve()),
        args.margin / 100,
        args.lockstep_steps,
    )
    s = report.write_report(out)
    if args.tensorboard:
        from compare import tensorboard

        tensorboard.export(out, args.tensorboard, log=_eprint)
    print()
    for v in s["verdicts"]:
        print(v["sentence"])
    for r in s["speed_ratios"]:
        if r["n"]:
            print(
                f"Speed: {r['a']} median epoch time is {r['mean']:.2f}x {r['b']}'s "
                f"(range {r['min']:.2f}x-{r['max']:.2f}x over {r['n']} seeds)."
            )
    failed = [r for r in s["runs"] if r["state"] != "completed"]
    if failed:
        print(
            f"{len(failed)} run(s) did not complete: "
            + ", ".join(f"{r['contestant']} seed {r['seed']} ({r['state']})" for r in failed)
        )
    print(f"Report: {(out / 'report.html').resolve()}  (wall time {time.perf_counter() - t0:.0f} s)")
    # a mismatch: not shown equivalent by TOST (a small difference the interval excludes 0 from, but which
    # TOST puts inside the margin, is "different" in words and still within the margin)
    if args.fail_on_mismatch and (failed or any(not v["final"].get("within_margin") for v in s["verdicts"])):
        return 1
    return 0


def _engine_args(args) -> dict:
    """--engine/--ray-address/--pack, checked before any work starts."""
    if args.engine not in engines.ENGINES:
        raise HarnessError(f"--engine {args.engine!r}: choose from {', '.join(engines.ENGINES)}")
    if args.engine == "local" and (args.ray_address or args.pack):
        raise HarnessError("--ray-address and --pack need --engine ray")
    if args.engine == "ray" and args.ray_address:
        engines._check_address(args.ray_address)  # before any work: a wrong address is one line, not a hang
    return {"engine": args.engine, "ray_address": args.ray_address, "pack": bool(args.pack)}


def run_sweep(args, config, seeds, labels, engine: dict, t0: float) -> int:
    """--grid: every cell of the cross product is a comparison directory; all their jobs go to the
    engine together (on Ray they spread over the cluster), then one report per cell and sweep.md."""
    import time
    from compare import report, sweep

    grid = sweep.cells(args.grid, config)
    warning = harness.dtype_init_warning([c.to_dict() for _, c in grid], labels)
    if warning:
        _eprint(warning)
    data = fdata.load(args.data_dir, offline=args.offline, log=_eprint, progress=sys.stderr.isatty())
    _eprint(f"data: {data.source} (verified)")
    out = _claim(args.out or f"comparisons/sweep-{args.preset}")
    work = []
    for name, c in grid:
        jobs = harness.plan(
            out / "cells" / name,
            c,
            seeds,
            labels,
            {
                "margin": args.margin / 100,
                "target_acc": args.target_acc,
                "reproduce": f"sweep cell {name}",
                "engine": engine["engine"],
                "packed": engine["pack"],
            },
        )
        work += [(j, c) for j in jobs]
    _eprint(f"sweep: {len(grid)} cells x {len(seeds)} seeds x {len(labels)} contestants = {len(work)} runs into {out}")
    engines.run_jobs(work, str(Path(data.directory).resolve()), _eprint, **engine)
    report.write_cell_reports(out)
    for name, _ in grid:
        if args.tensorboard:
            from compare import tensorboard

            tensorboard.export(out / "cells" / name, Path(args.tensorboard) / name, log=_eprint)
    result = sweep.summarize(out, [n for n, _ in grid], labels)
    print()
    for r in result["rows"]:
        print(
            f"{r['cell']}: "
            + "; ".join(f"{l} {100 * r['accuracy'][l]['mean']:.2f}%" for l in labels if r["accuracy"][l]["n"])
            + " | "
            + " ".join(r["verdicts"])
        )
    print(f"Sweep: {(out / 'sweep.md').resolve()}  (wall time {time.perf_counter() - t0:.0f} s)")
    return 0


def _list(text: str, allowed: tuple, flag: str) -> list[str]:
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise HarnessError(f"{flag} {text!r}: choose from {', '.join(allowed)} (comma-separated)")
    return items


def _check_lockstep(config) -> None:
    if config.augment_impl == "native":
        raise HarnessError(
            "lockstep feeds both sides the same pixels, and augment_impl=native lets each library draw "
            "its own: use augment_impl=shared (the default) for lockstep, or augment-diff to compare "
            "the libraries' augmentations"
        )


def cmd_lockstep(args) -> int:
    """Same weights, same batches: do the two frameworks compute the same function?"""
    from compare import lockstep

    config = cfg.resolve(args.preset, args.set, {"device": args.device})
    backends = _list(args.backends, ("tensorflow", "torch", "jax"), "--backends")
    # mixed precision keeps float32 weights: its lockstep is float32's, computed in the lower precision
    mixed = config.mixed_precision != "off"
    dtypes = _list(
        args.dtypes or ("float32" if mixed else "float64,float32"), ("float64", "float32", "bfloat16"), "--dtypes"
    )
    if mixed and dtypes != ["float32"]:
        raise HarnessError(
            f"mixed_precision={config.mixed_precision} keeps float32 weights: use --dtypes float32 "
            f"(the default with mixed precision), not {','.join(dtypes)}"
        )
    _check_lockstep(config)
    cells = _list(args.cells, (*lockstep.CELLS, *lockstep.alone_cells(config)), "--cells") if args.cells else None
    if args.steps < 3 or args.every < 1:
        raise HarnessError(f"--steps {args.steps} / --every {args.every}: need at least 3 steps and every >= 1")
    cfg.from_dict(cfg.parse_sets(args.set_keras), config)  # refuse a bad --set-keras before any run
    data = fdata.load(args.data_dir, offline=args.offline, log=_eprint, progress=sys.stderr.isatty())
    out = _claim(args.out or f"comparisons/lockstep-{args.preset}")
    s = lockstep.lockstep(
        config,
        backends,
        dtypes,
        args.steps,
        args.every,
        out,
        str(Path(data.directory).resolve()),
        args.set_keras,
        args.keep_traces,
        cells,
        log=_eprint,
    )
    print()
    for e in s["results"]:
        for p in e["pairs"]:
            print(f"{e['name']:15s} {p['a']:12s} {p['cell']:16s} max rel {p['final_max_rel']:.2e}  {p['verdict']}")
    print()
    for line in s["findings"]:
        print(line)
    print(f"Lockstep report: {(out / 'lockstep.md').resolve()}")
    return 0


def cmd_augment_diff(args) -> int:
    """The same images through both libraries' augmentations: pixel differences, picture, defaults."""
    from compare import augment_diff

    try:
        shift = tuple(float(v) for v in args.shift.split(","))
    except ValueError:
        shift = ()
    if len(shift) != 2 or not all(-0.5 <= v <= 0.5 for v in shift):
        raise HarnessError(
            f"--shift {args.shift!r}: give ROWS,COLUMNS as fractions of the image in [-0.5, 0.5], e.g. 0.1,-0.1"
        )
    if not -180 <= args.angle <= 180 or not 1 <= args.images <= 100:
        raise HarnessError(
            f"--angle {args.angle:g} / --images {args.images}: need -180 <= angle <= 180 and 1 <= images <= 100"
        )
    backend = _list(args.backend, ("tensorflow", "torch", "jax"), "--backend")
    if len(backend) != 1:
        raise HarnessError(f"--backend {args.backend!r}: give one Keras backend")
    data = fdata.load(args.data_dir, offline=args.offline, log=_eprint, progress=sys.stderr.isatty())
    out = _claim(args.out)
    s = augment_diff.augment_diff(data.test_images[: args.images], args.angle, shift, backend[0], out, log=_eprint)
    for r in s["rows"]:
        print(
            f"{r['op']:10s} pytorch vs {s['keras']}: {r['pytorch_vs_keras']:.2f} (0-255), {100 * r['pixels_differ']:.1f}% "
            f"of pixels"
            + (
                f"; matched: {r['matched_pytorch_vs_keras']:.2f}, {100 * r['matched_pixels_differ']:.1f}%"
                if "matched_pytorch_vs_keras" in r
                else ""
            )
        )
    for k, v in s["defaults"]["pytorch"].items():
        print(f"  {k}: torchvision {v} | {s['keras']} {s['defaults'][s['keras']][k]}")
    print(f"Augment-diff report: {(out / 'augment_diff.md').resolve()}")
    return 0


def cmd_bench(args) -> int:
    """Time one training epoch per contestant and batch size against the matrix-product floor."""
    from compare import bench

    config = cfg.resolve(args.preset, args.set, {"device": args.device})
    names = _list(args.contestants or bench.DEFAULT, tuple(bench.CONTESTANTS), "--contestants")
    try:
        sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise HarnessError(
            f"--batch-sizes {args.batch_sizes!r}: give positive integers, comma-separated (e.g. 64,128,512)"
        )
    if not 1 <= args.samples <= 60000 or args.reps < 1 or args.warmup < 0:
        raise HarnessError(
            f"--samples {args.samples} / --reps {args.reps} / --warmup {args.warmup}: "
            f"need 1 <= samples <= 60000, reps >= 1, warmup >= 0"
        )
    for bs in sizes:
        cfg.from_dict({"batch_size": bs}, config)  # refuse a bad batch size before any process starts
    data = fdata.load(args.data_dir, offline=args.offline, log=_eprint, progress=sys.stderr.isatty())
    out = _claim(args.out)
    s = bench.bench(
        config,
        names,
        sizes,
        args.samples,
        args.reps,
        args.warmup,
        str(Path(data.directory).resolve()),
        out,
        log=_eprint,
    )
    print(bench.terminal(s))
    print(f"Bench report: {(out / 'bench.md').resolve()} (and bench.json, bench.png)")
    return 0


def cmd_defaults(args) -> int:
    """Every default that changes how this network trains, PyTorch vs Keras, read live."""
    from compare import defaults

    backends = _list(args.backends, ("tensorflow", "torch", "jax"), "--backends")
    labels = ["pytorch"] + [harness.keras_label(b) for b in backends]
    out = _claim(args.out) if args.out else None
    t = defaults.defaults(labels, out, log=_eprint, fresh=args.fresh, device=args.device or "auto")
    if args.json:
        import json

        print(json.dumps(t, indent=1))
    else:
        print(defaults.terminal(t))
    return 0


def cmd_ablate(args) -> int:
    """Which out-of-the-box difference matters: native, one switch at a time, all matched."""
    from compare import ablate, harness, report

    config = cfg.resolve(args.preset, args.set, {"epochs": args.epochs, "device": args.device})
    seeds = harness.parse_seeds(args.seeds, args.seed)
    labels = harness.contestants(
        [f.strip() for f in args.frameworks.split(",") if f.strip()],
        [b.strip() for b in (args.keras_backends or "").split(",") if b.strip()],
    )
    _check_margin(args.margin)
    only = [c.strip() for c in args.cells.split(",") if c.strip()] if args.cells else None
    engine = _engine_args(args)
    data = fdata.load(args.data_dir, offline=args.offline, log=_eprint, progress=sys.stderr.isatty())
    out = _claim(args.out or f"comparisons/ablate-{args.preset}")
    s = ablate.ablate(
        config,
        seeds,
        labels,
        out,
        str(Path(data.directory).resolve()),
        args.margin / 100,
        only,
        log=_eprint,
        engine=engine,
    )
    report.write_cell_reports(out)
    print()
    for line in s["conclusions"]:
        print(line)
    print(f"Ablation report: {(out / 'ablation.md').resolve()}")
    return 0


WHY = ("defaults", "lockstep", "ablate")


def why_sections(
    with_: str | None, config, seeds, labels, out: Path, data_dir: str, margin: float, lockstep_steps: int | None = None
) -> None:
    """The "why" analyses, written into the comparison directory for its report: what differs out of
    the box always (probed once per set of library versions), `--with ...` the rest."""
    from compare import ablate, defaults, lockstep, report
    from shared.batches import steps_per_epoch

    chosen = _list(with_, WHY, "--with") if with_ else []
    try:
        defaults.defaults(labels, out, log=_eprint, full="defaults" in chosen, device=config.device)
    except HarnessError as e:  # the runs are done: report them, say what is missing
        _eprint(f"warning: the report goes without its defaults section: {e}")
    if "lockstep" in chosen:
        backends = [{"keras": "tensorflow"}.get(l, l.replace("keras-", "")) for l in labels if l.startswith("keras")]
        steps = lockstep_steps or steps_per_epoch(60000, config.batch_size, config.last_batch)
        done = out / "lockstep" / "lockstep.json"
        old = json.loads(done.read_text()) if done.exists() else {}
        if (
            old.get("config", {}).get("preset_config") == config.to_dict()
            and old.get("steps") == steps
            and old.get("backends") == [l for l in labels if l.startswith("keras")]
        ):
            _eprint(f"lockstep: {done} is up to date, kept")
        else:
            lockstep.lockstep(
                config, backends, ["float64", "float32"], steps, 20, out / "lockstep", data_dir, log=_eprint
            )
    if "ablate" in chosen:
        ablate.ablate(config, seeds, labels, out / "ablation", data_dir, margin, log=_eprint)
        report.write_cell_reports(out / "ablation")


def cmd_collect(args) -> int:
    """Runs made one by one with `train` (same settings), gathered into a comparison and reported."""
    from compare import collect, report

    _check_margin(args.margin)
    out = _claim(args.out)
    reproduce = (
        shlex.join(["fmnist-parity", *sys.argv[1:]]) if sys.argv[1:2] == ["collect"] else "fmnist-parity collect"
    )
    jobs = collect.collect(
        args.runs, out, {"margin": args.margin / 100, "target_acc": args.target_acc, "reproduce": reproduce}
    )
    missing = [j.name for j in jobs if not (j.run_dir / "run.json").exists()]
    _eprint(
        f"collected {len(jobs) - len(missing)} runs into {out}"
        + (f"; missing: {', '.join(missing)}" if missing else "")
    )
    s = report.write_report(out)
    for v in s["verdicts"]:
        print(v["sentence"])
    print(f"Report: {(out / 'report.html').resolve()}")
    return 0


def cmd_tensorboard(args) -> int:
    """An existing comparison's curves as TensorBoard event files."""
    from compare import tensorboard

    written = tensorboard.export(args.comparison, _claim(args.logdir), log=_eprint)
    print(f"{len(written)} run(s) written; view them with: tensorboard --logdir {args.logdir}")
    return 0


def cmd_report(args) -> int:
    from compare import report

    s = report.write_report(args.comparison)
    for v in s["verdicts"]:
        print(v["sentence"])
    print(f"Report: {(args.comparison / 'report.html').resolve()}")
    return 0


def cmd_diff(args) -> int:
    from compare import diff

    print(diff.describe(args.a, args.b))
    return 0


def _check_margin(margin: float) -> None:
    if not 0 < margin < 100:
        raise HarnessError(f"--margin {margin}: give percentage points between 0 and 100, e.g. 1")


def _seed_flags(p) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seeds", default="3", metavar="N|A,B,..|A-B", help=harness.SEEDS_HELP)
    g.add_argument("--seed", type=int, metavar="N", help="one seed, numbered N (the same as --seeds N,)")


def _engine_flags(p) -> None:
    p.add_argument(
        "--engine",
        default="local",
        help="local (default: one run after another on this machine) or ray (a Ray cluster; see --ray-address)",
    )
    p.add_argument(
        "--ray-address",
        help="with --engine ray: 'auto' or HOST:PORT joins an existing cluster; default: start a local Ray instance",
    )
    p.add_argument(
        "--pack",
        action="store_true",
        help="with --engine ray: let several runs share a node "
        "(throughput over timing; the report says timings are not comparable)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="fmnist-parity",
        description="Train the same Fashion-MNIST MLP in PyTorch and Keras and compare them with evidence.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser(
        "data",
        help="find, verify and summarise the Fashion-MNIST files",
        description="Find the four official files, verify their SHA-256, print where they came "
        "from, per-class counts and pixel statistics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--data-dir", help="directory holding the four files (.gz or uncompressed)")
    d.add_argument("--offline", action="store_true", default=None, help="never download")
    d.set_defaults(func=cmd_data)

    pr = sub.add_parser("presets", help="list the named run configurations and where they come from")
    pr.add_argument(
        "--json", action="store_true", help="print one JSON document instead: {preset: {summary, provenance, config}}"
    )
    pr.set_defaults(func=cmd_presets)

    r = sub.add_parser(
        "run",
        help="the main job: train both frameworks for several seeds and report",
        description="Train PyTorch and Keras with one resolved config, each contestant in its own process, "
        "for N seeds each; then write report.md, report.html, summary.json and plots with "
        "the accuracy verdict (95% CI of the difference, paired by seed, + equivalence test) and the speed ratio. "
        "Re-running into the same --out resumes what is incomplete.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--preset", default="standard", help=f"{', '.join(cfg.PRESETS)} (default standard)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    r.add_argument("--epochs", type=int, help="epochs per run (default: the preset's)")
    _seed_flags(r)
    r.add_argument("--frameworks", default="pytorch,keras", help="comma-separated, default pytorch,keras")
    r.add_argument("--keras-backends", default="", help="extra Keras contestants on other backends: torch,jax")
    r.add_argument("--device", choices=cfg.CHOICES["device"], help="auto (default), cpu or cuda")
    r.add_argument("--margin", type=float, default=1.0, help="equivalence margin in accuracy points (default 1)")
    r.add_argument("--target-acc", type=float, default=0.85, help="test accuracy for time-to-target (default 0.85)")
    r.add_argument("--out", help="comparison directory (default comparisons/<preset>)")
    r.add_argument("--data-dir", help="directory holding the four files (or FMNIST_DATA_DIR)")
    r.add_argument("--offline", action="store_true", default=None, help="never download the data")
    r.add_argument(
        "--with",
        dest="with_",
        metavar="ANALYSES",
        help="also explain the differences, into the same report: any of defaults,lockstep,ablate "
        "(see those commands); e.g. --with defaults,lockstep",
    )
    r.add_argument("--lockstep-steps", type=int, help="steps for --with lockstep (default: one epoch)")
    r.add_argument(
        "--tensorboard",
        type=Path,
        metavar="LOGDIR",
        help="also write every run's per-epoch curves as TensorBoard event files into LOGDIR "
        "(then: tensorboard --logdir LOGDIR)",
    )
    r.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2",
        help="sweep: the cross product of these config values (repeatable), each cell a comparison "
        "under OUT/cells/, plus sweep.md across cells; e.g. --grid lr=0.01,0.1 --grid batch_size=64,128",
    )
    _engine_flags(r)
    r.add_argument(
        "--fail-on-mismatch",
        action="store_true",
        help="exit 1 unless every contestant is within the margin of the first (equivalence test) and all runs completed",
    )
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser(
        "lockstep",
        help="same weights, same batches: are the two computing the same function?",
        description="Train PyTorch and each Keras backend for --steps steps from identical initial "
        "weights (init=shared) on identical batches, each in its own process, and compare "
        "them step by step: loss, per-layer weight differences, pre-activation sign flips. "
        "Finds the cause of a difference (which layer or update departs from the exact "
        "math, at which step) and reads it against a measured float noise floor. Cells: "
        "native (libraries as shipped), 'exact ops', 'same definition', matched.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument("--preset", default="standard", help=f"{', '.join(cfg.PRESETS)} (default standard)")
    ls.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (both sides)"
    )
    ls.add_argument(
        "--set-keras",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key on the Keras side only (e.g. a deliberate mismatch)",
    )
    ls.add_argument("--steps", type=int, default=469, help="training steps (default 469: one epoch at batch 128)")
    ls.add_argument(
        "--every", type=int, default=20, help="compare all weights every N steps (default 20) and at the end"
    )
    ls.add_argument("--backends", default="tensorflow,torch,jax", help="Keras backends (default tensorflow,torch,jax)")
    ls.add_argument(
        "--dtypes",
        help="float64, float32 and/or bfloat16 (default float64,float32; float32 under --set mixed_precision=...)",
    )
    ls.add_argument(
        "--cells",
        help="which cells to run (default: native, exact ops, same definition, matched, and "
        "with porting features on, '<difference> alone' for each: everything matched "
        "but that one, e.g. 'dropout masks alone')",
    )
    ls.add_argument("--device", choices=cfg.CHOICES["device"], help="auto (default), cpu or cuda")
    ls.add_argument("--out", help="output directory (default comparisons/lockstep-<preset>)")
    ls.add_argument("--keep-traces", action="store_true", help="keep the per-step traces (large) under OUT/traces")
    ls.add_argument("--data-dir", help="directory holding the four files (or FMNIST_DATA_DIR)")
    ls.add_argument("--offline", action="store_true", default=None, help="never download the data")
    ls.set_defaults(func=cmd_lockstep)

    be = sub.add_parser(
        "bench",
        help="speed: one training epoch per contestant, against the matrix-product floor",
        description="Time one training epoch (the standard network, 60,000 samples) for each "
        "contestant at each batch size, each contestant in its own process, after "
        "warm-up, over several repetitions (median and spread), through the same "
        "training code `run` uses. The floor, measured in the same run with the same "
        "library, dtype and threads, is only the epoch's forward and backward matrix "
        "products. Prints and writes (bench.json, bench.md, bench.png) each contestant's "
        "ratio to its floor and to PyTorch eager. Contestants: "
        + "; ".join(f"{n}: {d}" for n, (_, _, d) in BENCH_CONTESTANTS.items()),
        epilog="Only ratios measured in one run mean anything on a shared machine; pin threads "
        "with --set threads=N to compare like with like.",
    )
    be.add_argument(
        "--contestants",
        default=None,
        help="comma-separated (default: all but the precision ones); below float32, opt-in: "
        + ", ".join(BENCH_PRECISION),
    )
    be.add_argument("--batch-sizes", default="64,128,512", help="default 64,128,512")
    be.add_argument("--reps", type=int, default=5, help="timed epochs per batch size (default 5)")
    be.add_argument("--warmup", type=int, default=1, help="untimed epochs first (default 1)")
    be.add_argument(
        "--samples", type=int, default=60000, help="training images per epoch (default 60000; fewer for a quick look)"
    )
    be.add_argument(
        "--preset",
        default="standard",
        help=f"network and dtype from a preset ({', '.join(cfg.PRESETS)}); default standard",
    )
    be.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. threads=2"
    )
    be.add_argument("--device", choices=cfg.CHOICES["device"], help="auto (default), cpu or cuda")
    be.add_argument("--out", default="comparisons/bench", help="output directory (default comparisons/bench)")
    be.add_argument("--data-dir", help="directory holding the four files (or FMNIST_DATA_DIR)")
    be.add_argument("--offline", action="store_true", default=None, help="never download the data")
    be.set_defaults(func=cmd_bench)

    ad = sub.add_parser(
        "augment-diff",
        help="the same images through torchvision's and Keras' augmentations, side by side",
        description="Rotate, translate and flip the first test images with torchvision (PyTorch) and "
        "with Keras' preprocessing layers, each library in its own process, with the same "
        "parameters: once with each library's defaults, once matched (bilinear, black "
        "fill); beside the shared numpy augmentation. Writes augment_diff.md/.json/.png "
        "with the pixel differences and the defaults that cause them.",
    )
    ad.add_argument("--angle", type=float, default=15.0, help="degrees, counter-clockwise (default 15)")
    ad.add_argument("--shift", default="0.1,-0.1", help="ROWS,COLUMNS as fractions of the image (default 0.1,-0.1)")
    ad.add_argument("--images", type=int, default=8, help="how many test images (default 8)")
    ad.add_argument("--backend", default="tensorflow", help="the Keras backend (default tensorflow)")
    ad.add_argument(
        "--out", default="comparisons/augment-diff", help="output directory (default comparisons/augment-diff)"
    )
    ad.add_argument("--data-dir", help="directory holding the four files (or FMNIST_DATA_DIR)")
    ad.add_argument("--offline", action="store_true", default=None, help="never download the data")
    ad.set_defaults(func=cmd_augment_diff)

    de = sub.add_parser(
        "defaults",
        help="what differs out of the box: a live table of defaults, PyTorch vs Keras",
        description="Probe PyTorch and each Keras backend, each in its own process, for every default "
        "that changes how this network trains or what its numbers mean (initialisers, "
        "LeakyReLU slope, optimizer forms and epsilon, loss clipping, fit() batching, "
        "batch norm's momentum, epsilon and running variance, dropout, weight-decay forms, "
        "gradient clipping, schedule stepping, label smoothing, dtype, TF32, XLA, threads), read from the installed libraries by introspection "
        "and tiny numerical probes; each row names its source (read, measured, or the "
        "library's documented idiom, written here). Prints a table (or JSON) with the "
        "consequence and the config key that controls each.",
    )
    de.add_argument("--backends", default="tensorflow,torch,jax", help="Keras backends (default tensorflow,torch,jax)")
    de.add_argument(
        "--device",
        choices=cfg.CHOICES["device"],
        help="where the measured rows run (the float32 product): auto (default, as a run), cpu or cuda",
    )
    de.add_argument("--json", action="store_true", help="print JSON instead of the table")
    de.add_argument("--out", metavar="DIR", help="also write DIR/defaults.json")
    de.add_argument(
        "--fresh",
        action="store_true",
        help="probe again instead of reading the cache (kept per set of installed library versions)",
    )
    de.set_defaults(func=cmd_defaults)

    ab = sub.add_parser(
        "ablate",
        help="which default difference matters: native vs one switch at a time vs all matched",
        description="Start from each framework's own defaults (native: initialiser, LeakyReLU slope, "
        "optimizer definition, Adam epsilon; with the porting features on, e.g. --preset "
        "porting: each library's batch-norm conventions, dropout masks, weight-decay form, "
        "clipping scope and schedule unit), switch one difference to matched at a time, "
        "then all; N seeds per cell, each contestant in its own process. Reports each difference's "
        "effect on accuracy and on the framework gap, paired by seed, with 95% CIs. Each "
        "cell is a comparison directory (OUT/cells/NAME) and resumes like `run`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ab.add_argument("--preset", default="standard", help=f"{', '.join(cfg.PRESETS)} (default standard)")
    ab.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    ab.add_argument("--epochs", type=int, help="epochs per run (default: the preset's)")
    _seed_flags(ab)
    ab.add_argument("--frameworks", default="pytorch,keras", help="comma-separated, default pytorch,keras")
    ab.add_argument("--keras-backends", default="", help="extra Keras contestants: torch,jax")
    ab.add_argument("--cells", help="only these cells (besides native), e.g. 'matched init,all matched'")
    ab.add_argument("--margin", type=float, default=1.0, help="equivalence margin in accuracy points (default 1)")
    ab.add_argument("--device", choices=cfg.CHOICES["device"], help="auto (default), cpu or cuda")
    ab.add_argument("--out", help="output directory (default comparisons/ablate-<preset>)")
    ab.add_argument("--data-dir", help="directory holding the four files (or FMNIST_DATA_DIR)")
    ab.add_argument("--offline", action="store_true", default=None, help="never download the data")
    _engine_flags(ab)
    ab.set_defaults(func=cmd_ablate)

    co = sub.add_parser(
        "collect",
        help="gather runs made by `train` into a comparison directory and report it",
        description="Take run directories made one at a time with `fmnist-parity train` (the same "
        "settings, any seeds, at least two contestants), copy them into a new comparison "
        "directory laid out as `run` makes it, and write its report. The originals are "
        "left as they are. Example: fmnist-parity collect runs/ --out comparisons/mine",
    )
    co.add_argument("runs", nargs="+", type=Path, help="run directories, or folders holding them")
    co.add_argument("--out", required=True, type=Path, help="the comparison directory to create")
    co.add_argument("--margin", type=float, default=1.0, help="equivalence margin in accuracy points (default 1)")
    co.add_argument("--target-acc", type=float, default=0.85, help="test accuracy for time-to-target (default 0.85)")
    co.set_defaults(func=cmd_collect)

    rp = sub.add_parser("report", help="regenerate the report of a comparison directory")
    rp.add_argument("comparison", type=Path, help="directory made by `fmnist-parity run`")
    rp.set_defaults(func=cmd_report)
    tb = sub.add_parser(
        "tensorboard",
        help="write a comparison's per-epoch curves as TensorBoard event files",
        description="Write every run of COMPARISON (per-epoch train/test loss and accuracy, epoch "
        "time, samples/s) into LOGDIR/<contestant>/seed<N> with TensorBoard's writer, "
        "so that `tensorboard --logdir LOGDIR` overlays PyTorch and Keras.",
    )
    tb.add_argument("comparison", type=Path, help="a comparison directory (made by `fmnist-parity run`)")
    tb.add_argument("logdir", type=Path, help="TensorBoard log directory to write")
    tb.set_defaults(func=cmd_tensorboard)

    df = sub.add_parser("diff", help="compare two run or comparison directories and list what differs")
    df.add_argument("a", type=Path)
    df.add_argument("b", type=Path)
    df.set_defaults(func=cmd_diff)

    t = sub.add_parser(
        "train", help="train one framework (see `fmnist-parity train --framework X --help`)", add_help=False
    )
    t.add_argument("--framework", choices=("pytorch", "keras"), required=True)
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    quiet_frameworks()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "train":
        if not any(a.startswith("--framework") for a in argv):
            if any(a in ("-h", "--help") for a in argv):
                print(
                    "usage: fmnist-parity train --framework pytorch|keras [--backend tensorflow|torch|jax] --out DIR "
                    "[--preset NAME] [--set KEY=VALUE ...] [--resume] ...\n"
                    "  see `fmnist-parity train --framework pytorch --help` for every option"
                )
                return 0
            _eprint(
                "error: fmnist-parity train: --framework is required (pytorch or keras); "
                "see fmnist-parity train --framework pytorch --help"
            )
            return 2
        args, rest = parser.parse_known_args(argv)
        # forward everything but the subcommand and --framework
        fw_rest = [a for a in argv[1:] if a not in ("--framework", args.framework) and not a.startswith("--framework=")]
        return _run(lambda: args.func(args, fw_rest), KEPT["train"])
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return _run(lambda: args.func(args), KEPT.get(args.command, KEPT[None]))


# What an interrupted command leaves behind, in the line it prints (only the run-based ones resume).
RESUME = "finished runs and each run's last complete epoch are kept: run the same command again to resume"
KEPT = {
    "run": RESUME,
    "ablate": RESUME,
    "train": RESUME,
    "bench": "the contestants measured so far are in the --out folder's bench.md (marked partial)",
    None: "its report was not finished: run the same command again",
}


def _run(fn, kept: str) -> int:
    stop_on_signals()
    _CLAIMED.clear()
    try:
        return fn()
    except (fdata.DataError, cfg.ConfigError, HarnessError, RunFormatError) as e:
        _eprint(f"error: {e}")
        return _refused()
    except OSError as e:  # e.g. an --out that cannot be created or written
        _eprint(f"error: {e.filename or ''}: {e.strerror or e}; choose a location you can write to")
        return _refused()
    except (Stopped, KeyboardInterrupt) as e:  # the harness has already stopped its child
        signum = getattr(e, "signum", 2)
        _eprint(
            f"interrupted by {'SIGTERM' if signum == 15 else 'SIGINT'}; {kept}"
            + (": " + shlex.join(["fmnist-parity", *sys.argv[1:]]) if kept == RESUME else "")
        )
        return 128 + signum


def _refused() -> int:
    """Exit 2, leaving the file system as the command found it (runs that started are kept)."""
    for root in _CLAIMED:
        rundir.remove_unstarted(root)
    _CLAIMED.clear()
    return 2


if __name__ == "__main__":
    sys.exit(main())
