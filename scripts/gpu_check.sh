#!/usr/bin/env bash
# The GPU check, on a machine with a CUDA GPU, each step under its own timeout: the GPU-marked tests, one
# epoch of each contestant the machine can run with and without deterministic=true, `bench` at batch
# sizes 128 and 512, the precisions' and the CNN's `bench` at 128 and 512. Everything lands in RESULTS_DIR.
# The whole script keeps within GPU_CHECK_SECONDS (default 420): each step's timeout is cut to what is
# left, so a device call of ~8 minutes can still pack the results (measured on an H200: Keras-JAX's first
# epoch is ~23 s of which ~22 s is XLA compiling the one-step train function for two batch shapes, plus
# ~8 s for the predict step).
#   usage: scripts/gpu_check.sh RESULTS_DIR      on the device tool: ...; tar czf $OUT/gpu.tgz -C /tmp g
# Needs Python with CUDA PyTorch and/or JAX; Keras comes from .gpu/wheels and the data from .gpu/data
# when the machine has neither (scripts/gpu_prepare.sh makes both). No TensorFlow needed: the
# Keras-TensorFlow contestant is skipped where TensorFlow is absent. Versions are recorded, never enforced.
set -uo pipefail
out=$(realpath -m "${1:?usage: scripts/gpu_check.sh RESULTS_DIR}")
cd "$(dirname "$0")/.."
mkdir -p "$out"
PY=${PYTHON:-python3}
log="$out/log.txt"
end=$((SECONDS + ${GPU_CHECK_SECONDS:-420}))
t() { local left=$((end - SECONDS)); [ "$left" -lt 5 ] && left=5; echo $(($1 < left ? $1 : left)); }  # a step's timeout
say() { echo "$(date +%T) $*" | tee -a "$log"; }
if ! $PY -c "import keras" 2>/dev/null && ls .gpu/wheels/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fmnist-site .gpu/wheels/*.whl
  export PYTHONPATH=/tmp/fmnist-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .gpu/data ] && export FMNIST_DATA_DIR=${FMNIST_DATA_DIR:-$PWD/.gpu/data}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  $PY -c "import platform; from importlib.metadata import version
print('python', platform.python_version())
for m in ('torch', 'jax', 'keras', 'tensorflow', 'torchvision'):
    try: print(m, version(m))
    except Exception: print(m, 'absent')
import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} > "$out/env.txt" 2>&1
say "environment: $(tr '\n' ';' < "$out/env.txt")"

say "GPU-marked tests"
timeout $(t 120) $PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider > "$out/pytest.txt" 2>&1
say "tests exit $? ($(tail -1 "$out/pytest.txt"))"

contestants="pytorch keras-jax keras-torch"
has_tf() { $PY -c "from importlib.metadata import version; version('tensorflow')" 2>/dev/null \
           || $PY -c "from importlib.metadata import version; version('tensorflow-cpu')" 2>/dev/null; }
has_tf && contestants="$contestants keras"
runs=$(mktemp -d)
echo "| contestant | deterministic | exit | test acc | train s | device |" > "$out/epochs.md"
echo "|---|---|---|---|---|---|" >> "$out/epochs.md"
for c in $contestants; do
  case $c in pytorch) mod=(-m pytorch_impl);; keras) mod=(-m keras_impl --backend tensorflow);;
                      *) mod=(-m keras_impl --backend "${c#keras-}");; esac
  for det in false true; do
    timeout $(t 60) $PY "${mod[@]}" --device cuda --epochs 1 --set deterministic=$det --quiet --out "$runs/$c-$det" >> "$log" 2>&1
    rc=$?
    row=$($PY -c "import json,sys; m=json.loads(open('$runs/$c-$det/metrics.jsonl').readline()); e=json.load(open('$runs/$c-$det/run.json'))['environment']
print(f\"{m['test_acc']:.4f} | {m['train_seconds']:.3f} | {e.get('device_name')}\")" 2>/dev/null || echo "- | - | -")
    echo "| $c | $det | $rc | $row |" >> "$out/epochs.md"
  done
done
say "one epoch each: $out/epochs.md"

bench="pytorch,pytorch-step-sync,pytorch-compile,pytorch-compile-step,keras-jax,keras-torch"
has_tf && bench="$bench,keras,keras-spe1,keras-xla"
timeout $(t 120) $PY -m compare.cli bench --device cuda --contestants "$bench" --batch-sizes 128,512 --reps 3 \
  --out "$out/bench" >> "$log" 2>&1
say "bench exit $?: $out/bench/bench.md"

# below float32 (issue 18): pure bfloat16, autocast/mixed policies, float16 with loss scaling
precision="pytorch,pytorch-bf16,pytorch-amp-bf16,pytorch-amp-fp16,keras-jax,keras-jax-mixed-bf16,keras-jax-mixed-fp16"
has_tf && precision="$precision,keras,keras-bf16,keras-mixed-bf16,keras-mixed-fp16"
timeout $(t 75) $PY -m compare.cli bench --device cuda --contestants "$precision" --batch-sizes 128,512 --reps 3 \
  --out "$out/bench-precision" >> "$log" 2>&1
say "precision bench exit $?: $out/bench-precision/bench.md"
# the CNN (issue 19): ratios to PyTorch's CNN at the same batch size
cnn="pytorch,pytorch-compile,keras-jax,keras-torch"
has_tf && cnn="$cnn,keras"
timeout $(t 75) $PY -m compare.cli bench --device cuda --set model=cnn --contestants "$cnn" --batch-sizes 128,512 --reps 3 \
  --out "$out/bench-cnn" >> "$log" 2>&1
say "CNN bench exit $?: $out/bench-cnn/bench.md"
cat "$out/epochs.md" "$out/bench/bench.md" "$out/bench-precision/bench.md" "$out/bench-cnn/bench.md" 2>/dev/null
