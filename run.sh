#!/usr/bin/env bash
# The main job: set up .venv if needed, then run fmnist-parity (default: the side-by-side comparison).
# Any arguments are passed to fmnist-parity, e.g. ./run.sh data --data-dir DIR
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/venv.sh
[ $# -gt 0 ] || set -- run
case "$1" in  # commands that train: first make sure the data is there (installs Debian's package if needed)
  run|lockstep|ablate) .venv/bin/python scripts/ensure_data.py "$@" ;;
esac
exec .venv/bin/fmnist-parity "$@"
