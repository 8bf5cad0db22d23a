#!/usr/bin/env bash
# Prepare .gpu/ (ignored) for scripts/gpu_check.sh on a machine with no network: the data files and
# the wheels of Keras and the small packages it needs that a CUDA PyTorch + JAX image lacks.
# Run here, where pip can reach the package index:   scripts/gpu_prepare.sh [PYTHON_VERSION, default 3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
src=${FMNIST_DATA_DIR:?set FMNIST_DATA_DIR to the folder holding the four Fashion-MNIST files}
mkdir -p .gpu/data .gpu/wheels
cp "$src"/*-ubyte* .gpu/data/
pin() { grep -i "^$1==" requirements.txt; }
# keras is pure Python; optree has compiled wheels for each Python; namex is tiny. Exact pins.
for req in "$(pin keras)" "$(pin namex)" "$(pin optree)"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/wheels "$req"
done
du -sh .gpu
