#!/usr/bin/env bash
# The tests: set up .venv if needed, make sure the real data is there (the same step as ./run.sh),
# then run pytest on two workers (most tests start training processes; extra arguments go to
# pytest, e.g. ./test.sh -m chaos, or -n 0 for one process).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/venv.sh
bash scripts/test_deps.sh
FMNIST_DATA_DIR=$(.venv/bin/python scripts/ensure_data.py --print-dir) || exit 2
export FMNIST_DATA_DIR
exec .venv/bin/python -m pytest -n 2 --dist worksteal "$@"
