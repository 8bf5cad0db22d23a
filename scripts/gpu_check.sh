#!/usr/bin/env bash
# The GPU check, on a machine with a CUDA GPU: parts ordered by value, so a call cut short still brings back
# the most important results, each part under its own timeout and writing its results as it finishes:
#   a. the main job on the GPU, short: `run --device cuda`, PyTorch and Keras on the backends the machine has,
#      2 seeds x 3 epochs, its report and verdict (OUT/a-run/report.md)
#   b. `bench` at batch 128: PyTorch eager, the compiled whole step, Keras-JAX, Keras-torch, against the
#      epoch's matrix products and the same products replayed from a CUDA graph (no per-kernel launch overhead)
#   c. float32 lockstep on the GPU, PyTorch against Keras-JAX and Keras-torch, 50 steps, tf32 off and on
#   d. the defaults rows read live on the device (a float32 product's measured error: TF32 or not)
#   e. the GPU-marked tests
#   f. Keras-JAX's first epoch with XLA's autotuning on and off (what the first epoch costs, and why)
#   g. one epoch of each contestant with and without deterministic=true
#   h. the precisions' and the CNN's `bench` at 128 and 512
# OUT/parts.md gets one row per part as it ends (exit, seconds, where its results are, or why it did not run).
#   usage: scripts/gpu_check.sh OUT      on the device tool: scripts/gpu_check.sh $OUT/g
# The whole script keeps within GPU_CHECK_SECONDS (default 540, so that a device call of 10 minutes can still
# pack the results): each part's timeout is cut to what is left.
# GPU_CHECK_DRY=1 writes each part's command into parts.md instead of running it (the tests parse them).
# Needs Python with CUDA PyTorch and/or JAX; Keras comes from .gpu/wheels and the data from .gpu/data when
# the machine has neither (scripts/gpu_prepare.sh makes both). No TensorFlow needed: the Keras-TensorFlow
# contestant joins only where TensorFlow is installed. Versions are recorded, never enforced.
# Measured on an H200 (2026-11-30): Keras-JAX's first epoch is ~23 s of which ~22 s is XLA compiling.
set -uo pipefail
out=$(realpath -m "${1:?usage: scripts/gpu_check.sh OUT}")
cd "$(dirname "$0")/.."
mkdir -p "$out"
PY=${PYTHON:-python3}
log="$out/log.txt"
dry=${GPU_CHECK_DRY:-0}
end=$((SECONDS + ${GPU_CHECK_SECONDS:-540}))
say() { echo "$(date +%T) $*" | tee -a "$log"; }
# find_spec, not import: importing Keras would import its backend (seconds) only to learn it is there
if [ "$dry" != 1 ] && ! $PY -c "import importlib.util as u, sys; sys.exit(u.find_spec('keras') is None)" 2>/dev/null \
   && ls .gpu/wheels/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fmnist-site .gpu/wheels/*.whl
  export PYTHONPATH=/tmp/fmnist-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .gpu/data ] && export FMNIST_DATA_DIR=${FMNIST_DATA_DIR:-$PWD/.gpu/data}

# What the machine has: a CUDA GPU seen by PyTorch or JAX, TensorFlow or not. Without a GPU every part says so.
why_not=""
if [ "$dry" != 1 ]; then
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    $PY -c "import platform; from importlib.metadata import version
print('python', platform.python_version())
for m in ('torch', 'jax', 'jaxlib', 'keras', 'tensorflow', 'torchvision'):
    try: print(m, version(m))
    except Exception: print(m, 'absent')
try:
    import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', torch.version.cuda)
except ImportError: print('cuda absent: no torch')"
  } > "$out/env.txt" 2>&1
  say "environment: $(tr '\n' ';' < "$out/env.txt")"
  # PyTorch or JAX seeing a GPU is enough (a part that needs the other says why in its own row)
  grep -q "^cuda True" "$out/env.txt" \
    || $PY -c "import jax, sys; sys.exit(not any(d.platform == 'gpu' for d in jax.devices()))" 2>/dev/null \
    || why_not="no CUDA GPU visible to PyTorch or JAX (see env.txt)"
fi
has_tf() { [ "$dry" = 1 ] || $PY -c "from importlib.metadata import version; version('tensorflow')" 2>/dev/null; }
tf=""; has_tf && tf=1

echo "| part | exit | seconds | results, or why not |" > "$out/parts.md"
echo "|---|---|---|---|" >> "$out/parts.md"
# part NAME LIMIT RESULTS CMD...: run CMD under min(LIMIT, what is left), output into the log; one row in parts.md
part() {
  local name=$1 limit=$2 results=$3; shift 3
  if [ "$dry" = 1 ]; then echo "| $name | - | - | \`$*\` |" >> "$out/parts.md"; return; fi
  if [ -n "$why_not" ]; then echo "| $name | - | - | not run: $why_not |" >> "$out/parts.md"; say "$name: not run: $why_not"; return; fi
  local left=$((end - SECONDS))
  if [ "$left" -lt 10 ]; then echo "| $name | - | - | not run: the check's time (GPU_CHECK_SECONDS) was spent |" >> "$out/parts.md"; say "$name: no time left"; return; fi
  say "$name ..."
  local t0=$SECONDS
  timeout -k 20 $((limit < left ? limit : left)) "$@" >> "$log" 2>&1  # KILL 20 s after TERM: a hung GPU sync
  local rc=$?
  local note=$results; [ "$rc" = 124 ] && note="$results (cut at its time limit; what it wrote is kept)"
  echo "| $name | $rc | $((SECONDS - t0)) | $note |" >> "$out/parts.md"
  say "$name: exit $rc in $((SECONDS - t0)) s"
}
frameworks=pytorch; [ -n "$tf" ] && frameworks=pytorch,keras

part "a. run on the GPU (2 seeds x 3 epochs)" 200 a-run/report.md \
  $PY -m compare.cli run --device cuda --frameworks "$frameworks" --keras-backends torch,jax --seeds 2 --epochs 3 --out "$out/a-run"
bench="pytorch,pytorch-compile-step,keras-jax,keras-torch"; [ -n "$tf" ] && bench="$bench,keras"
part "b. bench at batch 128 (floor, CUDA-graph floor)" 180 b-bench/bench.md \
  $PY -m compare.cli bench --device cuda --contestants "$bench" --batch-sizes 128 --reps 3 --out "$out/b-bench"
for tf32 in false true; do
  part "c. float32 lockstep, tf32=$tf32, 50 steps" 90 "c-lockstep-tf32-$tf32/lockstep.md" \
    $PY -m compare.cli lockstep --device cuda --dtypes float32 --backends torch,jax --cells native,matched --steps 50 --every 5 \
    --set tf32=$tf32 --out "$out/c-lockstep-tf32-$tf32"
done
part "d. defaults read live on the device" 60 d-defaults/defaults.json \
  $PY -m compare.cli defaults --device cuda --backends torch,jax --fresh --out "$out/d-defaults"
part "e. GPU-marked tests" 150 e-pytest.txt \
  bash -c "$PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider > '$out/e-pytest.txt' 2>&1"
# f: how much of Keras-JAX's first epoch is XLA's autotuning (level 0 turns it off); JAX_LOG_COMPILES names
# each compilation and its seconds in the log
for level in default 0; do
  flags=""; [ "$level" = 0 ] && flags="--xla_gpu_autotune_level=0"
  part "f. Keras-JAX first epoch, XLA autotune $level" 60 "f-autotune-$level/metrics.jsonl" \
    env XLA_FLAGS="$flags" JAX_LOG_COMPILES=1 $PY -m keras_impl --backend jax --device cuda --epochs 1 --quiet \
    --out "$out/f-autotune-$level"
done
contestants="pytorch keras-jax keras-torch"; [ -n "$tf" ] && contestants="$contestants keras"
for c in $contestants; do
  case $c in pytorch) mod=(-m pytorch_impl);; keras) mod=(-m keras_impl --backend tensorflow);;
                      *) mod=(-m keras_impl --backend "${c#keras-}");; esac
  for det in false true; do
    part "g. one epoch $c deterministic=$det" 60 "g-epoch/$c-$det/metrics.jsonl" \
      $PY "${mod[@]}" --device cuda --epochs 1 --set deterministic=$det --quiet --out "$out/g-epoch/$c-$det"
  done
done
precision="pytorch,pytorch-bf16,pytorch-amp-bf16,pytorch-amp-fp16,keras-jax,keras-jax-mixed-bf16,keras-jax-mixed-fp16"
[ -n "$tf" ] && precision="$precision,keras,keras-bf16,keras-mixed-bf16,keras-mixed-fp16"
part "h. precision bench" 90 h-bench-precision/bench.md \
  $PY -m compare.cli bench --device cuda --contestants "$precision" --batch-sizes 128,512 --reps 3 --out "$out/h-bench-precision"
cnn="pytorch,pytorch-compile,keras-jax,keras-torch"; [ -n "$tf" ] && cnn="$cnn,keras"
part "h. CNN bench" 90 h-bench-cnn/bench.md \
  $PY -m compare.cli bench --device cuda --set model=cnn --contestants "$cnn" --batch-sizes 128,512 --reps 3 --out "$out/h-bench-cnn"
cat "$out/parts.md"
