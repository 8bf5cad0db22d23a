"""scripts/gpu_check.sh, on a machine without a GPU: its parts come in the order of their value, every
command in them is one the tools accept as written (parsed, not run: a typo would cost a GPU call), and
without a CUDA GPU each part says why it did not run instead of failing."""

import os
import shlex
import subprocess
import sys

from compare import bench, cli, harness, lockstep
from conftest import REPO
from shared import cli as impl_cli
from shared import config as cfg

SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _parts(out) -> list[list[str]]:
    rows = (out / "parts.md").read_text().splitlines()[2:]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows]


def test_every_part_is_a_command_the_tools_accept(tmp_path):
    r = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)], env={**os.environ, "GPU_CHECK_DRY": "1"}, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    parts = _parts(tmp_path)
    names = [p[0] for p in parts]
    assert [n[0] for n in names] == sorted(n[0] for n in names), names  # a, b, c, ...: the order of their value
    assert names[0].startswith("a. run on the GPU") and names[1].startswith("b. bench")
    assert {"c. float32 lockstep, tf32=false, 50 steps", "c. float32 lockstep, tf32=true, 50 steps"} <= set(names)
    seen = set()
    for name, _, _, command in parts:
        argv = shlex.split(command.strip("`"))
        if "compare.cli" in argv:
            args = cli.build_parser().parse_args(argv[argv.index("compare.cli") + 1 :])
            seen.add(args.func.__name__)
            assert args.device == "cuda", name
            if hasattr(args, "set"):
                cfg.resolve(args.preset, args.set, {})  # every --set a key and value the config takes
            if args.func is cli.cmd_run:
                assert len(harness.contestants(args.frameworks.split(","), args.keras_backends.split(","))) >= 3
            if args.func is cli.cmd_bench:
                assert set(args.contestants.split(",")) <= set(bench.CONTESTANTS), name
            if args.func is cli.cmd_lockstep:
                assert set(args.cells.split(",")) <= set(lockstep.CELLS) and args.dtypes == "float32", name
            if hasattr(args, "backends"):
                assert set(args.backends.split(",")) <= {"tensorflow", "torch", "jax"}, name
        elif "-m" in argv and argv[argv.index("-m") + 1] in ("pytorch_impl", "keras_impl"):
            framework = argv[argv.index("-m") + 1].split("_")[0]
            args = impl_cli.parser(framework).parse_args(argv[argv.index("-m") + 2 :])
            assert args.device == "cuda", name
            cfg.resolve(args.preset, args.set, {})
            seen.add(framework)
        elif "pytest" in command:
            assert "-m gpu tests/test_gpu.py" in command, name
            seen.add("pytest")
    assert {"cmd_run", "cmd_bench", "cmd_lockstep", "cmd_defaults", "pytorch", "keras", "pytest"} <= seen


def test_without_a_gpu_each_part_says_why(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_SECONDS": "60", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    parts = _parts(tmp_path)
    assert len(parts) > 8 and all(p[3] == "not run: no CUDA GPU visible to PyTorch or JAX (see env.txt)" for p in parts)
    assert "cuda False" in (tmp_path / "env.txt").read_text()
