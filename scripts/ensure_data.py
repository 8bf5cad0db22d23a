"""Set-up step of ./run.sh and ./test.sh: make sure the Fashion-MNIST files can be found before the
main job or the tests start.

If no place holds them and the download fails (or is off), install Debian's package
`dataset-fashion-mnist` where that is possible (root or passwordless sudo, with apt-get), saying so
in one line; otherwise say exactly which command would fix it, in one line. An explicit --data-dir /
FMNIST_DATA_DIR is the user's choice: it is never worked around.

`--print-dir` (./test.sh): also accept the read-only data folder a checkout may have beside it
(../shared/data/fashion-mnist, as CI lays it out), and print the directory the tests should use
on stdout; ./test.sh passes it to pytest as FMNIST_DATA_DIR."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from shared import data as fdata

PACKAGE = "dataset-fashion-mnist"
BESIDE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fashion-mnist"


def facts() -> dict:
    """What this machine allows, read live."""
    sudo = (
        shutil.which("sudo") is not None and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
    )
    return {"root": os.geteuid() == 0, "sudo": sudo, "apt": shutil.which("apt-get") is not None}


def decide(found: bool, explicit: bool, machine: dict) -> tuple[str, list[list[str]], str]:
    """(action, commands, message): action is 'none', 'install' or 'advise'."""
    if found or explicit:
        return "none", [], ""
    install = ["apt-get", "install", "-y", "-q", PACKAGE]
    if machine["apt"] and (machine["root"] or machine["sudo"]):
        prefix = [] if machine["root"] else ["sudo", "-n"]
        return (
            "install",
            [prefix + ["apt-get", "update", "-q"], prefix + install],
            f"Fashion-MNIST not found and not downloadable: installing Debian's {PACKAGE} (apt-get)",
        )
    if machine["apt"]:
        how = f"sudo apt-get install {PACKAGE}"
    else:
        how = (
            f"copy the four files into a folder and pass --data-dir DIR (or set FMNIST_DATA_DIR); "
            f"on Debian/Ubuntu: apt-get install {PACKAGE}"
        )
    return "advise", [], f"Fashion-MNIST not found and not downloadable; to fix it run: {how}"


def holds_files(directory: Path) -> bool:
    return directory.is_dir() and len(fdata.find_files(directory)) == len(fdata.FILES)


def find_without_download() -> Path | None:
    """The folder the tests use when nothing is said: the one beside the checkout, else the first
    place of the tool's own search order that holds the four files (nothing is downloaded here)."""
    return next((d for d in [BESIDE, *(d for _, d in fdata.candidate_dirs())] if holds_files(d)), None)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-dir")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--print-dir", action="store_true")
    args, _ = p.parse_known_args(argv)
    explicit = args.data_dir or os.environ.get("FMNIST_DATA_DIR")
    if explicit and not args.print_dir:
        return 0  # the command itself checks (and refuses) an explicit folder
    where = Path(explicit).expanduser() if explicit else find_without_download() if args.print_dir else None
    if where is not None:
        if not holds_files(where):
            flag = "--data-dir" if args.data_dir else "FMNIST_DATA_DIR"
            print(
                f"error: {flag} {explicit} does not hold the four Fashion-MNIST files; "
                f"point it at the folder that does, or leave it out",
                file=sys.stderr,
            )
            return 2
        print(where.resolve())
        return 0
    try:
        d = fdata.load(
            offline=args.offline or None, log=lambda m: print(m, file=sys.stderr), progress=sys.stderr.isatty()
        )
    except fdata.DataError:
        d = None
    if d is None:
        action, commands, message = decide(False, False, facts())
        print(message, file=sys.stderr)
        if action != "install":
            return 2
        for cmd in commands:
            r = subprocess.run(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            if r.returncode != 0 and "update" not in cmd:
                print(f"error: {' '.join(cmd)} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
                return 2
        d = fdata.load(offline=True)  # now from the Debian package's folder, verified
    if args.print_dir:
        print(Path(d.directory).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
