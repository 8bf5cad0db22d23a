"""The argument parser every command line of the project uses (the implementations' train, predict,
lockstep, bench and defaults subcommands, and `fmnist-parity`): a bad flag is one line, exit 2."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (what is wrong, where to look), exit 2."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}; see {self.prog} --help\n")
