"""`fmnist-parity`: one entry point, subcommands. Imports no framework at module level:
framework work runs in `python -m pytorch_impl` / `python -m keras_impl` processes."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from shared import config as cfg
from shared import data as fdata
from shared.environment import quiet_frameworks

EPILOG = """\
Data: every command that reads data accepts --data-dir DIR (or FMNIST_DATA_DIR=DIR);
without it the files are looked for in the project cache, Debian's dataset-fashion-mnist
package, a torchvision root and the Keras cache, and downloaded if none has them
(--offline or FMNIST_OFFLINE=1 forbids that)."""


def _eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
    for name, p in cfg.PRESETS.items():
        c = p.config()
        print(f"{name}")
        print(f"  {' - '.join(map(str, c.layer_sizes()))}, head {c.head}, {c.optimizer} lr {c.lr} "
              f"momentum {c.momentum}, batch {c.batch_size}, {c.scaling} inputs, {c.epochs} epochs, seed {c.seed}")
        print(f"  provenance: {p.provenance}")
        if args.json:
            print("  " + c.to_json().replace("\n", "\n  "))
    return 0


def cmd_train(args, rest) -> int:
    """Hand over to the implementation's own CLI in a fresh process (its framework imports stay there)."""
    module = {"pytorch": "pytorch_impl", "keras": "keras_impl"}[args.framework]
    return subprocess.call([sys.executable, "-m", module, *rest])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fmnist-parity",
        description="Train the same Fashion-MNIST MLP in PyTorch and Keras and compare them with evidence.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("data", help="find, verify and summarise the Fashion-MNIST files",
                       description="Find the four official files, verify their SHA-256, print where they came "
                                   "from, per-class counts and pixel statistics.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--data-dir", help="directory holding the four files (.gz or uncompressed)")
    d.add_argument("--offline", action="store_true", default=None, help="never download")
    d.set_defaults(func=cmd_data)

    pr = sub.add_parser("presets", help="list the named run configurations and where they come from")
    pr.add_argument("--json", action="store_true", help="also print each resolved config as JSON")
    pr.set_defaults(func=cmd_presets)

    t = sub.add_parser("train", help="train one framework (see `fmnist-parity train --framework X --help`)",
                       add_help=False)
    t.add_argument("--framework", choices=("pytorch", "keras"), required=True)
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    quiet_frameworks()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "train":
        args, rest = parser.parse_known_args(argv)
        # forward everything but the subcommand and --framework
        fw_rest = [a for a in argv[1:] if a not in ("--framework", args.framework)
                   and not a.startswith("--framework=")]
        return _run(lambda: args.func(args, fw_rest))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return _run(lambda: args.func(args))


def _run(fn) -> int:
    try:
        return fn()
    except (fdata.DataError, cfg.ConfigError) as e:
        _eprint(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _eprint("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
