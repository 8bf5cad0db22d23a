#!/usr/bin/env bash
# Create or refresh the project virtualenv (.venv) idempotently: it installs only when
# requirements.txt or pyproject.toml changed since the last successful install.
# The interpreter: $PYTHON if set, else the first supported one found (python3.11, 3.12, 3.13, python3).
set -euo pipefail
cd "$(dirname "$0")/.."
SUPPORTED="3.11 3.12 3.13"  # the versions the pins install on (pyproject.toml: requires-python)
supported() { "$1" -c 'import sys; sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" not in sys.argv[1].split())' "$SUPPORTED" 2>/dev/null; }
if [ ! -x .venv/bin/python ]; then
  if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
    supported "$PY" || { echo "error: PYTHON=$PY is not Python ${SUPPORTED// /, } (the versions the pins install on)" >&2; exit 2; }
  else
    PY=""
    for cand in python3.11 python3.12 python3.13 python3; do
      if command -v "$cand" >/dev/null 2>&1 && supported "$cand"; then PY=$cand; break; fi
    done
    [ -n "$PY" ] || { echo "error: no Python ${SUPPORTED// /, } found; install one or set PYTHON=/path/to/python3.X" >&2; exit 2; }
  fi
  echo "creating .venv with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])') ..." >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.fmnist-parity-installed
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
echo "installing pinned packages into .venv (a few minutes the first time) ..." >&2
.venv/bin/python -m pip install --disable-pip-version-check --no-cache-dir -q -r requirements.txt  # no cache: the wheels would take GBs twice
.venv/bin/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
