#!/usr/bin/env bash
# Create or refresh the project virtualenv (.venv) idempotently: it installs only when
# requirements.txt or pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
    echo "error: fmnist-parity's pins are tested on Python 3.11; set PYTHON=/path/to/python3.11" >&2; exit 2; }
  echo "creating .venv ..." >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.fmnist-parity-installed
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
echo "installing pinned packages into .venv (a few minutes the first time) ..." >&2
.venv/bin/python -m pip install --disable-pip-version-check --no-cache-dir -q -r requirements.txt  # no cache: the wheels would take GBs twice
.venv/bin/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
