#!/usr/bin/env bash
# The tests: set up .venv if needed, then run pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/venv.sh
bash scripts/test_deps.sh
exec .venv/bin/python -m pytest "$@"
