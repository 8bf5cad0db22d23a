"""`python -m pytorch_impl train-args...`: parse, then import PyTorch and train."""

from __future__ import annotations

import sys

from shared.environment import quiet_frameworks


def load_impl(backend, config):
    from pytorch_impl import train

    return train


def main(argv=None) -> int:
    quiet_frameworks()
    from shared.cli import main as shared_main

    return shared_main("pytorch", load_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
